"""Runs: every run in the runs directory, its status, and the run the other pages show."""

import common
import streamlit as st

import grokscope
from grokscope.figures.builders import training_label

st.title("Runs")
common.sidebar()
rows = []
for name in common.run_names():
    try:
        run = common.open_run(name)
        run.refresh()
    except grokscope.GrokscopeError as e:
        rows.append({"run": name, "status": f"unreadable: {e}"})
        continue
    last = int(run.steps[-1]) if run.n_checkpoints else None
    status = "complete" if run.complete else f"{common.activity(run)} at step {last}"
    rows.append(
        {
            "run": name,
            "status": status,
            "preset": run.config.preset,
            "task": run.task.describe(),
            "model": common.run_model(run),
            "training": training_label(run.config),
            "checkpoints": run.n_checkpoints,
            "grok step": run.grok_step,
        }
    )
if rows:
    st.dataframe(rows, hide_index=True, width="stretch")
    st.caption("Choose the run to show in the sidebar. A run still training extends as checkpoints land.")
else:
    st.info(f"No runs in {common.runs_dir()}: train one with `grokscope train --preset demo`.")
