"""Writing a run: preallocated memmaps filled as training goes, made durable at commit points.

A commit flushes the memmaps, writes the optimizer state for that step, then atomically replaces
progress.json, which is the only thing that tells a reader (or `--resume`) which rows to trust.
So a `kill -9` at any moment leaves the previous commit intact and readable.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from grokscope.config import RunConfig
from grokscope.errors import GrokscopeError
from grokscope.store import files as F
from grokscope.tasks import Dataset


def reserve(path: Path, n_bytes: int) -> None:
    """Allocate a file's blocks now, so that a memmap write can never hit a full disk later (SIGBUS)."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, n_bytes)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise
        # file systems without fallocate: the free-space check in RunWriter.create stands in for it
    finally:
        os.close(fd)


class RunWriter:
    def __init__(self, path: Path):
        self.path = path
        self.steps = F.open_array(path / F.STEPS, np.dtype(np.int64))
        self.params = {
            name_of(f): F.open_array(f, np.dtype(np.float32), mode="r+")
            for f in sorted((path / F.PARAMS).glob("*.npy"))
        }
        self.metrics = {
            c: F.open_array(path / F.METRICS / f"{c}.npy", np.dtype(np.float64), mode="r+") for c in F.METRIC_COLUMNS
        }
        self.progress = F.read_json(path / F.PROGRESS)

    @classmethod
    def create(
        cls,
        path: Path,
        config: RunConfig,
        dataset: Dataset,
        params: dict[str, torch.Tensor],
        meta: dict,
        steps: np.ndarray,
    ) -> RunWriter:
        """Lay out a new run directory; on failure (e.g. a full disk) remove what was made and raise."""
        n_params = sum(t.numel() for t in params.values())
        need = len(steps) * n_params * 4 + len(F.METRIC_COLUMNS) * (config.train.steps + 1) * 8
        path.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(path.parent).free
        if need > free:
            raise GrokscopeError(
                f"not enough disk space in {path.parent}: the run needs {need / 1e9:.2f} GB "
                f"({len(steps)} checkpoints), {free / 1e9:.2f} GB free; lower checkpoints.n_uniform or free space"
            )
        path.mkdir()
        try:
            F.write_json(path / F.CONFIG, config.to_dict())
            F.write_json(path / F.META, meta)
            F.write_npz(path / F.DATA, dataset.arrays())
            F.write_npy(path / F.STEPS, steps.astype(np.int64))
            for folder, arrays in (
                (F.PARAMS, {n: ((len(steps), *t.shape), np.float32) for n, t in params.items()}),
                (F.METRICS, {c: ((config.train.steps + 1,), np.float64) for c in F.METRIC_COLUMNS}),
            ):
                (path / folder).mkdir()
                for name, (shape, dtype) in arrays.items():
                    file = path / folder / f"{name}.npy"
                    array = np.lib.format.open_memmap(file, mode="w+", dtype=dtype, shape=shape)
                    reserve(file, array.offset + array.nbytes)
                    if folder == F.METRICS:
                        array[:] = np.nan
                    array.flush()
                    del array
            (path / F.STATE).mkdir()
            F.write_json(path / F.PROGRESS, {"n_checkpoints": 0, "n_metric_steps": 0, "step": None, "state": None})
        except OSError as e:
            shutil.rmtree(path, ignore_errors=True)
            if e.errno == errno.ENOSPC:
                raise GrokscopeError(f"no space left on the device while creating {path}") from None
            raise
        return cls(path)

    def save_checkpoint(self, row: int, params: dict[str, torch.Tensor]) -> None:
        """Copy one step's parameters into row `row` of every memmap (durable at the next commit)."""
        for name, tensor in params.items():
            self.params[name][row] = tensor.detach().cpu().numpy()

    def save_metrics(self, first_step: int, values: dict[str, np.ndarray]) -> None:
        for column, v in values.items():
            self.metrics[column][first_step : first_step + len(v)] = v

    def commit(self, step: int, n_checkpoints: int, n_metric_steps: int, state: dict[str, torch.Tensor]) -> None:
        """Make rows < n_checkpoints and metric steps < n_metric_steps durable, with the training state
        at `step` (the step of checkpoint row n_checkpoints - 1)."""
        for array in (*self.params.values(), *self.metrics.values()):
            array.flush()
        state_name = f"{F.STATE}/step_{step}.safetensors"
        F.atomic_write(self.path / state_name, lambda tmp: save_file(state, str(tmp)))
        old = self.progress.get("state")
        self.progress = {
            "n_checkpoints": n_checkpoints,
            "n_metric_steps": n_metric_steps,
            "step": step,
            "state": state_name,
        }
        F.write_json(self.path / F.PROGRESS, self.progress)
        if old and old != state_name:
            (self.path / old).unlink(missing_ok=True)

    def finish(self, final_params: dict[str, torch.Tensor]) -> None:
        """Write the final weights, then the COMPLETE marker, last."""
        tensors = {n: t.detach().cpu().contiguous() for n, t in final_params.items()}
        F.atomic_write(self.path / F.FINAL, lambda tmp: save_file(tensors, str(tmp)))
        F.atomic_write(self.path / F.COMPLETE, lambda tmp: tmp.write_text("complete\n"))


def name_of(file: Path) -> str:
    return file.name[: -len(".npy")]
