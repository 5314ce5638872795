"""Mechanistic progress measures over every checkpoint, cached with the run.

`grokscope.analysis.ANALYSES` lists what exists (name → version and one-line description; `describe()`
prints it). `analyze(run)` computes what is missing; `run.analysis(NAME)` returns one as arrays
indexed by the run's saved steps; `summary(run)` gives the headline. `measure_model(model, ...)` is
the one-checkpoint form of every per-checkpoint measure, through the model's plain hooked forward.
Fourier conventions (basis order, group coordinates for a·b and a/b): see `grokscope.analysis.fourier`.
"""

from grokscope.analysis.fourier import component_names, fourier_basis, group_of
from grokscope.analysis.runner import ANALYSES, analyze, key_frequencies_at, load, phase_steps, summary
from grokscope.analysis.single import measure_model

__all__ = [
    "ANALYSES",
    "analyze",
    "component_names",
    "describe",
    "fourier_basis",
    "group_of",
    "key_frequencies_at",
    "load",
    "measure_model",
    "phase_steps",
    "summary",
]


def describe() -> str:
    """One line per analysis: name, version, what it holds."""
    return "\n".join(f"{name} (v{spec.version}): {spec.description}" for name, spec in ANALYSES.items())
