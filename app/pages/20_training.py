"""Training: loss, accuracy and weight norm, phases shaded, the cursor marked."""

import common
import streamlit as st

from grokscope.figures.builders import training_curves

st.title("Training")
common.step_page(
    lambda run, step: common.show(run, step, "training_curves", lambda s: training_curves(run, s)), analysed=False
)
