"""A 2 × 4 sweep's wall-clock on each executor: the tiny preset (p = 31, 1,000 steps, groks) over two weight
decays × four model seeds, trained by `grokscope sweep` as a user runs it (a fresh process each, so the times
include starting Python, torch and, for Ray, its local instance).

    python benchmarks/sweep_speed.py [--steps 1000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """
preset = "tiny"
[set]
"train.steps" = {steps}
[grid]
"optim.weight_decay" = [0.5, 1.0]
"model.seed" = [0, 1, 2, 3]
"""
EXECUTORS = {
    "local, one run at a time": [],
    "local, --jobs 2": ["--jobs", "2"],
    "ray (local instance)": ["--executor", "ray"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; 8 runs of {args.steps} steps")
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "wd.toml"
        spec.write_text(SPEC.format(steps=args.steps))
        for label, options in EXECUTORS.items():
            out = Path(tmp) / label.split()[0] / str(len(options))
            command = [sys.executable, "-m", "grokscope", "sweep", str(spec), "--out", str(out), *options]
            start = time.perf_counter()
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            grokked = done.stdout.count("grokked at step")
            print(f"{label}: {seconds:.1f} s ({grokked} of 8 grokked)")


if __name__ == "__main__":
    main()
