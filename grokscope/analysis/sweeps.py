"""What each run of a sweep reached, for phase diagrams: its final accuracies, its grok step and its outcome.

Outcome, from the run's last recorded metrics (after Doshi et al. 2023, "To grok or not to grok", for runs
with corrupted training labels). A run generalizes when its test accuracy is at least GENERALIZES (0.9, our
threshold: the paper describes its generalizing phases by a high test accuracy, not a number, and with
corrupted labels a run that has learnt the rule can stay a few points short of the grok step's 0.99, e.g.
tests/conftest.py's coexistence run at 0.90-0.97); a set of examples is fitted at TRAIN_FIT (0.99), the
threshold of the memorization phase (analysis/progress.py):
- generalizing with corrupted labels: "coexistence" (the corrupted examples still answered with their
  corrupted labels, ≥ 0.99: memorized beside the rule), "full inversion" (answered with their true labels,
  ≥ 0.99: the rule overrides every memorized label), "partial inversion" (neither);
- generalizing without corruption: "generalization";
- not generalizing: "memorization" (the training labels fitted), else "not fitted" (Doshi et al.'s forgetting
  and confusion phases are not told apart: they need more than the final accuracies).
A run without a split (imported), or whose accuracies are not finite (diverged), has no outcome (None).
"""

from __future__ import annotations

import numpy as np

from grokscope.analysis.progress import TRAIN_FIT
from grokscope.errors import GrokscopeError
from grokscope.store import Run
from grokscope.store.sweep import Sweep

OUTCOMES = (
    "full inversion",
    "partial inversion",
    "coexistence",
    "generalization",
    "memorization",
    "not fitted",
)
GENERALIZES = 0.9
RUN_COLUMNS = ("status", "final train acc", "final test acc", "grok step", "outcome")  # after the varied keys
COLOURINGS = {  # what a phase diagram's colour shows → the table column it reads
    "final test accuracy": "final test acc",
    "grok step": "grok step",
    "outcome": "outcome",
}


def outcome(run: Run) -> str | None:
    """The run's outcome at its last recorded step (see the module's docstring); None without a split, a
    recorded step or finite accuracies."""
    final = run.final_metrics()
    if not run.has_split or not final or not np.isfinite([final["train_acc"], final["test_acc"]]).all():
        return None  # no split, nothing recorded yet, or diverged
    if final["test_acc"] >= GENERALIZES:
        if not np.isfinite(final["corrupted_noisy_acc"]):  # no corrupted training example (none drawn, or ξ = 0)
            return "generalization"
        if final["corrupted_noisy_acc"] >= TRAIN_FIT:
            return "coexistence"
        return "full inversion" if final["corrupted_true_acc"] >= TRAIN_FIT else "partial inversion"
    return "memorization" if final["train_acc"] >= TRAIN_FIT else "not fitted"


def sweep_table(sweep: Sweep) -> dict[str, list]:
    """One row per run of the sweep, in its order: the run's name, its value of each varied key, its status
    (Run.status, or "not started"), final train and test accuracy, grok step (None if not
    grokked) and outcome; None where the run has not started or cannot be read."""
    table: dict[str, list] = {"run": list(sweep.configs), **sweep.varied, **{c: [] for c in RUN_COLUMNS}}
    for name in sweep.configs:
        row = dict.fromkeys(RUN_COLUMNS)
        if not sweep.has_started(name):
            row["status"] = "not started"
        else:
            try:
                run = sweep.open(name)
            except GrokscopeError as e:
                row["status"] = f"unreadable: {e}"
            else:
                final = run.final_metrics()
                row["status"] = run.status
                row["final train acc"] = final.get("train_acc")
                row["final test acc"] = final.get("test_acc")
                row["grok step"] = run.grok_step
                row["outcome"] = outcome(run)
        for c in RUN_COLUMNS:
            table[c].append(row[c])
    return table


def cells(table: dict[str, list], x: str, y: str | None, fixed: dict[str, object]) -> list[dict]:
    """The table's runs grouped into the cells of a phase diagram over keys x and y (None: one row), among the
    runs with the `fixed` values of other keys; every key neither an axis nor fixed (seeds, say) is pooled. Per
    cell: its x and y values, its runs (names), the mean final test accuracy, the median grok step of the runs
    that grokked and how many did, the most common outcome (ties: the first in OUTCOMES) and its count. Cells
    in the order of first appearance; runs not started are left out."""
    for key in (x, y, *fixed):
        if key is not None and key not in table:
            raise GrokscopeError(f"the sweep does not vary '{key}' (it varies: {', '.join(varied_keys(table))})")
    for key, value in fixed.items():
        if value not in table[key]:
            values = ", ".join(map(str, dict.fromkeys(table[key])))
            raise GrokscopeError(f"the sweep has no run with {key} = {value} (its values: {values})")
    out: dict[tuple, dict] = {}
    for i, name in enumerate(table["run"]):
        if table["status"][i] == "not started" or any(table[k][i] != v for k, v in fixed.items()):
            continue
        where = (table[x][i], None if y is None else table[y][i])
        cell = out.setdefault(where, {"x": where[0], "y": where[1], "runs": [], "acc": [], "grok": [], "outcome": []})
        cell["runs"].append(name)
        cell["acc"].append(table["final test acc"][i])
        cell["grok"].append(table["grok step"][i])
        cell["outcome"].append(table["outcome"][i])
    result = []
    for cell in out.values():
        accs = [a for a in cell["acc"] if a is not None and np.isfinite(a)]
        groks = [g for g in cell["grok"] if g is not None]
        outcomes = [o for o in cell["outcome"] if o is not None]
        common = max(OUTCOMES, key=outcomes.count) if outcomes else None  # max keeps the first of a tie
        result.append(
            {
                "x": cell["x"],
                "y": cell["y"],
                "runs": cell["runs"],
                "final test acc": float(np.mean(accs)) if accs else None,
                "grok step": float(np.median(groks)) if groks else None,
                "grokked": len(groks),
                "outcome": common,
                "outcome count": outcomes.count(common) if common else 0,
            }
        )
    return result


def varied_keys(table: dict[str, list]) -> list[str]:
    """The config keys a sweep table has a column for."""
    return [key for key in table if key not in ("run", *RUN_COLUMNS)]
