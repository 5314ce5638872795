"""Neuron frequency clustering (Nanda et al. 2023).

For each MLP neuron take its activation at `=` over all inputs as an n×n array A[x, y] in the group's
coordinates, centre it, and read its 2D Fourier transform C = F·A·Fᵀ: the fraction of A's variance in
frequency k is the share of ΣC² on the components (0, c_k), (0, s_k), (c_k, 0), (s_k, 0) and the four
(c_k|s_k, c_k|s_k). The neuron's frequency is the argmax; below CLUSTER_THRESHOLD it is unclustered.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from grokscope.analysis.fourier import component_frequency, per_frequency, shared_basis
from grokscope.analysis.spec import Analysis, Forward, frequencies_in_range, needs_fourier, neurons_of_width
from grokscope.models.common import Readout
from grokscope.tasks import Group

CLUSTER_THRESHOLD = 0.85


def grid_neurons(model: torch.nn.Module, group: Group, out: torch.Tensor | None = None) -> tuple[torch.Tensor, Readout]:
    """(activations (n, n, d_mlp) indexed [x, y, neuron], the logits as a Readout over the n² inputs) of a
    model in group coordinates, from the fast whole-grid form (out: see grid_activations)."""
    post, readout = model.grid_activations(out)
    if group.n != model.p:  # the discrete-log order of a·b, a/b (a+b, a−b keep the grid's own)
        rows = torch.as_tensor(group.grid_rows())
        post, readout = post[rows], readout.take(rows)
    return post.reshape(group.n, group.n, -1), readout


@torch.no_grad()
def plain_neurons(model: torch.nn.Module, group: Group) -> tuple[torch.Tensor, Readout]:
    """The same as grid_neurons through the model's plain hooked forward (`run_with_cache`): the
    one-checkpoint reference form."""
    hook = model.neuron_layers(model.cfg)[0].hook_post
    logits, cache = model.run_with_cache(model.grid_inputs(group.grid_rows()), names_filter=hook)
    post = cache[hook]
    if post.ndim == 3:  # (input, position, neuron): the output position
        post = post[:, -1]
    return post.reshape(group.n, group.n, -1), Readout([(model.output_logits(logits), None)])


def frequency_fractions(acts: torch.Tensor, workspace: torch.Tensor | None = None) -> torch.Tensor:
    """acts (n, n, N) indexed [x, y, neuron] → each neuron's fraction of variance in each frequency
    k = 1..n//2: (N, n // 2).

    Only the components the fractions read are computed: G = F·A for all neurons in one matrix product
    (n³ per neuron), then from G the column 0, row 0 and each component's block of its own frequency
    (n² per neuron), not all of F·A·Fᵀ. Centring A changes only the (const, const) component, which
    no frequency reads, so A is used as it is. workspace: an (n, n·N) buffer for F·A, reused across
    calls by the batched pass (a fresh one per call costs page faults worth a quarter of the time).
    """
    n, N = acts.shape[0], acts.shape[-1]
    F = shared_basis(n, acts.dtype)
    G = torch.mm(F, acts.reshape(n, n * N), out=workspace).reshape(n, n, N)  # [u, y, neuron]
    col0 = F[0] @ G  # (u, N): components (u, const)
    row0 = F @ G[0]  # (v, N): components (const, v)
    block = torch.bmm(partner_rows(n, acts.dtype), G)  # (u, 2, N): components (u, v) of u's frequency
    power = col0.square() + row0.square() + block.square().sum(1)  # (u, N): by the component u
    # the variance: every component but (const, const), i.e. rows u ≥ 1 of G and row 0's v ≥ 1 (in place:
    # G is ours, and a fresh (n, n, N) temporary costs more than the arithmetic)
    total = G[1:].square_().sum((0, 1)) + row0[1:].square().sum(0)
    total = total.clamp_min(torch.finfo(acts.dtype).tiny)
    return (per_frequency(power.T, n)[:, 1:] / total[:, None]).clamp(0, 1)


@functools.cache
def partner_rows(n: int, dtype: torch.dtype) -> torch.Tensor:
    """For each component u, the basis rows of the components of u's frequency (a zero row where there
    is only one): (n, 2, n). Shared: read it, never write to it."""
    F = shared_basis(n, dtype)
    freq = component_frequency(n)
    partners = np.full((n, 2), n)  # n points at the zero row
    for u in range(1, n):
        same = np.flatnonzero(freq == freq[u])
        partners[u, : len(same)] = same
    return torch.cat([F, F.new_zeros(1, n)])[torch.as_tensor(partners)]


def cluster(fractions: torch.Tensor, threshold: float = CLUSTER_THRESHOLD) -> dict[str, torch.Tensor]:
    """fractions (..., N, K) → frequency (..., N) int (1..K, the argmax), fraction (..., N) its share,
    clustered (..., N) bool (fraction ≥ threshold)."""
    fraction, index = fractions.max(-1)
    return {"frequency": index + 1, "fraction": fraction, "clustered": fraction >= threshold}


def neuron_rows(state, forward: Forward) -> dict[str, np.ndarray]:
    """One checkpoint's row of the `neurons` analysis."""
    c = cluster(frequency_fractions(forward.acts, forward.workspace))
    return {"frequency": c["frequency"].numpy().astype(np.int16), "fraction": c["fraction"].numpy()}


NEURONS = Analysis(
    "neurons",
    1,
    "each MLP neuron's largest share of activation variance in one frequency and that frequency "
    f"(clustered: share ≥ {CLUSTER_THRESHOLD})",
    "forward",
    neuron_rows,
    needs_fourier,
    ("frequency", "fraction"),
    prepare=lambda run, group, cached: None,
    valid=lambda run, result: (
        neurons_of_width("frequency", "fraction")(run, result) or frequencies_in_range("frequency")(run, result)
    ),
)
