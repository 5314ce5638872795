"""Delayed robustness (Humayun et al. 2024): adversarial accuracy over training, beside clean accuracy on the
same points.

PGD with a random start (Madry et al. 2018) in the space the model is perturbed in (`Model.perturbed`, as
for local complexity): ℓ∞ on continuous inputs (the digits MLP, in the units of its pixels, standardised or
in [0, 1], not clipped to a pixel range: standardised pixels have none), ℓ2 in a token model's space (the one-hot MLP's R^{2p}, the
transformer's token + position embeddings). Each step moves by `step` along the gradient's sign (ℓ∞) or
its unit direction (ℓ2) and projects back onto the eps-ball around the point. The attack raises the
cross-entropy of the logits against the true label, whatever loss the run trained with; a point is robust
when the model still predicts its true label after the last step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from grokscope.analysis.local_complexity import analysed_rows, forward_from, frozen_model, sample, space_points
from grokscope.analysis.spec import Analysis, first_reason, needs_split, trained_here
from grokscope.errors import GrokscopeError

if TYPE_CHECKING:
    from grokscope.tasks import Task

SPLITS = ("train", "test")
L2_EPS = 0.3  # where robustness of the token models moves over training: see benchmarks/README.md


@dataclass(frozen=True)
class RobustnessOptions:
    """eps: the attack's radius (0: the default, the task's linf_eps for ℓ∞, L2_EPS for ℓ2); step: the step size (0:
    eps / 4); iterations; max_points: the points sampled from each split; every: attack every k-th saved
    checkpoint (and the last); seed: the samples and the random starts."""

    eps: float = 0.0
    step: float = 0.0
    iterations: int = 10
    max_points: int = 500
    every: int = 1
    seed: int = 0

    def __post_init__(self):
        if self.eps < 0 or self.step < 0 or self.iterations < 1 or self.max_points < 1 or self.every < 1:
            raise GrokscopeError("robustness needs eps, step ≥ 0 and iterations, max_points, every ≥ 1")


def attack_settings(options: RobustnessOptions, norm: str, task: Task) -> tuple[float, float]:
    """(eps, step) of the attack on a model of `task` whose perturbations are measured in `norm`."""
    eps = options.eps or (task.linf_eps if norm == "linf" else L2_EPS)
    return eps, options.step or eps / 4


def project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """delta (N, D) brought back onto the eps-ball."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    scale = (eps / delta.norm(dim=-1, keepdim=True).clamp(min=1e-12)).clamp(max=1)
    return delta * scale


def pgd(
    model,
    points: torch.Tensor,
    labels: torch.Tensor,
    template: torch.Tensor,
    eps: float,
    step: float,
    iterations: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Adversarial points (N, D) within eps of points (N, D) (the model's norm), from a random start."""
    norm = model.attack_norm
    if norm == "linf":
        delta = (torch.rand(points.shape, generator=generator) * 2 - 1) * eps
    else:  # uniform in the ball: a uniform direction, a radius ∝ u^(1/D)
        direction = torch.randn(points.shape, generator=generator)
        radius = torch.rand(len(points), 1, generator=generator) ** (1 / points.shape[1])
        delta = direction / direction.norm(dim=-1, keepdim=True) * radius * eps
    for _ in range(iterations):
        delta.requires_grad_(True)
        with torch.enable_grad():
            logits, _ = forward_from(model, points + delta, template, layers=False)
            (grad,) = torch.autograd.grad(F.cross_entropy(logits, labels, reduction="sum"), delta)
        with torch.no_grad():
            move = grad.sign() if norm == "linf" else grad / grad.norm(dim=-1, keepdim=True).clamp(min=1e-12)
            delta = project(delta + step * move, eps, norm)
    return (points + delta).detach()


def accuracy(model, points: torch.Tensor, labels: torch.Tensor, template: torch.Tensor) -> float:
    with torch.no_grad():
        return float((forward_from(model, points, template, layers=False)[0].argmax(-1) == labels).float().mean())


def robustness_pass(run, group, start: int, progress: Callable[[int, int], None], options: RobustnessOptions):
    """Clean and adversarial accuracy (train, test samples) at checkpoints start..n-1 (NaN where skipped)."""
    model, load_row = frozen_model(run)
    dataset = run.dataset
    inputs = model.task_inputs(run.task, dataset)
    rows = {
        "train": sample(dataset.train_rows, options.max_points, options.seed),
        "test": sample(dataset.test_rows, options.max_points, options.seed + 1),
    }
    labels = {split: torch.as_tensor(dataset.true_labels[r]) for split, r in rows.items()}
    eps, step = attack_settings(options, model.attack_norm, run.task)
    todo = set(analysed_rows(run.n_checkpoints, start, options.every))
    out: dict[str, list] = {"clean_acc": [], "adv_acc": []}
    for r in range(start, run.n_checkpoints):
        clean, adversarial = (np.full(len(SPLITS), np.nan, dtype=np.float32) for _ in range(2))
        if r in todo:
            load_row(r)
            every = space_points(model, inputs)
            for s, split in enumerate(SPLITS):
                points = every[torch.as_tensor(rows[split])]
                g = torch.Generator().manual_seed(options.seed + r)
                attacked = pgd(model, points, labels[split], inputs, eps, step, options.iterations, g)
                clean[s] = accuracy(model, points, labels[split], inputs)
                adversarial[s] = accuracy(model, attacked, labels[split], inputs)
        out["clean_acc"].append(clean)
        out["adv_acc"].append(adversarial)
        progress(r + 1 - start, run.n_checkpoints - start)
    return out


ROBUSTNESS = Analysis(
    "robustness",
    1,
    "on request: clean and PGD-adversarial accuracy of sampled training and test points (ℓ∞ on "
    "continuous inputs, ℓ2 in a token model's embedding or one-hot space; Humayun et al. 2024)",
    "checkpoints",
    robustness_pass,
    first_reason(trained_here, needs_split),
    ("clean_acc", "adv_acc"),
    {"options": 0},
    options=RobustnessOptions,
    on_request=True,
)
