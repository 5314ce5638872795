"""The training-time cursor and the charts that follow it in the browser (scrub.js).

A figure is sent once per state of the run and moved in the browser as its builder says (`Plot.scrub`): a
cursor move redraws it without a server round trip, from values sent with it for every step. The server
hears of the step when the moves pause; only then does it compute the values of the figures that need a
model forward (or a large array) per step (`Scrub.at`), and sends those values alone, which scrub.js puts
in place (one Plotly.update per chart)."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from grokscope.store import layout

if TYPE_CHECKING:
    import grokscope
    from grokscope.figures import Plot
    from grokscope.figures.builders import Scrub

COMPONENT = st.components.v2.component(
    "grokscope.scrub",
    js=(Path(__file__).parent / "scrub.js").read_text(),
    css="""
.grokscope-marks { display: flex; flex-wrap: wrap; gap: 0.3rem; align-items: center; }
.grokscope-marks button { font: inherit; font-size: 0.85rem; padding: 0.15rem 0.6rem; cursor: pointer;
  border: 1px solid rgba(49, 51, 63, 0.2); border-radius: 0.4rem; background: transparent; color: inherit; }
.grokscope-marks button:hover { border-color: #0072B2; color: #0072B2; }
.grokscope-step { margin-left: 0.6rem; font-size: 0.9rem; font-variant-numeric: tabular-nums; }
.grokscope-cursor input[type=range] { width: 100%; margin: 0.4rem 0 0.2rem; accent-color: #0072B2; }
""",
    isolate_styles=False,  # plotly.js styles its hover labels and mode bar from the document's head
)
# the plotly.js that plotly (python) writes figures for, found without importing plotly
PLOTLY_JS = Path(importlib.util.find_spec("plotly").origin).parent / "package_data"


def plotly_url() -> str:
    """Where this server serves plotly.js (a v1 component's static route over plotly's own copy), relative
    to the page."""
    served = st.components.v1.declare_component("plotlyjs", path=str(PLOTLY_JS))
    return f"component/{served.name}/plotly.min.js"


def cursor(run: grokscope.Run, marks: dict[str, int]) -> int:
    """The training-time cursor over the run's saved steps: a slider, ◀ ▶ and a button per mark (label →
    saved step). One step for every page, in session state. Returns the step."""
    steps = [int(s) for s in run.steps]
    if st.session_state.get("step") not in steps:
        st.session_state.step = steps[-1]
    data = {
        "kind": "cursor",
        "run": str(run.path),  # the identity: two sweeps may hold runs of one name
        "steps": steps,
        "step": st.session_state.step,
        "marks": list(marks.items()),
    }
    COMPONENT(key="cursor", data=data, default={"step": st.session_state.step}, on_step_change=moved, height="content")
    return st.session_state.step


def moved() -> None:
    st.session_state.step = int(st.session_state.cursor["step"])


def chart(run: grokscope.Run, name: str, step: int, build: Callable[[int], Plot], params: tuple = ()) -> None:
    """One figure (build: step → Plot; params: what else it depends on): sent once per state of the run and
    moved in the browser (Plot.scrub), or without a cursor (Compare) built and drawn at the step."""
    # a pinned run's analyses were read once (analysis.load): the files changing since do not matter
    state = (run.n_checkpoints, run.n_metric_steps, analysed(run) if run.pin is None else ())
    kept = run.memo.get(("chart", name, *params))
    if kept is not None and kept[0] == state:
        data, follow = kept[1], kept[2]
    else:
        plot = build(step)
        if not any(len(np.asarray(column)) for column in plot.data.values()):
            st.info(f"Nothing to draw yet for {name.replace('_', ' ')} (no rows recorded).")
            return
        data, follow = payload(run, plot), plot.scrub
        if follow is not None:  # the same at every step: kept until the run or its analyses change
            run.memo[("chart", name, *params)] = (state, data, follow)
    # the row of the step (for Compare, any step or none: its figure is drawn at it by the server)
    row = None if step is None else min(int(np.searchsorted(run.steps, step)), run.n_checkpoints - 1)
    data = {**data, "plotly": plotly_url(), "step": step, "row": row}
    if follow is not None and follow.at is not None:
        data["at"] = placed(follow, step)
    COMPONENT(key=f"chart {name}", data=data, height="content")


def placed(scrub: Scrub, step: int) -> dict:
    """A figure's step-dependent values at the step (Scrub.at), for scrub.js to put in place: [trace,
    attribute, float32 values, shape] each, and the title."""
    traces, title = scrub.at(step)
    values = [[t, k, encode(v), list(np.shape(v))] for t, attrs in traces.items() for k, v in attrs.items()]
    return {"step": step, "title": title, "traces": values}


def analysed(run: grokscope.Run) -> tuple:
    """When each of the run's cached analyses was last written (a scrubbable figure is rebuilt after)."""
    folder = run.path / layout.ANALYSIS
    return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())) if folder.is_dir() else ()


def payload(run: grokscope.Run, plot: Plot) -> dict:
    """What scrub.js needs to draw and move a figure: the same at every step (it stands at the run's last
    step, or with Scrub.at where it was built until its values at the step arrive), so a rerun after a move
    sends what the browser already has."""
    from grokscope.figures.builders import Scrub

    scrub = plot.scrub or Scrub()  # a figure without a cursor: drawn at its step
    if plot.scrub is not None:
        last(plot, int(run.steps[-1]))
    figure = plot.figure.to_json()
    ys = [[trace, encode(values), int(values.shape[1])] for trace, values in scrub.ys.items()]
    return {
        "kind": "chart",
        "run": str(run.path),  # the identity: two sweeps may hold runs of one name
        "steps": [int(s) for s in run.steps],
        "figure": figure,
        "ys": ys,
        "titles": scrub.titles,
        "revision": hashlib.md5(figure.encode() + str(ys).encode()).hexdigest(),
    }


def last(plot: Plot, step: int) -> None:
    """Moves a scrubbable figure, in place, to the run's last step (scrub.js moves it to the cursor's)."""
    from grokscope.figures.builders import CURSOR

    for shape in plot.figure.layout.shapes:
        if shape.name == CURSOR:
            shape.x0 = shape.x1 = step
    for trace, values in plot.scrub.ys.items():
        plot.figure.data[trace].y = values[-1]
    if plot.scrub.titles:
        plot.figure.layout.title.text = plot.scrub.titles[-1]


def encode(values: np.ndarray) -> str:
    """An array as base64 of its float32 bytes (row-major), for scrub.js."""
    return base64.b64encode(np.ascontiguousarray(values, dtype="<f4").tobytes()).decode()
