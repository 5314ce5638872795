"""Pruning MLP neurons by a score (Doshi et al. 2023) and the four accuracies that show what it removed.

Pruning a neuron zeroes its input weights (its W_in column, and b_in entry if any) and its output weights
(its W_out row): it then contributes nothing. Nothing is retrained. `Pruner(run, step, by).prune(n)` prunes
one set of neurons; `Pruner.sweep()` prunes ever more of them in score order and evaluates after each
fraction.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save

from grokscope.analysis.memorization import SCORES, mlp_params, neuron_scores, no_single_mlp
from grokscope.analysis.spec import needs_split
from grokscope.config import RunConfig, upgrade
from grokscope.errors import GrokscopeError
from grokscope.models import build_model, load_model
from grokscope.store import Run, layout
from grokscope.tasks import Dataset, Task
from grokscope.train.losses import LOSSES
from grokscope.train.metrics import StepMetrics

# the report's names for the metric columns it reads
SPLIT_COLUMNS = {
    "corrupted_vs_noisy": "corrupted_noisy_acc",
    "corrupted_vs_true": "corrupted_true_acc",
    "clean_train": "clean_train_acc",
    "test": "test_acc",
}
SPLITS = tuple(SPLIT_COLUMNS)
SWEEP_FRACTIONS = np.linspace(0, 1, 41)  # every 2.5% of the neurons
PRUNED_DIR = layout.PRUNED
MODEL_FILE, REPORT_FILE = "model.safetensors", "report.json"


@torch.no_grad()
def split_accuracies(model, config: RunConfig, task: Task, dataset: Dataset) -> dict[str, float | None]:
    """Accuracy on corrupted training examples against their corrupted (noisy) and their true labels, on
    clean training examples, and on the test set, in [0, 1] (the training loop's metrics); None for a split
    with no examples."""
    values = StepMetrics(dataset, LOSSES[config.train.loss])(model.all_logits(model.task_inputs(task, dataset)))
    return {split: none_if_nan(float(values[column])) for split, column in SPLIT_COLUMNS.items()}


def none_if_nan(value: float) -> float | None:
    return None if np.isnan(value) else value


def not_prunable(run: Run) -> str | None:
    """Why a run's model cannot be pruned here (one line), or None: pruning zeroes neurons of one MLP layer
    read in and written out by its own W_in and W_out, and measures the accuracies on the training and test
    inputs."""
    reason = no_single_mlp(run.config) or needs_split(run)
    return None if reason is None else f"pruning {reason}"


def neuron_order(scores: torch.Tensor, lowest: bool) -> np.ndarray:
    """Neuron indices from the first to prune to the last: by score, ties by index."""
    values = scores.double().numpy()
    return np.lexsort((np.arange(len(values)), values if lowest else -values))


def count_of(n_neurons: int, fraction: float | None, count: int | None) -> int:
    """How many neurons to prune, from a fraction in [0, 1] or a count in [0, n_neurons]."""
    if (fraction is None) == (count is None):
        raise GrokscopeError("give either a fraction or a count of neurons to prune")
    if fraction is not None:
        if not 0 <= fraction <= 1:
            raise GrokscopeError(f"the fraction to prune must be in [0, 1]; got {fraction}")
        return round(fraction * n_neurons)
    if not 0 <= count <= n_neurons:
        raise GrokscopeError(f"the count to prune must be in [0, {n_neurons}] (the model's neurons); got {count}")
    return count


def pruned(model, config: RunConfig, neurons: np.ndarray):
    """A copy of `model` with `neurons` zeroed (input and output weights)."""
    out = copy.deepcopy(model)
    params = dict(out.named_parameters())
    W_in, W_out = mlp_params(params, config)
    b_in = out.neuron_layers(config.model)[0].b_in
    index = torch.as_tensor(np.asarray(neurons, dtype=np.int64))
    with torch.no_grad():
        W_in[:, index] = 0
        W_out[index, :] = 0
        if b_in is not None:
            params[b_in][index] = 0
    return out


class Pruner:
    """A run's model at one step, its neurons scored: prune any number of them and measure."""

    def __init__(self, run: Run, step: int | None, by: str, lowest: bool = True):
        if by not in SCORES:
            raise GrokscopeError(f"unknown neuron score '{by}' (known: {', '.join(SCORES)})")
        reason = not_prunable(run)
        if reason is not None:
            raise GrokscopeError(reason)
        run.refresh()
        if not run.n_checkpoints:
            raise GrokscopeError(f"{run.path}: no checkpoint saved yet")
        self.run, self.by, self.lowest = run, by, lowest
        self.step = int(run.steps[-1]) if step is None else int(run.steps[run.row(step)])
        self.config, self.task, self.dataset = run.config, run.task, run.dataset
        self.model = load_model(run, self.step)
        self.scores = neuron_scores(self.model, self.config, self.dataset, self.task.group(), by)
        self.order = neuron_order(self.scores, lowest)
        self.before = self.accuracies(self.model)

    @property
    def n_neurons(self) -> int:
        return len(self.order)

    def prune(self, n: int):
        """The model with the first n neurons in score order pruned, and its report (see `report`)."""
        neurons = np.sort(self.order[:n])
        model = pruned(self.model, self.config, neurons)
        return model, self.report(neurons, self.accuracies(model))

    def accuracies(self, model) -> dict[str, float | None]:
        return split_accuracies(model, self.config, self.task, self.dataset)

    @property
    def settings(self) -> dict:
        """What was pruned from: run, step, score and order."""
        return {"run": self.run.name, "step": self.step, "by": self.by, "order": "lowest" if self.lowest else "highest"}

    def report(self, neurons: np.ndarray, after: dict) -> dict:
        """neurons_pruned (indices), before and after (SPLITS → accuracy, None for an empty split)."""
        return {"neurons_pruned": [int(k) for k in neurons], "before": self.before, "after": after}

    def sweep_report(self, table: dict[str, np.ndarray]) -> dict:
        """A sweep table for JSON (NaN → null), with the settings."""
        columns = {k: [None if np.isnan(v) else v for v in column.tolist()] for k, column in table.items()}
        return {"settings": self.settings, "sweep": columns}

    def sweep(self, fractions: np.ndarray = SWEEP_FRACTIONS) -> dict[str, np.ndarray]:
        """Accuracies after pruning each fraction of the neurons in score order: fraction, n_pruned and one
        column per split (NaN where a split is empty)."""
        table: dict[str, list] = {"fraction": [], "n_pruned": [], **{s: [] for s in SPLITS}}
        for fraction in fractions:
            n = round(float(fraction) * self.n_neurons)
            _, report = self.prune(n)
            table["fraction"].append(n / self.n_neurons)
            table["n_pruned"].append(n)
            for split in SPLITS:
                value = report["after"][split]
                table[split].append(np.nan if value is None else value)
        return {k: np.asarray(v) for k, v in table.items()}


def default_out(pruner: Pruner, what: str) -> Path:
    """RUN/pruned/<what>-<by>-<order>@<step>."""
    return pruner.run.path / PRUNED_DIR / f"{what}-{pruner.by}-{pruner.settings['order']}@{pruner.step}"


def save_pruned(out: str | Path, model, config: RunConfig, report: dict, settings: dict) -> Path:
    """Write a pruned model as <out>/model.safetensors, config.json and report.json (the report and its
    settings), replacing those files only, each atomically, and never a file grokscope did not write there;
    returns `out`."""
    out = Path(out)
    layout.claim_outputs(out, [MODEL_FILE, layout.CONFIG, REPORT_FILE])
    weights = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters()}
    layout.write_bytes(out / MODEL_FILE, save(weights))
    layout.write_json(out / layout.CONFIG, config.to_dict())
    layout.write_json(out / REPORT_FILE, {**report, "settings": settings})
    return out


def load_pruned(path: str | Path):
    """A model saved by `save_pruned` (or any model.safetensors + config.json pair), in eval mode."""
    path = Path(path)
    config = RunConfig.from_dict(upgrade(layout.read_json(path / layout.CONFIG)))
    model = build_model(config)
    weights = layout.load_safetensors(path / MODEL_FILE)
    try:
        model.load_state_dict(weights)
    except RuntimeError:
        raise GrokscopeError(f"{path / MODEL_FILE}: its tensors do not match {path / layout.CONFIG}") from None
    return model.eval()
