"""The analysis cache inside a run: <run>/analysis/<name>@v<version>.npz (numpy arrays, no pickle).

Every file is bound to its run: the run's identity ("run_id") and a digest of its config ("config_digest");
per-checkpoint results also hold the saved steps they cover ("steps") and a digest of those checkpoints'
checksums ("checkpoints_digest", where the run records them), and are topped up. The binding is checked on
reading and left out of the result. A file of another run or config, whose version, steps or checkpoints no
longer match, or that does not load, has the wrong arrays or content out of range, is recomputed, never
trusted. Per-checkpoint results also record the CPU thread count their rows were computed with ("threads",
kept in the result): a top-up uses the same count.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np

from grokscope.analysis.spec import Analysis
from grokscope.errors import GrokscopeError
from grokscope.store import Run, layout

ANALYSIS_DIR = layout.ANALYSIS
BINDING = ("run_id", "config_digest", "checkpoints_digest")
THREADS = "threads"  # per-checkpoint results: the CPU thread count of their rows (see scheduler.pass_threads)
OPTIONS = "options"  # results of analyses with options: those they were computed with (JSON, scheduler.options_of)


def binding(run: Run, n_rows: int | None) -> dict[str, np.ndarray]:
    """What ties a cache file to the run, config and (n_rows: per-checkpoint results) checkpoints it was
    computed from."""
    out = {"run_id": np.array(run.id), "config_digest": np.array(run.config_digest)}
    if n_rows is not None and run.checksums is not None and n_rows <= len(run.checksums):
        out["checkpoints_digest"] = np.array(hashlib.sha256(run.checksums[:n_rows].tobytes()).hexdigest()[:32])
    return out


def path_of(run: Run, spec: Analysis) -> Path:
    return run.path / ANALYSIS_DIR / f"{spec.name}@v{spec.version}.npz"


def read_cached(run: Run, spec: Analysis, quiet: bool = False) -> dict[str, np.ndarray] | None:
    """A cached result, or None if there is none or it does not load (then it is recomputed, which is
    said on stderr unless quiet)."""
    path = path_of(run, spec)
    if not path.is_file():
        return None
    try:
        result = layout.load_npz(path)
        check_cached(spec, result)
        if "run_id" not in result:
            raise GrokscopeError(f"{path.name} was made by an earlier grokscope and is not bound to its run")
        n_rows = len(result["steps"]) if spec.rows else None
        for key, value in binding(run, n_rows).items():
            if str(result.get(key)) != str(value):
                whose = {"run_id": "another run", "config_digest": "another config"}.get(key, "other checkpoints")
                raise GrokscopeError(f"{path.name} was computed for {whose}")
        reason = spec.valid(run, result) if spec.valid else None
        if reason:
            raise GrokscopeError(f"{path.name}: {reason}")
    except GrokscopeError as e:
        if not quiet:
            print(f"grokscope: {e}; recomputing {spec.name}", file=sys.stderr)
        return None
    return {k: v for k, v in result.items() if k not in BINDING}


def check_cached(spec: Analysis, result: dict[str, np.ndarray]) -> None:
    """Raise GrokscopeError unless `result` has the arrays of `spec` with consistent shapes."""
    name = spec.name
    for key, ndim in spec.meta.items():
        if key not in result or result[key].ndim != ndim:
            raise GrokscopeError(f"{name}: corrupt cache ({key} missing or misshapen)")
    if not spec.rows:
        return
    steps = result.get("steps")
    if steps is None or steps.ndim != 1 or steps.dtype.kind != "i":
        raise GrokscopeError(f"{name}: corrupt cache (no saved steps)")
    for key in (*spec.rows, *(k for k in result if k not in spec.meta and k not in (*BINDING, THREADS, OPTIONS))):
        if key not in result or result[key].ndim == 0 or len(result[key]) != len(steps):
            raise GrokscopeError(f"{name}: corrupt cache ({key} missing or not one row per step)")


def write(run: Run, spec: Analysis, arrays: dict[str, np.ndarray]) -> None:
    folder = run.path / ANALYSIS_DIR
    folder.mkdir(exist_ok=True)
    for stale in folder.glob(f"{spec.name}@v*.npz"):
        if stale.name != path_of(run, spec).name:
            stale.unlink()
    n_rows = len(arrays["steps"]) if spec.rows else None
    layout.write_npz(path_of(run, spec), {**arrays, **binding(run, n_rows)})


def writable(run: Run) -> bool:
    """Whether the run's analysis folder can be written (a run shared read-only cannot cache analyses)."""
    folder = run.path / ANALYSIS_DIR
    target = folder if folder.exists() else run.path
    return os.access(target, os.W_OK | os.X_OK, effective_ids=layout.EFFECTIVE_IDS)


def top_up_start(run: Run, result: dict | None) -> int:
    """The first checkpoint row a per-checkpoint result lacks (0 if it must be recomputed)."""
    if result is None:
        return 0
    steps = result["steps"]
    if len(steps) > run.n_checkpoints or not np.array_equal(steps, run.steps[: len(steps)]):
        return 0
    return len(steps)


def append(run: Run, spec: Analysis, old: dict | None, start: int, new: dict[str, list], **meta) -> dict:
    """Join rows [start, n_checkpoints) to the first `start` rows of `old`, write and return it."""
    fresh = {k: np.stack([np.asarray(v) for v in rows]) for k, rows in new.items()}
    if start and old is not None:
        fresh = {k: np.concatenate([old[k][:start], v]) for k, v in fresh.items()}
    fresh["steps"] = run.steps.copy()
    fresh.update(meta)
    write(run, spec, fresh)
    return fresh
