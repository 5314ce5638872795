"""Losses and accuracy on logits (batch, classes). Losses are computed in float64."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy, log-softmax in float64 (float32 rounds small losses to zero late in training)."""
    return F.cross_entropy(logits.double(), labels)


def mse(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Squared error to one-hot targets averaged over examples and classes, as torch's MSELoss and the
    memorization papers (float64)."""
    target = F.one_hot(labels, logits.shape[-1]).double()
    return (logits.double() - target).square().mean()


LOSSES = {"ce": cross_entropy, "mse": mse}


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(-1) == labels).double().mean()
