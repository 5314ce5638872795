"""Attention & circuits: attention patterns at the cursor; ablations of heads, neurons and frequencies."""

import common
import streamlit as st

from grokscope.analysis.probes import ablate
from grokscope.figures.builders import attention


def render(run, step):
    if run.config.model.kind != "transformer":
        st.info("This run's model is an MLP: it has no attention. Neuron ablations are below.")
    else:
        common.show(attention(run, step), "attention")
    st.subheader(f"Ablation at step {step}")
    keys = [int(k) for k in run.analysis("key_frequencies")["frequencies"]]
    columns = st.columns(3)
    heads = columns[0].multiselect("heads", list(range(run.config.model.n_heads)), key="ablate heads")
    frequencies = columns[1].multiselect("frequencies (key ones listed)", keys, key="ablate frequencies")
    neurons = columns[2].text_input("neurons (comma-separated)", key="ablate neurons")
    if st.button("Ablate", key="ablate"):
        try:
            chosen = [int(n) for n in neurons.split(",") if n.strip()]
        except ValueError:
            st.error(f"neurons must be comma-separated integers; got '{neurons}'")
            return
        try:
            result = ablate(run.model(step), run.config, run.dataset, heads, chosen, frequencies)
        except common.grokscope.GrokscopeError as e:
            st.error(str(e))
            return
        st.dataframe([{"metric": name, **values} for name, values in result.items()], hide_index=True)


st.title("Attention & circuits")
common.step_page(render)
