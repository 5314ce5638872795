"""Analysis speed: every analysis over every checkpoint of a run, against a plain per-checkpoint loop.

grokscope: `grokscope.analysis.analyze(run, force=True)` — all analyses from scratch (spectra and
norms batched over blocks of checkpoints from the trajectories, one fast whole-grid forward per
checkpoint shared by neuron clustering and restricted/excluded loss).
reference: the one-checkpoint form per checkpoint, as a notebook would loop: `load_model(run, step)`, the
plain hooked forward over all p² inputs (`run_with_cache`), the same measures; timed on an evenly
spaced sample of checkpoints and scaled to all of them.

    grokscope train --preset canonical                # the run to analyse (about 30 min on 2 CPU cores)
    python benchmarks/analysis_speed.py [--run checkpoints/canonical] [--sample 20]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import grokscope
from grokscope import analysis
from grokscope.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="checkpoints/canonical")
    parser.add_argument("--sample", type=int, default=20, help="checkpoints timed for the reference")
    args = parser.parse_args()
    if not grokscope.store.layout.is_run(Path(args.run)):
        raise SystemExit(f"{args.run} is not a run: train one first (grokscope train --preset canonical)")
    with tempfile.TemporaryDirectory() as tmp:  # a copy, so the run's own cache is left as it is
        path = Path(tmp) / "run"
        shutil.copytree(args.run, path, ignore=shutil.ignore_patterns(analysis.cache.ANALYSIS_DIR))
        run = grokscope.open_run(path)
        n = len(run.steps)

        start = time.perf_counter()
        analysis.analyze(run, force=True, progress=False)
        ours = time.perf_counter() - start
        keys = analysis.load(run, "key_frequencies")["frequencies"]

        rows = np.linspace(0, n - 1, min(args.sample, n)).round().astype(int)
        start = time.perf_counter()
        for row in rows:
            step = int(run.steps[row])
            analysis.measure_model(load_model(run, step), run.config, run.dataset, keys)
        reference = (time.perf_counter() - start) / len(rows) * n

    print(f"run {args.run}: {n} checkpoints, p = {run.config.task.p}, {len(keys)} key frequencies")
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(f"reference (plain forward per checkpoint, {len(rows)} timed): {reference:7.1f} s for all")
    print(f"grokscope analyze (all analyses, from scratch):        {ours:7.1f} s ({ours / n * 1000:.1f} ms/checkpoint)")
    print(f"speed-up: {reference / ours:.1f}x")


if __name__ == "__main__":
    main()
