"""Compare: several runs on one time axis (e.g. with and without an intervention), aligned by step, and a
table of when each memorized and grokked (dense runs, grokking tickets and their controls)."""

import common
import streamlit as st

import grokscope
from grokscope.figures.builders import compare, run_table

st.title("Compare")
common.sidebar()
names = common.run_names()
chosen = st.multiselect(
    "runs", names, default=[n for n in [st.session_state.get("chosen_run")] if n in names], key="compare"
)
runs = []
for name in chosen:
    try:
        run = common.open_run(name)
        run.refresh()
        runs.append(run)
    except grokscope.GrokscopeError as e:
        st.error(f"Run '{name}' cannot be read: {e}")
if runs:
    st.dataframe(run_table(runs), hide_index=True)
    step, names = st.session_state.get("step"), "+".join(run.name for run in runs)
    common.show(runs[0], step, "compare", lambda s: compare(runs, s), stem=f"{names}_compare")
else:
    st.info("Choose one or more runs.")
