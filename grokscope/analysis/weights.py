"""Analyses of the weights alone: Fourier spectra, Gini coefficients, weight norms.

Every function takes parameters stacked over checkpoints, name → (B, *shape) (a trajectory slice, or
one checkpoint's parameters with B = 1), so the one-checkpoint and all-checkpoints forms are one code.
"""

from __future__ import annotations

import torch

from grokscope.analysis.fourier import fourier_basis, gini, per_frequency
from grokscope.analysis.spec import Analysis, needs_fourier, trained_here
from grokscope.config import RunConfig
from grokscope.models import MODELS
from grokscope.tasks import Group

MAPS = ("embed", "unembed", "neuron_in", "neuron_out")
SPECTRA_ARRAYS = (*(f"{m}_{kind}" for m in MAPS for kind in ("power", "freq_power")), "gini_embed", "gini_neuron_out")


def spectra(params: dict[str, torch.Tensor], config: RunConfig, group: Group) -> dict[str, torch.Tensor]:
    """Fourier power of the token maps and the Gini coefficients of their per-frequency norms.

    → {map}_power (B, n): power per Fourier component, summed over the other axis (model dimensions or
    neurons); {map}_freq_power (B, n // 2 + 1): per frequency; gini_embed, gini_neuron_out (B,): Gini of
    the per-frequency norms (square roots of power) over the non-constant frequencies.
    """
    F = fourier_basis(group.n)
    out = {}
    maps = MODELS[config.model.kind].token_maps(params, config.model, group)  # see Transformer.token_maps
    for name, m in maps.items():
        m = m.double()
        coefficients = F @ m if name in ("embed", "neuron_in") else m @ F.T  # Fourier along the token axis
        power = coefficients.square().sum(-1 if name in ("embed", "neuron_in") else -2)
        out[f"{name}_power"] = power
        out[f"{name}_freq_power"] = per_frequency(power, group.n)
    out["gini_embed"] = gini(out["embed_freq_power"][:, 1:].sqrt())
    out["gini_neuron_out"] = gini(out["neuron_out_freq_power"][:, 1:].sqrt())
    return out


def weight_norms(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Sum of squared weights per parameter ('sq_norm.<name>') and in total ('sq_norm'): (B,) each."""
    out = {f"sq_norm.{n}": w.double().square().flatten(1).sum(1) for n, w in params.items()}
    out["sq_norm"] = torch.stack(list(out.values())).sum(0)
    return out


SPECTRA = Analysis(
    "spectra",
    1,
    "Fourier power per component and per frequency of the embedding, unembedding and the neurons' input "
    "and output maps; Gini of the embedding's and the neuron→logit map's per-frequency norms",
    "weights",
    spectra,
    needs_fourier,
    SPECTRA_ARRAYS,
    params=lambda config: MODELS[config.model.kind].fourier_params(config.model),
)
WEIGHT_NORMS = Analysis(
    "weight_norms",
    1,
    "sum of squared weights, total and per parameter",
    "weights",
    lambda params, config, group: weight_norms(params),
    trained_here,
    ("sq_norm",),
)
