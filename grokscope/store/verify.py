"""A full check of a run's files (`grokscope verify RUN`): what opening a run checks cheaply, for every row."""

from __future__ import annotations

import numpy as np

from grokscope.errors import GrokscopeError
from grokscope.store import layout
from grokscope.store.reader import Run

ACCURACIES = ("train_acc", "test_acc", "all_acc", *layout.SPLIT_COLUMNS)


def verify(run: Run) -> list[str]:
    """The problems found (one line each; empty: all checked and sound): every durable checkpoint row
    against its checksum, the final weights of a complete run, the metric columns' ranges, the split."""
    problems = []
    if run.checksums is None:
        problems.append("no checksums recorded (a run made before grokscope recorded them): rows not checked")
    else:
        bad, gone = [], []
        for r in range(run.n_checkpoints):
            try:
                if run.row_checksum(r) != run.checksums[r]:
                    bad.append(r)
            except GrokscopeError as e:  # an imported series' checkpoint directory gone or moved
                gone.append(str(e))
        if gone:
            problems.append(f"{len(gone)} of {run.n_checkpoints} checkpoints cannot be read (first: {gone[0]})")
        if bad:
            steps = ", ".join(str(int(run.steps[r])) for r in bad[:5]) + (", ..." if len(bad) > 5 else "")
            what = "changed since they were imported" if run.checkpoint_dirs else "do not match their checksums"
            problems.append(f"{len(bad)} of {run.n_checkpoints} checkpoints {what} (steps {steps})")
    if run.checkpoint_dirs is None and (run.path / layout.COMPLETE).is_file():
        problems += final_problems(run)
    metrics = run.metrics
    for column in ACCURACIES:
        values = metrics.get(column)
        if values is not None and ((values < 0) | (values > 1)).any():
            problems.append(f"metrics/{column}.npy: values outside [0, 1]")
    try:
        dataset = run.dataset  # loading checks data.npz against the task
    except GrokscopeError as e:
        problems.append(str(e))
        dataset = None
    # a Hugging Face series imported without held-out samples has no test loss; a run without a split has
    # the loss on all inputs only
    held_out = dataset is None or len(dataset.test_rows) > 0
    losses = ("train_loss", "test_loss") if held_out else ("train_loss",)
    for column in losses if run.has_split else ("all_loss",):
        if (metrics[column] < 0).any() or (run.n_metric_steps and np.isnan(metrics[column]).all()):
            problems.append(f"metrics/{column}.npy: negative or no values")
    return problems


def final_problems(run: Run) -> list[str]:
    """A complete run's final.safetensors: present, readable, the run's parameters, equal to the last row."""
    try:
        final = layout.load_safetensors(run.path / layout.FINAL, "the run is marked complete")
    except GrokscopeError as e:
        return [str(e)]
    shapes = {n: list(t.shape) for n, t in final.items()}
    if shapes != run.meta["param_shapes"]:
        return [f"{run.path / layout.FINAL}: its tensors are not the run's parameters"]
    if run.n_checkpoints and int(run.steps[-1]) == run.config.train.steps:
        last = {n: run.trajectory(n)[-1] for n in run.param_names}
        if any(not np.array_equal(final[n].numpy(), last[n]) for n in last):
            return [f"{run.path / layout.FINAL}: differs from the last checkpoint"]
    return []
