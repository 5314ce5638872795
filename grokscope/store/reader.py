"""Reading a run: `open_run(path)` → Run. Trusts only what progress.json says is durable."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from grokscope.config import RunConfig, upgrade
from grokscope.errors import GrokscopeError
from grokscope.store import layout

ACTIVE_S = 30  # a run that committed progress this recently is still training

if TYPE_CHECKING:
    import torch

    from grokscope.tasks import Dataset, Task


def open_run(path: str | Path) -> Run:
    """Open a run directory (complete, still training, or interrupted)."""
    if not isinstance(path, (str, Path)):
        raise GrokscopeError(f"a run is a directory path; got {path!r} ({type(path).__name__})")
    return Run(Path(path))


def as_run(run: Run | str | Path) -> Run:
    """A Run as given, or the run at a path; anything else is a one-line GrokscopeError."""
    return run if isinstance(run, Run) else open_run(run)


class Run:
    """A run directory. Arrays are memmaps sliced to the durable rows; `refresh()` re-reads progress.

    steps: int64 (n_checkpoints,) saved steps; trajectory(name): (n_checkpoints, *shape);
    metrics: dict column → (n_metric_steps,) with column "step" = 0..n_metric_steps-1.
    """

    def __init__(self, path: Path):
        self.path = path
        if not path.is_dir():
            raise GrokscopeError(f"{path}: {'not a directory' if path.exists() else 'no such run directory'}")
        if not (path / layout.CONFIG).is_file():
            raise GrokscopeError(f"{path}: not a grokscope run (no {layout.CONFIG})")
        written = layout.read_json(path / layout.CONFIG)
        marker = layout.read_marker(path)
        recorded = marker.get("config_digest")
        # what the run was made with, as written: keys a later release adds (at the defaults that describe the
        # run) leave it alone, so analyses cached before them stay bound to the run
        self.config_digest = layout.config_digest(written)
        if recorded is not None and recorded != self.config_digest:
            raise GrokscopeError(
                f"{path / layout.CONFIG}: changed since the run was made (it no longer matches the digest in "
                f"{layout.MARKER}); restore it: the checkpoints were trained with the original"
            )
        try:
            self.config = RunConfig.from_dict(upgrade(written), complete=True)
        except GrokscopeError as e:
            raise GrokscopeError(f"{path / layout.CONFIG}: {e}") from None
        self.meta = layout.read_json(path / layout.META)
        shapes = self.meta.get("param_shapes")
        # an imported series keeps its weights in the checkpoint directories meta.json names
        self.checkpoint_dirs: list[str] | None = self.meta.get("checkpoint_dirs")
        if not isinstance(shapes, dict) or not (shapes or self.checkpoint_dirs is not None):
            raise GrokscopeError(f"{path / layout.META}: corrupt (no parameter shapes)")
        self.name = path.name
        self.memo: dict = {}  # results derived from this run, for those who keep them (see analysis.load)
        self._scheduled = layout.open_array(path / layout.STEPS, np.dtype(np.int64))
        self._params = {
            n: layout.open_array(path / layout.PARAMS / f"{n}.npy", np.dtype(np.float32), (len(self._scheduled), *s))
            for n, s in shapes.items()
        }
        n_steps = self.config.train.steps + 1
        self._metrics = {
            c: layout.open_array(path / layout.METRICS / f"{c}.npy", np.dtype(np.float64), (n_steps,))
            for c in layout.metric_columns(path)
        }
        # the run's identity: its marker's id, or for a run made before markers a digest of its meta.json
        # (which records when and where it was trained)
        self.id = (
            marker.get("grokscope_run") or "meta-" + hashlib.sha256((path / layout.META).read_bytes()).hexdigest()[:32]
        )
        self._checked = None  # (n_checkpoints, checksum) of the last row already checked
        self.pin: tuple[int, int] | None = None  # (n_checkpoints, n_metric_steps) a pinned run stays at
        self.refresh()

    def refresh(self) -> None:
        """Re-read progress.json: picks up checkpoints a training process has committed since. The last
        durable checkpoint row is checked against its checksum (cheap: one row); `verify` checks them all."""
        progress = layout.read_progress(self.path, self._scheduled, self.config.train.steps)
        n = progress["n_checkpoints"]
        checksums = progress.get("checksums")
        self.checksums = None if checksums is None else np.array(checksums, dtype=np.uint32)
        if n and checksums is not None and (n, checksums[-1]) != self._checked:
            self.check_row(n - 1)
            self._checked = (n, checksums[-1])
        self.n_checkpoints, self.n_metric_steps = n, progress["n_metric_steps"]
        # complete: the marker and the final weights it promises
        self.complete = (self.path / layout.COMPLETE).is_file() and layout.safetensors_intact(self.path / layout.FINAL)
        if self.pin is not None and self.pin != (n, progress["n_metric_steps"]):
            self.n_checkpoints, self.n_metric_steps = min(n, self.pin[0]), min(progress["n_metric_steps"], self.pin[1])
            self.complete = False  # held short of where the run is

    def pinned(self) -> Run:
        """This run as it stands now, held there: a new Run of the same directory that `refresh()` never
        extends, so what was computed for this state can be read while training goes on (a pinned run's
        analyses are read once, see `analysis.load`)."""
        view = Run(self.path)
        view.pin = (self.n_checkpoints, self.n_metric_steps)
        view.refresh()
        return view

    def check_row(self, row: int) -> None:
        """GrokscopeError if checkpoint row `row` no longer matches its recorded checksum (a CRC-32 of one
        row: well under a millisecond for the canonical model; an imported series: its directory's)."""
        if self.checksums is not None and self.row_checksum(row) != self.checksums[row]:
            if self.checkpoint_dirs is not None:
                raise GrokscopeError(
                    f"{self.path}: the checkpoint at step {int(self._scheduled[row])} changed since it was imported "
                    f"({self.checkpoint_dirs[row]}); import the series again"
                )
            raise GrokscopeError(
                f"{self.path}: the checkpoint at step {int(self._scheduled[row])} does not match its checksum "
                f"(params/ changed or corrupt); `grokscope verify {self.path}` checks every row"
            )

    def row_checksum(self, row: int) -> int:
        """CRC-32 of checkpoint row `row` as stored now (compare with `checksums[row]`); for an imported series
        its directory's fingerprint (layout.checkpoint_fingerprint)."""
        if self.checkpoint_dirs is not None:
            return layout.checkpoint_fingerprint(self.checkpoint_dirs[row])
        return layout.row_checksum(self._params, row)

    @property
    def steps(self) -> np.ndarray:
        return np.asarray(self._scheduled[: self.n_checkpoints])

    @property
    def param_names(self) -> list[str]:
        return list(self._params)

    def row(self, step: int) -> int:
        """Index of a saved step in `steps`; GrokscopeError if it was not saved."""
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
            raise GrokscopeError(f"a step is an integer; got {step!r} ({type(step).__name__})")
        steps = self.steps
        i = int(np.searchsorted(steps, step))
        if i < len(steps) and steps[i] == step:
            return i
        near = steps[max(i - 1, 0) : i + 1].tolist()
        raise GrokscopeError(f"step {step} was not saved in {self.name} (nearest saved: {near})")

    def params(self, step: int) -> dict[str, torch.Tensor]:
        """All parameters at a saved step: name → float32 tensor (the row checked against its checksum first)."""
        import torch

        i = self.row(step)
        self.check_row(i)
        return {n: torch.from_numpy(np.array(a[i])) for n, a in self._params.items()}

    def trajectory(self, name: str) -> np.ndarray:
        """One parameter over all saved steps, read-only (n_checkpoints, *shape), without loading others."""
        if name not in self._params:
            raise GrokscopeError(f"no parameter '{name}' in {self.name} (has: {', '.join(self._params)})")
        return self._params[name][: self.n_checkpoints]

    @property
    def metrics(self) -> dict[str, np.ndarray]:
        n = self.n_metric_steps
        return {"step": np.arange(n), **{c: np.asarray(a[:n]) for c, a in self._metrics.items()}}

    @property
    def task(self) -> Task:
        from grokscope.tasks import make_task

        return make_task(self.config.task)

    @property
    def dataset(self) -> Dataset:
        """The run's split and labels (data.npz), checked against its task."""
        from grokscope.tasks import Dataset

        task, path = self.task, self.path / layout.DATA
        arrays = layout.load_npz(path)
        try:
            dataset = Dataset(n_classes=task.n_classes, **arrays)
            dataset.check(task.n_inputs)
        except TypeError:
            raise GrokscopeError(f"{path}: corrupt (unexpected arrays)") from None
        except GrokscopeError as e:
            raise GrokscopeError(f"{path}: corrupt ({e})") from None
        return dataset

    @property
    def mask(self) -> dict[str, torch.Tensor] | None:
        """A grokking ticket's mask: name → float32 0/1 tensor shaped like the parameter; None for dense runs."""
        if not self.config.ticket.kind:
            return None
        return layout.load_mask(self.path, self.meta["param_shapes"])

    @property
    def has_split(self) -> bool:
        """Whether the run knows which inputs it was trained on; one imported without has metrics on all
        inputs only (layout.NO_SPLIT_COLUMNS)."""
        return "all_loss" not in self._metrics

    @property
    def grok_step(self) -> int | None:
        """First step with test accuracy at least the task's grok_accuracy (0.99 for modular tasks), or None
        (also where the run has no split: no test accuracy)."""
        if not self.has_split:
            return None
        hits = np.flatnonzero(self.metrics["test_acc"] >= self.task.grok_accuracy)
        return int(hits[0]) if len(hits) else None

    @property
    def source_metrics(self) -> dict[str, np.ndarray]:
        """An imported run's curves as its source recorded them (name → float64 (n_metric_steps,) by step, NaN
        where it recorded none; its own definitions, e.g. a loss over other classes); {} for other runs."""
        path = self.path / layout.SOURCE_METRICS
        if not path.is_file():
            return {}
        return {name: values[: self.n_metric_steps] for name, values in layout.load_npz(path).items()}

    @property
    def measured_steps(self) -> np.ndarray:
        """The steps whose metrics were recorded: every step of a run grokscope trained, the checkpoints' steps
        of an imported one (meta.json "metrics_at"; its metrics are NaN between them)."""
        if self.meta.get("metrics_at") == "checkpoints":
            return self.steps[self.steps < self.n_metric_steps]
        return np.arange(self.n_metric_steps)

    @property
    def diverged_step(self) -> int | None:
        """First step whose training loss (a run without a split: the loss on all inputs) is not finite (the
        optimizer blew the weights up), or None."""
        steps = self.measured_steps
        loss = self.metrics["train_loss" if self.has_split else "all_loss"]
        hits = np.flatnonzero(~np.isfinite(loss[steps]))
        return int(steps[hits[0]]) if len(hits) else None

    @property
    def activity(self) -> str:
        """'training' if the run committed progress within the last half minute (training commits every few
        seconds), else 'stopped'."""
        age = time.time() - (self.path / layout.PROGRESS).stat().st_mtime
        return "training" if age < ACTIVE_S else "stopped"

    @property
    def status(self) -> str:
        """'complete', 'training at step N' or 'stopped at step N' (N: the last saved step), or 'laid out, no
        checkpoint yet'."""
        if self.complete:
            return "complete"
        if not self.n_checkpoints:
            return "laid out, no checkpoint yet"
        return f"{self.activity} at step {int(self.steps[-1])}"

    def final_metrics(self) -> dict[str, float]:
        """Each metric column at the last recorded step; the test columns of a run with train.eval_every at
        the last step that measured them (a live or stopped run's last recorded step may lie between)."""
        metrics, last = self.metrics, self.n_metric_steps - 1
        if last < 0:
            return {}
        saved = set(self.steps.tolist())
        tested = next(s for s in range(last, -1, -1) if self.config.train.evaluates(s, saved))
        return {c: float(v[tested if c.startswith("test_") else last]) for c, v in metrics.items() if c != "step"}

    def summary(self) -> dict:
        """What `grokscope info --json` prints."""
        steps, last = self.steps, self.n_metric_steps - 1
        final = {c: finite_or_none(v) for c, v in self.final_metrics().items()}
        final["step"] = last if last >= 0 else None
        return {
            "name": self.name,
            "complete": self.complete,
            "n_checkpoints": len(steps),
            "first_step": int(steps[0]) if len(steps) else None,
            "last_step": int(steps[-1]) if len(steps) else None,
            "has_split": self.has_split,
            "grok_step": self.grok_step,
            "diverged_step": self.diverged_step,
            "final": final,
            "config": self.config.to_dict(),
        }


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN or infinity: a diverged metric is reported as null."""
    return float(value) if np.isfinite(value) else None
