"""Neurons: the neuron × frequency map at the cursor, clusters over training, and one neuron's activation
over the inputs with its 2D Fourier transform."""

import common
import numpy as np
import streamlit as st

from grokscope import analysis
from grokscope.figures.builders import neuron_activation, neuron_clusters, neuron_frequency_map


def render(run, step):
    common.show(run, step, "neuron_frequency_map", lambda s: neuron_frequency_map(run, s))
    common.show(run, step, "neuron_clusters", lambda s: neuron_clusters(run, s))
    fractions = analysis.load(run, "neurons")["fraction"][run.row(step)]
    neuron = st.number_input(
        "neuron", 0, len(fractions) - 1, int(np.argmax(fractions)), key="neuron", help="default: the most clustered"
    )
    common.show(run, step, "neuron_activation", lambda s: neuron_activation(run, s, int(neuron)), params=(int(neuron),))


st.title("Neurons")
common.step_page(render, needs=("neurons",))
