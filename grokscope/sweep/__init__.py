"""Sweeps: many runs from one TOML spec (spec.py), each an ordinary run directory inside the sweep's directory
(store/sweep.py), trained one after another, in local processes or on Ray (executors.py).

Light to import: torch loads when a run is trained, Ray only for the ray executor.
"""

from grokscope.sweep.executors import EXECUTORS, sweep
from grokscope.sweep.spec import SweepRun, load_spec

__all__ = ["EXECUTORS", "SweepRun", "load_spec", "sweep"]
