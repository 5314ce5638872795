"""Writing a run: preallocated memmaps filled as training goes, made durable at commit points.

A run directory is built under a temporary name and renamed into place when laid out, so it either
exists whole or not at all. A commit flushes the memmaps, writes the optimizer state for that step,
then atomically replaces progress.json, the only thing that tells a reader (or `--resume`) which rows
to trust. So a `kill -9` at any moment leaves the previous commit intact and readable.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors.torch import save

from grokscope.config import RunConfig
from grokscope.errors import GrokscopeError
from grokscope.store import layout

if TYPE_CHECKING:
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


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Hold the right to write the run at `path` (lay it out, replace it, train it) for the block. Two writers
    of one run would interleave their checkpoints and progress, so a second one, in another process or in this
    one, gets a GrokscopeError before it writes anything.

    The lock is an exclusive flock on `.<name>.lock` beside the run's real location (not in it: a run directory
    is renamed while it is laid out or replaced), which the kernel drops when the process ends, however it
    ends. The file is removed when the block ends, while still locked (a process that ends without unwinding
    leaves it, unlocked, for the next writer); a writer that locked a file removed meanwhile locks the new one
    instead. Where the file system cannot lock (some network or FUSE file systems) a warning says so and the
    block runs unguarded."""
    lock = lock_path(path)
    layout.check_creatable(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = lock_file(lock, path)
    try:
        yield
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                lock.unlink()
            os.close(fd)


def lock_path(path: Path) -> Path:
    """The lock file of the run at `path`: `.<name>.lock` beside its real location, so that every way of
    reaching the run (a relative path, `..`, a link to it) takes the same lock."""
    try:
        where = Path(path).resolve()
    except (OSError, RuntimeError) as e:  # RuntimeError: a loop of links
        raise GrokscopeError(f"{path}: {e}") from None
    if not where.name:
        raise GrokscopeError(f"{path} cannot hold a run: give it its own directory")
    return where.with_name(f".{where.name}.lock")


def lock_file(lock: Path, path: Path) -> int | None:
    """An open descriptor of `lock`, flocked, holding "<pid> <host>"; None where the file system cannot lock
    (warned). GrokscopeError where another writer holds it."""
    for _ in range(100):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:  # a lock file another user left: a read-only descriptor locks as well
            try:
                fd = os.open(lock, os.O_RDONLY)
            except OSError as e:
                return unguarded(lock, path, e)
        except OSError as e:
            return unguarded(lock, path, e)
        held = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino == inode(lock):
                with contextlib.suppress(OSError):  # only for the message another writer gets
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}".encode(), 0)
                held = True
                return fd
        except BlockingIOError:
            raise GrokscopeError(f"{path} is being written by {holder(fd)}: wait for it to end, or stop it") from None
        except OSError as e:
            return unguarded(lock, path, e)
        finally:
            if not held:
                os.close(fd)
        # removed by the writer that held it before this one: lock the file there now
    raise GrokscopeError(f"cannot lock {lock}: it is replaced as fast as it is locked")


def inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def holder(fd: int) -> str:
    """Who holds a lock, from what its holder wrote in it."""
    pid, _, host = os.pread(fd, 300, 0).decode(errors="replace").strip().partition(" ")
    if pid == str(os.getpid()) and host == socket.gethostname():
        return "another writer in this process"
    if pid.isdigit():
        return f"another process (pid {pid} on {host})" if host else f"another process (pid {pid})"
    return "another process"


def unguarded(lock: Path, path: Path, e: OSError) -> None:
    print(
        f"grokscope: warning: cannot lock {lock} ({e.strerror or e}); nothing stops another process writing "
        f"{path} at the same time",
        file=sys.stderr,
    )
    with contextlib.suppress(OSError):
        lock.unlink()


def creating_dir(path: Path) -> Path:
    """Where a run is laid out before it is renamed to `path` (left behind only by a crash)."""
    return path.with_name(f".{path.name}.creating")


class RunWriter:
    def __init__(self, path: Path):
        self.path = path
        meta = layout.read_json(path / layout.META)
        self.steps = layout.open_array(path / layout.STEPS, np.dtype(np.int64))
        self.total_steps = layout.read_json(path / layout.CONFIG)["train"]["steps"]
        self.params = {
            name: layout.open_array(path / layout.PARAMS / f"{name}.npy", np.dtype(np.float32), mode="r+")
            for name in meta["param_shapes"]
        }
        self.metrics = {
            c: layout.open_array(path / layout.METRICS / f"{c}.npy", np.dtype(np.float64), mode="r+")
            for c in layout.metric_columns(path)
        }
        self.progress = layout.read_progress(path, self.steps, self.total_steps)
        # a crash between writing a state file and replacing progress.json can leave strays
        for stray in (path / layout.STATE).iterdir():
            if f"{layout.STATE}/{stray.name}" != self.progress["state"]:
                stray.unlink()

    @classmethod
    def create(
        cls,
        path: Path,
        config: RunConfig,
        dataset: Dataset,
        params: dict[str, torch.Tensor],
        meta: dict,
        steps: np.ndarray,
        mask: dict[str, torch.Tensor] | None = None,
    ) -> RunWriter:
        """Lay out a new run directory at `path` (which must not exist); on failure nothing is left.
        mask: a grokking ticket's 0/1 mask per parameter (see TicketConfig)."""
        n_params = sum(t.numel() for t in params.values())
        # checkpoints, the training state (two copies during a commit) and the final weights, in float32 values
        # per parameter: the state is AdamW's two moments plus a Grokfast filter's (EMA: μ; MA: the window and
        # its float64 sum)
        state = 2 + {"": 0, "ema": 1, "ma": config.grokfast.ma_window + 2}[config.grokfast.kind]
        columns = layout.METRIC_COLUMNS if dataset.has_split else layout.NO_SPLIT_COLUMNS
        need = (len(steps) + 2 * state + 1) * n_params * 4 + len(columns) * (config.train.steps + 1) * 8
        layout.check_creatable(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(path.parent).free
        if need > free:
            raise GrokscopeError(
                f"not enough disk space in {path.parent}: the run needs {need / 1e9:.2f} GB "
                f"({len(steps)} checkpoints), {free / 1e9:.2f} GB free; lower checkpoints.n_uniform or free space"
            )
        tmp = creating_dir(path)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            layout.write_json(tmp / layout.MARKER, layout.new_marker(config.to_dict()))
            layout.write_json(tmp / layout.CONFIG, config.to_dict())
            layout.write_json(tmp / layout.META, meta)
            layout.write_npz(tmp / layout.DATA, dataset.arrays())
            layout.write_npy(tmp / layout.STEPS, steps.astype(np.int64))
            if mask is not None:
                layout.write_bytes(tmp / layout.MASK, save({n: m.contiguous() for n, m in mask.items()}))
            for folder, arrays in (
                (layout.PARAMS, {n: ((len(steps), *t.shape), np.float32) for n, t in params.items()}),
                (layout.METRICS, {c: ((config.train.steps + 1,), np.float64) for c in columns}),
            ):
                (tmp / folder).mkdir()
                for name, (shape, dtype) in arrays.items():
                    file = tmp / folder / f"{name}.npy"
                    array = np.lib.format.open_memmap(file, mode="w+", dtype=dtype, shape=shape)
                    reserve(file, array.offset + array.nbytes)
                    if folder == layout.METRICS:
                        array[:] = np.nan
                    array.flush()
                    del array
            (tmp / layout.STATE).mkdir()
            layout.write_json(tmp / layout.PROGRESS, layout.empty_progress())
            os.rename(tmp, path)
            layout.fsync_dir(path.parent)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if e.errno == errno.ENOSPC:
                raise GrokscopeError(f"no space left on the device while creating {path}") from None
            raise
        return cls(path)

    def save_checkpoint(self, row: int, params: dict[str, torch.Tensor]) -> None:
        """Copy one step's parameters into row `row` of every memmap (durable at the next commit)."""
        for name, tensor in params.items():
            self.params[name][row] = tensor.detach().cpu().numpy()

    def save_metrics(self, first_step: int, values: dict[str, np.ndarray]) -> None:
        """Write metric columns from `first_step`; columns the run has no file for (made before they
        existed) are left out."""
        for column, v in values.items():
            if column in self.metrics:
                self.metrics[column][first_step : first_step + len(v)] = v

    def commit(
        self,
        step: int,
        n_checkpoints: int,
        n_metric_steps: int,
        state: dict[str, torch.Tensor],
        fingerprints: list[int] | None = None,
    ) -> None:
        """Make rows < n_checkpoints and metric steps < n_metric_steps durable, with the training state
        at `step` (the step of checkpoint row n_checkpoints - 1). fingerprints: the rows' checksums where
        the weights are not stored here (an imported series: its directories', layout.checkpoint_fingerprint)."""
        for array in (*self.params.values(), *self.metrics.values()):
            array.flush()
        name = layout.state_name(step)
        layout.write_bytes(self.path / name, save(state))
        old = self.progress["state"]
        checksums = self.progress.get("checksums")  # None: a run made before checksums, left without them
        self.progress = {"n_checkpoints": n_checkpoints, "n_metric_steps": n_metric_steps, "step": step, "state": name}
        if fingerprints is not None:
            self.progress["checksums"] = fingerprints[:n_checkpoints]
        elif checksums is not None:
            checksums = checksums[:n_checkpoints]
            checksums += [layout.row_checksum(self.params, r) for r in range(len(checksums), n_checkpoints)]
            self.progress["checksums"] = checksums
        layout.write_json(self.path / layout.PROGRESS, self.progress)
        if old and old != name:
            (self.path / old).unlink(missing_ok=True)

    def finish(self, final_params: dict[str, torch.Tensor]) -> None:
        """Write the final weights, then the COMPLETE marker, last."""
        layout.write_bytes(
            self.path / layout.FINAL, save({n: t.detach().cpu().contiguous() for n, t in final_params.items()})
        )
        layout.write_bytes(self.path / layout.COMPLETE, b"complete\n")
