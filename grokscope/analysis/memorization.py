"""Memorizing neurons (Doshi et al. 2023): which MLP neurons generalize and which memorize.

Three per-neuron scores, each at one checkpoint (a model) or batched over stacked checkpoints (params with
a leading checkpoint axis); low means memorizing (or unimportant) for all three, so pruning the lowest
removes memorization first:
- `ipr`: the mean inverse participation ratio (r = 2) of the Fourier spectra of the neuron's input weights
  for a, for b, and its output weights. High: periodic (one frequency); low: spread (memorizing).
- `activation`: its mean direct contribution post_k · M[k, y] to the trained label's logit on clean training
  examples minus the same on corrupted ones (M: the neuron → logit map). Assumes no Fourier structure;
  needs corrupted labels.
- `magnitude`: the norm of its input and output weights together.

MLP models: U_k, V_k = W_in rows for a and for b (through W_E when the model embeds); W_k = W_out's row.
Transformers (block 0's MLP): U_k = V_k = the neuron's input direction read through W_E, W_k = its output
read through W_U; the activation score uses the direct path, exact for one layer.
Spectra are taken in the task's group coordinates (`fourier.group_of`): the tokens in order for a+b, a−b.
"""

from __future__ import annotations

import torch

from grokscope.analysis.fourier import Group
from grokscope.config import RunConfig
from grokscope.errors import GrokscopeError
from grokscope.tasks import Dataset

IPR_POWER = 2  # r in IPR_r(v) = Σ_j (|v̂_j| / ‖v̂‖₂)^(2r), Doshi et al.
SCORES = ("ipr", "activation", "magnitude")


def ipr(v: torch.Tensor, r: int = IPR_POWER) -> torch.Tensor:
    """IPR of the real FFT magnitudes of v (..., n) along its last axis, the constant term included: (...),
    in v's precision. 1 for a vector with one frequency (a pure cosine), about 2/n for one spread evenly."""
    a = torch.fft.rfft(v, dim=-1).abs()
    a = a / a.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)
    return a.pow(2 * r).sum(-1)


def needed_params(config: RunConfig) -> list[str]:
    """The parameters the weight scores read."""
    if config.model.kind == "mlp":
        return ["embed.W_E", "mlp.W_in", "mlp.W_out"] if config.model.d_embed else ["mlp.W_in", "mlp.W_out"]
    return ["embed.W_E", "blocks.0.mlp.W_in", "blocks.0.mlp.W_out", "unembed.W_U"]


def mlp_params(params: dict[str, torch.Tensor], config: RunConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The MLP's raw weights (block 0's for transformers): W_in (..., d_in, d_mlp), W_out (..., d_mlp, d_out)."""
    prefix = "mlp" if config.model.kind == "mlp" else "blocks.0.mlp"
    if f"{prefix}.W_in" not in params:
        raise GrokscopeError("the model has no MLP: neuron scores and pruning need one")
    return params[f"{prefix}.W_in"], params[f"{prefix}.W_out"]


def neuron_maps(params: dict[str, torch.Tensor], config: RunConfig, group: Group):
    """Per-neuron vectors over the group's coordinates: U, V (input for a, for b), W (output):
    each (..., d_mlp, n)."""
    W_in, W_out = mlp_params(params, config)
    p, tokens = config.task.p, torch.as_tensor(group.tokens)
    if config.model.kind == "mlp":
        half = W_in.shape[-2] // 2
        W_a, W_b = W_in[..., :half, :], W_in[..., half:, :]
        if "embed.W_E" in params:
            W_a, W_b = params["embed.W_E"] @ W_a, params["embed.W_E"] @ W_b
        W = W_out
    else:
        W_a = W_b = params["embed.W_E"][..., :p, :] @ W_in
        W = W_out @ params["unembed.W_U"]
    U = W_a[..., tokens, :].transpose(-1, -2)
    V = U if W_b is W_a else W_b[..., tokens, :].transpose(-1, -2)
    return U, V, W[..., :, tokens]


def ipr_scores(params: dict[str, torch.Tensor], config: RunConfig, group: Group) -> dict[str, torch.Tensor]:
    """ipr_a, ipr_b, ipr_out and their mean ipr: each (..., d_mlp)."""
    U, V, W = neuron_maps(params, config, group)
    ipr_a = ipr(U)
    out = {"ipr_a": ipr_a, "ipr_b": ipr_a if V is U else ipr(V), "ipr_out": ipr(W)}
    out["ipr"] = (out["ipr_a"] + out["ipr_b"] + out["ipr_out"]) / 3
    return {k: v.float() for k, v in out.items()}


def magnitude_scores(params: dict[str, torch.Tensor], config: RunConfig) -> torch.Tensor:
    """‖input weights‖² + ‖output weights‖², square-rooted, per neuron: (..., d_mlp)."""
    W_in, W_out = mlp_params(params, config)
    return (W_in.double().square().sum(-2) + W_out.double().square().sum(-1)).sqrt().float()


def neuron_logit_map(model) -> torch.Tensor:
    """The direct map from the MLP's activations to the logits: (d_mlp, d_vocab_out)."""
    if hasattr(model, "blocks"):
        return model.blocks[0].mlp.W_out @ model.unembed.W_U
    return model.mlp.W_out


@torch.no_grad()
def activation_scores(model, dataset: Dataset, post: torch.Tensor | None = None) -> torch.Tensor:
    """Mean contribution to the trained label's logit on clean minus corrupted training examples: (d_mlp,).
    post: the model's grid activations (p², d_mlp) when already at hand."""
    if not dataset.corrupted.any():
        raise GrokscopeError("the activation score needs corrupted training labels (task.corrupt_frac > 0)")
    if post is None:
        post = model.grid_activations()[0]
    M = neuron_logit_map(model)
    rows = torch.as_tensor(dataset.train_rows)
    labels = torch.as_tensor(dataset.train_labels)
    corrupted = torch.as_tensor(dataset.corrupted)
    contribution = post[rows].double() * M.T[labels].double()  # (n_train, d_mlp)
    return (contribution[~corrupted].mean(0) - contribution[corrupted].mean(0)).float()


def neuron_scores(model, config: RunConfig, dataset: Dataset, group: Group | None, by: str) -> torch.Tensor:
    """One score per neuron of `model` (see the module docstring): (d_mlp,)."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    if by == "ipr":
        if group is None:
            raise GrokscopeError(f"the IPR score needs a group operation; task.op '{config.task.op}' is not one")
        return ipr_scores(params, config, group)["ipr"]
    if by == "activation":
        return activation_scores(model, dataset)
    if by == "magnitude":
        return magnitude_scores(params, config)
    raise GrokscopeError(f"unknown neuron score '{by}' (known: {', '.join(SCORES)})")


def memorization_rows(params: dict[str, torch.Tensor], config: RunConfig, group: Group) -> dict[str, torch.Tensor]:
    """The weight-based scores for stacked checkpoints (leading axis): IPRs and magnitude, each (n, d_mlp)."""
    return {**ipr_scores(params, config, group), "magnitude": magnitude_scores(params, config)}
