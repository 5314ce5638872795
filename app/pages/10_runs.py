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
    rows.append(
        {
            "run": name,
            "status": run.status,
            "preset": run.config.preset,
            "task": run.task.describe(run.has_split),
            "checkpoints": run.n_checkpoints,
            "grok step": run.grok_step,
        }
    )
if rows:
    wanted = st.text_input("filter", key="runs filter", placeholder="any part of a row, e.g. mod 59 or AdamW")
    table = st.empty()
    if "torch" not in sys.modules:  # a fresh server: the runs first, while the models load
        table.dataframe(rows, hide_index=True, width="stretch")
    st.caption(
        "Click a row to open the run; click a column's name to sort by it. A run still training extends as "
        "checkpoints land."
    )
    for row in rows:
        if row["run"] in runs:
            row.update(common.facts(runs[row["run"]]))
    columns = ["run", "status", "preset", "task", "model", "training", "checkpoints", "grok step"]
    columns += ["key frequencies", "phases", "final train acc", "final test acc"]
    if any(row.get("final all-inputs acc") is not None for row in rows):  # a run imported without its split
        columns.append("final all-inputs acc")
    shown = [{c: row.get(c) for c in columns} for row in rows]
    if wanted:
        shown = [row for row in shown if wanted.lower() in " ".join(map(str, row.values())).lower()]
    bar = st.column_config.NumberColumn(format="%.3f")
    chosen = table.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        column_config={"final train acc": bar, "final test acc": bar, "final all-inputs acc": bar},
        on_select="rerun",
        selection_mode="single-row",
        key="runs table",
    )
    picked = chosen.selection.rows
    if picked and shown[picked[0]]["run"] in runs:
        st.session_state.chosen_run = shown[picked[0]]["run"]
        st.switch_page("pages/20_training.py")
else:
    st.info(f"No runs in {common.runs_dir()}: train one with `grokscope train --preset demo`.")
