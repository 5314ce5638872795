"""The analysis cache inside a run: <run>/analysis/<name>@v<version>.npz (numpy arrays, no pickle).

Per-checkpoint results hold the saved steps they cover ("steps") and are topped up; a file whose version or
steps no longer match, or that does not load or has the wrong arrays, is recomputed, never trusted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from grokscope.analysis.spec import Analysis
from grokscope.errors import GrokscopeError
from grokscope.store import Run, layout

ANALYSIS_DIR = "analysis"


def path_of(run: Run, spec: Analysis) -> Path:
    return run.path / ANALYSIS_DIR / f"{spec.name}@v{spec.version}.npz"


def read_cached(run: Run, spec: Analysis) -> dict[str, np.ndarray] | None:
    """A cached result, or None if there is none or it does not load (then it is recomputed)."""
    path = path_of(run, spec)
    if not path.is_file():
        return None
    try:
        result = layout.load_npz(path)
        check_cached(spec, result)
    except GrokscopeError as e:
        print(f"grokscope: {e}; recomputing {spec.name}", file=sys.stderr)
        return None
    return result


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
    for key in (*spec.rows, *(k for k in result if k not in spec.meta)):
        if key not in result or result[key].ndim == 0 or len(result[key]) != len(steps):
            raise GrokscopeError(f"{name}: corrupt cache ({key} missing or not one row per step)")


def write(run: Run, spec: Analysis, arrays: dict[str, np.ndarray]) -> None:
    folder = run.path / ANALYSIS_DIR
    folder.mkdir(exist_ok=True)
    for stale in folder.glob(f"{spec.name}@v*.npz"):
        if stale.name != path_of(run, spec).name:
            stale.unlink()
    layout.write_npz(path_of(run, spec), arrays)


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
