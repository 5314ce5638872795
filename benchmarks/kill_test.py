"""Kill tests: `kill -9` training and analysis at random moments, continue, and compare bit for bit.

    python benchmarks/kill_test.py [--runs 20] [--analyses 20] [--seed 0]

Training: each run is started with `grokscope train`, killed after a random delay, continued with
`grokscope train --resume` (or started again where the kill came before the run directory was laid out),
and so on until it completes; the finished run is compared with one trained without interruption, every parameter of
every checkpoint, every metric and the final weights. Analysis: `grokscope analyze` on a copy of a finished
run is killed the same way until one finishes; every cached array is compared with a clean analysis.
Prints the counts the README's reliability table reports. The commands run the checkout's code as it is at
each start: leave the tree unchanged while the test runs (or run it from a copy), or a half-edited module
fails a command, and the test stops there.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import grokscope
from grokscope import analysis
from grokscope.config import parse_override
from grokscope.store import layout

SETTINGS = ["task.p=23", "train.steps=400", "checkpoints.n_uniform=200"]  # the tiny preset, shorter: 308 checkpoints
ANALYSED = ["train.steps=3000"]  # the demo preset, shorter: 1,083 checkpoints, 13–22 s of analysis to kill
COMMIT_EVERY = ["0", "0.1", "2"]  # at every checkpoint, often, the default
# the latest kill of a training command, in seconds: past its start-up (torch's import alone takes 2 s) plus the
# 2 s a resume waits before its first commit, or a run on a slow machine is killed before every commit forever
TRAIN_KILL_S = 10.0
# the latest kill of an analysis: each pass is written when it ends (the grid forward pass of the run above took
# 18 s on an idle 2-core AMD EPYC VM), so kills that all come sooner would never let one finish
ANALYSIS_KILL_S = 30.0


def grokscope_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "grokscope", *args]


def killed_after(command: list[str], delay: float) -> bool:
    """Run `command`, SIGKILL it after `delay` seconds; False if it finished first. A command that finishes
    with an error stops the test, naming it: its output is not a result to compare."""
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        if process.returncode:
            err.seek(0)
            sys.exit(f"{' '.join(command)} failed (exit {process.returncode}):\n{err.read().decode()[-2000:]}")
    return False


def same_run(path: Path, reference: grokscope.Run) -> bool:
    run = grokscope.open_run(path)
    if not run.complete or not np.array_equal(run.steps, reference.steps):
        return False
    if any(not np.array_equal(run.trajectory(n), reference.trajectory(n)) for n in reference.param_names):
        return False
    if any(not np.array_equal(run.metrics[c], v, equal_nan=True) for c, v in reference.metrics.items()):
        return False
    return (path / layout.FINAL).read_bytes() == (reference.path / layout.FINAL).read_bytes()


def kill_training(root: Path, reference: grokscope.Run, n_runs: int, rng: random.Random) -> dict:
    counts = {"runs": n_runs, "kills": 0, "kills after a checkpoint": 0, "runs lost": 0, "not bit-exact": 0}
    for i in range(n_runs):
        out = root / f"run{i}"
        saved, lost = 0, False  # checkpoints known durable before the latest kill
        while not lost:
            if layout.is_run(out):
                command = grokscope_command("train", "--resume", "--out", str(out))
            else:
                settings = [arg for s in SETTINGS for arg in ("--set", s)]
                command = grokscope_command("train", "--preset", "tiny", *settings, "--out", str(out))
                command += ["--commit-every", rng.choice(COMMIT_EVERY)]
            if not killed_after(command, rng.uniform(0.5, TRAIN_KILL_S)):
                break
            counts["kills"] += 1
            try:
                now = grokscope.open_run(out).n_checkpoints if layout.is_run(out) else 0
            except grokscope.GrokscopeError:
                now = -1
            lost = bool(saved) and now < saved  # what had been made durable is gone or unreadable
            counts["kills after a checkpoint"] += now > 0
            saved = max(saved, now)
        counts["runs lost"] += lost
        counts["not bit-exact"] += not lost and not (layout.is_run(out) and same_run(out, reference))
    return counts


def cache_arrays(run: grokscope.Run) -> dict[str, dict[str, np.ndarray]]:
    return {f.name: layout.load_npz(f) for f in sorted((run.path / layout.ANALYSIS).glob("*.npz"))}


def differences(got: dict, expected: dict) -> list[str]:
    """Where two analysis caches (file → key → array) differ, one line each."""
    if got.keys() != expected.keys():
        return [f"files {sorted(got)} against {sorted(expected)}"]
    out = []
    for f, arrays in expected.items():
        if got[f].keys() != arrays.keys():
            out.append(f"{f}: keys {sorted(got[f])} against {sorted(arrays)}")
            continue
        for k, b in arrays.items():
            a = got[f].get(k)
            if a is None or not same(a, b):
                numbers = a is not None and a.shape == b.shape and a.dtype.kind in "fiu"
                gap = (
                    f", largest difference {np.nanmax(np.abs(a.astype(float) - b.astype(float))):.3g}"
                    if numbers
                    else ""
                )
                where = f", {np.count_nonzero(a != b)} of {a.size} entries" if numbers else ""
                out.append(f"{f} {k}{where}{gap}")
    return out


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal arrays, bit for bit where they are numbers (NaN equal to NaN: scores a run does not have)."""
    return np.array_equal(a, b, equal_nan=a.dtype.kind == "f" and b.dtype.kind == "f")


def kill_analysis(root: Path, n_runs: int, rng: random.Random) -> dict:
    config = grokscope.load_preset("demo").with_overrides(dict(map(parse_override, ANALYSED)))
    reference = grokscope.open_run(grokscope.train(config, root / "analysed", progress=False))
    clean = root / "clean"
    shutil.copytree(reference.path, clean)
    analysis.analyze(grokscope.open_run(clean), progress=False)
    expected = cache_arrays(grokscope.open_run(clean))
    counts = {"runs": n_runs, "kills": 0, "kills with a cache file written": 0, "caches not equal": 0}
    for i in range(n_runs):
        path = root / f"analyzed{i}"
        shutil.copytree(reference.path, path)
        shutil.rmtree(path / layout.ANALYSIS, ignore_errors=True)
        while killed_after(grokscope_command("analyze", str(path)), rng.uniform(2.0, ANALYSIS_KILL_S)):
            counts["kills"] += 1
            counts["kills with a cache file written"] += any((path / layout.ANALYSIS).glob("*.npz"))
        got = cache_arrays(grokscope.open_run(path))
        differ = differences(got, expected)
        counts["caches not equal"] += bool(differ)
        for line in differ:
            print(f"analysis {i}: {line}", flush=True)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="training runs, each killed until it completes")
    parser.add_argument("--analyses", type=int, default=20, help="analyses, each killed until one finishes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        config = grokscope.load_preset("tiny").with_overrides(dict(map(parse_override, SETTINGS)))
        reference = grokscope.open_run(grokscope.train(config, root / "reference", progress=False))
        print("training:", kill_training(root, reference, args.runs, rng))
        print("analysis:", kill_analysis(root, args.analyses, rng))
        print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
