"""Runs: every run in the runs directory, its status, and the run the other pages show.

The table is drawn from the run store alone first, then again with the model and training columns, whose
descriptions live with the models (torch): on a fresh server the runs show before torch has loaded."""

import sys

import common
import streamlit as st

import grokscope

st.title("Runs")
common.sidebar()
rows, runs = [], {}
for name in common.run_names():
    try:
        run = common.open_run(name)
        run.refresh()
    except grokscope.GrokscopeError as e:
        rows.append({"run": name, "status": f"unreadable: {e}"})
        continue
    runs[name] = run
    last = int(run.steps[-1]) if run.n_checkpoints else None
    status = "complete" if run.complete else f"{common.activity(run)} at step {last}"
    rows.append(
        {
            "run": name,
            "status": status,
            "preset": run.config.preset,
            "task": run.task.describe(),
            "checkpoints": run.n_checkpoints,
            "grok step": run.grok_step,
        }
    )
if rows:
    table = st.empty()
    if "torch" not in sys.modules:  # a fresh server: the runs first, while the models load
        table.dataframe(rows, hide_index=True, width="stretch")
    st.caption("Choose the run to show in the sidebar. A run still training extends as checkpoints land.")
    from grokscope.figures.builders import training_label

    for row in rows:
        if row["run"] in runs:
            run = runs[row["run"]]
            row["model"], row["training"] = common.run_model(run), training_label(run.config)
    columns = ["run", "status", "preset", "task", "model", "training", "checkpoints", "grok step"]
    table.dataframe([{c: row.get(c) for c in columns} for row in rows], hide_index=True, width="stretch")
else:
    st.info(f"No runs in {common.runs_dir()}: train one with `grokscope train --preset demo`.")
