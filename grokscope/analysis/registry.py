"""The registry of analyses: name → Analysis (see spec.py), in the order the scheduler runs them: an analysis
comes after those it requires, and analyses of one kind stand together so that they share one pass
(key_frequencies before neurons: the neuron and progress analyses then share one forward per checkpoint).
Adding an analysis: a file defining its `Analysis`, and one entry here."""

from __future__ import annotations

from collections.abc import Iterable

from grokscope.analysis.local_complexity import LOCAL_COMPLEXITY
from grokscope.analysis.memorization import MEMORIZATION
from grokscope.analysis.neurons import NEURONS
from grokscope.analysis.pathways import PATHWAYS
from grokscope.analysis.progress import KEY_FREQUENCIES, PHASES, PROGRESS
from grokscope.analysis.robustness import ROBUSTNESS
from grokscope.analysis.spec import Analysis
from grokscope.analysis.weights import SPECTRA, WEIGHT_NORMS
from grokscope.errors import GrokscopeError
from grokscope.store import Run

ANALYSES: dict[str, Analysis] = {
    a.name: a
    for a in (
        SPECTRA,
        WEIGHT_NORMS,
        KEY_FREQUENCIES,
        NEURONS,
        PROGRESS,
        MEMORIZATION,
        PHASES,
        PATHWAYS,
        LOCAL_COMPLEXITY,
        ROBUSTNESS,
    )
}


def check_names(names: Iterable[str]) -> list[str]:
    names = list(names)
    unknown = [n for n in names if n not in ANALYSES]
    if unknown:
        raise GrokscopeError(f"unknown analysis '{unknown[0]}' (known: {', '.join(ANALYSES)})")
    return names


def not_applicable(run: Run) -> dict[str, str]:
    """The analyses that do not apply to a run (its task, model, split, curves) → why not (one line each)."""
    reasons = {name: spec.applies(run) for name, spec in ANALYSES.items()}
    return {name: reason for name, reason in reasons.items() if reason is not None}


def applicable(run: Run) -> list[str]:
    """The analyses that apply to a run, in registry order."""
    skipped = not_applicable(run)
    return [name for name in ANALYSES if name not in skipped]


def describe() -> str:
    """One line per analysis: name, version, what it holds."""
    return "\n".join(f"{name} (v{spec.version}): {spec.description}" for name, spec in ANALYSES.items())
