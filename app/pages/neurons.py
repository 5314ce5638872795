"""Neurons: clustered neurons per frequency at the cursor, and the clustered share over training."""

import common
import streamlit as st

from grokscope.figures.builders import neuron_clusters

st.title("Neurons")
common.step_page(lambda run, step: common.show(neuron_clusters(run, step), "neuron_clusters"))
