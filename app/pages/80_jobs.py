"""Jobs: train a run from a preset with overrides, stop and resume it, analyse a run; each a `grokscope`
command in a process of its own, its progress shown here and its run on every other page as it lands."""

import time

import common
import jobs
import streamlit as st

import grokscope
from grokscope.config import parse_override
from grokscope.presets import PRESETS

st.title("Jobs")
common.sidebar()
root = common.runs_dir()

st.subheader("Train a run")
left, right = st.columns(2)
preset = left.selectbox("preset", list(PRESETS), key="job preset")
name = right.text_input("run name", value=preset, key="job name", help="a folder inside the runs directory")
overrides = st.text_area(
    "overrides (--set), one key=value per line", key="job overrides", placeholder="train.steps=2000\ntask.p=59"
)
if st.button("Start training", key="job start"):
    try:
        lines = [line.strip() for line in overrides.splitlines() if line.strip()]
        # a bad key or value is said here, not in a log
        grokscope.load_preset(preset).with_overrides(dict(parse_override(line) for line in lines))
        if not name or name != name.strip() or "/" in name or name.startswith("."):
            raise grokscope.GrokscopeError(f"run name: a plain folder name, without '/' or a leading '.'; got '{name}'")
        if (root / name).exists():
            raise grokscope.GrokscopeError(f"{root / name} exists: choose another name, or resume it below")
        root.mkdir(parents=True, exist_ok=True)
        sets = [arg for line in lines for arg in ("--set", line)]
        jobs.start(root, name, "train", ["train", "--preset", preset, "--out", str(root / name), *sets])
    except grokscope.GrokscopeError as e:
        st.error(str(e))


@st.fragment(run_every=2)
def board() -> None:
    """The jobs and what can be done with each run: polled, so progress shows as it comes."""
    st.subheader("Jobs of this server")
    listed = jobs.jobs()
    if not listed:
        st.caption("None yet.")
    for i, job in enumerate(reversed(listed)):
        columns = st.columns([2, 1, 1, 5, 1])
        columns[0].markdown(f"**{job.run}** · {job.what}")
        columns[1].caption(job.state)
        columns[2].caption(time.strftime("%H:%M:%S", time.localtime(job.started)))
        columns[3].caption(job.last_line() or "…")
        if job.state == "running" and columns[4].button("Stop", key=f"stop {i}"):
            job.stop()
    st.subheader("Runs")
    for run_name in common.run_names():
        try:
            run = common.open_run(run_name)
            run.refresh()
        except grokscope.GrokscopeError as e:
            st.caption(f"{run_name}: unreadable ({e})")
            continue
        running = jobs.busy(run_name)
        columns = st.columns([2, 4, 1, 1])
        columns[0].markdown(f"**{run_name}**")
        columns[1].caption(run.status + (f" · {running.what} running" if running else ""))
        # a run trained elsewhere that committed progress lately is left alone
        idle = running is None and (run.complete or run.activity == "stopped" or jobs.stopped(run_name))
        if idle and not run.complete and columns[2].button("Resume", key=f"resume {run_name}"):
            jobs.start(root, run_name, "resume", ["train", "--resume", "--out", str(run.path)])
        if idle and run.n_checkpoints and columns[3].button("Analyse", key=f"analyse {run_name}"):
            jobs.start(root, run_name, "analyze", ["analyze", str(run.path)])


board()
