"""Pieces shared by the models: activations, seeded initialisation, the fast read-out, Readout."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable


def activation(name: str, inplace: bool = False):
    """relu | gelu | square (x², the activation of the memorization papers' MLPs). inplace: overwrite the
    input where the activation can (for no-grad passes over large tensors)."""
    if inplace:
        return {"relu": torch.relu_, "gelu": F.gelu, "square": torch.square_}[name]
    return {"relu": F.relu, "gelu": F.gelu, "square": torch.square}[name]


def normal_param(shape: tuple[int, ...], std: float, generator: torch.Generator) -> nn.Parameter:
    return nn.Parameter(torch.randn(shape, generator=generator) * std)


def scaled(shape: tuple[int, ...], fan: int, generator: torch.Generator) -> nn.Parameter:
    """N(0, 1/fan) initialisation."""
    return normal_param(shape, 1 / math.sqrt(fan), generator)


def padded_width(n: int) -> int:
    """n rounded up to a multiple of 64: matrix products n columns wide run faster padded so with zeros (MKL's
    sgemm, 2-core AMD EPYC: (12769 × 512) @ (512 × 113) in 18 ms, @ (512 × 128) in 12.5 ms)."""
    return -(-n // 64) * 64


class Workspace:
    """Buffers a model's whole-grid forward reuses from step to step, one per name (made again when its shape,
    dtype or device changes). A fresh tensor of tens of MB each step costs more than the products that fill
    it: above glibc's 32 MB mmap threshold every allocation is mapped afresh, and the kernel zero-fills it
    page by page as it is first written. A buffer saved for a backward and overwritten before that backward
    runs makes autograd raise (its version counter moved): never a silent wrong gradient."""

    def __init__(self):
        self.buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        buffer = self.buffers.get(name)
        # (a buffer made under torch.inference_mode cannot be written outside it, nor used with a graph)
        stale = buffer is None or buffer.is_inference() != torch.is_inference_mode_enabled()
        if stale or buffer.shape != shape or buffer.dtype != like.dtype or buffer.device != like.device:
            buffer = self.buffers[name] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return buffer


def read_out(
    x: torch.Tensor,
    W_in: torch.Tensor | None,
    M: torch.Tensor,
    act,
    W_skip: torch.Tensor | None = None,
    grad_rows: torch.Tensor | None = None,
    b_in: torch.Tensor | None = None,
    computed: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Logits for every grid row: act(x @ W_in + b_in) @ M + x @ W_skip (W_in None: act(x) @ M).

    x: (p², d_x); W_in: (d_x, d_mlp); M: (d_mlp, d_vocab_out) the map from MLP activations to logits;
    W_skip: (d_x, d_vocab_out) the direct path, or None; b_in: (d_mlp,) or None. → (p², d_vocab_out).
    grad_rows: when given, the caller promises its loss reads only these rows (unique), and the backward
    pass recomputes and differentiates only them: the forward runs on all p² rows (test metrics need
    them), the backward's matrix products shrink to len(grad_rows) rows.
    computed: with grad_rows, this forward as the caller evaluated it over all rows more cheaply, without a
    graph: (logits (p², d_vocab_out), held (p², d_mlp): the activations where act is ReLU, else the
    pre-activations), used in place of the products here; the backward still differentiates through
    x[grad_rows].
    """
    if grad_rows is None or not torch.is_grad_enabled():
        return _read_out(x, W_in, M, W_skip, act, b_in)
    return _RowsReadout.apply(x, W_in, M, W_skip, grad_rows, act, b_in, computed)


def pre_activation(x: torch.Tensor, W_in: torch.Tensor | None, b_in: torch.Tensor | None) -> torch.Tensor:
    if W_in is None:
        return x
    return x @ W_in if b_in is None else torch.addmm(b_in, x, W_in)


def _read_out(x, W_in, M, W_skip, act, b_in) -> torch.Tensor:
    logits = act(pre_activation(x, W_in, b_in)) @ M
    return logits if W_skip is None else torch.addmm(logits, x, W_skip)


class _RowsReadout(torch.autograd.Function):
    """_read_out on every row, differentiated on `rows` only (the incoming gradient elsewhere must be zero)."""

    @staticmethod
    def forward(ctx, x, W_in, M, W_skip, rows, act, b_in, computed):
        # a ReLU's derivative is read from its output, so it can run in place on its own pre-activations
        ctx.from_output = act is F.relu and W_in is not None
        if computed is not None:
            logits, held = computed
        else:
            pre = pre_activation(x, W_in, b_in)
            held = pre.relu_() if ctx.from_output else pre
            logits = (held if ctx.from_output else act(pre)) @ M
            if W_skip is not None:
                logits = torch.addmm(logits, x, W_skip)
        ctx.save_for_backward(x, held, W_in, M, W_skip, rows)
        ctx.act, ctx.has_b_in = act, b_in is not None
        return logits

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, saved, W_in, M, W_skip, rows = ctx.saved_tensors
        g, x_r = grad.index_select(0, rows), x.index_select(0, rows)  # (n, V), (n, d_x)
        if ctx.from_output:
            h = saved.index_select(0, rows)
            grad_pre = g @ M.T  # then ReLU's own backward, read from its output, in place
            torch.ops.aten.threshold_backward.grad_input(grad_pre, h, 0, grad_input=grad_pre)
        else:
            with torch.enable_grad():
                pre_r = saved.index_select(0, rows).requires_grad_()
                h = ctx.act(pre_r)  # (n, d_mlp)
            (grad_pre,) = torch.autograd.grad(h, pre_r, g @ M.T)
        grad_M = h.detach().T @ g
        grad_x_r = grad_pre if W_in is None else grad_pre @ W_in.T
        grad_W_in = None if W_in is None else x_r.T @ grad_pre
        grad_W_skip = None
        if W_skip is not None:
            grad_x_r = grad_x_r + g @ W_skip.T
            grad_W_skip = x_r.T @ g
        grad_x = torch.zeros_like(x)
        grad_x[rows] = grad_x_r
        grad_b_in = grad_pre.sum(0) if ctx.has_b_in else None
        return grad_x, grad_W_in, grad_M, grad_W_skip, None, None, grad_b_in, None


@dataclass
class Readout:
    """The logits of every grid row as Σ_i features_i @ matrix_i (+ bias), kept factored so that what
    reads only some rows or a few projections of them never forms all p² × p logits.

    terms: (features (n_rows, f_i), matrix (f_i, V) or None when the features are the logits themselves);
    bias: (V,) or None.
    """

    terms: list[tuple[torch.Tensor, torch.Tensor | None]]
    bias: torch.Tensor | None = None

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """Logits of the rows `index`: (len(index), V)."""
        return self.combine([f[index] for f, _ in self.terms], 1)

    def project(self, Qt: torch.Tensor) -> torch.Tensor:
        """Qt @ logits for Qt (m, n_rows), in the features' dtype: (m, V)."""
        return self.combine([Qt.to(f) @ f for f, _ in self.terms], Qt.sum(1, keepdim=True).to(self.terms[0][0]))

    def mean(self) -> torch.Tensor:
        """Mean logits over the rows: (V,)."""
        return self.combine([f.mean(0) for f, _ in self.terms], 1)

    def take(self, index: torch.Tensor) -> Readout:
        """The same read-out for the rows `index` only, in that order."""
        return Readout([(f[index], m) for f, m in self.terms], self.bias)

    def combine(self, parts: list[torch.Tensor], bias_weight) -> torch.Tensor:
        out = sum(p if m is None else p @ m for p, (_, m) in zip(parts, self.terms))
        return out if self.bias is None else out + bias_weight * self.bias
