"""Models as transformer-lens `HookedRootModule`s with HookedTransformer names.

Each model has two forms of the same maths:
- `forward(inputs)`: the plain, hooked form (`run_with_cache`, hooks, TransformerLens habits);
- `grid_logits()`: the fast form used for training and whole-grid analysis: the logits of all p² inputs
  (row `a * p + b`), computing only what the output reads; it fires no hooks.
`plain_logits(rows)` runs the plain form on the same rows, for checking one against the other.
"""

from __future__ import annotations

import torch

from grokscope.config import RunConfig
from grokscope.models.mlp import MLP
from grokscope.models.transformer import Transformer

__all__ = ["MLP", "Transformer", "build_model"]


def build_model(config: RunConfig) -> Transformer | MLP:
    """A freshly initialised model for the run's config, seeded with `model.seed`."""
    generator = torch.Generator().manual_seed(config.model.seed)
    if config.model.kind == "transformer":
        return Transformer(config.model, config.task.p, generator)
    return MLP(config.model, config.task.p, generator)
