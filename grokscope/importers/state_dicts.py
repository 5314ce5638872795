"""`grokscope import`: a series of transformer state dicts with HookedTransformer's names (TransformerLens'
`HookedTransformer.state_dict()`, or grokscope's own) as a run that every command opens.

Each checkpoint is one file: safetensors, or a torch file read with `weights_only=True` (a file that would
need arbitrary unpickling is refused, never loaded) holding the state dict itself or under "state_dict" /
"model". TransformerLens' attention buffers (`IGNORE`, `mask`) are dropped; a model with LayerNorm is
refused (grokscope's transformer has none). The model's sizes come from the tensors' shapes (p = W_U's
columns, `=` the token p, 3 positions); the task's operation from `--set task.op=...` (default add). The
split comes from a file of training inputs (grid rows a·p + b): at every checkpoint grokscope recomputes its
own metrics (loss and accuracy on train and test, as training records them), at the checkpoints' steps.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from grokscope.config import RunConfig
from grokscope.errors import GrokscopeError
from grokscope.models import build_model
from grokscope.store import layout, open_run
from grokscope.store.writer import RunWriter
from grokscope.tasks import Dataset, make_task
from grokscope.train.losses import LOSSES
from grokscope.train.metrics import StepMetrics

BUFFERS = ("IGNORE", "mask")  # TransformerLens attention buffers, not parameters
SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """One checkpoint file as name → float32 tensor, buffers dropped (see the module docstring)."""
    if path.suffix == ".safetensors":
        state = layout.load_safetensors(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError) as e:
            raise GrokscopeError(f"{path}: unreadable ({str(e).splitlines()[0]})") from None
        except Exception as e:  # noqa: BLE001 - torch raises UnpicklingError and others for what it will not load
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise GrokscopeError(
                f"{path}: holds Python objects that only arbitrary unpickling would load ({why[:120]}); grokscope "
                "reads torch files with weights_only=True: save model.state_dict() alone, or as safetensors"
            ) from None
        if isinstance(state, dict) and not any(isinstance(v, torch.Tensor) for v in state.values()):
            state = state.get("state_dict", state.get("model", state))
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise GrokscopeError(f"{path}: not a state dict (a mapping of names to tensors)")
    if any(".ln" in name or name.startswith("ln_final") for name in state):
        raise GrokscopeError(f"{path}: the model has LayerNorm; grokscope's transformer has none")
    return {n: t.float() for n, t in state.items() if n.rsplit(".", 1)[-1] not in BUFFERS}


def sizes_of(state: dict[str, torch.Tensor], path: Path) -> dict[str, object]:
    """The config keys a state dict's shapes give: task.p, the model's sizes, model.bias."""
    try:
        d_vocab, d_model = state["embed.W_E"].shape
        n_heads, _, d_head = state["blocks.0.attn.W_Q"].shape
        d_mlp = state["blocks.0.mlp.W_in"].shape[1]
        p = state["unembed.W_U"].shape[1]
        n_ctx = state["pos_embed.W_pos"].shape[0]
    except (KeyError, ValueError):
        raise GrokscopeError(
            f"{path}: not a transformer state dict with HookedTransformer's names (embed.W_E, pos_embed.W_pos, "
            "blocks.0.attn.W_Q, blocks.0.mlp.W_in, unembed.W_U)"
        ) from None
    if d_vocab != p + 1 or n_ctx != 3:
        raise GrokscopeError(
            f"{path}: not a modular-arithmetic transformer reading `a b =` (vocabulary {d_vocab}, {p} outputs, "
            f"{n_ctx} positions; expected p + 1, p and 3)"
        )
    n_layers = len({name.split(".")[1] for name in state if name.startswith("blocks.")})
    return {
        "task.p": p,
        "model.kind": "transformer",
        "model.n_layers": n_layers,
        "model.d_model": d_model,
        "model.n_heads": n_heads,
        "model.d_head": d_head,
        "model.d_mlp": d_mlp,
        "model.bias": "unembed.b_U" in state,
    }


def sources_of(paths: list[Path]) -> list[Path]:
    """The checkpoint files: the files given, and the checkpoint files inside directories given."""
    files = []
    for path in paths:
        if path.is_dir():
            found = sorted(f for f in path.iterdir() if f.suffix in SUFFIXES)
            if not found:
                raise GrokscopeError(f"{path}: no checkpoint files ({', '.join(SUFFIXES)}) in it")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise GrokscopeError(f"{path}: no such file or directory")
    return files


def step_of(path: Path) -> int:
    """The step a checkpoint file's name gives: its last number (step_1000.pt, epoch1000.safetensors)."""
    found = re.findall(r"\d+", path.stem)
    if not found:
        raise GrokscopeError(f"{path}: no step in its name; give each file's step (--steps, steps= in Python)")
    return int(found[-1])


def read_rows(path: Path, n_inputs: int) -> np.ndarray:
    """Training inputs from a file: a JSON list or an .npy array of grid rows (a·p + b), sorted."""
    try:
        if path.suffix == ".npy":
            rows = np.load(path, allow_pickle=False)
        else:
            rows = np.asarray(json.loads(path.read_text()))
    except (OSError, ValueError) as e:
        raise GrokscopeError(
            f"{path}: cannot be read as a list of training inputs ({str(e).splitlines()[0]})"
        ) from None
    if rows.ndim != 1 or rows.dtype.kind not in "iu" or len(np.unique(rows)) != len(rows):
        raise GrokscopeError(f"{path}: training inputs must be distinct integers (grid rows a·p + b)")
    if len(rows) and (rows.min() < 0 or rows.max() >= n_inputs):
        raise GrokscopeError(f"{path}: training inputs must be grid rows in [0, {n_inputs})")
    return np.sort(rows.astype(np.int64))


def import_state_dicts(
    paths: list[str | Path],
    out: str | Path,
    train_rows: str | Path,
    *,
    steps: list[int] | None = None,
    overrides: dict[str, object] | None = None,
    force: bool = False,
    say: Callable[[str], None] = print,
) -> Path:
    """Import the checkpoint files `paths` (files or directories of them; one step each: `steps`, else their
    names' last number) with the split given by the training inputs in `train_rows` into the run `out`."""
    from grokscope.train.loop import move_aside, provenance

    files, out = sources_of([Path(p) for p in paths]), Path(out)
    steps = [step_of(f) for f in files] if steps is None else list(steps)
    if len(steps) != len(files):
        raise GrokscopeError(f"--steps gives {len(steps)} steps for {len(files)} checkpoint files")
    order = np.argsort(steps, kind="stable")
    steps, files = [int(steps[i]) for i in order], [files[i] for i in order]
    if len(set(steps)) != len(steps) or steps[0] < 0 or steps[-1] < 1:
        raise GrokscopeError(f"the checkpoints' steps must be distinct, ≥ 0 and end past 0; got {steps}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise GrokscopeError(f"{out} already exists: --force replaces it (force=True in Python)")
    first = read_state_dict(files[0])
    keys = dict(overrides or {})
    given = set(keys) & {"task.p", "model.n_layers", "model.d_model", "model.n_heads", "model.d_head", "model.d_mlp"}
    if given:
        raise GrokscopeError(f"{min(given)} comes from the checkpoints' shapes; leave it out of --set")
    config = RunConfig(name=out.name, preset="imported").with_overrides(
        {**keys, **sizes_of(first, files[0]), "train.steps": steps[-1]}
    )
    task = make_task(config.task)
    true_labels = task.true_labels()
    train = read_rows(Path(train_rows), task.n_inputs)
    test = np.setdiff1d(np.flatnonzero(true_labels >= 0), train)
    if not len(train) or not len(test):
        raise GrokscopeError(f"{train_rows}: the split needs at least one training and one test input")
    corrupted = np.zeros(len(train), dtype=bool)
    dataset = Dataset(task.n_classes, train, test, true_labels[train].copy(), true_labels, corrupted)
    model = build_model(config).eval()
    expected = {n: p.shape for n, p in model.named_parameters()}
    meta = {**provenance(model, torch.device("cpu")), "metrics_at": "checkpoints", "sources": [str(f) for f in files]}
    building = out.with_name(f".{out.name}.importing")
    shutil.rmtree(building, ignore_errors=True)
    old = move_aside(out, force)
    try:
        writer = RunWriter.create(building, config, dataset, dict(model.named_parameters()), meta, np.array(steps))
        metrics = StepMetrics(dataset, LOSSES[config.train.loss])
        inputs = model.task_inputs(task, dataset)
        for row, (step, file) in enumerate(zip(steps, files)):
            state = first if row == 0 else read_state_dict(file)
            shapes = {n: t.shape for n, t in state.items()}
            if shapes != expected:
                wrong = next((n for n in expected if shapes.get(n) != expected[n]), None) or next(
                    iter(set(shapes) - set(expected))
                )
                raise GrokscopeError(f"{file}: {wrong} is not the first checkpoint's ({files[0]})")
            model.load_state_dict(state)
            writer.save_checkpoint(row, state)
            with torch.no_grad():
                values = metrics(model.all_logits(inputs))
            norm = torch.sqrt(sum(t.double().square().sum() for t in state.values()))
            writer.save_metrics(step, {k: np.array([float(v)]) for k, v in {**values, "weight_norm": norm}.items()})
            say(
                f"step {step}: train loss {float(values['train_loss']):.4g}, test accuracy {float(values['test_acc']):.3f}"
            )
        writer.commit(steps[-1], len(steps), steps[-1] + 1, {})
        writer.finish(state)
        building.rename(out)
        layout.fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old)
    open_run(out)  # what was written reads back
    return out
