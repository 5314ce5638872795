"""Analyses over every checkpoint of a run, cached with the run.

Pieces: `spec` (what an analysis is), one file per family of analyses (weights, neurons, progress,
memorization), `registry` (name → Analysis, what applies to which run), `cache` (the files in the run),
`scheduler` (`analyze`, `load`, `missing`), `results` (phases, key frequencies, the summary).
`analysis.load(run, NAME)` returns one as arrays indexed by the run's saved steps. `measure_model(model, ...)` is
the one-checkpoint form of every per-checkpoint measure, through the model's plain hooked forward.
Fourier conventions (basis order, group coordinates for a·b and a/b): see `grokscope.analysis.fourier`.
"""

from grokscope.analysis.fourier import component_names, fourier_basis, group_of
from grokscope.analysis.registry import ANALYSES, applicable, describe, not_applicable
from grokscope.analysis.results import key_frequencies_at, phase_steps, summary
from grokscope.analysis.scheduler import analyze, by_default, cached_result, load, missing
from grokscope.analysis.single import measure_model

__all__ = [
    "ANALYSES",
    "analyze",
    "applicable",
    "by_default",
    "cached_result",
    "component_names",
    "describe",
    "fourier_basis",
    "group_of",
    "key_frequencies_at",
    "load",
    "measure_model",
    "missing",
    "not_applicable",
    "phase_steps",
    "summary",
]
