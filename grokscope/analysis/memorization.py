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

from collections.abc import Callable

import numpy as np
import torch

from grokscope.analysis.spec import (
    Analysis,
    blocks,
    checkpoint_loader,
    needs_fourier,
    neurons_of_width,
)
from grokscope.config import RunConfig
from grokscope.errors import GrokscopeError
from grokscope.models import MODELS, build_model
from grokscope.store import Run
from grokscope.tasks import Dataset, Group, make_task

MEMORIZATION_ARRAYS = ("ipr_a", "ipr_b", "ipr_out", "ipr", "magnitude", "activation")
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
    return MODELS[config.model.kind].fourier_params(config.model)


def no_single_mlp(config: RunConfig) -> str | None:
    """Why neuron scores and pruning do not apply (one line), or None: they read one MLP layer's neurons
    through its own W_in and W_out."""
    layers = MODELS[config.model.kind].neuron_layers(config.model)
    if not layers or layers[0].W_out is None:
        return f"needs a single MLP layer with its own W_out; model.kind '{config.model.kind}' has none"
    return None


def mlp_params(params: dict[str, torch.Tensor], config: RunConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The first neuron layer's raw weights: W_in (..., d_in, d_mlp), W_out (..., d_mlp, d_out)."""
    reason = no_single_mlp(config)
    if reason is not None:
        raise GrokscopeError(f"neuron scores and pruning: each {reason}")
    layer = MODELS[config.model.kind].neuron_layers(config.model)[0]
    if layer.W_in not in params or layer.W_out not in params:
        raise GrokscopeError(
            f"neuron scores and pruning need a single MLP layer; no {layer.W_in} and {layer.W_out} here"
        )
    return params[layer.W_in], params[layer.W_out]


def neuron_maps(params: dict[str, torch.Tensor], config: RunConfig, group: Group):
    """Per-neuron vectors over the group's coordinates: U, V (input for a, for b), W (output):
    each (..., d_mlp, n)."""
    model = MODELS[config.model.kind]
    if not model.token_indexed:
        raise GrokscopeError(f"the IPR needs token-indexed weights; model.kind '{config.model.kind}' has none")
    return model.neuron_maps(params, config.model, group)


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


@torch.no_grad()
def activation_scores(model, dataset: Dataset, post: torch.Tensor | None = None) -> torch.Tensor:
    """Mean contribution to the trained label's logit on clean minus corrupted training examples: (d_mlp,).
    post: the model's grid activations (p², d_mlp) when already at hand."""
    if not model.token_indexed:
        raise GrokscopeError(
            f"the activation score needs a transformer or one-hot MLP; model.kind '{model.cfg.kind}' is neither"
        )
    if not dataset.corrupted.any():
        raise GrokscopeError("the activation score needs corrupted training labels (task.corrupt_frac > 0)")
    if post is None:
        post = model.grid_activations()[0]
    M = model.neuron_logit_map()
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
            raise GrokscopeError(f"the IPR score needs a group operation; {make_task(config.task).named()} has none")
        return ipr_scores(params, config, group)["ipr"]
    if by == "activation":
        return activation_scores(model, dataset)
    if by == "magnitude":
        return magnitude_scores(params, config)
    raise GrokscopeError(f"unknown neuron score '{by}' (known: {', '.join(SCORES)})")


def memorization_rows(params: dict[str, torch.Tensor], config: RunConfig, group: Group) -> dict[str, torch.Tensor]:
    """The weight-based scores for stacked checkpoints (leading axis): IPRs and magnitude, each (n, d_mlp)."""
    return {**ipr_scores(params, config, group), "magnitude": magnitude_scores(params, config)}


@torch.no_grad()
def memorization_pass(run: Run, group: Group, start: int, progress: Callable[[int, int], None]) -> dict[str, list]:
    """Neuron scores for checkpoint rows start..n-1: the weight scores on blocks of stacked checkpoints, the
    activation score (runs with corrupted labels only) from one whole-grid forward per checkpoint.
    progress(done, total): after each block and each forward, in checkpoints (counted twice with the
    activation score)."""
    rows: dict[str, list] = {}
    dataset, n = run.dataset, run.n_checkpoints - start
    total = 2 * n if dataset.corrupted.any() else n
    for i, j, params in blocks(run, start, needed_params(run.config)):
        for key, value in memorization_rows(params, run.config, group).items():
            rows.setdefault(key, []).extend(value[max(start - i, 0) : j - i].numpy())
        progress(j - start, total)
    n_neurons = len(rows["ipr"][0])
    if not dataset.corrupted.any():
        rows["activation"] = [np.full(n_neurons, np.nan, dtype=np.float32)] * n
        return rows
    model = build_model(run.config).eval()
    load_row = checkpoint_loader(run, model)
    buffer = torch.empty(run.config.task.p**2, n_neurons)
    for r in range(start, run.n_checkpoints):
        load_row(r)
        post, _ = model.grid_activations(out=buffer)
        rows.setdefault("activation", []).append(activation_scores(model, dataset, post).numpy())
        progress(n + r + 1 - start, total)
    return rows


MEMORIZATION = Analysis(
    "memorization",
    2,
    "per MLP neuron: IPR of the Fourier spectra of its input weights for a, for b, its output weights, "
    "and their mean (low: memorizing); weight magnitude; activation score (clean minus corrupted "
    "contribution to the trained label's logit; NaN without corrupted labels)",
    "checkpoints",
    memorization_pass,
    needs_fourier,
    MEMORIZATION_ARRAYS,
    valid=neurons_of_width(*MEMORIZATION_ARRAYS),
)
