"""grokscope app: the router. Pages (app/pages/*.py) only lay out figures from grokscope.figures; what
they share (the run chooser, the training-time cursor) is in app/common.py and every page draws it. Adding a page: one file in pages/
plus its entry below (and its figure builders in grokscope/figures)."""

import streamlit as st

st.set_page_config(page_title="grokscope", layout="wide")
pages = [
    st.Page("pages/runs.py", title="Runs", default=True),
    st.Page("pages/training.py", title="Training"),
    st.Page("pages/fourier.py", title="Fourier"),
    st.Page("pages/neurons.py", title="Neurons"),
    st.Page("pages/progress.py", title="Progress measures"),
    st.Page("pages/attention.py", title="Attention & circuits"),
    st.Page("pages/compare.py", title="Compare"),
]
st.navigation(pages).run()
