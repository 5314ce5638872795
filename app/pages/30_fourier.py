"""Fourier: the embedding's spectrum at the cursor and over training, key frequencies marked."""

import common
import streamlit as st

from grokscope.figures.builders import embedding_spectrum, spectrum_over_time

st.title("Fourier")


def render(run, step):
    left, right = st.columns(2)
    with left:
        common.show(run, step, "embedding_spectrum", lambda s: embedding_spectrum(run, s))
    with right:
        common.show(run, step, "spectrum_over_time", lambda s: spectrum_over_time(run, s))


common.step_page(render, needs=("spectra", "key_frequencies"))
