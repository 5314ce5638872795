"""Grokking tickets (Minegishi et al.) on a preset that groks on a 2-core CPU: steps to memorize and to grok
for the dense run, its ticket (magnitude mask at the last step, applied to the initial weights) and the two
controls (the mask taken when the run memorized; a random mask of the same sparsity per matrix).

    python benchmarks/tickets.py [--preset demo] [--keep 0.4] [--out checkpoints]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

import grokscope
from grokscope.analysis.tickets import ticket
from grokscope.figures.builders import run_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--keep", type=float, default=0.4, help="the fraction of weights kept")
    parser.add_argument("--out", default="checkpoints", help="where the runs go (kept, to open in the app)")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    config = grokscope.load_preset(args.preset).with_overrides({"name": f"{args.preset}-dense"})
    seconds = {}
    start = time.perf_counter()
    dense = grokscope.open_run(grokscope.train(config, Path(args.out) / config.name, force=True, progress=False))
    seconds[dense.name] = time.perf_counter() - start
    runs = [dense]
    for control in (None, "memorization", "random"):
        start = time.perf_counter()
        run = grokscope.open_run(ticket(dense, None, args.keep, control=control, force=True, progress=False))
        seconds[run.name] = time.perf_counter() - start
        runs.append(run)
    table = run_table(runs)
    columns = [c for c in table if c != "run"]
    print("\n| run | " + " | ".join(columns) + " | training |")
    print("|---" * (len(columns) + 2) + "|")
    for i, name in enumerate(table["run"]):
        cells = [table[c][i] for c in columns]
        text = [
            "—" if v is None else f"{v:.3f}" if isinstance(v, float) and c != "weights kept" else str(v)
            for c, v in zip(columns, cells)
        ]
        print(f"| {name} | " + " | ".join(text) + f" | {seconds[name]:.0f} s |")


if __name__ == "__main__":
    main()
