"""Local complexity & robustness: how densely the network's regions pack around the data over training
(Humayun et al. 2024), clean and adversarial accuracy, and the regions in a slice at the cursor."""

import json

import common
import jobs
import streamlit as st

from grokscope import analysis
from grokscope.figures.builders import ON_REQUEST, local_complexity, region_slice, robustness


def offer(run, missing: list[str]) -> None:
    """Analyses computed on request: a button starts them as a job (the CLI's `analyze --only`)."""
    name = st.session_state.chosen_run  # the Jobs page's name for the run (SWEEP/RUN inside a sweep)
    running = jobs.busy(name)
    if running is not None:
        st.info(f"Computing for {run.name} (see the Jobs page): {running.last_line() or 'starting'}")
        return
    names = ",".join(missing)
    st.info(
        f"{' and '.join(missing).replace('_', ' ').capitalize()} {'are' if len(missing) > 1 else 'is'} computed "
        f"on request (every checkpoint sees thousands of perturbed inputs): `grokscope analyze {run.path} "
        f"--only {names}`, or the button."
    )
    if st.button(f"Compute {names}", key="compute on request"):
        jobs.start(common.runs_dir(), name, "analyze", ["analyze", str(run.path), "--only", names])
        st.rerun()


def render(run, step):
    skipped = analysis.not_applicable(run)
    missing = [name for name in ON_REQUEST if name not in skipped and analysis.cached_result(run, name) is None]
    for name in ON_REQUEST:
        if name in skipped:
            st.info(f"{name.replace('_', ' ').capitalize()} is not available for {run.name}: it {skipped[name]}")
    if "local_complexity" not in missing and "local_complexity" not in skipped:
        radii = json.loads(str(analysis.load(run, "local_complexity")["options"]))["radii"]
        radius = st.selectbox("radius", radii, index=None, placeholder="the one nearest 1", key="lc radius")
        common.show(run, step, "local_complexity", lambda s: local_complexity(run, s, radius), params=(radius,))
    if "robustness" not in missing and "robustness" not in skipped:
        common.show(run, step, "robustness", lambda s: robustness(run, s))
    if missing:
        offer(run, missing)
    if "local_complexity" not in skipped:
        common.show(run, step, "region_slice", lambda s: region_slice(run, s))


st.title("Local complexity & robustness")
common.step_page(render)
