"""Progress measures: restricted, excluded and test loss, Gini, weight norm, the cursor marked."""

import common
import streamlit as st

from grokscope.figures.builders import progress_measures

st.title("Progress measures")
common.step_page(
    lambda run, step: common.show(run, step, "progress_measures", lambda s: progress_measures(run, s)),
    needs=("progress", "spectra"),
)
