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
    task, model = run.config.task, run.config.model
    last = int(run.steps[-1]) if run.n_checkpoints else None
    status = "complete" if run.complete else f"{common.activity(run)} at step {last}"
    rows.append(
        {
            "run": name,
            "status": status,
            "preset": run.config.preset,
            "task": f"{task.op} mod {task.p}, {task.train_frac:.0%} train"
            + (f", {task.corrupt_frac:.0%} corrupted" if task.corrupt_frac else ""),
            "model": f"{model.kind} d_model {model.d_model} d_mlp {model.d_mlp}"
            if model.kind == "transformer"
            else f"mlp {model.d_mlp} {model.act}",
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
