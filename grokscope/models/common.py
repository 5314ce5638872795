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


def read_out(cache: dict[str, torch.Tensor], rows: torch.Tensor, act) -> torch.Tensor:
    """Logits for grid rows from a grid cache: base[rows] + act(pre[rows]) @ M.

    cache["pre"]: (p², d_mlp) MLP pre-activations; cache["M"]: (d_mlp, d_vocab_out) the map from
    MLP activations to logits; optional cache["base"]: (p², d_vocab_out), the rest of the logits per
    row; optional cache["b_out"]: (d_vocab_out,) a constant logit bias. Returns (len(rows), d_vocab_out).
    """
    logits = act(cache["pre"][rows]) @ cache["M"]
    if "base" in cache:
        logits = logits + cache["base"][rows]
    if "b_out" in cache:
        logits = logits + cache["b_out"]
    return logits
