"""Neuron frequency clustering (Nanda et al. 2023).

For each MLP neuron take its activation at `=` over all inputs as an n×n array A[x, y] in the group's
coordinates, centre it, and read its 2D Fourier transform C = F·A·Fᵀ: the fraction of A's variance in
frequency k is the share of ΣC² on the components (0, c_k), (0, s_k), (c_k, 0), (s_k, 0) and the four
(c_k|s_k, c_k|s_k). The neuron's frequency is the argmax; below CLUSTER_THRESHOLD it is unclustered.
"""

from __future__ import annotations

import numpy as np
import torch

from grokscope.analysis.fourier import Group, component_frequency, fourier_basis, per_frequency
from grokscope.tasks import one_hots, tokens

CLUSTER_THRESHOLD = 0.85


def grid_neurons(model: torch.nn.Module, group: Group) -> tuple[torch.Tensor, torch.Tensor]:
    """(activations (d_mlp, n, n), logits (n * n, p)) of a model over its inputs in group coordinates,
    from the fast whole-grid form."""
    post, logits = model.grid_activations()
    rows = torch.as_tensor(group.grid_rows(model.p))
    return post[rows].T.reshape(-1, group.n, group.n), logits[rows]


@torch.no_grad()
def plain_neurons(model: torch.nn.Module, group: Group) -> tuple[torch.Tensor, torch.Tensor]:
    """The same as grid_neurons through the model's plain hooked forward (`run_with_cache`): the
    one-checkpoint reference form."""
    p = model.p
    rows = torch.as_tensor(group.grid_rows(p))
    if model.cfg.kind == "transformer":
        hook, inputs = "blocks.0.mlp.hook_post", tokens(rows, p)
    else:
        hook, inputs = "mlp.hook_post", one_hots(rows, p)
    logits, cache = model.run_with_cache(inputs, names_filter=hook)
    post = cache[hook]
    if model.cfg.kind == "transformer":
        post, logits = post[:, -1], logits[:, -1]
    return post.T.reshape(-1, group.n, group.n), logits


def frequency_fractions(acts: torch.Tensor) -> torch.Tensor:
    """acts (N, n, n) → fraction of each neuron's variance in each frequency k = 1..n//2: (N, n // 2).

    Only the components the fractions read are computed: G = F·A once (n³ per neuron), then from G the
    column 0, row 0 and each component's block of its own frequency (n² per neuron), not all of F·A·Fᵀ.
    """
    n = acts.shape[-1]
    F = fourier_basis(n).to(acts)
    A = acts - acts.mean((1, 2), keepdim=True)
    G = F @ A  # (N, u, y)
    col0 = G @ F[0]  # (N, u): components (u, const)
    row0 = G[:, 0] @ F.T  # (N, v): components (const, v)
    freq = component_frequency(n)
    partners = np.full((n, 2), n)  # the components sharing u's frequency; n points at a zero row
    for u in range(1, n):
        same = np.flatnonzero(freq == freq[u])
        partners[u, : len(same)] = same
    F_padded = torch.cat([F, F.new_zeros(1, n)])
    block = torch.einsum("Nuy,ujy->Nuj", G, F_padded[torch.as_tensor(partners)])  # (N, u, 2)
    power = col0.square() + row0.square() + block.square().sum(-1)  # (N, n): by the component u
    total = A.square().sum((1, 2)).clamp_min(torch.finfo(A.dtype).tiny)
    return (per_frequency(power, n)[:, 1:] / total[:, None]).clamp(0, 1)


def cluster(fractions: torch.Tensor, threshold: float = CLUSTER_THRESHOLD) -> dict[str, torch.Tensor]:
    """fractions (..., N, K) → frequency (..., N) int (1..K, the argmax), fraction (..., N) its share,
    clustered (..., N) bool (fraction ≥ threshold)."""
    fraction, index = fractions.max(-1)
    return {"frequency": index + 1, "fraction": fraction, "clustered": fraction >= threshold}
