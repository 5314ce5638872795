"""A sweep's spec: many runs from one TOML file.

A spec is a TOML file:

    preset = "demo"                     # the base config (default: the default config)
    [set]                               # overrides every run shares, keys as --set takes them
    "train.steps" = 1000
    [grid]                              # every combination of these values
    "optim.weight_decay" = [0.3, 1.0]
    "model.seed" = [0, 1, 2]
    [[runs]]                            # and/or runs one by one, each on top of [set] (and of each grid point)
    "task.train_frac" = 0.5

Each run is named by its overrides (`run_name`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import tomllib

from grokscope.config import RunConfig
from grokscope.errors import GrokscopeError
from grokscope.presets import load_preset

SPEC_KEYS = {"preset", "set", "grid", "runs"}


@dataclass(frozen=True)
class SweepRun:
    name: str
    config: RunConfig
    overrides: dict  # what varies in it (the grid point and its [[runs]] entry), in the spec's order


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
        if len(name.encode()) > 255:  # a file name's limit on common file systems
            raise GrokscopeError(f"{path}: run {said}: its directory name is longer than 255 bytes")
        if any(r.name == name for r in runs):
            raise GrokscopeError(f"{path}: runs {said} and another would share the directory name {name}")
        runs.append(SweepRun(name, config.with_overrides({"name": name}), varied))
    if not runs:
        raise GrokscopeError(f"{path}: the spec describes no run (an empty [[runs]] list?)")
    return runs


def run_name(overrides: dict) -> str:
    """A run's directory name from what varies: 'KEY=VALUE' joined by '__' ('base' where nothing does), '/'
    written as '_'."""
    return "__".join(f"{k}={v}" for k, v in overrides.items()).replace("/", "_") or "base"
