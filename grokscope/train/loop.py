"""The training loop: the logits of every input each step (a model's fast form where it has one), metrics every
step, dense crash-safe checkpoints, resume.

Step s means the parameters after s updates. At every step the loop (1) saves a checkpoint if s is
scheduled, (2) evaluates train/test loss and accuracy and the weight norm at those parameters,
(3) updates them (except at the last step). Metrics stay on the device in one (columns, steps + 1)
buffer and reach the host only at checkpoints, so on CUDA nothing syncs between checkpoints.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from grokscope.config import RunConfig
from grokscope.errors import GrokscopeError
from grokscope.models import build_model
from grokscope.store import layout, open_run
from grokscope.store.writer import RunWriter, writing
from grokscope.tasks import Dataset, make_task
from grokscope.train import RUNS_DIR
from grokscope.train.filters import make_filter
from grokscope.train.losses import LOSSES
from grokscope.train.metrics import StepMetrics
from grokscope.train.optim import load_state_tensors, lr_at, make_optimizer, orthogonalize_, state_tensors
from grokscope.train.schedule import checkpoint_steps

COMMIT_EVERY_S = 2.0  # how often training state is made durable (at the next checkpoint after this)


def train(
    config: RunConfig | None = None,
    out: str | Path | None = None,
    *,
    device: str = "cpu",
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    commit_every_s: float = COMMIT_EVERY_S,
    mask: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Train a run into `out` (default checkpoints/<config.name>) and return its directory.

    resume: continue the run in `out` from its last durable checkpoint (its own config is used);
    on CPU the result is bit-for-bit the uninterrupted run. force: replace an existing run in `out`.
    mask: a grokking ticket's 0/1 mask per parameter, for a config with ticket.kind set (see
    grokscope.analysis.tickets): masked weights start and stay at zero.
    """
    device = check_device(device)
    check_commit_every(commit_every_s)
    with contextlib.ExitStack() as held:  # the run's lock (store.writer.writing), for as long as it trains
        if resume:
            if out is None:
                raise GrokscopeError("--resume needs the run directory (--out RUN)")
            out = Path(out)
            if open_run(out).complete:  # checked before anything is made
                return out
            held.enter_context(writing(out))
            run = open_run(out)  # as the last writer left it
            if run.complete:
                return out
            same_threads(run.meta.get("threads"))
            if run.meta.get("pack"):
                print(
                    f"grokscope: warning: {out} was trained in a pack of {len(run.meta['pack'])} runs; resumed "
                    "alone, the rest of it is not bit-exact (`grokscope sweep --pack` resumes the pack)",
                    file=sys.stderr,
                )
            config, dataset, writer = run.config, run.dataset, RunWriter(out)
        else:
            if config is None:
                raise GrokscopeError("train needs a config (or resume=True)")
            if bool(config.ticket.kind) != (mask is not None):
                raise GrokscopeError("a mask goes with a ticket config (ticket.kind set), and only with one")
            out = Path(out) if out is not None else RUNS_DIR / config.name
            dataset, writer = held.enter_context(create_run(config, out, device, force=force, mask=mask))
        Trainer(config, dataset, writer, device, commit_every_s).run(progress)
    return out


def check_commit_every(commit_every_s: float) -> None:
    if not (math.isfinite(commit_every_s) and commit_every_s >= 0):  # 0: commit at every checkpoint
        raise GrokscopeError(f"--commit-every must be a finite number of seconds >= 0; got {commit_every_s}")


@contextlib.contextmanager
def create_run(
    config: RunConfig,
    out: Path,
    device: torch.device,
    *,
    force: bool = False,
    mask: dict[str, torch.Tensor] | None = None,
    pack: list[str] | None = None,
) -> Iterator[tuple[Dataset, RunWriter]]:
    """Lay out a new run at `out` (an existing run moves aside with force, and comes back if this fails) and
    hold its lock (store.writer.writing) for the block: its dataset and writer. What can be checked is checked
    before anything is written. pack: the names of the runs it trains with in one process, recorded in its
    meta."""
    model = build_model(config)  # first: a model that cannot read the task says so before anything else
    dataset = make_task(config.task).dataset()
    n_train = len(dataset.train_rows)
    if config.train.batch_size > n_train:
        raise GrokscopeError(
            f"train.batch_size {config.train.batch_size} is larger than the training set ({n_train} rows): "
            "use 0 for full batch"
        )
    params = dict(model.named_parameters())
    schedule = checkpoint_steps(config.train.steps, config.checkpoints)
    meta = provenance(model, device) | ({"pack": pack} if pack else {})
    with writing(out):
        old = move_aside(out, force)
        try:
            writer = RunWriter.create(out, config, dataset, params, meta, schedule, mask)
        except BaseException:
            if old is not None:
                old.rename(out)  # the replaced run comes back untouched
            raise
        if old is not None:
            shutil.rmtree(old)
        yield dataset, writer


def same_threads(recorded: int | None) -> None:
    """Resume with the run's own CPU thread count: float reductions split across threads round differently,
    so another count changes the numbers. Warns where that count cannot be had (or was not recorded)."""
    if recorded is None:
        print(
            "grokscope: warning: the run does not record its thread count; the resumed part may not be bit-exact",
            file=sys.stderr,
        )
        return
    if recorded != torch.get_num_threads():
        torch.set_num_threads(recorded)
    if torch.get_num_threads() != recorded:
        print(
            f"grokscope: warning: could not use the run's {recorded} threads; the resumed part may not be bit-exact",
            file=sys.stderr,
        )


def check_device(device: str) -> torch.device:
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise GrokscopeError(f"unknown device '{device}' (use cpu or cuda)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GrokscopeError("--device cuda: CUDA is not available on this machine")
    return torch.device(device)


def move_aside(out: Path, force: bool) -> Path | None:
    """Make room for a new run at `out`: an existing run is renamed aside (deleted once the new one is
    laid out) and returned; anything that is not a grokscope run, or a run holding anything grokscope did
    not write, is never touched."""
    layout.check_new_run_path(out)
    if not out.exists():
        return None
    if not out.is_dir():
        raise GrokscopeError(f"{out} exists and is not a directory")
    if not any(out.iterdir()):
        out.rmdir()
        return None
    if not force:
        raise GrokscopeError(f"{out} already exists: use --resume to continue it or --force to replace it")
    if not layout.is_run(out):
        raise GrokscopeError(f"{out} is not a grokscope run; refusing to replace it")
    foreign = layout.foreign_files(out)
    if foreign:
        names = ", ".join(str(f.relative_to(out)) for f in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise GrokscopeError(f"{out} holds files grokscope did not write ({names}); move them out before --force")
    aside = out.with_name(f".{out.name}.replaced")
    shutil.rmtree(aside, ignore_errors=True)
    out.rename(aside)
    return aside


def provenance(model: torch.nn.Module, device: torch.device) -> dict:
    """What config.json alone does not say: versions, revision, machine, parameter shapes."""
    versions = {"python": platform.python_version()}
    for package in ("grokscope", "torch", "numpy", "transformer-lens", "safetensors"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    try:
        revision = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                check=False,
                cwd=Path(__file__).parent,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        revision = None
    return {
        "versions": versions,
        "git_revision": revision,
        "device": str(device),
        "threads": torch.get_num_threads(),  # CPU float results depend on it: resume uses the same count
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "n_params": sum(p.numel() for p in model.parameters()),
        "param_shapes": {n: list(p.shape) for n, p in model.named_parameters()},
    }


class Trainer:
    def __init__(
        self, config: RunConfig, dataset: Dataset, writer: RunWriter, device: torch.device, commit_every_s: float
    ):
        self.config, self.writer, self.device, self.commit_every_s = config, writer, device, commit_every_s
        self.model = build_model(config).to(device)
        self.params = dict(self.model.named_parameters())
        self.names = list(self.params)
        self.opt = make_optimizer(self.params, config.optim)
        self.filter = make_filter(self.params, config.grokfast)
        self.loss_fn = LOSSES[config.train.loss]
        self.inputs = self.model.task_inputs(make_task(config.task), dataset).to(device)  # every input, once
        self.step_metrics = StepMetrics(dataset, self.loss_fn, device)
        self.train_rows = self.step_metrics.train_rows
        self.train_labels = self.step_metrics.train_labels
        self.mask = None
        if config.ticket.kind:
            shapes = {n: list(p.shape) for n, p in self.params.items()}
            self.mask = {n: m.to(device) for n, m in layout.load_mask(writer.path, shapes).items()}
            with torch.no_grad():
                for name, p in self.params.items():
                    p.mul_(self.mask[name])  # the ticket starts from the masked initial weights
        self.schedule = np.asarray(writer.steps)
        self.saved = set(self.schedule.tolist())
        self.not_measured = torch.tensor(torch.nan, dtype=torch.float64, device=device)
        self.last_evaluated = 0
        n_columns = len(layout.METRIC_COLUMNS)
        self.metrics = torch.full((n_columns, config.train.steps + 1), torch.nan, dtype=torch.float64, device=device)
        self.epoch_order = (-1, None)  # (epoch, its minibatch order on the device)
        self.start = self.restore()

    def restore(self) -> int:
        """Load the last durable state from the run; returns the step to continue from (0 if none)."""
        progress = self.writer.progress
        if not progress["n_checkpoints"]:
            return 0
        row = progress["n_checkpoints"] - 1
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(torch.from_numpy(np.array(self.writer.params[name][row])))
        state_file = self.writer.path / progress["state"]
        flat = layout.load_safetensors(state_file, "the training state to resume from")
        try:
            if self.filter is not None:
                self.filter.load_state({k: flat.pop(k) for k in list(flat) if k.startswith("grokfast.")})
            load_state_tensors(self.opt, self.params, flat)
        except (KeyError, ValueError, RuntimeError) as e:
            raise GrokscopeError(f"{state_file}: unreadable or incomplete training state ({e})") from None
        n = progress["n_metric_steps"]
        for i, column in enumerate(layout.METRIC_COLUMNS):
            if column in self.writer.metrics:  # a run made before a column existed has no file for it
                self.metrics[i, :n] = torch.from_numpy(np.array(self.writer.metrics[column][:n]))
        return progress["step"]

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows and labels trained on at `step`: all of them, or a minibatch from a seeded per-epoch order
        (made once per epoch and kept on the device: no host transfer per step)."""
        size, n = self.config.train.batch_size, len(self.train_rows)
        if not size or size >= n:
            return self.train_rows, self.train_labels
        epoch, i = divmod(step, -(-n // size))
        if self.epoch_order[0] != epoch:
            order = np.random.default_rng([self.config.train.seed, epoch]).permutation(n)
            self.epoch_order = (epoch, torch.as_tensor(order, device=self.device))
        index = self.epoch_order[1][i * size : (i + 1) * size]
        return self.train_rows[index], self.train_labels[index]

    def step(self, step: int) -> None:
        """Evaluate at the current parameters, record metrics[:, step], then update them."""
        rows, labels = self.batch(step)
        evaluate = self.config.train.evaluates(step, self.saved)
        # (n_inputs, n_classes): every input, so metrics need no extra pass; between evaluations (full batches
        # only, see TrainConfig) the training inputs alone, in the dataset's order; with dropout, the loss needs
        # its own forward
        with torch.set_grad_enabled(self.config.model.dropout == 0):
            if evaluate:
                logits = self.model.all_logits(self.inputs, grad_rows=rows)
            else:
                logits = self.model.rows_logits(self.inputs, rows)
        loss = self.measure(step, logits, rows, labels, evaluate)
        if step < self.config.train.steps:
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.update(step)

    def measure(
        self, step: int, logits: torch.Tensor, rows: torch.Tensor, labels: torch.Tensor, evaluate: bool
    ) -> torch.Tensor:
        """Record metrics[:, step] from the logits of every input (evaluate) or of the step's training rows
        (`batch(step)`: rows and labels, in order); returns the loss to train on at this step."""
        if self.config.model.dropout > 0:
            losses, loss = None, self.dropout_loss(step, rows, labels)
        else:  # per example, so that a full batch's metrics reuse them and the rows' logits
            rows_logits = logits[rows] if evaluate else logits
            losses = self.loss_fn(rows_logits, labels, per_example=True)
            loss = losses.mean()
        extra = self.model.extra_loss(rows)  # e.g. an MoE router's balancing: trained on, not a metric
        with torch.no_grad():
            full_batch = rows is self.train_rows and losses is not None
            train_losses = losses.detach() if full_batch else None
            if evaluate:
                values = self.step_metrics(logits, train_losses, rows_logits.detach() if full_batch else None)
                self.last_evaluated = step
            else:
                values = self.step_metrics.training(logits, train_losses)
                values["test_loss"] = values["test_acc"] = self.not_measured
            values["weight_norm"] = (
                torch.stack([p.detach().double().square().sum() for p in self.params.values()]).sum().sqrt()
            )
            self.metrics[:, step] = torch.stack([values[c] for c in layout.METRIC_COLUMNS])
        return loss if extra is None else loss + extra

    def update(self, step: int) -> None:
        """The optimizer's step from the gradients in .grad (ticket mask, Grokfast filter, ⊥Grad, lr schedule)."""
        if self.mask is not None:  # masked weights get no update from any optimizer: they stay zero
            for name, p in self.params.items():
                p.grad.mul_(self.mask[name])
        if self.filter is not None:
            self.filter.apply_({name: p.grad for name, p in self.params.items()})
        if self.config.optim.orthograd:
            orthogonalize_(self.params)
        for group in self.opt.param_groups:
            group["lr"] = lr_at(step, self.config.optim)
        self.opt.step()

    def dropout_loss(self, step: int, rows: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss through the plain forward in training mode; its dropout draws come from the random
        generator reseeded by (train.seed, step) inside a fork (the caller's state is restored), so a resumed
        run draws the same ones."""
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.config.train.seed * 1_000_003 + step)
            logits = self.model.output_logits(self.model(self.inputs[rows]))
        return self.loss_fn(logits, labels)

    def commit(self, step: int, n_checkpoints: int, n_metric_steps: int) -> None:
        host = self.metrics[:, self.committed_metrics : n_metric_steps].cpu().numpy()
        self.writer.save_metrics(self.committed_metrics, dict(zip(layout.METRIC_COLUMNS, host)))
        state = state_tensors(self.opt, self.names)
        if self.filter is not None:
            state.update(self.filter.state())
        self.writer.commit(step, n_checkpoints, n_metric_steps, state)
        self.committed_metrics, self.last_commit = n_metric_steps, time.monotonic()

    def tested(self, step: int) -> dict[str, float]:
        """The metrics of `step`, its test columns from the last step that measured them (train.eval_every)."""
        values = dict(zip(layout.METRIC_COLUMNS, self.metrics[:, step].tolist()))
        if step != self.last_evaluated and not math.isfinite(values["test_loss"]):
            last = dict(zip(layout.METRIC_COLUMNS, self.metrics[:, self.last_evaluated].tolist()))
            values.update(test_loss=last["test_loss"], test_acc=last["test_acc"])
        return values

    def run(self, show_progress: bool) -> None:
        run_steps([self], self.step, show_progress)


def run_steps(trainers: list[Trainer], step_fn, show_progress: bool) -> None:
    """Train runs that share a checkpoint schedule and a start step, `step_fn(step)` stepping them all: at each
    scheduled step save every run's checkpoint, and every commit_every_s commit them all (so that they resume
    together), then the step."""
    first = trainers[0]
    steps, start, schedule = first.config.train.steps, first.start, first.schedule
    next_row = int(np.searchsorted(schedule, start))  # the next checkpoint's row
    for trainer in trainers:
        trainer.committed_metrics, trainer.last_commit = start, time.monotonic()
    with tqdm(total=steps, initial=start, disable=not show_progress, unit="step", dynamic_ncols=True) as bar:
        for step in range(start, steps + 1):
            if next_row < len(schedule) and schedule[next_row] == step:
                for trainer in trainers:
                    trainer.writer.save_checkpoint(next_row, trainer.params)
                next_row += 1
                if step > start and time.monotonic() - first.last_commit >= first.commit_every_s:
                    for trainer in trainers:
                        trainer.commit(step, n_checkpoints=next_row, n_metric_steps=step)
                if step > start:
                    show(bar, trainers, step, step - 1)
            step_fn(step)
        for trainer in trainers:
            trainer.commit(steps, n_checkpoints=next_row, n_metric_steps=steps + 1)
        show(bar, trainers, steps, steps)
    for trainer in trainers:
        trainer.writer.finish(trainer.params)


def show(bar: tqdm, trainers: list[Trainer], n_updates: int, step: int) -> None:
    """Progress bar at `n_updates` with the metrics of `step` (a host sync: at checkpoints only): one run's
    losses and accuracies, or a pack's range of test accuracies."""
    if bar.disable:
        return
    tested = [trainer.tested(step) for trainer in trainers]
    if len(trainers) == 1:
        values = tested[0]
        text = f"train {values['train_loss']:.3g}/{values['train_acc']:.1%} test {values['test_loss']:.3g}/{values['test_acc']:.1%}"
    else:
        accuracies = [values["test_acc"] for values in tested]
        text = f"{len(trainers)} runs, test {min(accuracies):.1%}–{max(accuracies):.1%}"
    bar.set_postfix_str(text, refresh=False)
    bar.update(n_updates - bar.n)
