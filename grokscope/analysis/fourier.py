"""The Fourier basis of Z_n and the group coordinates in which a task's operation is addition.

Ordering, used everywhere (analysis, app, figures): component 0 is the constant 1/√n; then for each
frequency k = 1, 2, ... the pair cos(2πkx/n), sin(2πkx/n), each normalized, so frequency k has
components 2k − 1 (cos) and 2k (sin); for even n the last component is the lone cos(πx) (k = n/2).
Power of frequency k = the squared norm on its components.

Coordinates (a task's `group()`, see grokscope.tasks.modular): a+b and a−b are analysed on Z_p in the tokens'
own order; for a·b and a/b the nonzero residues are indexed by their discrete logarithm, so a·b becomes x + y
and a/b becomes x − y on Z_(p−1). The polynomial a² + ab + b² and the digits have no group: the analyses that
need one refuse them.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from grokscope.config import TaskConfig
from grokscope.errors import GrokscopeError
from grokscope.tasks import Group, make_task


def fourier_basis(n: int) -> torch.Tensor:
    """Orthonormal (n, n), rows = components in the documented order, columns = x = 0..n−1 (float64)."""
    return shared_basis(n, torch.float64).clone()


@functools.cache
def shared_basis(n: int, dtype: torch.dtype) -> torch.Tensor:
    """fourier_basis(n) in `dtype`, made once per (n, dtype) and shared: read it, never write to it."""
    x = torch.arange(n, dtype=torch.float64)
    rows = [torch.full((n,), 1.0, dtype=torch.float64)]
    for k in range(1, n // 2 + 1):
        rows.append(torch.cos(2 * math.pi * k * x / n))
        if 2 * k != n:
            rows.append(torch.sin(2 * math.pi * k * x / n))
    basis = torch.stack(rows)
    return (basis / basis.norm(dim=1, keepdim=True)).to(dtype)


def component_frequency(n: int) -> np.ndarray:
    """The frequency of each component in the basis order: int (n,), 0 for the constant."""
    return (np.arange(n) + 1) // 2


def component_names(n: int) -> list[str]:
    """Labels for figures: const, cos 1, sin 1, cos 2, ..."""
    return ["const"] + [f"{'cos' if i % 2 else 'sin'} {k}" for i, k in enumerate(component_frequency(n)) if i]


def per_frequency(component_power: torch.Tensor, n: int) -> torch.Tensor:
    """Sum power over each frequency's components: (..., n) → (..., n // 2 + 1), index = frequency."""
    index = torch.as_tensor(component_frequency(n), device=component_power.device)
    out = component_power.new_zeros(*component_power.shape[:-1], n // 2 + 1)
    return out.index_add_(-1, index, component_power)


def group_of(task: TaskConfig) -> Group:
    """The coordinates to analyse `task` in; GrokscopeError for tasks without a group operation."""
    task = make_task(task)
    group = task.group()
    if group is None:
        raise GrokscopeError(f"Fourier analyses need a group operation; {task.named()} has none")
    return group


def gini(values: torch.Tensor) -> torch.Tensor:
    """Gini coefficient of non-negative values along the last axis (0 = all equal, → 1 = one carries all).

    G = Σ_i (2i − m − 1) v_(i) / (m Σ v) with v sorted ascending, i = 1..m; 0 where all values are 0.
    """
    v = values.sort(dim=-1).values
    m = v.shape[-1]
    i = torch.arange(1, m + 1, dtype=v.dtype, device=v.device)
    total = v.sum(-1)
    return torch.where(total > 0, ((2 * i - m - 1) * v).sum(-1) / (m * total.clamp_min(1e-300)), 0.0)
