"""A sweep's directory: `sweep.json` (its runs in the spec's order, each a name and a full config) and one run
directory per run, named by the run. Written by `grokscope.sweep`; read here by every command and the app."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from grokscope.config import RunConfig, flatten
from grokscope.errors import GrokscopeError
from grokscope.store import layout
from grokscope.store.reader import Run, open_run

MANIFEST = "sweep.json"


def is_sweep(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def manifest(configs: dict[str, RunConfig], keys: list[str]) -> dict:
    """What `sweep.json` holds for these runs (name → config) and the keys the spec varies (in its order), as
    JSON reads it back."""
    runs = [{"name": name, "config": config.to_dict()} for name, config in configs.items()]
    return json.loads(json.dumps({"keys": keys, "runs": runs}))  # tuples as lists


@dataclass(frozen=True)
class Sweep:
    path: Path
    configs: dict[str, RunConfig]  # run name → its config, in the spec's order
    keys: list[str]  # the keys the spec varies, in its order

    @property
    def varied(self) -> dict[str, list]:
        """The config keys whose values differ between runs (dotted, as --set takes them; the name aside) →
        each run's value, in the order of `configs`; the spec's keys first, in its order."""
        flat = [flatten(config.to_dict()) for config in self.configs.values()]
        keys = dict.fromkeys([*self.keys, *(key for f in flat for key in f if key != "name")])
        values = {key: [f.get(key) for f in flat] for key in keys}
        return {key: v for key, v in values.items() if any(x != v[0] for x in v)}

    def has_started(self, name: str) -> bool:
        """Whether the run's directory is laid out (training, stopped or complete) inside the sweep's directory
        (a link leading elsewhere is not one of its runs)."""
        where = self.path / name
        return name in self.configs and layout.is_run(where) and where.resolve().is_relative_to(self.path.resolve())

    def started(self) -> list[str]:
        """The runs whose directory is laid out, in the sweep's order."""
        return [name for name in self.configs if self.has_started(name)]

    def open(self, name: str) -> Run:
        if not self.has_started(name):
            raise GrokscopeError(f"the sweep {self.path} has no started run '{name}'")
        return open_run(self.path / name)


def open_sweep(path: str | Path) -> Sweep:
    """The sweep in `path` (GrokscopeError, one line, if there is none or its manifest is unreadable)."""
    path = Path(path)
    if not is_sweep(path):
        raise GrokscopeError(f"{path} is not a sweep (no {MANIFEST}: make one with grokscope sweep SPEC.toml)")
    data = layout.read_json(path / MANIFEST)
    entries = data.get("runs")
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("config"), dict) for e in entries
    ):
        raise GrokscopeError(f"{path / MANIFEST}: not a sweep manifest (runs: a list of {{name, config}})")
    try:
        configs = {entry["name"]: RunConfig.from_dict(entry["config"]) for entry in entries}
    except GrokscopeError as e:
        raise GrokscopeError(f"{path / MANIFEST}: {e}") from None
    if len(configs) != len(entries):
        raise GrokscopeError(f"{path / MANIFEST}: two runs share a name")
    bad = next((name for name in configs if Path(name).name != name or name in ("", ".", "..")), None)
    if bad is not None:  # a run lives in the sweep's directory, never elsewhere
        raise GrokscopeError(f"{path / MANIFEST}: the run name '{bad}' is not a directory name")
    keys = data.get("keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise GrokscopeError(f"{path / MANIFEST}: not a sweep manifest (its keys are not a list of names)")
    return Sweep(path, configs, keys)
