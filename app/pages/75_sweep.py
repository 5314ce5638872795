"""Sweep: a sweep's phase diagram over two of the keys it varies, coloured by final test accuracy, grok step or
outcome (memorization, coexistence, partial or full inversion); click a cell, or a row of the table, to open
its run on every other page."""

import common
import streamlit as st

import grokscope
from grokscope.analysis.sweeps import COLOURINGS, sweep_table, varied_keys
from grokscope.figures.builders import sweep_diagram

ONE_ROW = "(one row)"
st.title("Sweep")
common.sidebar()
names = common.sweep_names()
if not names:
    st.info(f"No sweeps in {common.runs_dir()}: run one with `grokscope sweep SPEC.toml` (README, Sweeps).")
    st.stop()
name = st.selectbox("sweep", names, key="sweep")
try:
    sweep = common.open_sweep(name)
except grokscope.GrokscopeError as e:
    st.error(f"Sweep '{name}' cannot be read: {e}")
    st.stop()
table = sweep_table(sweep)
keys = varied_keys(table)
started = sum(status != "not started" for status in table["status"])
st.caption(f"{len(table['run'])} runs, {started} started; varies {', '.join(keys) or 'no key'}")


def open_run(run: str) -> None:
    """Open a run of this sweep on every other page."""
    st.session_state.chosen_run = f"{name}/{run}"
    st.switch_page("pages/20_training.py")


if keys and started:
    left, middle, right = st.columns(3)
    x = left.selectbox("x", keys, key="sweep x")
    y = middle.selectbox("y", [ONE_ROW, *[k for k in keys if k != x]], index=int(len(keys) > 1), key="sweep y")
    y = None if y == ONE_ROW else y
    colour = right.radio("colour", list(COLOURINGS), horizontal=True, key="sweep colour")
    fixed = {}
    others = [k for k in keys if k not in (x, y)]
    for column, key in zip(st.columns(max(1, len(others))), others):
        values = list(dict.fromkeys(table[key]))
        chosen = column.selectbox(key, ["pooled", *values], key=f"sweep fix {key}")
        if chosen != "pooled":
            fixed[key] = chosen
    try:
        plot = sweep_diagram(sweep, x, y, colour, fixed, table)
    except grokscope.GrokscopeError as e:
        st.warning(str(e))
    else:
        event = st.plotly_chart(
            plot.figure, on_select="rerun", selection_mode="points", key=f"diagram {name}", width="content"
        )
        points = event.selection.points if event else []
        if points and points[0].get("customdata"):
            open_run(points[0]["customdata"])
        stem = f"{name}_sweep_{colour.replace(' ', '_')}"
        common.downloads("sweep", stem, lambda: sweep_diagram(sweep, x, y, colour, fixed, table))
elif keys:
    st.info("No run of this sweep has started yet.")
rows = [{column: table[column][i] for column in table} for i in range(len(table["run"]))]
bar = st.column_config.NumberColumn(format="%.3f")
chosen = st.dataframe(
    rows,
    hide_index=True,
    width="stretch",
    column_config={"final train acc": bar, "final test acc": bar},
    on_select="rerun",
    selection_mode="single-row",
    key=f"sweep table {name}",
)
picked = chosen.selection.rows
if picked and table["status"][picked[0]] != "not started":
    open_run(table["run"][picked[0]])
