"""Pathways: how training samples' routes through the experts (or, for dense models, their most active
neurons) become shared over training, with each metric's rank correlation with test accuracy, and the
routes of a few samples at the cursor (Li, Fan & Zhou 2025)."""

import common
import streamlit as st

from grokscope import analysis
from grokscope.analysis.pathways import correlations
from grokscope.figures.builders import PATHWAY_METRICS, pathway_grid, pathways


def render(run, step):
    common.show(run, step, "pathways", lambda s: pathways(run, s))
    rows = [
        {"metric": PATHWAY_METRICS[name], "Spearman ρ with test accuracy": rho, "p-value": p, "checkpoints": n}
        for name, rho, p, n in correlations(run, analysis.load(run, "pathways"))
    ]
    st.caption(
        "Rank correlation of each metric with test accuracy over the analysed checkpoints (training samples only):"
    )
    st.dataframe(
        rows,
        hide_index=True,
        column_config={
            "Spearman ρ with test accuracy": st.column_config.NumberColumn(format="%+.3f"),
            "p-value": st.column_config.NumberColumn(format="%.1e"),
        },
    )
    common.show(run, step, "pathway_grid", lambda s: pathway_grid(run, s))


st.title("Pathways")
common.step_page(render, needs=("pathways",))
