"""Local complexity and delayed robustness on a digits run (Humayun et al. 2024), and the speed of the
local complexity analysis against a plain loop written the way the paper's code does it.

    grokscope train --preset digits --out checkpoints/digits      # about 3 minutes on 2 cores
    python benchmarks/local_complexity.py checkpoints/digits [--speed-only]

1. Speed: LC of 1,000 points (the 300 training images and 700 test images) × 50 vertices × 1 radius at
   200 checkpoints, through `analysis.analyze` (points in chunks, one forward per chunk), timed; and the
   plain loop (per checkpoint a fresh model, hooks on every layer, one point's hull per forward) on the
   first 10 of those checkpoints, against the analysis' own time for the same 10: the ratio.
2. Shape: the analysis with its default options (radii 0.05 … 5) every 4th checkpoint, and robustness
   (PGD ℓ∞) every 4th checkpoint; prints LC at training points, test points and boundary points, and
   clean and adversarial test accuracy, at the steps where the training set is fitted, where the run
   groks, and at the end, and the step LC peaks.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time

import numpy as np
import torch

import grokscope
from grokscope import analysis
from grokscope.analysis.local_complexity import (
    SETS,
    LocalComplexityOptions,
    PointSets,
    frame,
    hulls,
    lc_rows,
    space_points,
)
from grokscope.models import load_model

SPEED = {
    "radii": [1.0],
    "directions": 25,
    "max_train": 300,
    "max_test": 700,
    "n_random": 0,
    "n_boundary": 0,
}


def plain_loop(run, rows: list[int], points_rows: np.ndarray, radius: float) -> float:
    """The reference: per checkpoint a fresh model with hooks on every layer, one hull per forward."""
    pre: dict[str, torch.Tensor] = {}

    def keep(value, hook):
        pre[hook.name] = value

    start = time.perf_counter()
    for r in rows:
        model = load_model(run, int(run.steps[r]))
        inputs = model.task_inputs(run.task, run.dataset)
        points = space_points(model, inputs)[torch.as_tensor(points_rows)]
        directions = frame(points.shape[1], 25, 0)
        for layer in model.neuron_layers(model.cfg):
            model.mod_dict[layer.hook_pre].add_hook(keep)
        with torch.no_grad():
            for x in points:
                model(hulls(x[None], directions, radius)[0])
                sum(int(((v > 0) != (v[:1] > 0)).any(0).sum()) for v in pre.values())
        model.reset_hooks()
    return time.perf_counter() - start


def speed(run) -> None:
    every = max(1, run.n_checkpoints // 200)  # a stride that lands on about 200 checkpoints
    with tempfile.TemporaryDirectory() as tmp:
        target = copy_of(run, tmp)
        options = {"local_complexity": {**SPEED, "every": every}}
        start = time.perf_counter()
        analysis.analyze(target, only=["local_complexity"], options=options, progress=False)
        elapsed = time.perf_counter() - start
        analysed = int(np.isfinite(analysis.load(target, "local_complexity")["lc"][:, 0, 0, 0]).sum())
    print(f"analysis: {analysed} checkpoints × 1,000 points × 50 vertices × 1 radius in {elapsed:.1f} s")
    options = LocalComplexityOptions(**SPEED)
    sets = PointSets.of(load_model(run, int(run.steps[0])), run, options)
    sample = list(range(0, run.n_checkpoints, every))[:10]
    start = time.perf_counter()
    for r in sample:
        lc_rows(load_model(run, int(run.steps[r])), sets, options)
    ours = time.perf_counter() - start
    reference = plain_loop(run, sample, np.concatenate([sets.train, sets.test]), 1.0)
    print(
        f"the same 10 checkpoints: this analysis {ours:.2f} s, the plain per-point loop {reference:.1f} s "
        f"({reference / ours:.0f}× slower)"
    )


def copy_of(run, folder: str):
    """The run copied without its analyses (the benchmark never touches the run's own cache)."""
    copy = os.path.join(folder, "run")
    shutil.copytree(run.path, copy, ignore=shutil.ignore_patterns("analysis"))
    return grokscope.open_run(copy)


def shape(run) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        target = copy_of(run, tmp)
        options = {"local_complexity": {"every": 4}, "robustness": {"every": 4}}
        start = time.perf_counter()
        analysis.analyze(target, only=list(options), options=options, progress=False)
        print(
            f"local complexity (default options) and robustness every 4th checkpoint: {time.perf_counter() - start:.0f} s"
        )
        lc = analysis.load(target, "local_complexity")
        robust = analysis.load(target, "robustness")
    steps = run.steps
    analysed = np.isfinite(lc["lc"][:, 0, 0, 0])
    m = run.metrics
    fitted = int(m["step"][np.argmax(m["train_acc"] >= 1.0)]) if (m["train_acc"] >= 1.0).any() else None
    marks = {"fitted": fitted, "grok": run.grok_step, "end": int(steps[-1])}
    radii = [0.05, 0.1, 0.5, 1.0, 5.0]
    for r, radius in enumerate(radii):
        total = lc["lc"][:, :, r].sum(-1)  # (checkpoints, sets)
        peak = int(steps[analysed][np.nanargmax(total[analysed, 0])])
        print(f"radius {radius:g}: LC at training points peaks at step {peak}")
        for name, step in marks.items():
            if step is None:
                continue
            row = int(np.flatnonzero(analysed & (steps >= step))[0]) if (analysed & (steps >= step)).any() else -1
            values = ", ".join(f"{s} {total[row, i]:.1f}" for i, s in enumerate(SETS))
            print(f"  {name} (step {int(steps[row])}): {values}")
    for name, step in marks.items():
        if step is None:
            continue
        row = int(np.flatnonzero(np.isfinite(robust["adv_acc"][:, 1]) & (steps >= step))[0])
        print(
            f"{name} (step {int(steps[row])}): test accuracy clean {robust['clean_acc'][row, 1]:.3f}, "
            f"adversarial {robust['adv_acc'][row, 1]:.3f}; train clean {robust['clean_acc'][row, 0]:.3f}, "
            f"adversarial {robust['adv_acc'][row, 0]:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--speed-only", action="store_true")
    args = parser.parse_args()
    run = grokscope.open_run(args.run)
    print(
        f"{run.path}: {run.n_checkpoints} checkpoints; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    )
    speed(run)
    if not args.speed_only:
        shape(run)


if __name__ == "__main__":
    main()
