"""What an analysis is: its name, version, what it reads, what it applies to and how it is computed.

Four kinds, by what the scheduler feeds them (it runs each kind's shared pass once for all that need it):
- `weights`: compute(params, config, group) on blocks of checkpoints stacked from the parameter trajectories,
  name → (B, *shape) → arrays (B, ...);
- `forward`: prepare(run, group, cached) → state once, then compute(state, forward) per checkpoint with the
  whole-grid activations in group coordinates (`Forward`), shared by every forward analysis;
- `checkpoints`: compute(run, group, start, progress[, options]) → one list per array of the rows for
  checkpoints start..n-1, calling progress(done, total) as it goes (for the progress bar);
- `run`: compute(run, group, cached) → a whole-run result, recomputed when `current(run, result)` is False.
Results are dicts of numpy arrays, cached in the run (see cache.py); per-checkpoint ones hold "steps".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from grokscope.config import RunConfig
from grokscope.models import MODELS
from grokscope.models.common import Readout
from grokscope.store import Run
from grokscope.tasks import make_task

# checkpoints per block read from the trajectories (weights and checkpoints analyses): small enough that a
# block's temporaries (a few MB at p = 113, d_mlp = 512) are reused from the heap; blocks of 128 made ~30 MB
# temporaries that glibc maps afresh for every block, and the page faults cost more than the batching saved
BLOCK = 16


def blocks(run: Run, start: int, names: list[str]) -> Iterator[tuple[int, int, dict[str, torch.Tensor]]]:
    """The checkpoint rows start..n-1 in blocks: (i, j, name → the rows i..j-1 of each trajectory `names`,
    padded to BLOCK rows (BLOCK, *shape)). Blocks start at multiples of BLOCK and always hold BLOCK rows (the
    last row repeated past the end): a batched reduction rounds by the batch's shape and a row's place in it,
    so this way a row gets the same bits whether analysed at once or topped up as the run grows. Rows
    before `start` in the first block are computed too: the caller keeps rows from `start` on."""
    n = run.n_checkpoints
    for i in range(start - start % BLOCK, n, BLOCK):
        j = min(i + BLOCK, n)
        rows = np.minimum(np.arange(i, i + BLOCK), n - 1)
        yield i, j, {name: torch.from_numpy(run.trajectory(name)[rows]) for name in names}


@dataclass(frozen=True)
class Analysis:
    name: str
    version: int
    description: str
    kind: Literal["weights", "forward", "checkpoints", "run"]
    compute: Callable
    applies: Callable[[Run], str | None]  # None where it applies to the run, else why not (one line)
    rows: tuple[str, ...] = ()  # arrays with one row per saved step (besides "steps"); none: a whole-run result
    meta: dict[str, int] = field(default_factory=dict)  # other arrays → their number of dimensions
    requires: tuple[str, ...] = ()  # analyses whose cached results it reads
    # run: analyses it reads where cached (requires included) and the settings it depends on; both are stored
    # with the result ("inputs"), and a new version of one of those analyses or other settings recompute it
    versions_of: tuple[str, ...] = ()
    settings: str = ""
    params: Callable[[RunConfig], list[str]] | None = None  # weights: the parameters it reads (None: all)
    prepare: Callable | None = None  # forward: (run, group, cached) → state
    current: Callable[[Run, dict], bool] | None = None  # run: whether a cached result still holds
    # forward: other results it is computed from (cached → arrays), stored with it; where they change, the
    # result is recomputed from the first checkpoint
    inputs: Callable[[dict], dict[str, np.ndarray]] | None = None
    # where content can be out of range for the run (a neuron count, a frequency above n/2): (run, result) →
    # why it cannot be this run's (one line) or None; a cached file it rejects is recomputed
    valid: Callable[[Run, dict], str | None] | None = None
    # checkpoints: the frozen dataclass of options it takes (compute gets `options=`); a result keeps the
    # options it was computed with, a top-up uses them, other options asked for recompute it
    options: type | None = None
    # computed only where asked for by name (it is expensive); once cached, kept current like the others
    on_request: bool = False


@dataclass
class Forward:
    """One checkpoint's whole-grid forward: acts (n, n, d_mlp) indexed [x, y, neuron] in group coordinates,
    the logits as a Readout over the n² inputs, and a reusable (n, n·d_mlp) workspace buffer."""

    acts: torch.Tensor
    readout: Readout
    workspace: torch.Tensor


def always(run: Run) -> str | None:
    return None


def trained_here(run: Run) -> str | None:
    """Analyses of the stored parameters, the inputs' space or per-step accuracies: not for a Hugging Face
    series, whose weights stay in its checkpoint directories and whose metrics are a language model's at its
    checkpoints."""
    if MODELS[run.config.model.kind].imported:
        return "needs a run grokscope trained; model.kind 'hf' (an imported Hugging Face series) has its routing and losses only"
    return None


def fourier_reason(config: RunConfig) -> str | None:
    """The Fourier analyses need a task with a group operation and a model with token-indexed maps and a
    whole-grid forward (the transformer, the one-hot MLP): why not (one line), or None."""
    task, model = make_task(config.task), MODELS[config.model.kind]
    if task.group() is None:
        return f"needs a group operation (Fourier basis); {task.named()} has none"
    if not model.token_indexed:
        return f"needs token-indexed weights (transformer or one-hot MLP); model.kind '{config.model.kind}' has none"
    return None


def needs_fourier(run: Run) -> str | None:
    return fourier_reason(run.config)


def needs_split(run: Run) -> str | None:
    """Analyses of the training inputs against the held-out ones."""
    if not run.has_split:
        return "needs the train/test split; the run was imported without one (grokscope import --train-rows FILE)"
    return None


def first_reason(*checks: Callable[[Run], str | None]) -> Callable[[Run], str | None]:
    """An `applies` of several: the first check's reason, or None where all pass."""

    def applies(run: Run) -> str | None:
        return next((r for r in (check(run) for check in checks) if r is not None), None)

    return applies


def neurons_of_width(*keys: str) -> Callable[[Run, dict], str | None]:
    """A `valid` check: the arrays `keys` hold one value per neuron of the first neuron layer, (n, d_mlp)."""

    def valid(run: Run, result: dict) -> str | None:
        layer = MODELS[run.config.model.kind].neuron_layers(run.config.model)[0]
        width = run.meta["param_shapes"][layer.W_in][-1]
        bad = [k for k in keys if k in result and (result[k].ndim != 2 or result[k].shape[1] != width)]
        return f"{bad[0]} does not hold the run's {width} neurons" if bad else None

    return valid


def frequencies_in_range(*keys: str) -> Callable[[Run, dict], str | None]:
    """A `valid` check: the integer arrays `keys` hold frequencies 1..n//2 of the run's group."""

    def valid(run: Run, result: dict) -> str | None:
        top = run.task.group().n // 2
        bad = [k for k in keys if k in result and ((result[k] < 1) | (result[k] > top)).any()]
        return f"{bad[0]} holds frequencies outside 1..{top}" if bad else None

    return valid


def checkpoint_loader(run: Run, model: torch.nn.Module) -> Callable[[int], None]:
    """A function that loads checkpoint row r of the run into `model`, copying each parameter straight into
    the model's own storage (numpy views of it): no new tensors per checkpoint."""
    targets = {n: p.detach().numpy() for n, p in model.named_parameters()}
    trajectories = {n: run.trajectory(n) for n in targets}

    def load_row(r: int) -> None:
        for name, target in targets.items():
            np.copyto(target, trajectories[name][r])

    return load_row
