"""Pieces shared by the models: activations, seeded initialisation, the fast read-out."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def activation(name: str):
    """relu | gelu | square (x², the activation of the memorization papers' MLPs)."""
    return {"relu": F.relu, "gelu": F.gelu, "square": torch.square}[name]


def normal_param(shape: tuple[int, ...], std: float, generator: torch.Generator) -> nn.Parameter:
    return nn.Parameter(torch.randn(shape, generator=generator) * std)


def scaled(shape: tuple[int, ...], fan: int, generator: torch.Generator) -> nn.Parameter:
    """N(0, 1/fan) initialisation."""
    return normal_param(shape, 1 / math.sqrt(fan), generator)


def read_out(
    pre: torch.Tensor, M: torch.Tensor, act, base: torch.Tensor | None = None, grad_rows: torch.Tensor | None = None
) -> torch.Tensor:
    """Logits for every grid row: act(pre) @ M + base.

    pre: (p², d_mlp) MLP pre-activations; M: (d_mlp, d_vocab_out) the map from MLP activations to
    logits; base: (p², d_vocab_out) or (d_vocab_out,), everything else in the logits. → (p², d_vocab_out).
    grad_rows: when given, the caller promises its loss reads only these rows (unique), and the
    backward pass through act(pre) @ M skips the others: two (p², d_mlp, d_vocab_out) matrix products
    become (len(grad_rows), ...) ones.
    """
    if grad_rows is None or not torch.is_grad_enabled():
        logits = act(pre) @ M
    else:
        logits = _RowsReadout.apply(pre, M, grad_rows, act)
    return logits if base is None else logits + base


class _RowsReadout(torch.autograd.Function):
    """act(pre) @ M on every row, differentiated on `rows` only (the gradient elsewhere must be zero)."""

    @staticmethod
    def forward(ctx, pre, M, rows, act):
        ctx.save_for_backward(pre, M, rows)
        ctx.act = act
        return act(pre) @ M

    @staticmethod
    def backward(ctx, grad):
        pre, M, rows = ctx.saved_tensors
        g = grad[rows]
        with torch.enable_grad():
            x = pre[rows].detach().requires_grad_()
            h = ctx.act(x)
        (grad_x,) = torch.autograd.grad(h, x, g @ M.T)
        grad_pre = torch.zeros_like(pre)
        grad_pre[rows] = grad_x
        return grad_pre, h.detach().T @ g, None, None
