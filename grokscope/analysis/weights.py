"""Analyses of the weights alone: Fourier spectra, Gini coefficients, weight norms.

Every function takes parameters stacked over checkpoints, name → (B, *shape) (a trajectory slice, or
one checkpoint's parameters with B = 1), so the one-checkpoint and all-checkpoints forms are one code.
"""

from __future__ import annotations

import torch

from grokscope.analysis.fourier import Group, fourier_basis, gini, per_frequency
from grokscope.config import RunConfig

MAPS = ("embed", "unembed", "neuron_in", "neuron_out")
SPECTRA_ARRAYS = (*(f"{m}_{kind}" for m in MAPS for kind in ("power", "freq_power")), "gini_embed", "gini_neuron_out")


def token_maps(params: dict[str, torch.Tensor], config: RunConfig, group: Group) -> dict[str, torch.Tensor]:
    """The four token-indexed maps the spectra read, rows/columns in the group's coordinate order.

    embed (B, n, d): the embedding of each token (transformer: W_E without `=`; MLP: its learned W_E,
    or without one the input weights reading a). unembed (B, d', n): the map to each output's logit
    (W_U; MLP: W_out). neuron_in (B, n, d_mlp): each neuron's input weight on each token through the
    direct path (W_E·W_in; MLP: the rows of W_in reading a). neuron_out (B, d_mlp, n): each neuron's
    effect on each logit (W_out·W_U; MLP: W_out).
    """
    t = torch.as_tensor(group.tokens)
    p = config.task.p
    if config.model.kind == "transformer":
        embed = params["embed.W_E"][:, t]
        unembed = params["unembed.W_U"][:, :, t]
        W_in, W_out = params["blocks.0.mlp.W_in"], params["blocks.0.mlp.W_out"]
        return {
            "embed": embed,
            "unembed": unembed,
            "neuron_in": embed @ W_in,
            "neuron_out": W_out @ unembed,
        }
    W_in, W_out = params["mlp.W_in"], params["mlp.W_out"][:, :, t]
    if config.model.d_embed:
        embed = params["embed.W_E"][:, t]
        neuron_in = embed @ W_in[:, : config.model.d_embed]
    else:
        embed = neuron_in = W_in[:, :p][:, t]
    return {"embed": embed, "unembed": W_out, "neuron_in": neuron_in, "neuron_out": W_out}


def spectra(params: dict[str, torch.Tensor], config: RunConfig, group: Group) -> dict[str, torch.Tensor]:
    """Fourier power of the token maps and the Gini coefficients of their per-frequency norms.

    → {map}_power (B, n): power per Fourier component, summed over the other axis (model dimensions or
    neurons); {map}_freq_power (B, n // 2 + 1): per frequency; gini_embed, gini_neuron_out (B,): Gini of
    the per-frequency norms (square roots of power) over the non-constant frequencies.
    """
    F = fourier_basis(group.n)
    out = {}
    for name, m in token_maps(params, config, group).items():
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
