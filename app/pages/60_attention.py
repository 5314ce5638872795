"""Attention & circuits: attention patterns at the cursor; ablations of heads, neurons and frequencies."""

import common
import streamlit as st

from grokscope import analysis
from grokscope.analysis.probes import ablate
from grokscope.figures.builders import attention
from grokscope.models import MODELS, load_model


def render(run, step):
    model = common.run_model(run)
    transformer = MODELS[run.config.model.kind].has_attention
    if transformer:
        common.show(run, step, "attention", lambda s: attention(run, s))
    else:
        st.info(f"This run's model ({model}) has no attention. Neuron ablations are below.")
    st.subheader(f"Ablation at step {step}")
    fourier = "key_frequencies" in analysis.applicable(run)
    keys = [int(k) for k in analysis.load(run, "key_frequencies")["frequencies"]] if fourier else []
    columns = iter(st.columns(3 if transformer else 2))
    heads = (
        next(columns).multiselect("heads", list(range(run.config.model.n_heads)), key="ablate heads")
        if transformer
        else []
    )
    frequencies = next(columns).multiselect("frequencies (key ones listed)", keys, key="ablate frequencies")
    neurons = next(columns).text_input("neurons (comma-separated)", key="ablate neurons")
    if st.button("Ablate", key="ablate"):
        try:
            chosen = [int(n) for n in neurons.split(",") if n.strip()]
        except ValueError:
            st.error(f"neurons must be comma-separated integers; got '{neurons}'")
            return
        try:
            result = ablate(load_model(run, step), run.config, run.dataset, heads, chosen, frequencies)
        except common.grokscope.GrokscopeError as e:
            st.error(str(e))
            return
        st.dataframe([{"metric": name, **values} for name, values in result.items()], hide_index=True)


st.title("Attention & circuits")
common.step_page(render)
