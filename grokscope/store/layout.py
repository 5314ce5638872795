"""The run directory's file names and the crash-safe primitives both the writer and the reader use.

Layout of checkpoints/<run>/:
    grokscope-run.json        written first, and only by grokscope: the run's identity (a random id)
    config.json               the RunConfig (dotted keys as `--set` takes them)
    meta.json                 provenance: package versions, git revision, device, parameter shapes; an imported
                              series: "checkpoint_dirs", where its weights stay (one directory per step); an imported
                              run: "metrics_at" "checkpoints" (its metrics are measured there only)
    data.npz                  the split, labels and corruption mask (grokscope.tasks.Dataset), by input number;
                              no training or test inputs: a run imported without its split
    steps.npy                 int64 (n_scheduled,) the steps the schedule will save, in order
    params/<name>.npy         float32 (n_scheduled, *shape) one memmap per parameter, filled as training goes
    metrics/<column>.npy      float64 (steps + 1,) one value per training step (METRIC_COLUMNS; a run
                              imported without its split: NO_SPLIT_COLUMNS)
    source_metrics.npz        an imported run only: the curves its source recorded (train_loss, test_loss),
                              float64 (steps + 1,) by step, NaN where it recorded none
    mask.safetensors          grokking tickets only: 0/1 per weight; masked weights stay zero
    state/step_<s>.safetensors  optimizer state at the last durable step s (for --resume)
    progress.json             what is durable: rows of params/ and metrics/ a reader may trust, and a
                              CRC-32 per durable checkpoint row (runs made before checksums have none)
    final.safetensors         the final weights, for interchange
    COMPLETE                  written last
    analysis/<name>@v<n>.npz  cached analyses (grokscope.analysis.cache)
    pruned/<what>/            pruned models (grokscope prune), each an output directory (see claim_outputs)
Beside it, `.<run>.lock` while a process writes the run (store.writer.writing; left, unlocked, by one killed).
Nothing is unpickled: JSON, `.npy`/`.npz` with allow_pickle=False, and safetensors only.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from grokscope.errors import GrokscopeError

if TYPE_CHECKING:
    import torch

CONFIG, META, DATA, STEPS, PROGRESS = "config.json", "meta.json", "data.npz", "steps.npy", "progress.json"
PARAMS, METRICS, STATE = "params", "metrics", "state"
FINAL, COMPLETE, MASK = "final.safetensors", "COMPLETE", "mask.safetensors"
MARKER, ANALYSIS, PRUNED = "grokscope-run.json", "analysis", "pruned"
SOURCE_METRICS = "source_metrics.npz"  # an imported run: the curves its source recorded
OUTPUTS = ".grokscope-outputs.json"  # in a directory grokscope writes outputs into: the files it wrote there
# the four-way split of Doshi et al. (NaN for the corrupted ones in a run without corruption): accuracy on
# corrupted training examples against their corrupted (noisy) and their true labels, on clean training examples
SPLIT_COLUMNS = ("corrupted_noisy_acc", "corrupted_true_acc", "clean_train_acc")
# numerical stability (Prieto et al. 2025), over the training examples: the share in Softmax Collapse (float32
# softmax denominator exactly 1), the share with a loss of exactly zero (the run's own loss, in its own
# precision), the mean logit norm
STABILITY_COLUMNS = ("sc_fraction", "zero_loss_fraction", "logit_norm")
METRIC_COLUMNS = ("train_loss", "test_loss", "train_acc", "test_acc", "weight_norm", *SPLIT_COLUMNS, *STABILITY_COLUMNS)
LATER_COLUMNS = (*SPLIT_COLUMNS, *STABILITY_COLUMNS)  # absent from runs made before they existed
# a run imported without its split: loss and accuracy over every input of the task (true labels), and the
# weight norm; nothing that needs to know which inputs were trained on
NO_SPLIT_COLUMNS = ("all_loss", "all_acc", "weight_norm")
# what the loss and accuracy columns are measured on, by their prefix, as figures and summaries name it
EVALUATED = {"train": "train", "test": "test", "all": "all inputs"}


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write) -> None:
    """Write through `write(tmp_path)`, fsync, then rename over `path`: readers see old or new, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def write_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)

    atomic_write(path, write)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise GrokscopeError(f"{path}: missing") from None
    except PermissionError:
        raise GrokscopeError(f"{path}: permission denied") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GrokscopeError(f"{path}: unreadable or corrupt ({e})") from None
    if not isinstance(data, dict):
        raise GrokscopeError(f"{path}: corrupt (expected a JSON object)")
    return data


def open_array(path: Path, dtype: np.dtype, shape: tuple[int, ...] | None = None, mode: str = "r") -> np.ndarray:
    """Memmap a `.npy` file, checking dtype and shape; a truncated or corrupt file raises naming it."""
    try:
        array = np.load(path, mmap_mode=mode, allow_pickle=False)
    except FileNotFoundError:
        raise GrokscopeError(f"{path}: missing") from None
    except PermissionError:
        raise GrokscopeError(f"{path}: permission denied") from None
    except (OSError, ValueError, EOFError) as e:
        raise GrokscopeError(f"{path}: {unreadable(e)}") from None
    if array.dtype != dtype or (shape is not None and array.shape != tuple(shape)):
        raise GrokscopeError(
            f"{path}: corrupt (holds {array.dtype} {array.shape}, expected {np.dtype(dtype)} {tuple(shape or ())})"
        )
    return array


def load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise GrokscopeError(f"{path}: missing") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise GrokscopeError(f"{path}: {unreadable(e)}") from None


def unreadable(e: Exception) -> str:
    """Why numpy could not load a file, in grokscope's words (numpy's own pickle text names a flag we never set)."""
    if "allow_pickle" in str(e) or "Python objects" in str(e):
        return "holds Python objects, which grokscope never loads (unpickling can run arbitrary code)"
    return f"truncated or corrupt ({e})"


EFFECTIVE_IDS = os.access in os.supports_effective_ids  # ask as the user the process acts as (Linux, macOS)


def check_creatable(path: Path) -> None:
    """A one-line error where `path` cannot be made: an ancestor that is a file, or a location not writable."""
    for ancestor in [path, *path.parents]:
        if ancestor.exists():
            if not ancestor.is_dir():
                what = "is a file" if ancestor != path else "exists and is not a directory"
                raise GrokscopeError(f"{ancestor} {what}: cannot create {path}")
            if ancestor != path and not os.access(ancestor, os.W_OK | os.X_OK, effective_ids=EFFECTIVE_IDS):
                raise GrokscopeError(f"{ancestor} is not writable: cannot create {path}")
            return


def check_new_run_path(out: Path) -> None:
    """A one-line error where a new run cannot be laid out at `out` (it is built beside `out` and renamed into
    place): the current directory or one holding it (replacing it would pull the directory the process works in
    from under it), or a link (replacing a run through it would move the link aside and put a directory in its
    place)."""
    if out.is_symlink():
        raise GrokscopeError(
            f"{out} is a link: give the run's own directory ({os.path.realpath(out)}) or another --out"
        )
    if out.exists() and Path.cwd().resolve().is_relative_to(out.resolve()):
        what = "is" if out.resolve() == Path.cwd().resolve() else "holds"
        raise GrokscopeError(f"--out {out} {what} the current directory: give the run its own, e.g. checkpoints/NAME")


def metric_columns(run: Path) -> tuple[str, ...]:
    """The metric columns a run has: NO_SPLIT_COLUMNS where it has no split, else all of METRIC_COLUMNS, less
    the later ones of runs made before them."""
    if any((run / METRICS / f"{c}.npy").is_file() for c in NO_SPLIT_COLUMNS[:2]):
        return NO_SPLIT_COLUMNS
    return tuple(c for c in METRIC_COLUMNS if c not in LATER_COLUMNS or (run / METRICS / f"{c}.npy").is_file())


def load_safetensors(path: Path, why: str = "") -> dict[str, torch.Tensor]:
    """A safetensors file as name → tensor; a missing, truncated or corrupt file raises GrokscopeError naming it
    (why: what needs it, said when it is missing)."""
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except FileNotFoundError:
        raise GrokscopeError(f"{path}: missing{f' ({why})' if why else ''}") from None
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for corrupt files
        raise GrokscopeError(f"{path}: unreadable or corrupt ({e})") from None


def safetensors_intact(path: Path) -> bool:
    """Whether `path` is a whole safetensors file: its header parses and its tensors' data ends where the
    file does (read from the header alone: cheap enough to ask on every open)."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n)) if 0 < n <= 100_000_000 else None
            size = os.fstat(f.fileno()).st_size
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    if not isinstance(header, dict):
        return False
    try:
        ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"]
    except (TypeError, KeyError, IndexError):
        return False
    if not all(type(end) is int for end in ends):
        return False
    return size == 8 + n + max(ends, default=0)


def load_mask(run: Path, shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """A ticket's mask.safetensors, checked against the parameter shapes."""
    path = run / MASK
    mask = load_safetensors(path, "the run is a grokking ticket")
    if {n: list(t.shape) for n, t in mask.items()} != shapes:
        raise GrokscopeError(f"{path}: corrupt (its tensors do not match the run's parameters)")
    return mask


def empty_progress() -> dict:
    return {"n_checkpoints": 0, "n_metric_steps": 0, "step": None, "state": None, "checksums": []}


def new_marker(config: dict) -> dict:
    """A new run's identity, and the digest of the config it is made with (an edit of config.json shows)."""
    return {"grokscope_run": uuid.uuid4().hex, "config_digest": config_digest(config)}


def config_digest(config: dict) -> str:
    """A config's digest (a config.json as parsed, or RunConfig.to_dict(): both give the same)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:32]


def row_checksum(params: dict[str, np.ndarray], row: int) -> int:
    """CRC-32 of checkpoint row `row`'s bytes, over the parameters in sorted name order."""
    crc = 0
    for name in sorted(params):
        crc = zlib.crc32(memoryview(np.ascontiguousarray(params[name][row])).cast("B"), crc)
    return crc


def checkpoint_fingerprint(directory: str | Path) -> int:
    """A checkpoint directory of an imported series as a CRC-32: of its config.json's bytes and of the name,
    size and modification time of every other file in it (its weights are not read: hashing the 14 GB of a
    7B model at every check would cost more than the import). GrokscopeError where it is gone."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise GrokscopeError(f"{directory}: checkpoint directory gone, moved or without its config.json")
    crc = zlib.crc32((directory / "config.json").read_bytes())
    for file in sorted(directory.iterdir()):
        if file.is_file() and file.name != "config.json":
            stat = file.stat()
            crc = zlib.crc32(f"{file.name} {stat.st_size} {stat.st_mtime_ns}".encode(), crc)
    return crc


def state_name(step: int) -> str:
    return f"{STATE}/step_{step}.safetensors"


def read_progress(run: Path, schedule: np.ndarray, total_steps: int) -> dict:
    """progress.json, checked against the schedule: what a reader may trust and where to resume.

    n_checkpoints rows of params/ are durable, the last at `step`; metrics for steps < n_metric_steps
    (= step, or total_steps + 1 once the last step is evaluated); `state` holds the optimizer at `step`.
    """
    path = run / PROGRESS
    progress = read_json(path)
    try:
        n, n_metrics, step, state = (progress[k] for k in ("n_checkpoints", "n_metric_steps", "step", "state"))
        checksums = progress.get("checksums", [])  # absent in runs made before checksums
        if n == 0:
            ok = n_metrics == 0 and step is None and state is None
        else:
            ok = (
                0 < n <= len(schedule)
                and step == int(schedule[n - 1])
                and n_metrics in (step, total_steps + 1 if step == total_steps else step)
                and state == state_name(step)
            )
        ok = ok and (
            "checksums" not in progress
            or (isinstance(checksums, list) and len(checksums) == n and all(type(c) is int for c in checksums))
        )
    except (KeyError, TypeError, IndexError):
        ok = False
    if not ok:
        raise GrokscopeError(f"{path}: corrupt (inconsistent with {STEPS} or the config)")
    return progress


def is_run(path: Path) -> bool:
    """A directory grokscope made: config.json, meta.json and steps.npy all present."""
    return all((path / name).is_file() for name in (CONFIG, META, STEPS))


def read_marker(path: Path) -> dict[str, str]:
    """The run's marker: its identity ("grokscope_run") and config digest ("config_digest", in runs made
    since it was recorded); {} for runs made before markers, and only string values are kept."""
    try:
        marker = json.loads((path / MARKER).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return {k: v for k, v in marker.items() if isinstance(v, str) and v} if isinstance(marker, dict) else {}


# what grokscope writes in a run directory: top-level names, and the names it writes in each folder
OWN_FILES = {CONFIG, META, DATA, STEPS, PROGRESS, FINAL, COMPLETE, MASK, MARKER}
OWN_FOLDERS = {PARAMS: "*.npy", METRICS: "*.npy", STATE: "step_*.safetensors", ANALYSIS: "*@v*.npz"}


def foreign_files(run: Path) -> list[Path]:
    """What in a run directory grokscope did not write (what replacing the run would destroy)."""
    foreign = []
    for entry in run.iterdir():
        if (entry.name in OWN_FILES or is_temporary(entry)) and entry.is_file() and not entry.is_symlink():
            continue
        if entry.name in OWN_FOLDERS and entry.is_dir() and not entry.is_symlink():
            own = OWN_FOLDERS[entry.name]
            foreign += [f for f in entry.iterdir() if not ((f.match(own) or is_temporary(f)) and f.is_file())]
        elif entry.name == PRUNED and entry.is_dir() and not entry.is_symlink():
            for out in entry.iterdir():
                foreign += not_written_by_us(out) if out.is_dir() and not out.is_symlink() else [out]
        else:
            foreign.append(entry)
    return foreign


def is_temporary(path: Path) -> bool:
    """A file atomic_write was writing when the process was killed."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def not_written_by_us(folder: Path) -> list[Path]:
    """The entries of an output directory that its OUTPUTS list does not name."""
    written = set(read_outputs(folder))
    return [f for f in folder.iterdir() if f.name != OUTPUTS and (f.name not in written or not f.is_file())]


def read_outputs(folder: Path) -> list[str]:
    try:
        names = json.loads((folder / OUTPUTS).read_text()).get("files", [])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return []
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def claim_outputs(folder: Path, names: list[str]) -> None:
    """Make `folder` (created if missing) ready for grokscope to write `names` into it: refuses, before
    anything is written, a file there that grokscope did not write itself (one not on its OUTPUTS list),
    a run directory, and a path that is not a directory; then records the names."""
    check_creatable(folder)
    if is_run(folder):
        raise GrokscopeError(f"{folder} is a training run: write into another directory")
    written = read_outputs(folder) if folder.is_dir() else []
    for name in names:
        if (folder / name).exists() and name not in written:
            raise GrokscopeError(f"{folder / name} exists and grokscope did not write it: choose another --out")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / OUTPUTS, {"files": sorted(set(written) | set(names))})
    except PermissionError:
        raise GrokscopeError(f"{folder}: permission denied (not writable)") from None
