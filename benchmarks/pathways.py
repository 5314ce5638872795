"""Pathway metrics (Li, Fan & Zhou 2025) over a run: their speed against a plain loop, and their shape.

    grokscope train --preset moe --out checkpoints/moe
    python benchmarks/pathways.py checkpoints/moe

1. Speed: the `pathways` analysis (default options: up to 1,000 training samples, 2,000 pairs) over every
   checkpoint, timed; and a plain loop on the first 10 checkpoints (per checkpoint a fresh model, the
   routing read through hooks, a pure-Python Levenshtein over the pairs' pathways), against the analysis'
   own time for the same 10: the ratio.
2. Shape: the metrics where the training set is fitted, where the run groks and at the end, and each
   metric's Spearman ρ with test accuracy.
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
from grokscope.analysis.local_complexity import sample
from grokscope.analysis.pathways import PathwayOptions, correlations, pathway_row, pathways_of, sample_pairs
from grokscope.models import load_model


def levenshtein(a: list[int], b: list[int]) -> int:
    """The textbook dynamic programme."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def plain_loop(run, rows: list[int], samples: np.ndarray, pairs: np.ndarray) -> float:
    start = time.perf_counter()
    for r in rows:
        model = load_model(run, int(run.steps[r]))
        inputs = model.task_inputs(run.task, run.dataset)[torch.as_tensor(samples)]
        paths = pathways_of(model, inputs, PathwayOptions())
        ids = paths.ids.flatten(1).tolist()
        np.mean([levenshtein(ids[i], ids[j]) / len(ids[i]) for i, j in pairs])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    args = parser.parse_args()
    run = grokscope.open_run(args.run)
    print(
        f"{run.path}: {run.n_checkpoints} checkpoints; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "run")
        shutil.copytree(run.path, copy, ignore=shutil.ignore_patterns("analysis"))
        target = grokscope.open_run(copy)
        start = time.perf_counter()
        analysis.analyze(target, only=["pathways"], progress=False)
        elapsed = time.perf_counter() - start
        result = analysis.load(target, "pathways")
    options = PathwayOptions()
    samples = sample(run.dataset.train_rows, options.max_samples, options.seed)
    print(f"pathways: {run.n_checkpoints} checkpoints × {len(samples)} training samples in {elapsed:.1f} s")
    pairs = sample_pairs(len(samples), options.n_pairs, options.seed)
    first = list(range(10))
    start = time.perf_counter()
    model = load_model(run, int(run.steps[0]))
    inputs = model.task_inputs(run.task, run.dataset)[torch.as_tensor(samples)]
    for r in first:
        model.load_state_dict(run.params(int(run.steps[r])))
        pathway_row(pathways_of(model, inputs, options), None, pairs, model.unit_embeddings(options.embedding))
    ours = time.perf_counter() - start
    reference = plain_loop(run, first, samples, pairs)
    print(f"first 10 checkpoints: this analysis {ours:.2f} s, a plain loop {reference:.1f} s ({reference / ours:.0f}×)")

    m = run.metrics
    fitted = int(np.argmax(m["train_acc"] >= 1.0)) if (m["train_acc"] >= 1.0).any() else None
    for name, step in {"fitted": fitted, "grok": run.grok_step, "end": int(run.steps[-1])}.items():
        if step is None:
            continue
        row = int(np.searchsorted(run.steps, step))
        print(
            f"{name} (step {int(run.steps[row])}): distance per layer prefix {np.round(result['distance'][row], 3)}, "
            f"Jaccard {np.round(result['jaccard'][row], 3)}, consistency {result['consistency'][row]:.3f}, "
            f"stability {np.round(result['stability'][row], 3)}; test accuracy {m['test_acc'][step]:.3f}"
        )
    for name, rho, p, n in correlations(run, result):
        print(f"Spearman ρ of {name} with test accuracy: {rho:+.3f} (p = {p:.2g}, {n} checkpoints)")


if __name__ == "__main__":
    main()
