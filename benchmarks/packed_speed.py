"""Many runs in one process: R runs (model seeds) trained as one pack (`grokscope sweep --pack R`,
grokscope.train.pack) against the same R runs stepped one after another (`grokscope train`'s fast step), ms per
run-step, same process.

Both are grokscope's whole training step: every input's logits, the loss, the metrics of every step (train
and test loss and accuracy, the split and stability columns, the weight norm), backward and each run's AdamW.
The run store is not written (no checkpoints): the step alone. Also printed: how far the pack's first run is from
the same run stepped alone after the timed steps (largest weight difference; float32 rounding, see
grokscope/train/pack.py).

    python benchmarks/packed_speed.py [--preset tiny] [--runs 8 32] [--steps 5]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

import grokscope
from grokscope.train.loop import Trainer, create_run
from grokscope.train.pack import Pack

CPU = torch.device("cpu")


def trainers(config: grokscope.RunConfig, n_runs: int, root: Path) -> list[Trainer]:
    """n_runs fresh runs of `config` with model seeds 0, 1, ... laid out under root."""
    made = []
    for seed in range(n_runs):
        run_config = config.with_overrides({"model.seed": seed, "name": f"seed{seed}"})
        with create_run(run_config, root / run_config.name, CPU) as (dataset, writer):
            made.append(Trainer(run_config, dataset, writer, CPU, commit_every_s=0))
    return made


def timed(step, n_steps: int) -> float:
    """ms per call of step(s), after 3 warm-up calls (a model's first steps take far longer)."""
    for s in range(1, 4):
        step(s)
    start = time.perf_counter()
    for s in range(4, 4 + n_steps):
        step(s)
    return (time.perf_counter() - start) / n_steps * 1e3


def measure(config: grokscope.RunConfig, n_runs: int, n_steps: int, root: Path) -> tuple[float, float, float]:
    """ms per run-step one after another and packed, and the largest weight difference between the pack's
    first run and that run stepped alone."""
    alone, together = trainers(config, n_runs, root / "alone"), trainers(config, n_runs, root / "pack")
    pack = Pack(together)

    def sequential(step: int) -> None:
        for trainer in alone:
            trainer.step(step)

    seq_ms, packed_ms = timed(sequential, n_steps), timed(pack.step, n_steps)
    gap = max((alone[0].params[n] - together[0].params[n]).abs().max().item() for n in alone[0].names)
    return seq_ms / n_runs, packed_ms / n_runs, gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--runs", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    # steps 1.. update; a small schedule: the runs are laid out on disk, and no checkpoint is written
    small = {"train.steps": 1000, "checkpoints.dense_until": 0, "checkpoints.n_log": 0, "checkpoints.n_uniform": 2}
    config = grokscope.load_preset(args.preset).with_overrides(small)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"preset {args.preset}: {config.task.kind} task, {config.model.kind}")
    for n_runs in args.runs:
        with tempfile.TemporaryDirectory() as root:
            seq_ms, packed_ms, gap = measure(config, n_runs, args.steps, Path(root))
        print(
            f"{n_runs} runs: one after another {seq_ms:.1f} ms per run-step, packed {packed_ms:.1f} "
            f"(packed / sequential {packed_ms / seq_ms:.2f}); run 0 packed vs alone after {args.steps + 3} steps: "
            f"largest weight difference {gap:.1e}"
        )


if __name__ == "__main__":
    main()
