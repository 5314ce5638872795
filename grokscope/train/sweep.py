"""Sweeps: many runs from one spec, each an ordinary run directory inside the sweep's directory.

A spec is a TOML file:

    preset = "demo"                     # the base config (default: the default config)
    [set]                               # overrides every run shares, keys as --set takes them
    "train.steps" = 1000
    [grid]                              # every combination of these values
    "optim.weight_decay" = [0.3, 1.0]
    "model.seed" = [0, 1, 2]
    [[runs]]                            # and/or runs one by one, each on top of [set] (and of each grid point)
    "task.train_frac" = 0.5

The sweep directory holds `sweep.json` (its runs and their overrides) and one run per entry, named by its
overrides. Running a sweep again skips its complete runs and resumes its interrupted ones.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import tomllib

from grokscope.config import RunConfig
from grokscope.errors import GrokscopeError
from grokscope.presets import load_preset
from grokscope.store import layout

MANIFEST = "sweep.json"
SPEC_KEYS = {"preset", "set", "grid", "runs"}


@dataclass(frozen=True)
class SweepRun:
    name: str
    config: RunConfig


def load_spec(path: str | Path) -> list[SweepRun]:
    """The runs a spec describes, each config checked (GrokscopeError naming the run and the key)."""
    path = Path(path)
    try:
        spec = tomllib.loads(path.read_text())
    except OSError as e:
        raise GrokscopeError(f"{path}: {e.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise GrokscopeError(f"{path}: not a TOML sweep spec ({e})") from None
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise GrokscopeError(f"{path}: unknown entry '{min(unknown)}' (a spec has {', '.join(sorted(SPEC_KEYS))})")
    shared, grid, listed = spec.get("set", {}), spec.get("grid", {}), spec.get("runs", [{}])
    if not isinstance(shared, dict) or not isinstance(grid, dict) or not isinstance(listed, list):
        raise GrokscopeError(f"{path}: [set] and [grid] are tables, [[runs]] a list of tables")
    bad = next((k for k, v in grid.items() if not isinstance(v, list) or not v), None)
    if bad is not None:
        raise GrokscopeError(f"{path}: grid key '{bad}' needs a non-empty list of values")
    base = load_preset(spec["preset"]) if "preset" in spec else RunConfig()
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    runs, seen = [], {}
    for point, extra in itertools.product(points, listed):
        if not isinstance(extra, dict):
            raise GrokscopeError(f"{path}: each [[runs]] entry is a table of overrides")
        varied = {**point, **extra}
        said = ", ".join(f"{k}={v!r}" for k, v in varied.items()) or "base"
        try:
            config = base.with_overrides({**shared, **varied})
        except GrokscopeError as e:
            raise GrokscopeError(f"{path}: run {said}: {e}") from None
        same = seen.setdefault(config.to_json(), said)  # the same config twice (e.g. 1 and 1.0)
        if same != said:
            raise GrokscopeError(f"{path}: runs {same} and {said} have the same config")
        name = run_name(varied)
        if any(r.name == name for r in runs):
            raise GrokscopeError(f"{path}: runs {said} and another would share the directory name {name}")
        runs.append(SweepRun(name, config.with_overrides({"name": name})))
    return runs


def run_name(overrides: dict) -> str:
    """A run's directory name from what varies: 'KEY=VALUE' joined by '__' ('base' where nothing does), '/'
    written as '_'."""
    return "__".join(f"{k}={v}" for k, v in overrides.items()).replace("/", "_") or "base"


def sweep(
    spec: str | Path,
    out: str | Path,
    jobs: int = 1,
    say: Callable[[str], None] = print,
    **train_options,
) -> list[Path]:
    """Train every run of the spec into `out` (created; a directory holding another sweep is refused), `jobs`
    at a time (separate processes beyond one), skipping complete runs and resuming interrupted ones; returns
    the run directories. train_options: passed to `grokscope.train` (device, commit_every_s, progress)."""
    runs, out = load_spec(spec), Path(out)
    if jobs < 1:
        raise GrokscopeError(f"--jobs must be >= 1; got {jobs}")
    manifest = json.loads(json.dumps({"runs": [{"name": r.name, "config": r.config.to_dict()} for r in runs]}))
    if (out / MANIFEST).is_file():
        if layout.read_json(out / MANIFEST) != manifest:
            raise GrokscopeError(f"{out} holds another sweep (its {MANIFEST} differs): give another --out")
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GrokscopeError(f"{out} exists and is not this sweep's directory: give another --out")
    else:
        out.mkdir(parents=True, exist_ok=True)
        layout.write_json(out / MANIFEST, manifest)
    todo = []
    for run in runs:
        where = out / run.name
        if (where / layout.COMPLETE).is_file():
            say(f"{run.name}: complete")
        else:
            todo.append((run.config.to_dict(), str(where), layout.is_run(where)))
    if jobs == 1 or len(todo) <= 1:
        for config, where, resume in todo:
            say(f"{Path(where).name}: {'resuming' if resume else 'training'}")
            train_one(config, where, resume, train_options)
    else:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        pool = get_context("spawn").Pool(jobs, initializer=worker, initargs=(threads,))
        try:
            results = [pool.apply_async(train_one, (*job, {**train_options, "progress": False})) for job in todo]
            for result, (_, where, resume) in zip(results, todo):
                result.get()  # a worker's error, raised here
                say(f"{Path(where).name}: {'resumed' if resume else 'trained'}")
            pool.close()
        except BaseException:  # Ctrl-C or a failed run: queued runs never start, running ones stop where they are
            pool.terminate()  # (crash-safe: the same sweep again resumes them)
            raise
        finally:
            pool.join()
    return [out / run.name for run in runs]


def worker(threads: int) -> None:
    """A worker process of `--jobs`: `threads` torch threads; Ctrl-C is its parent's to act on (it ends the
    workers), not each worker's (one would go on to its next queued run)."""
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)


def train_one(config: dict, where: str, resume: bool, options: dict) -> None:
    """One run of a sweep."""
    from grokscope.train import train

    if resume:
        train(out=where, resume=True, **options)
    else:
        train(RunConfig.from_dict(config), where, **options)
