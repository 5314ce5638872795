"""Reading a run: `open_run(path)` → Run. Trusts only what progress.json says is durable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from grokscope.config import RunConfig
from grokscope.errors import GrokscopeError
from grokscope.store import files as F
from grokscope.tasks import Dataset

GROK_ACC = 0.99  # grok_step: the first step with test accuracy at least this


def open_run(path: str | Path) -> Run:
    """Open a run directory (complete, still training, or interrupted)."""
    return Run(Path(path))


class Run:
    """A run directory. Arrays are memmaps sliced to the durable rows; `refresh()` re-reads progress.

    steps: int64 (n_checkpoints,) saved steps; trajectory(name): (n_checkpoints, *shape);
    metrics: dict column → (n_metric_steps,) with column "step" = 0..n_metric_steps-1.
    """

    def __init__(self, path: Path):
        self.path = path
        if not path.is_dir():
            raise GrokscopeError(f"{path}: no such run directory")
        if not (path / F.CONFIG).is_file():
            raise GrokscopeError(f"{path}: not a grokscope run (no {F.CONFIG})")
        try:
            self.config = RunConfig.from_dict(F.read_json(path / F.CONFIG))
        except GrokscopeError as e:
            raise GrokscopeError(f"{path / F.CONFIG}: {e}") from None
        self.meta = F.read_json(path / F.META)
        self.name = path.name
        self._scheduled = F.open_array(path / F.STEPS, np.dtype(np.int64))
        shapes = self.meta.get("param_shapes", {})
        self._params = {
            n: F.open_array(path / F.PARAMS / f"{n}.npy", np.dtype(np.float32), (len(self._scheduled), *s))
            for n, s in shapes.items()
        }
        n_steps = self.config.train.steps + 1
        self._metrics = {
            c: F.open_array(path / F.METRICS / f"{c}.npy", np.dtype(np.float64), (n_steps,)) for c in F.METRIC_COLUMNS
        }
        self.refresh()

    def refresh(self) -> None:
        """Re-read progress.json: picks up checkpoints a training process has committed since."""
        progress = F.read_json(self.path / F.PROGRESS)
        try:
            self.n_checkpoints = int(progress["n_checkpoints"])
            self.n_metric_steps = int(progress["n_metric_steps"])
        except (KeyError, TypeError, ValueError):
            raise GrokscopeError(f"{self.path / F.PROGRESS}: corrupt") from None
        if not (
            0 <= self.n_checkpoints <= len(self._scheduled) and 0 <= self.n_metric_steps <= self.config.train.steps + 1
        ):
            raise GrokscopeError(f"{self.path / F.PROGRESS}: corrupt (counts out of range)")
        self.progress = progress
        self.complete = (self.path / F.COMPLETE).is_file()

    @property
    def steps(self) -> np.ndarray:
        return np.asarray(self._scheduled[: self.n_checkpoints])

    @property
    def param_names(self) -> list[str]:
        return list(self._params)

    def row(self, step: int) -> int:
        """Index of a saved step in `steps`; GrokscopeError if it was not saved."""
        steps = self.steps
        i = int(np.searchsorted(steps, step))
        if i < len(steps) and steps[i] == step:
            return i
        near = steps[max(i - 1, 0) : i + 1].tolist()
        raise GrokscopeError(f"step {step} was not saved in {self.name} (nearest saved: {near})")

    def params(self, step: int) -> dict[str, torch.Tensor]:
        """All parameters at a saved step: name → float32 tensor."""
        i = self.row(step)
        return {n: torch.from_numpy(np.array(a[i])) for n, a in self._params.items()}

    def model(self, step: int, device: str = "cpu"):
        """A ready model (eval mode) with the parameters of a saved step."""
        from grokscope.models import build_model

        model = build_model(self.config)
        model.load_state_dict(self.params(step))
        return model.to(device).eval()

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
    def dataset(self) -> Dataset:
        arrays = F.load_npz(self.path / F.DATA)
        try:
            return Dataset(p=self.config.task.p, **arrays)
        except TypeError:
            raise GrokscopeError(f"{self.path / F.DATA}: corrupt (unexpected arrays)") from None

    @property
    def grok_step(self) -> int | None:
        """First step with test accuracy >= 0.99, or None."""
        hits = np.flatnonzero(self.metrics["test_acc"] >= GROK_ACC)
        return int(hits[0]) if len(hits) else None

    def summary(self) -> dict:
        """What `grokscope info --json` prints."""
        metrics, steps = self.metrics, self.steps
        final = {c: float(v[-1]) for c, v in metrics.items() if c != "step"} if self.n_metric_steps else {}
        if self.n_metric_steps:
            final["step"] = self.n_metric_steps - 1
        return {
            "name": self.name,
            "complete": self.complete,
            "n_checkpoints": len(steps),
            "first_step": int(steps[0]) if len(steps) else None,
            "last_step": int(steps[-1]) if len(steps) else None,
            "grok_step": self.grok_step,
            "final": final,
            "config": self.config.to_dict(),
        }
