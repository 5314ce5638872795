"""Grokfast (Lee et al. 2024), StableMax and ⊥Grad (Prieto et al. 2025) against matched runs without them: the
same preset, seeds, split and learning rate; only the intervention (and the weight decay where the comparison
is about it) differs.

Comparisons: the preset as it is vs Grokfast-EMA vs Grokfast-MA (filter defaults); without weight decay,
softmax cross-entropy in float64 and in float32 vs StableMax cross-entropy; without weight decay, AdamW vs
⊥AdamW, beside AdamW with weight decay 1 (the usual cure). For each run: steps to grok (first
step with test accuracy ≥ 0.99), the time per step (training wall-clock, run store included, over all steps),
wall-clock to grok (grok step × time per step: every step does the same work), final accuracies, and the
Softmax Collapse and zero-loss fractions of the training examples.

    python benchmarks/interventions.py --preset demo --only grokfast [--set optim.weight_decay=0.1 --steps 5000]
    python benchmarks/interventions.py --preset stability --only stablemax,orthograd [--steps N]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

import grokscope
from grokscope.config import parse_override
from grokscope.train.loop import check_device

NO_WD = {"optim.weight_decay": 0.0}
PAIRS = {  # comparison → (run name suffix, overrides), the reference first
    "grokfast": [
        ("baseline", {}),
        ("grokfast-ema", {"grokfast.kind": "ema"}),
        ("grokfast-ma", {"grokfast.kind": "ma"}),
    ],
    "stablemax": [
        ("softmax-wd0", NO_WD),
        ("softmax32-wd0", {**NO_WD, "train.loss": "ce32"}),
        ("stablemax-wd0", {**NO_WD, "train.loss": "stablemax"}),
    ],
    "orthograd": [
        ("adamw-wd0", NO_WD),
        ("orthograd-adamw-wd0", {**NO_WD, "optim.orthograd": True}),
        ("adamw-wd1", {"optim.weight_decay": 1.0}),
    ],
}


def first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if len(hits) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo", help="demo for Grokfast, stability for StableMax and ⊥Grad")
    parser.add_argument("--steps", type=int, help="training length (default: the preset's)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change the preset for every run, as `grokscope train --set`",
    )
    parser.add_argument("--only", default=",".join(PAIRS), help="comparisons to run (default: all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="checkpoints", help="where the runs go (kept, to open in the app)")
    args = parser.parse_args()
    unknown = set(args.only.split(",")) - set(PAIRS)
    if unknown:
        parser.error(f"unknown comparison {', '.join(sorted(unknown))} (known: {', '.join(PAIRS)})")
    try:
        device = check_device(args.device)
    except grokscope.GrokscopeError as e:  # e.g. --device cuda where CUDA is missing
        parser.error(str(e))
    device = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(f"{device or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    overrides = dict(parse_override(text) for text in args.overrides)
    if args.steps:
        overrides["train.steps"] = args.steps
    base = grokscope.load_preset(args.preset).with_overrides(overrides)
    done: dict[str, list] = {}  # a config shared by two comparisons (e.g. the wd-0 softmax AdamW run) trains once
    print(
        "\n| comparison | run | grok step | ms/step | wall-clock to grok | final train acc | final test acc |"
        " SC fraction: max / final | zero-loss fraction: max / final | final mean logit norm |"
    )
    print("|---" * 10 + "|")
    for comparison in args.only.split(","):
        for suffix, changes in PAIRS[comparison]:
            config = base.with_overrides({**changes, "name": f"{args.preset}-{suffix}"})
            key = config.with_overrides({"name": "run"}).to_json()
            if key not in done:
                start = time.perf_counter()
                path = grokscope.train(
                    config, Path(args.out) / config.name, device=args.device, force=True, progress=False
                )
                done[key] = [grokscope.open_run(path), time.perf_counter() - start]
            run, seconds = done[key]
            m, per_step = run.metrics, seconds / run.config.train.steps
            grok = run.grok_step
            to_grok = "—" if grok is None else f"{grok * per_step:.1f} s"
            sc, zero = m["sc_fraction"], m["zero_loss_fraction"]
            print(
                f"| {comparison} | {config.name if config.name == run.name else f'{config.name} (= {run.name})'} | {grok if grok is not None else 'none'} | {per_step * 1e3:.1f} | "
                f"{to_grok} | {m['train_acc'][-1]:.3f} | {m['test_acc'][-1]:.3f} | "
                f"{sc.max():.3f} / {sc[-1]:.3f} (first ≥ 0.5 at {first(sc >= 0.5)}) | "
                f"{zero.max():.3f} / {zero[-1]:.3f} | {m['logit_norm'][-1]:.3g} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
