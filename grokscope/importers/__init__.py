"""Runs to and from other tools: importers write run directories that every command opens; export writes
one checkpoint in another tool's format."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from grokscope.config import RunConfig
from grokscope.errors import GrokscopeError
from grokscope.store import layout, open_run
from grokscope.tasks import Dataset, make_task


def check_out(out: Path, force: bool) -> None:
    """Refuse, before any work, an `out` that holds something and was not asked to be replaced, or where a new
    run cannot be laid out (layout.check_new_run_path)."""
    layout.check_new_run_path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise GrokscopeError(f"{out} already exists: --force replaces it (force=True in Python)")


@contextlib.contextmanager
def laid_out(out: Path, force: bool) -> Iterator[Path]:
    """A directory to build an imported run in, renamed to `out` when the block ends: the run exists whole
    or not at all. A run already at `out` (force) is replaced only then; on failure it comes back untouched.
    The run's lock is held throughout (a run another process is writing is refused)."""
    from grokscope.store.writer import writing
    from grokscope.train.loop import move_aside

    with writing(out):
        building = out.with_name(f".{out.name}.importing")
        shutil.rmtree(building, ignore_errors=True)
        old = move_aside(out, force)
        try:
            yield building
            building.rename(out)
            layout.fsync_dir(out.parent)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            if old is not None:
                old.rename(out)
            raise
        if old is not None:
            shutil.rmtree(old)


def write_series(
    out: Path,
    config: RunConfig,
    dataset: Dataset,
    steps: list[int],
    states: list[dict[str, torch.Tensor]],
    meta: dict,
    curves: dict[str, np.ndarray] | None = None,
    *,
    force: bool = False,
    say: Callable[[str], None] = print,
) -> Path:
    """Write the run `out` from checkpoints of config's model (states, at the increasing `steps`), with
    grokscope's own metrics measured at each (meta says so: metrics_at) and the source's curves
    (name → per-step values, NaN where not recorded) beside them."""
    from grokscope.models import build_model
    from grokscope.store.writer import RunWriter
    from grokscope.train.loop import provenance
    from grokscope.train.losses import LOSSES
    from grokscope.train.metrics import StepMetrics

    config = config.with_overrides({"train.steps": steps[-1]})  # a run ends at its last checkpoint
    model = build_model(config).eval()
    meta = {**provenance(model, torch.device("cpu")), "metrics_at": "checkpoints", **meta}
    with laid_out(out, force) as building:
        writer = RunWriter.create(building, config, dataset, dict(model.named_parameters()), meta, np.array(steps))
        metrics = StepMetrics(dataset, LOSSES[config.train.loss])
        inputs = model.task_inputs(make_task(config.task), dataset)
        for row, (step, state) in enumerate(zip(steps, states)):
            model.load_state_dict(state)
            writer.save_checkpoint(row, state)
            with torch.no_grad():
                values = metrics(model.all_logits(inputs))
            norm = torch.sqrt(sum(t.double().square().sum() for t in state.values()))
            writer.save_metrics(step, {k: np.array([float(v)]) for k, v in {**values, "weight_norm": norm}.items()})
            if dataset.has_split:
                say(
                    f"step {step}: train loss {float(values['train_loss']):.4g}, test accuracy {float(values['test_acc']):.3f}"
                )
            else:
                say(
                    f"step {step}: loss {float(values['all_loss']):.4g}, accuracy {float(values['all_acc']):.3f} on all inputs"
                )
        if curves:
            layout.write_npz(building / layout.SOURCE_METRICS, curves)
        writer.commit(steps[-1], len(steps), steps[-1] + 1, {})
        writer.finish(states[-1])
    open_run(out)  # what was written reads back
    return out
