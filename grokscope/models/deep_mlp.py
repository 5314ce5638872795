"""A deep MLP on continuous inputs (Omnigrok, Liu et al. 2023; Humayun et al. 2024): vector (d_in) →
n_layers hidden layers of width d_mlp with act → n_classes, with biases where model.bias is on.

Parameters `blocks.{l}.mlp.W_in` (d_in or d_mlp, d_mlp) and `blocks.{l}.mlp.b_in` (d_mlp) per hidden layer,
`unembed.W_U` (d_mlp, n_classes) and `unembed.b_U` (the biases with model.bias only); hooks `blocks.{l}.mlp.hook_pre` / `hook_post`.
Initialisation: torch.nn.Linear's, U(−1/√fan_in, 1/√fan_in) for weights and biases (then multiplied by
model.init_scale, as every model's, in build_model).
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn
from transformer_lens.hook_points import HookPoint

from grokscope.config import ModelConfig
from grokscope.models.base import Model, NeuronLayer
from grokscope.models.common import activation
from grokscope.tasks import Dataset, Task


def uniform(shape: tuple[int, ...], fan_in: int, g: torch.Generator) -> nn.Parameter:
    bound = 1 / math.sqrt(fan_in)
    return nn.Parameter((torch.rand(shape, generator=g) * 2 - 1) * bound)


def affine(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    return x @ W if b is None else torch.addmm(b, x, W)


class Hidden(nn.Module):
    def __init__(self, d_in: int, d_mlp: int, bias: bool, g: torch.Generator):
        super().__init__()
        self.W_in = uniform((d_in, d_mlp), d_in, g)
        self.b_in = uniform((d_mlp,), d_in, g) if bias else None
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()


class Block(nn.Module):
    def __init__(self, d_in: int, d_mlp: int, bias: bool, g: torch.Generator):
        super().__init__()
        self.mlp = Hidden(d_in, d_mlp, bias, g)


class Unembed(nn.Module):
    def __init__(self, d_mlp: int, n_classes: int, bias: bool, g: torch.Generator):
        super().__init__()
        self.W_U = uniform((d_mlp, n_classes), d_mlp, g)
        self.b_U = uniform((n_classes,), d_mlp, g) if bias else None


class DeepMLP(Model):
    kind = "deep_mlp"
    reads = "vectors"
    attack_norm = "linf"

    def __init__(self, cfg: ModelConfig, task: Task, generator: torch.Generator):
        super().__init__(cfg, task)
        widths = [task.d_vector] + [cfg.d_mlp] * cfg.n_layers
        blocks = (Block(d_in, d_out, cfg.bias, generator) for d_in, d_out in itertools.pairwise(widths))
        self.blocks = nn.ModuleList(blocks)
        self.unembed = Unembed(cfg.d_mlp, task.n_classes, cfg.bias, generator)
        self.act = activation(cfg.act)
        self.setup()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, d_in) → logits (batch, n_classes)."""
        for block in self.blocks:
            mlp = block.mlp
            x = mlp.hook_post(self.act(mlp.hook_pre(affine(x, mlp.W_in, mlp.b_in))))
        return affine(x, self.unembed.W_U, self.unembed.b_U)

    def task_inputs(self, task: Task, dataset: Dataset) -> torch.Tensor:
        return task.vectors(dataset)

    @staticmethod
    def neuron_layers(cfg: ModelConfig) -> list[NeuronLayer]:
        n = cfg.n_layers
        return [
            NeuronLayer(
                f"blocks.{i}.mlp.W_in",
                None if i < n - 1 else "unembed.W_U",
                f"blocks.{i}.mlp.b_in" if cfg.bias else None,
                f"blocks.{i}.mlp.hook_pre",
                f"blocks.{i}.mlp.hook_post",
            )
            for i in range(n)
        ]

    @staticmethod
    def describe(c: ModelConfig) -> str:
        return f"deep MLP {c.n_layers} × {c.d_mlp} {c.act}, init ×{c.init_scale:g}"
