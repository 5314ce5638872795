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


def read_out(pre: torch.Tensor, M: torch.Tensor, act, base: torch.Tensor | None = None) -> torch.Tensor:
    """Logits for every grid row: act(pre) @ M + base.

    pre: (p², d_mlp) MLP pre-activations; M: (d_mlp, d_vocab_out) the map from MLP activations to
    logits; base: (p², d_vocab_out) or (d_vocab_out,), everything else in the logits. → (p², d_vocab_out).
    """
    logits = act(pre) @ M
    return logits if base is None else logits + base
