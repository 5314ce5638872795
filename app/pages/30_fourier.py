"""Fourier: the embedding's spectrum at the cursor and over training, key frequencies marked; every
key-frequency rule's set at the last step."""

import common
import streamlit as st

from grokscope import analysis
from grokscope.analysis.progress import KEY_LOSS_RATIO, KEY_RULES
from grokscope.figures.builders import embedding_spectrum, key_frequency_ablation, spectrum_over_time
from grokscope.store.layout import EVALUATED

st.title("Fourier")


def render(run, step):
    left, right = st.columns(2)
    with left:
        common.show(run, step, "embedding_spectrum", lambda s: embedding_spectrum(run, s))
    with right:
        common.show(run, step, "spectrum_over_time", lambda s: spectrum_over_time(run, s))
    found = analysis.load(run, "key_frequencies")
    on = EVALUATED["test" if run.has_split else "all"]
    st.subheader(f"Key frequencies at step {int(found['step'])}, by each rule")
    common.show(run, None, "key_frequency_ablation", lambda s: key_frequency_ablation(run, s))
    st.dataframe(
        [
            {
                "rule": rule,
                "frequencies": ", ".join(map(str, found[f"by_{rule}"].tolist())) or "none",
                "restricted loss": float(found[f"restricted_loss_by_{rule}"]),
                "used": "yes" if rule == str(found["rule"]) else "",
            }
            for rule in KEY_RULES
        ],
        hide_index=True,
    )
    st.caption(
        f"{on.capitalize()} loss {float(found['test_loss']):.3g}. ablation: a frequency is key when removing it from "
        f"the inputs raises the {on} loss {KEY_LOSS_RATIO:g}-fold or lowers the {on} accuracy by a point (on all "
        "inputs where the run has no split); the default, falling "
        "back to neurons, then embed, where it finds none. The restricted loss keeps the logits on a set's "
        "directions only: a set that leaves out what the model uses has a much larger one."
    )


common.step_page(render, needs=("spectra", "key_frequencies"))
