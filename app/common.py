"""What the pages share: the runs directory, the chosen run (opened once, memmaps cached), the
training-time cursor (one for every page, kept in session state), and how a figure is shown.

Importing this is light (the run store only): torch and transformer-lens load inside the functions that
need them, so the first page of a fresh server shows the run list before they have loaded."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scrub
import streamlit as st

import grokscope
from grokscope.store import layout
from grokscope.store.sweep import Sweep, is_sweep
from grokscope.store.sweep import open_sweep as read_sweep

if TYPE_CHECKING:
    from grokscope.figures import Plot

RUNS_DIR_ENV, RUN_ENV = "GROKSCOPE_RUNS_DIR", "GROKSCOPE_RUN"
POLL_S = 5  # how often the pages of a run still training re-read it


@functools.cache
def browser() -> bool:
    """Whether a Chromium or Chrome is there to render figure downloads (looked up once per server)."""
    from grokscope.figures.export import has_browser

    return has_browser()


def runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV, "checkpoints")).resolve()


def open_run(name: str) -> grokscope.Run:
    """A run inside the runs directory, by name only (no path from the user reaches the filesystem); a name
    that is not one of `run_names()` (a link leading outside, a path) is refused."""
    return opened(str(runs_dir()), name)


@st.cache_resource(show_spinner=False)
def opened(root: str, name: str) -> grokscope.Run:
    """open_run, kept for the server's life per runs directory and name."""
    if name not in run_names():
        raise grokscope.GrokscopeError(f"no run '{name}' inside {root}")
    return grokscope.open_run(Path(root) / name)


def facts(run: grokscope.Run) -> dict[str, object]:
    """What the run header and the Runs table say of a run, from its store and cached analyses (nothing is
    computed): how it was trained, when it grokked, its key frequencies and phases, its final accuracies (a run
    without a split: on all inputs only)."""
    from grokscope import analysis
    from grokscope.figures.builders import phase_spans, training_label

    last = run.final_metrics()
    final = {split: last.get(f"{split}_acc") for split in ("train", "test", "all")}
    out = {
        "status": run.status,
        "task": run.task.describe(run.has_split),
        "model": run_model(run),
        "training": training_label(run.config),
        "grok step": run.grok_step,
        "key frequencies": None,
        "phases": None,
        "final train acc": final["train"],
        "final test acc": final["test"],
        "final all-inputs acc": final["all"],
    }
    try:
        if "key_frequencies" in analysis.applicable(run):
            keys = analysis.cached_result(run, "key_frequencies")
            out["key frequencies"] = None if keys is None else ", ".join(map(str, keys["frequencies"].tolist()))
        out["phases"] = " · ".join(f"{name} {start}–{end}" for name, start, end in phase_spans(run)) or None
    except grokscope.GrokscopeError as e:
        out["phases"] = f"analysis cache unreadable: {e}"
    return out


def header(run: grokscope.Run) -> None:
    """The run header every run page starts with: the run in two lines."""
    f = facts(run)
    if f["final all-inputs acc"] is not None:
        accuracy = f"no split: final accuracy on all inputs {f['final all-inputs acc']:.3f}"
    elif f["final test acc"] is not None:
        accuracy = f"final accuracy train {f['final train acc']:.3f}, test {f['final test acc']:.3f}"
    else:
        accuracy = "no metrics yet"
    grok = "not grokked" if f["grok step"] is None else f"grokked at step {f['grok step']}"
    if not run.has_split:
        grok = "no grok step (no test inputs)"
    st.markdown(f"**{run.name}** · {f['status']} · {f['task']} · {f['model']} · {f['training']}")
    details = [grok, accuracy]
    if f["key frequencies"]:
        details.append(f"key frequencies {f['key frequencies']}")
    if f["phases"]:
        details.append(f"phases: {f['phases']}")
    st.caption(" · ".join(details))


def run_names() -> list[str]:
    """The runs inside the runs directory, and those of each sweep there as SWEEP/RUN (those started, in the
    sweep's order); a link that leads outside it is not one of them."""
    root = runs_dir()
    names = []
    for name in sweep_names():
        try:
            names += [f"{name}/{run}" for run in read_sweep(root / name).started()]
        except grokscope.GrokscopeError:  # an unreadable manifest: the Sweep page says so
            continue
    found = [p.name for p in inside_dirs(root) if layout.is_run(p)]
    return sorted(found) + names


def inside_dirs(root: Path) -> list[Path]:
    """The entries of the runs directory that stay inside it (a link leading outside is left out)."""
    if not root.is_dir():
        return []
    inside = root.resolve()
    return [p for p in root.iterdir() if p.resolve().is_relative_to(inside)]


def sweep_names() -> list[str]:
    """The sweeps inside the runs directory (directories holding a sweep.json), by name."""
    return sorted(p.name for p in inside_dirs(runs_dir()) if is_sweep(p))


def open_sweep(name: str) -> Sweep:
    """A sweep inside the runs directory, by name only (one of `sweep_names()`; anything else is refused)."""
    if name not in sweep_names():
        raise grokscope.GrokscopeError(f"no sweep '{name}' inside {runs_dir()}")
    return read_sweep(runs_dir() / name)


def sidebar() -> None:
    """The run chooser (the cursor lives on each page, beside what it moves). Every page calls it first, so
    it also sets the wide layout: under st.navigation each page's run resets the layout app.py set."""
    st.set_page_config(layout="wide")
    names = run_names()
    with st.sidebar:
        st.caption(f"runs in {runs_dir()}")
        if not names:
            st.info("No runs yet: train one with `grokscope train --preset demo`.")
            return
        if st.session_state.get("chosen_run") not in names:
            wanted = os.environ.get(RUN_ENV)
            st.session_state.chosen_run = wanted if wanted in names else names[0]
        # widget state does not survive a page switch: the choice lives in its own key
        st.session_state.run_widget = st.session_state.chosen_run
        st.selectbox("run", names, key="run_widget", on_change=keep, args=("run_widget", "chosen_run"))


def keep(widget_key: str, key: str) -> None:
    st.session_state[key] = st.session_state[widget_key]


def current_run() -> grokscope.Run | None:
    """The run chooser in the sidebar, and the chosen run, refreshed (a run still training extends), or
    None with the reason shown."""
    sidebar()
    name = st.session_state.get("chosen_run")
    if name is None:
        st.info("Choose a run on the Runs page.")
        return None
    try:
        run = open_run(name)
        run.refresh()
    except grokscope.GrokscopeError as e:
        st.error(f"Run '{name}' cannot be read: {e}")
        return None
    if not run.n_checkpoints:
        st.warning(f"Run '{name}' has no checkpoint yet.")
        return None
    return run


@st.cache_resource(show_spinner=False)
def top_ups() -> dict:
    """The analyses computing in the background, for the whole server: run path → job (one at a time per
    run), and the lock that keeps two sessions from starting two."""
    return {"lock": threading.Lock(), "jobs": {}}


def top_up(run: grokscope.Run) -> dict:
    """Computes the run's missing analyses in a background thread, through the CLI's `analysis.analyze`
    (never inline in a rerun); started once per state of the run. Returns the job: {state, thread, error,
    analysed}; analysed: the run pinned where the last finished pass left it, its analyses read (None
    before the first), for the pages to draw while the next pass runs."""
    from grokscope import analysis

    state = (run.n_checkpoints, run.n_metric_steps)
    shared = top_ups()
    with shared["lock"]:
        job = shared["jobs"].get(run.path)
        if job is not None and (job["thread"].is_alive() or (job["error"] and job["state"] == state)):
            return job
        job = {"state": state, "error": None, "analysed": None if job is None else job["analysed"]}

        def work() -> None:
            try:
                worker = grokscope.open_run(run.path)
                analysis.analyze(worker, progress=False)
                analysed = worker.pinned()
                for name in analysis.by_default(worker):  # read now: the next pass rewrites the files
                    analysis.load(analysed, name)
                job["analysed"] = analysed
            except grokscope.GrokscopeError as e:
                job["error"] = str(e)

        job["thread"] = threading.Thread(target=work, name=f"analyse {run.name}", daemon=True)
        shared["jobs"][run.path] = job
        job["thread"].start()
    return job


def analysed_run(run: grokscope.Run) -> grokscope.Run | None:
    """The run to draw analysis figures for: the run itself when its analyses are cached and current; else
    they are computed in the background (new rows only where some are cached), and it is the run as the
    last finished pass left it, with a one-line note; None (with the note) before any pass finished."""
    missing = missing_analyses(run)
    if not missing:
        return run
    job = top_up(run)
    if job["error"] is not None:
        st.error(f"The analyses of {run.name} failed: {job['error']}")
        return None
    last, analysed = int(run.steps[-1]), job["analysed"]
    if analysed is not None and analysed.n_checkpoints:
        st.caption(f"Analysed up to step {int(analysed.steps[-1])}; analysing up to step {last} in the background.")
        return analysed
    upto = analysed_upto(run)
    done = "none analysed yet" if upto is None else f"analysed up to step {upto}"
    st.info(
        f"Analysing {run.name} up to step {last} in the background ({done}; {', '.join(missing)} to do): "
        "the figures appear when it is done, the Training page shows the run now."
    )
    return None


def missing_analyses(run: grokscope.Run) -> list[str]:
    """analysis.missing, asked again only when the run or its analysis files change: it reads every cached
    analysis (~50 ms for the demo run), too slow for every cursor move."""
    from grokscope import analysis

    state = (run.n_checkpoints, run.n_metric_steps, scrub.analysed(run))
    kept = run.memo.get("missing")
    if kept is None or kept[0] != state:
        run.memo["missing"] = kept = (state, analysis.missing(run))
    return kept[1]


def analysed_upto(run: grokscope.Run) -> int | None:
    """The last saved step every per-checkpoint analysis of the run has reached, or None."""
    from grokscope import analysis
    from grokscope.analysis.cache import top_up_start

    rows = [
        top_up_start(run, analysis.cached_result(run, name))
        for name in analysis.by_default(run)
        if analysis.ANALYSES[name].kind != "run"
    ]
    reached = min(rows, default=0)
    return int(run.steps[reached - 1]) if reached else None


def nearest_saved(run: grokscope.Run, step: int) -> int:
    """The first saved step at or after `step` (the last one if none)."""
    steps = run.steps
    return int(steps[min(np.searchsorted(steps, step), len(steps) - 1)])


def marks(run: grokscope.Run) -> dict[str, int]:
    """The cursor's jumps: start, where each later phase starts, the grok step and the end (label → saved step)."""
    from grokscope.figures.builders import phase_spans

    steps = run.steps
    out = {"start": int(steps[0])}
    for name, start, _ in phase_spans(run)[1:]:
        out[name] = nearest_saved(run, start)
    if run.grok_step is not None:
        out["grok"] = nearest_saved(run, run.grok_step)
    out["end"] = int(steps[-1])
    return out


def not_applicable_note(run: grokscope.Run, needs: tuple[str, ...]) -> str | None:
    """Why a page's analyses do not apply to the run (one line), or None where they all do."""
    from grokscope import analysis

    skipped = analysis.not_applicable(run)
    reasons = {skipped[name] for name in needs if name in skipped}
    if not reasons:
        return None
    return f"Not available for {run.name} ({run.task.describe(run.has_split)}; {run_model(run)}): this page {'; '.join(sorted(reasons))}."


def run_model(run: grokscope.Run) -> str:
    """The run's model in one line."""
    from grokscope.models import MODELS

    return MODELS[run.config.model.kind].describe(run.config.model)


def step_page(render: Callable[[grokscope.Run, int], None], needs: tuple[str, ...] = (), analysed: bool = True) -> None:
    """A page whose figures follow the cursor: the cursor and the figures rerun together, alone. needs: the
    analyses its figures read; where one does not apply to the run, the page says so instead. analysed:
    whether its figures read analyses (they wait for them; the others draw at once)."""
    run = current_run()
    if run is None:
        return
    live = not run.complete
    if not live:  # drawn once: it reads cached analyses, work a cursor move need not repeat
        header(run)
    note = not_applicable_note(run, needs)
    if note is not None:
        if live:
            header(run)
        st.info(note)
        return

    # polled while the run trains or its analyses compute: the figures extend as checkpoints land
    waiting = analysed and bool(missing_analyses(run))

    @st.fragment(run_every=POLL_S if live or waiting else None)
    def body() -> None:
        run.refresh()
        if live:  # in the fragment: a run still training updates its status
            header(run)
        shown = analysed_run(run) if analysed else run
        if shown is not None:
            try:
                render(shown, scrub.cursor(shown, marks(shown)))
            except grokscope.GrokscopeError as e:  # e.g. an imported series whose checkpoints have moved
                st.error(str(e))

    body()


def show(
    run: grokscope.Run,
    step: int | None,
    name: str,
    build: Callable[[int | None], Plot],
    stem: str | None = None,
    params: tuple = (),
) -> None:
    """A figure (build: step → Plot; params: what else it depends on) that follows the cursor, with
    download buttons for its data (CSV) and, where a browser can render it, a PDF, both made at the step
    when clicked and named <run>_<figure>_step<S> (or <stem>_step<S>)."""
    scrub.chart(run, name, step, build, params)
    stem = (stem or f"{run.name}_{name}") + ("" if step is None else f"_step{step}")
    downloads(name, stem, lambda: build(step))


def downloads(name: str, stem: str, make: Callable[[], Plot]) -> None:
    """Download buttons for a figure's data (CSV) and, where a browser can render it, the figure (PDF), named
    <stem>.csv and <stem>.pdf; `make` builds the Plot when a button is clicked."""
    from grokscope.figures.export import csv_text

    left, right = st.columns(2)
    left.download_button(
        "data (CSV)",
        lambda: csv_text(make().data),
        file_name=f"{stem}.csv",
        mime="text/csv",
        key=f"csv {name}",
        on_click="ignore",
    )
    if browser():  # rendered only when clicked: kaleido takes a second or two
        right.download_button(
            "figure (PDF)",
            lambda: make().figure.to_image(format="pdf"),
            file_name=f"{stem}.pdf",
            mime="application/pdf",
            key=f"pdf {name}",
            on_click="ignore",
        )
    else:
        right.caption("The figure download needs Chromium or Chrome (on Debian: apt-get install chromium).")
