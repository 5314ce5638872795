"""Grokking tickets (Minegishi et al.): a sparse mask found in a trained run, applied to its initial weights.

The mask keeps a fraction `keep` of the weights (global magnitude ranking over every weight matrix except
the positional embedding, as the paper's code; biases are never masked). The ticket is a new run with the
source's config (so the same initial weights) whose masked weights start and stay at zero. Controls: the
same mask taken at a memorization-phase step, and a random mask keeping as many weights in each matrix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from grokscope.analysis.results import phase_steps
from grokscope.errors import GrokscopeError
from grokscope.store import Run
from grokscope.train.loop import train

CONTROLS = ("memorization", "random")


def maskable(name: str, tensor: torch.Tensor) -> bool:
    return tensor.ndim >= 2 and not name.endswith("W_pos")


def magnitude_mask(params: dict[str, torch.Tensor], keep: float) -> dict[str, torch.Tensor]:
    """1.0 for the round(keep · n) largest |w| over all maskable weights together (ties broken by position),
    0.0 for the others; unmaskable parameters all 1.0. Shapes as `params`, float32."""
    if not 0 < keep <= 1:
        raise GrokscopeError(f"--keep (the fraction of weights kept) must be in (0, 1]; got {keep}")
    names = [n for n, t in params.items() if maskable(n, t)]
    magnitudes = torch.cat([params[n].detach().abs().flatten().double() for n in names])
    kept = torch.zeros(len(magnitudes))
    kept[torch.argsort(magnitudes, descending=True, stable=True)[: round(keep * len(magnitudes))]] = 1.0
    mask = {n: torch.ones_like(t, dtype=torch.float32) for n, t in params.items()}
    for name, part in zip(names, torch.split(kept, [params[n].numel() for n in names])):
        mask[name] = part.reshape(params[name].shape).float()
    return mask


def random_mask_like(mask: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """A random mask keeping as many weights in each tensor as `mask` does (same sparsity per matrix)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, m in mask.items():
        flat = np.zeros(m.numel(), dtype=np.float32)
        flat[rng.permutation(m.numel())[: int(m.sum())]] = 1.0
        out[name] = torch.from_numpy(flat.reshape(m.shape))
    return out


def memorization_step(run: Run) -> int:
    """The first saved step at which the run has memorized (train accuracy ≥ 0.99, `phases`)."""
    end = phase_steps(run)["memorization_end"]
    if end is None:
        raise GrokscopeError(f"{run.name} never reaches train accuracy 0.99: give --memorization-step")
    later = run.steps[run.steps >= end]
    if not len(later):
        raise GrokscopeError(f"no step saved after {run.name} memorized (step {end}): give --memorization-step")
    return int(later[0])


def ticket(
    run: Run,
    step: int | None,
    keep: float,
    control: str | None = None,
    mask_step: int | None = None,
    name: str | None = None,
    out: str | Path | None = None,
    steps: int | None = None,
    **train_options,
) -> Path:
    """Train a grokking ticket of `run` (or a control) as a new run; returns its directory.

    step: the (generalized) step the ticket's mask is taken at (default: the last saved); keep: the
    fraction of weights kept; control: None (the ticket), "memorization" (the mask at `mask_step`, default
    the first saved step after memorization; `step` must then be None) or "random" (random, the ticket's sparsity per matrix);
    name/out: default <run>-<kind>-keep<keep>@<mask step>, beside the run; steps: training length (default
    the run's); train_options: passed to `grokscope.train` (device, force, progress, commit_every_s).
    """
    if control not in (None, *CONTROLS):
        raise GrokscopeError(f"unknown control '{control}' (use {' or '.join(CONTROLS)})")
    run.refresh()
    if not run.n_checkpoints:
        raise GrokscopeError(f"{run.path}: no checkpoint saved yet")
    if run.config.ticket.kind:
        raise GrokscopeError(f"{run.name} is itself a ticket: take tickets from dense runs")
    if run.config.preset == "imported":  # the config's seed would draw another split, and another data order
        raise GrokscopeError(
            f"{run.name} was trained elsewhere: a ticket retrains a run grokscope trained, on its split and data order"
        )
    if control == "memorization":
        if step is not None:
            raise GrokscopeError("the memorization control's mask step is --memorization-step, not --step")
        step = memorization_step(run) if mask_step is None else int(run.steps[run.row(mask_step)])
    elif mask_step is not None:
        raise GrokscopeError("--memorization-step goes with --control memorization")
    else:
        step = int(run.steps[-1]) if step is None else int(run.steps[run.row(step)])
    mask = magnitude_mask(run.params(step), keep)
    if control == "random":
        mask = random_mask_like(mask, run.config.model.seed)
    kind = control or "ticket"
    name = name or f"{run.name}-{kind}-keep{keep:g}@{step}"
    overrides = {"name": name, "ticket.kind": kind, "ticket.source": run.name, "ticket.step": step, "ticket.keep": keep}
    if steps is not None:
        overrides["train.steps"] = steps
    config = run.config.with_overrides(overrides)
    return train(config, out or run.path.parent / name, mask=mask, **train_options)
