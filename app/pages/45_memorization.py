"""Memorization & pruning: which neurons memorize (IPR, activation score, magnitude) at the cursor and over
training; prune them with live before/after accuracies and save the pruned model."""

import common
import streamlit as st

from grokscope import analysis
from grokscope.analysis.pruning import SPLITS, Pruner, count_of, default_out, not_prunable, save_pruned
from grokscope.figures.builders import SPLIT_NAMES, ipr_histogram, ipr_over_time, neuron_scores
from grokscope.models import MODELS


def pruner(run, step: int, by: str, lowest: bool) -> Pruner:
    """Scored once per (step, score, order) and kept on the run: slider moves only prune and evaluate."""
    key = ("pruner", step, by, lowest)
    if key not in run.memo:
        for stale in [k for k in run.memo if isinstance(k, tuple) and k[0] == "pruner"]:
            del run.memo[stale]
        run.memo[key] = Pruner(run, step, by, lowest)
    return run.memo[key]


def render(run, step):
    fourier = "memorization" in analysis.applicable(run)
    cannot_prune = not_prunable(run)
    if fourier:
        left, right = st.columns(2)
        with left:
            common.show(run, step, "ipr_histogram", lambda s: ipr_histogram(run, s))
        with right:
            common.show(run, step, "neuron_scores", lambda s: neuron_scores(run, s))
        common.show(run, step, "ipr_over_time", lambda s: ipr_over_time(run, s))
    elif cannot_prune is None:
        reason = analysis.not_applicable(run)["memorization"]
        st.info(f"The IPR scores are not available for {run.name}: each {reason}. Prune by the other scores.")
    if cannot_prune is not None:
        st.info(f"Not available for {run.name} ({common.run_model(run)}): {cannot_prune}.")
        return

    st.subheader(f"Pruning at step {step}")
    corrupted = bool(run.dataset.corrupted.any()) and MODELS[run.config.model.kind].token_indexed
    scores = [
        s for s in ("ipr", "activation", "magnitude") if (s != "ipr" or fourier) and (s != "activation" or corrupted)
    ]
    columns = st.columns(3)
    by = columns[0].selectbox(
        "score", scores, key="prune by", help="activation needs corrupted labels and a transformer or one-hot MLP"
    )
    order = columns[1].radio("prune first", ["lowest", "highest"], horizontal=True, key="prune order")
    fraction = columns[2].slider("fraction of neurons pruned", 0.0, 1.0, 0.5, 0.025, key="prune fraction")
    try:
        chosen = pruner(run, step, by, order == "lowest")
    except common.grokscope.GrokscopeError as e:
        st.error(str(e))
        return
    model, report = chosen.prune(count_of(chosen.n_neurons, fraction, None))
    rows = [
        {"accuracy on": SPLIT_NAMES[s], "before": report["before"][s], "after": report["after"][s]}
        for s in SPLITS
        if report["before"][s] is not None
    ]
    st.caption(f"{len(report['neurons_pruned'])} of {chosen.n_neurons} neurons pruned, {order} {by} first")
    bar = st.column_config.ProgressColumn(min_value=0, max_value=1, format="%.3f")
    st.dataframe(rows, hide_index=True, column_config={"before": bar, "after": bar})
    if st.button("Save the pruned model", key="save pruned"):
        out = default_out(chosen, str(len(report["neurons_pruned"])))
        save_pruned(out, model, run.config, report, chosen.settings)
        st.success(f"Saved to {out} (model.safetensors, config.json, report.json)")


st.title("Memorization & pruning")
common.step_page(render)
