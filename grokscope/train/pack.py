"""Several runs trained in one process as one batched computation (`grokscope sweep --pack N`).

Runs of the same shape (model, task inputs, training-set and batch size, steps and checkpoint schedule; seeds,
splits, corruption, the operation, loss, optimizer and Grokfast settings may differ) are stepped together: their
parameters are stacked and each run's logits of its training rows computed for all of them at once
(torch.func.functional_call under vmap, over `Model.rows_logits`), every other input's without a graph where
the step evaluates; the per-run losses are summed for one backward (each run's gradient is its own loss's: the
sum's derivative is 1 for each), then each run's own optimizer, Grokfast filter and ⊥Grad update it. Each run
keeps its own Trainer, metrics and ordinary run directory; the pack commits all its runs together, so that
they resume together.

vmap cannot enter the fast training step (an in-place blocked forward into reused buffers, a custom backward),
so a packed run equals the same run trained alone to float32 rounding at each step, not to the bit; over
training that rounding compounds as it does on another CPU (Adam and ReLU amplify it where a gradient is near
zero: benchmarks/README.md). A pack pays only where per-call overhead dominates a step: small models on CPU,
and GPUs. Resumed with the same pack, a packed run continues bit for bit on CPU.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
from pathlib import Path

import torch
from torch.func import functional_call, vmap

from grokscope.config import RunConfig, flatten
from grokscope.errors import GrokscopeError
from grokscope.models import MODELS, build_model
from grokscope.store import layout, open_run
from grokscope.store.writer import RunWriter, writing
from grokscope.tasks import make_task
from grokscope.train.loop import (
    COMMIT_EVERY_S,
    Trainer,
    check_commit_every,
    check_device,
    create_run,
    run_steps,
    same_threads,
)

# the keys runs of one pack may differ in: they change labels, splits, initial values or the update rule; whether
# the training sets keep one size and the inputs stay the same is checked on the data (see pack_key)
FREE_KEYS = ("name", "preset", "model.seed", "model.init_std", "model.init_scale", "train.seed", "train.loss")
FREE_KEYS += ("task.op", "task.corrupt_frac", "task.seed")
FREE_SECTIONS = ("optim.", "grokfast.")


def packable(config: RunConfig) -> str | None:
    """Why the run cannot join a pack, or None: dropout draws and ticket masks are per run and the MoE
    transformer's router losses are read from module state, none of which vmap batches."""
    if config.model.dropout > 0:
        return "model.dropout"
    if config.ticket.kind:
        return "a ticket"
    if not MODELS[config.model.kind].packs:
        return f"model.kind '{config.model.kind}'"
    return None


def pack_key(config: RunConfig) -> str:
    """Runs with equal keys can share a pack: their configs agree but for FREE_KEYS and FREE_SECTIONS, their
    training sets have one size and they read the same inputs (the operation decides which pairs are valid, so
    the training-set size; the digits task standardises its pixels by the training split's statistics)."""
    kept = {
        k: v for k, v in flatten(config.to_dict()).items() if k not in FREE_KEYS and not k.startswith(FREE_SECTIONS)
    }
    task = make_task(config.task)
    dataset = task.dataset()
    inputs = build_model(config).task_inputs(task, dataset).contiguous()
    digest = hashlib.sha256(inputs.numpy().tobytes()).hexdigest()
    return repr((sorted(kept.items()), len(dataset.train_rows), inputs.dtype, tuple(inputs.shape), digest))


class RowsLogits(torch.nn.Module):
    """A model's logits of some inputs, (len(rows), n_classes), as a module whose forward functional_call runs."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return self.model.rows_logits(inputs, rows)


class Pack:
    """Trainers of runs that share a pack key and a start step, stepped as one."""

    def __init__(self, trainers: list[Trainer]):
        if len({trainer.start for trainer in trainers}) > 1:
            raise GrokscopeError("runs of a pack must resume from the same step")
        self.trainers = trainers
        self.forward = RowsLogits(copy.deepcopy(trainers[0].model))  # its own parameters are never read
        self.rest_of_training: torch.Tensor | None = None  # others() for full batches, made once

    def logits(self, rows: torch.Tensor) -> torch.Tensor:
        """rows (n_runs, n_rows): each run's logits of its rows, (n_runs, n_rows, n_classes), with a graph to
        every run's parameters where grad is enabled."""
        names, inputs = self.trainers[0].names, self.trainers[0].inputs
        stacked = {f"model.{n}": torch.stack([t.params[n] for t in self.trainers]) for n in names}
        return vmap(lambda params, r: functional_call(self.forward, params, (inputs, r)))(stacked, rows)

    def step(self, step: int) -> None:
        """As Trainer.step for every run: the step's training rows with a graph (the backward differentiates only
        those, as the fast step does) and, where the step evaluates, every other input without one."""
        first = self.trainers[0]
        evaluate = first.config.train.evaluates(step, first.saved)  # the same for every run: same schedule
        batches = [trainer.batch(step) for trainer in self.trainers]
        rows = torch.stack([r for r, _ in batches])
        logits = self.logits(rows)
        if evaluate:
            n_inputs, rest = len(first.inputs), self.others(batches)
            with torch.no_grad():
                rest_logits = self.logits(rest)
        losses = []
        for i, (trainer, (run_rows, labels)) in enumerate(zip(self.trainers, batches)):
            run_logits = logits[i]
            if evaluate:  # every input's, in order
                run_logits = run_logits.new_empty((n_inputs, run_logits.shape[-1]))
                run_logits[rest[i]] = rest_logits[i]
                run_logits[run_rows] = logits[i]
            losses.append(trainer.measure(step, run_logits, run_rows, labels, evaluate))
        if step < first.config.train.steps:
            for trainer in self.trainers:
                trainer.opt.zero_grad(set_to_none=True)
            torch.stack(losses).sum().backward()
            for trainer in self.trainers:
                trainer.update(step)

    def others(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Each run's inputs outside its batch, ascending: (n_runs, n_inputs - n_rows). For full batches, the same
        every step, they are found once (on CUDA, finding them syncs with the host)."""
        full = all(rows is trainer.train_rows for trainer, (rows, _) in zip(self.trainers, batches))
        if full and self.rest_of_training is not None:
            return self.rest_of_training
        n_inputs = len(self.trainers[0].inputs)
        rest = torch.stack([complement(rows, n_inputs) for rows, _ in batches])
        if full:
            self.rest_of_training = rest
        return rest


def complement(rows: torch.Tensor, n: int) -> torch.Tensor:
    """The inputs 0..n-1 not in rows, ascending."""
    keep = torch.ones(n, dtype=torch.bool, device=rows.device)
    keep[rows] = False
    return keep.nonzero().squeeze(-1)


def train_pack(
    configs: list[RunConfig],
    outs: list[str | Path],
    *,
    device: str = "cpu",
    progress: bool = True,
    commit_every_s: float = COMMIT_EVERY_S,
) -> list[Path]:
    """Train the runs `configs` into `outs` as one pack and return their directories. A directory holding an
    incomplete run resumes it (its own config is used); all of them must then be at the same step, as a pack
    that committed together leaves them."""
    device = check_device(device)
    check_commit_every(commit_every_s)
    outs = [Path(out) for out in outs]
    if len({Path(os.path.abspath(out)) for out in outs}) < len(outs):
        raise GrokscopeError("each run of a pack needs a directory of its own; one is given twice")
    runs = [open_run(out) if layout.is_run(out) else None for out in outs]
    configs = [config if run is None else run.config for config, run in zip(configs, runs)]
    for config, run in zip(configs, runs):  # everything checked before anything is written
        if run is not None and run.complete:
            raise GrokscopeError(f"{run.path} is complete: a pack trains incomplete runs only")
        why = packable(config)
        if why is not None:
            raise GrokscopeError(f"{config.name}: {why} cannot be packed; train it alone")
    if len({pack_key(config) for config in configs}) > 1:
        raise GrokscopeError(
            "runs of a pack must differ only in seeds, corruption, the operation, initial scale, loss, optim.* "
            "and grokfast.*, with training sets of one size and the same inputs"
        )
    with contextlib.ExitStack() as held:  # each run's lock (store.writer.writing), for as long as they train
        trainers = []
        for config, run, out in zip(configs, runs, outs):
            if run is None:
                dataset, writer = held.enter_context(create_run(config, out, device, pack=[o.name for o in outs]))
            else:
                held.enter_context(writing(out))
                same_threads(run.meta.get("threads"))
                dataset, writer = run.dataset, RunWriter(out)
            trainers.append(Trainer(config, dataset, writer, device, commit_every_s))
        if len({trainer.start for trainer in trainers}) > 1:  # given so, or moved on by a writer since read
            raise GrokscopeError(
                f"the runs of a pack must be at one step to resume together; they are at "
                f"{', '.join(str(t.start) for t in trainers)}: resume them alone (grokscope train --resume)"
            )
        run_steps(trainers, Pack(trainers).step, progress)
    return outs
