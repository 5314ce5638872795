"""Reproduce Doshi et al. 2023 with the `corrupted` preset: the phase at weight decay 0, 5 and 15, the IPR
split of the neurons, and the pruning sweep of the weight-decay-0 run (fraction pruned → the four accuracies).

Phases (the paper's Table 2, among runs with test accuracy ≥ 0.9): coexistence (train accuracy ≥ 0.9),
partial inversion (train accuracy in [1.05 − ξ, 0.9)), full inversion (below 1.05 − ξ); memorization: train
accuracy ≥ 0.9 with test accuracy < 0.9.

    python benchmarks/memorization.py [--out checkpoints] [--steps 2000]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

import grokscope
from grokscope import analysis
from grokscope.analysis.pruning import SPLITS, Pruner

WEIGHT_DECAYS = (0.0, 5.0, 15.0)
SHOWN_FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def phase(train_acc: float, test_acc: float, xi: float) -> str:
    if test_acc >= 0.9:
        if train_acc >= 0.9:
            return "coexistence"
        return "partial inversion" if train_acc >= 1.05 - xi else "full inversion"
    return "memorization" if train_acc >= 0.9 else "neither (test and train < 0.9)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="checkpoints", help="where the runs go (kept, to open in the app)")
    parser.add_argument("--steps", type=int, default=None, help="training length (default: the preset's)")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    base = grokscope.load_preset("corrupted")
    if args.steps:
        base = base.with_overrides({"train.steps": args.steps})
    xi = base.task.corrupt_frac

    print(
        "\n| weight decay | train acc | corrupted vs noisy | corrupted vs true | clean train | test | phase |"
        " neurons IPR < 0.3 / > 0.7 | training |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    runs = {}
    for wd in WEIGHT_DECAYS:
        config = base.with_overrides({"optim.weight_decay": wd, "name": f"corrupted-wd{wd:g}"})
        start = time.perf_counter()
        path = grokscope.train(config, Path(args.out) / config.name, force=True, progress=False)
        seconds = time.perf_counter() - start
        run = runs[wd] = grokscope.open_run(path)
        m = {k: v[-1] for k, v in run.metrics.items()}
        ipr = analysis.load(run, "memorization")["ipr"][-1]
        print(
            f"| {wd:g} | {m['train_acc']:.3f} | {m['corrupted_noisy_acc']:.3f} | {m['corrupted_true_acc']:.3f} | "
            f"{m['clean_train_acc']:.3f} | {m['test_acc']:.3f} | {phase(m['train_acc'], m['test_acc'], xi)} | "
            f"{int((ipr < 0.3).sum())} / {int((ipr > 0.7).sum())} of {len(ipr)} | {seconds:.0f} s |"
        )

    for lowest in (True, False):
        pruner = Pruner(runs[0.0], None, "ipr", lowest)
        table = pruner.sweep()
        print(f"\nPruning the weight-decay-0 run by IPR, {'lowest' if lowest else 'highest'} first:\n")
        print("| fraction pruned | " + " | ".join(SPLITS) + " |")
        print("|---" * (len(SPLITS) + 1) + "|")
        for fraction in SHOWN_FRACTIONS:
            i = int(np.argmin(np.abs(table["fraction"] - fraction)))
            print(f"| {table['fraction'][i]:.2f} | " + " | ".join(f"{table[s][i]:.3f}" for s in SPLITS) + " |")


if __name__ == "__main__":
    main()
