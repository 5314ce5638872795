"""`grokscope import`: a series of transformer state dicts as a run that every command opens.

Layouts: HookedTransformer's names (TransformerLens' `HookedTransformer.state_dict()`, or grokscope's own),
and the progress-measures paper's own model and saved files (Nanda et al. 2023, its transformers.py), turned
into HookedTransformer's (from_progress_measures_layout). Each checkpoint is one file: safetensors, or a
torch file read with `weights_only=True` (a file that would need arbitrary unpickling is refused, never
loaded) holding the state dict itself or under "state_dict" / "model"; or one torch file holds a list of
them with their steps, as TransformerLens' grokking demo saves a whole run (read_checkpoints). TransformerLens' attention buffers
(`IGNORE`, `mask`) are dropped; a model with LayerNorm is refused (grokscope's transformer has none). The
model's sizes come from the tensors' shapes (p = W_U's answers, `=` the token p, 3 positions); the task's
operation from `--set task.op=...` (default add). The split comes from a file of training inputs (grid rows
a·p + b), or from the paper's init file. At every checkpoint grokscope recomputes its own metrics (loss and
accuracy on train and test, as training records them), at the checkpoints' steps.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from grokscope.config import RunConfig
from grokscope.errors import GrokscopeError
from grokscope.importers import check_out, write_series
from grokscope.models import build_model
from grokscope.store import layout
from grokscope.tasks import Dataset, make_task

BUFFERS = ("IGNORE", "mask")  # TransformerLens attention buffers, not parameters
SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


class SavedConfig:
    """Stands in for TransformerLens' HookedTransformerConfig where a torch file holds one (its grokking demo
    saves `model.cfg` beside the checkpoints): unpickling it only stores its fields; no code of it runs."""

    def __setstate__(self, state) -> None:
        self.fields = dict(state) if isinstance(state, dict) else {}


# What torch.load(weights_only=True) may build besides tensors: the stand-in above, under the names
# TransformerLens 3 pickles its config by, and the numpy scalars and dtypes such a config holds (pickled as
# numpy 2's numpy._core or numpy 1's numpy.core)
MULTIARRAY = (np._core if hasattr(np, "_core") else np.core).multiarray
SAVED_DATA = [
    (SavedConfig, "transformer_lens.HookedTransformerConfig.HookedTransformerConfig"),
    (SavedConfig, "transformer_lens.config.hooked_transformer_config.HookedTransformerConfig"),
    np.dtype,
    (np.dtype, "numpy.core.multiarray.dtype"),
    *(type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_)),
    (MULTIARRAY.scalar, "numpy._core.multiarray.scalar"),
    (MULTIARRAY.scalar, "numpy.core.multiarray.scalar"),
]


def load_torch(path: Path):
    """A torch file's contents, read with weights_only=True (tensors, plain containers and SAVED_DATA only)."""
    try:
        with torch.serialization.safe_globals(SAVED_DATA):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as e:
        raise GrokscopeError(f"{path}: unreadable ({str(e).splitlines()[0]})") from None
    except Exception as e:  # noqa: BLE001 - torch raises UnpicklingError and others for what it will not load
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise GrokscopeError(
            f"{path}: holds Python objects that only arbitrary unpickling would load ({why[:120]}); grokscope "
            "reads torch files with weights_only=True: save model.state_dict() alone, or as safetensors"
        ) from None


def read_checkpoints(path: Path) -> list[tuple[dict[str, torch.Tensor], dict]]:
    """The checkpoints in one file, each as its state dict (name → float32 tensor, in HookedTransformer's names
    and layout, buffers dropped) and what else the file holds (the progress-measures code's "epoch",
    "train_data", ...; a checkpoint's "step" where the file says it). One checkpoint per file, except a
    file of many: a dict with "checkpoints" (a list of state dicts) and their "steps", or their
    "checkpoint_epochs" as TransformerLens' grokking demo saves them (each after that epoch's update: step
    epoch + 1; with "model" after len(train_losses) updates, and its split as "train_indices")."""
    if path.suffix == ".safetensors":
        info = {}
        bridge = path.parent / "transformer_bridge_config.json"
        if bridge.is_file():  # written by `export --to tl4` beside the weights
            info["n_heads"] = layout.read_json(bridge).get("n_heads")
        return [(normalized(layout.load_safetensors(path), path, info), info)]
    saved = load_torch(path)
    if isinstance(saved, dict) and isinstance(saved.get("checkpoints"), list):
        return checkpoint_list(saved, path)
    info = {}
    if isinstance(saved, dict) and not any(isinstance(v, torch.Tensor) for v in saved.values()):
        info = {k: v for k, v in saved.items() if k not in ("state_dict", "model")}
        saved = saved.get("state_dict", saved.get("model", saved))
    return [(normalized(saved, path, info), info)]


def checkpoint_list(saved: dict, path: Path) -> list[tuple[dict[str, torch.Tensor], dict]]:
    """read_checkpoints for a file of many checkpoints; the file's split, curves and activation go with the
    first."""
    states = list(saved["checkpoints"])
    if isinstance(saved.get("checkpoint_epochs"), list):
        steps, demo = [int(e) + 1 for e in saved["checkpoint_epochs"]], True
    elif isinstance(saved.get("steps"), list):
        steps, demo = [int(s) for s in saved["steps"]], False
    else:
        raise GrokscopeError(f'{path}: a list of checkpoints needs their steps ("steps" or "checkpoint_epochs")')
    if len(steps) != len(states):
        raise GrokscopeError(f"{path}: {len(states)} checkpoints but {len(steps)} steps for them")
    losses = saved.get("train_losses")
    if isinstance(saved.get("model"), dict) and isinstance(losses, list) and len(losses) not in steps:
        states, steps = [*states, saved["model"]], [*steps, len(losses)]  # the model at the end of training
    first: dict = (
        {"tl_demo_curves": {k: saved[k] for k in ("train_losses", "test_losses") if k in saved}} if demo else {}
    )
    if isinstance(saved.get("train_indices"), torch.Tensor | list):
        first["train_rows"] = torch.as_tensor(saved["train_indices"]).tolist()
        first["split_from"] = f"{path.name}'s train_indices"
    config = saved.get("config")
    if isinstance(config, SavedConfig) and isinstance(config.fields.get("act_fn"), str):
        first["act"] = config.fields["act_fn"]
    return [
        (normalized(state, path, {}), {**(first if i == 0 else {}), "step": step})
        for i, (state, step) in enumerate(zip(states, steps))
    ]


def normalized(state, path: Path, info: dict) -> dict[str, torch.Tensor]:
    """A state dict as read → float32, buffers dropped, in HookedTransformer's names and layout."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise GrokscopeError(f"{path}: not a state dict (a mapping of names to tensors)")
    if any(".ln" in name or name.startswith("ln_final") for name in state):
        raise GrokscopeError(f"{path}: the model has LayerNorm; grokscope's transformer has none")
    state = {n: t.float() for n, t in state.items() if n.rsplit(".", 1)[-1] not in BUFFERS}
    try:
        if state.get("blocks.0.attn.W_O", torch.empty(0, 0, 0)).ndim == 2:
            state = from_progress_measures_layout(state)
        elif "embed.weight" in state:
            state = from_bridge_layout(state, info.get("n_heads"))
    except (KeyError, IndexError, ValueError, RuntimeError, TypeError) as e:
        what = f"missing {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
        raise GrokscopeError(f"{path}: not a whole transformer state dict in that layout ({what})") from None
    return state


def from_bridge_layout(state: dict[str, torch.Tensor], n_heads: int | None) -> dict[str, torch.Tensor]:
    """TransformerLens 4's native TransformerBridge layout (what `export --to tl4` writes) in HookedTransformer's:
    its (out, in) linear layers back to W_Q/W_K/W_V (n_heads, d_model, d_head), W_O (n_heads, d_head,
    d_model), W_in, W_out, W_U. The head count is not in the tensors: it comes from the
    transformer_bridge_config.json beside the file."""
    if n_heads is None:
        raise GrokscopeError(
            "a TransformerBridge state dict needs its transformer_bridge_config.json beside it (the head count)"
        )
    rows = state["blocks.0.attn.q.weight"].shape[0]
    if type(n_heads) is not int or n_heads < 1 or rows % n_heads:
        raise GrokscopeError(
            f"transformer_bridge_config.json: n_heads {n_heads!r} does not divide the {rows} query rows"
        )
    out = {
        "embed.W_E": state["embed.weight"],
        "pos_embed.W_pos": state["pos_embed.weight"],
        "unembed.W_U": state["unembed.weight"].T,
        "unembed.b_U": state["unembed.bias"],
    }
    layers = {name.split(".")[1] for name in state if name.startswith("blocks.")}
    for l in sorted(layers, key=int):
        attn, mlp = f"blocks.{l}.attn", f"blocks.{l}.mlp"
        for x in "QKV":
            weight = state[f"{attn}.{x.lower()}.weight"]
            out[f"{attn}.W_{x}"] = weight.reshape(n_heads, -1, weight.shape[1]).permute(0, 2, 1)
            out[f"{attn}.b_{x}"] = state[f"{attn}.{x.lower()}.bias"].reshape(n_heads, -1)
        o = state[f"{attn}.o.weight"]
        out[f"{attn}.W_O"], out[f"{attn}.b_O"] = o.T.reshape(n_heads, -1, o.shape[0]), state[f"{attn}.o.bias"]
        out[f"{mlp}.W_in"], out[f"{mlp}.b_in"] = state[f"{mlp}.in.weight"].T, state[f"{mlp}.in.bias"]
        out[f"{mlp}.W_out"], out[f"{mlp}.b_out"] = state[f"{mlp}.out.weight"].T, state[f"{mlp}.out.bias"]
    return {n: t.contiguous() for n, t in out.items()}


def from_progress_measures_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The progress-measures paper's own model (Nanda et al. 2023, its transformers.py) in HookedTransformer's
    layout: W_E (d_model, d_vocab), W_pos, W_Q/W_K/W_V (n_heads, d_head, d_model), W_O (d_model, n_heads·d_head),
    W_in (d_mlp, d_model), b_in, W_out (d_model, d_mlp), b_out, W_U (d_model, p + 1) → the transposes, W_O split
    by head, the logit of `=` (never an answer) dropped, and zero biases where that model has none (b_Q, b_K,
    b_V, b_O, b_U): the same function of the p answers' logits."""
    out = {"embed.W_E": state["embed.W_E"].T, "pos_embed.W_pos": state["pos_embed.W_pos"]}
    p = state["unembed.W_U"].shape[1] - 1
    out["unembed.W_U"], out["unembed.b_U"] = state["unembed.W_U"][:, :p], torch.zeros(p)
    for name, value in state.items():
        block, _, leaf = name.rpartition(".")
        if not block.startswith("blocks."):
            continue
        if leaf in ("W_Q", "W_K", "W_V"):
            out[name] = value.transpose(1, 2)
            out[f"{block}.b_{leaf[-1]}"] = torch.zeros(value.shape[:2])
        elif leaf == "W_O":
            n_heads = state[f"{block}.W_Q"].shape[0]
            out[name] = value.reshape(value.shape[0], n_heads, -1).permute(1, 2, 0)
            out[f"{block}.b_O"] = torch.zeros(value.shape[0])
        elif leaf in ("W_in", "W_out"):
            out[name] = value.T
        else:
            out[name] = value
    return {n: t.contiguous() for n, t in out.items()}


def sizes_of(state: dict[str, torch.Tensor], path: Path) -> dict[str, object]:
    """The config keys a state dict's shapes give: task.p, the model's sizes, model.bias."""
    try:
        d_vocab, d_model = state["embed.W_E"].shape
        n_heads, _, d_head = state["blocks.0.attn.W_Q"].shape
        d_mlp = state["blocks.0.mlp.W_in"].shape[1]
        p = state["unembed.W_U"].shape[1]
        n_ctx = state["pos_embed.W_pos"].shape[0]
    except (KeyError, ValueError, IndexError):
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


def beside(file: Path) -> dict[str, object]:
    """Config keys the files beside a checkpoint give (what `grokscope export` writes there): the activation
    from hooked_transformer_config.json or transformer_bridge_config.json (act_fn), or from a grokscope
    config.json (model.act, and the task's operation)."""
    for name in ("hooked_transformer_config.json", "transformer_bridge_config.json"):
        if (file.parent / name).is_file():
            act = layout.read_json(file.parent / name).get("act_fn")
            return {} if act is None else {"model.act": act}
    if (file.parent / layout.CONFIG).is_file():
        config = layout.read_json(file.parent / layout.CONFIG)
        model, task = config.get("model"), config.get("task")
        if not (isinstance(model, dict) and isinstance(task, dict)):
            return {}  # another tool's config.json
        keys = {"model.act": model.get("act"), "task.op": task.get("op")}
        return {k: v for k, v in keys.items() if v is not None}
    return {}


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
    return checked_rows(rows, n_inputs, str(path))


def checked_rows(rows, n_inputs: int, source: str) -> np.ndarray:
    """Training inputs as recorded (a file, MIScope's train_indices, the paper's triples): distinct integers in
    [0, n_inputs), sorted; GrokscopeError naming `source` otherwise."""
    try:
        rows = np.asarray(rows)
    except (ValueError, TypeError):
        rows = np.zeros((0, 0))
    if rows.shape == (0,):
        raise GrokscopeError(f"{source}: no training inputs (leave the split out to import without one)")
    if rows.ndim != 1 or rows.dtype.kind not in "iu" or len(np.unique(rows)) != len(rows):
        raise GrokscopeError(f"{source}: training inputs must be distinct integers (grid rows a·p + b)")
    if rows.min() < 0 or rows.max() >= n_inputs:
        raise GrokscopeError(f"{source}: training inputs must be grid rows in [0, {n_inputs})")
    return np.sort(rows.astype(np.int64))


PAPER_NAMES = re.compile(r"^(init|final|\d+)\.pth$")  # the progress-measures code's file names


def step_from(path: Path, info: dict) -> int:
    """A checkpoint's step. The progress-measures code's files (init.pth, {epoch}.pth, final.pth) by what they
    hold: init the model before any update, 0; {epoch}.pth after that epoch's update, epoch + 1 (that loop
    saves after the step); final.pth after len(train_losses) updates (one loss per update, early stop
    included). Any other file: the last number in its name."""
    if isinstance(info.get("step"), int):
        return info["step"]
    if PAPER_NAMES.match(path.name):
        if "train_data" in info and "epoch" not in info:
            return 0
        if isinstance(info.get("train_losses"), list):
            return len(info["train_losses"])
        if isinstance(info.get("epoch"), int):
            return info["epoch"] + 1
    return step_of(path)


def miscope_variant(path: Path) -> tuple[list[Path], list[int], dict] | None:
    """A MIScope variant directory (checkpoints/checkpoint_epoch_NNNNN.safetensors with HookedTransformer's
    names, each saved after that epoch's update: step epoch + 1; metadata.json with the split as grid rows,
    "train_indices", and the loss curves): its files, their steps and what metadata.json records; None for
    any other path."""
    metadata, folder = path / "metadata.json", path / "checkpoints"
    if not (metadata.is_file() and folder.is_dir()):
        return None
    try:
        recorded = json.loads(metadata.read_text())
        recorded = {"train_rows": list(recorded["train_indices"]), "miscope": recorded}
    except (OSError, ValueError, KeyError, TypeError):
        raise GrokscopeError(f"{metadata}: not MIScope's metadata (no train_indices)") from None
    files = sorted(folder.glob("checkpoint_epoch_*.safetensors"))
    if not files:
        raise GrokscopeError(f"{folder}: no checkpoint_epoch_*.safetensors files")
    return files, [step_of(f) + 1 for f in files], recorded


def source_curves(infos: list[dict], n_steps: int) -> dict[str, np.ndarray]:
    """The loss curves the files record, by step (float64 (n_steps,), NaN elsewhere): the progress-measures
    code's train_losses / test_losses (both taken before epoch e's update: step e; or a per-epoch file's
    train_loss / test_loss), MIScope's and TransformerLens' grokking demo's (train before epoch e's update:
    step e; test after it: step e + 1)."""
    curves = {name: np.full(n_steps, np.nan) for name in ("train_loss", "test_loss")}

    def put(name: str, values, first: int) -> None:
        try:
            values = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            values = np.zeros((0, 0))
        if values.ndim != 1:
            raise GrokscopeError(f"the recorded {name.replace('_', ' ')} curve is not a list of numbers")
        values = values[: max(n_steps - first, 0)]
        curves[name][first : first + len(values)] = values

    for info in infos:
        after_update = info.get("miscope", info.get("tl_demo_curves"))
        if isinstance(after_update, dict):
            put("train_loss", after_update.get("train_losses", []), 0)
            put("test_loss", after_update.get("test_losses", []), 1)
        elif isinstance(info.get("train_losses"), list):
            put("train_loss", info["train_losses"], 0)
            put("test_loss", info.get("test_losses", []), 0)
        elif isinstance(info.get("epoch"), int) and info["epoch"] < n_steps:
            for name, values in curves.items():
                if isinstance(info.get(name), float) and np.isnan(values[info["epoch"]]):
                    values[info["epoch"]] = info[name]
    return {name: values for name, values in curves.items() if np.isfinite(values).any()}


def split_from(infos: list[dict], p: int) -> np.ndarray | None:
    """The training inputs (grid rows) the files record: a progress-measures init file's train_data ((a, b, =)
    triples), a MIScope variant's or a grokking-demo file's train_indices."""
    for info in infos:
        if isinstance(info.get("train_data"), list):
            try:
                rows = [int(a) * p + int(b) for a, b, *_ in info["train_data"]]
            except (TypeError, ValueError):
                raise GrokscopeError("the recorded train_data are not (a, b, =) triples of integers") from None
            return checked_rows(rows, p * p, "the recorded train_data")
        if isinstance(info.get("train_rows"), list):  # MIScope's or the grokking demo's train_indices
            return checked_rows(info["train_rows"], p * p, info.get("split_from", "metadata.json's train_indices"))
    return None


def import_state_dicts(
    paths: list[str | Path],
    out: str | Path,
    train_rows: str | Path | None = None,
    *,
    steps: list[int] | None = None,
    overrides: dict[str, object] | None = None,
    force: bool = False,
    say: Callable[[str], None] = print,
) -> Path:
    """Import the checkpoint files `paths` (files or directories of them; one step per checkpoint: `steps`,
    else as step_from reads them) into the run `out`, with the split of `train_rows` (a file of training
    inputs), else the one the files record (a progress-measures init file, a MIScope variant, a grokking-demo
    file's train_indices); with neither, the run has no split and is measured on all inputs. Every file is
    read once, up front."""

    out, paths = Path(out), [Path(p) for p in paths]
    variant = miscope_variant(paths[0]) if len(paths) == 1 else None
    files = sources_of(paths) if variant is None else variant[0]
    check_out(out, force)
    read, sources = [], []
    for file in files:
        for checkpoint in read_checkpoints(file):
            read.append(checkpoint)
            sources.append(file)
    files = sources  # one entry per checkpoint: a file of many appears once for each
    if variant is not None:  # its split and curves, as the paper's files record them
        read[0][1].update(variant[2])
    if steps is None:
        steps = variant[1] if variant is not None else [step_from(f, info) for f, (_, info) in zip(files, read)]
    if len(steps) != len(files):
        raise GrokscopeError(f"--steps gives {len(steps)} steps for {len(files)} checkpoints")
    order = np.argsort(steps, kind="stable")
    steps, files, read = [int(steps[i]) for i in order], [files[i] for i in order], [read[i] for i in order]
    if len(set(steps)) != len(steps) or steps[0] < 0 or steps[-1] < 1:
        raise GrokscopeError(f"the checkpoints' steps must be distinct, ≥ 0 and end past 0; got {steps}")
    first = read[0][0]
    keys = dict(overrides or {})
    from_files = {
        "task.p",
        "task.n_train",
        "model.kind",
        "model.bias",
        "model.n_layers",
        "model.d_model",
        "model.n_heads",
    }
    recorded = beside(files[0])
    for _, info in read:
        if "act" in info:  # the activation a file of many records in its config
            recorded["model.act"] = info["act"]
    from_files |= {"model.d_head", "model.d_mlp"} | set(recorded)
    given = set(keys) & from_files
    if given:
        raise GrokscopeError(f"{min(given)} comes from the checkpoints; leave it out of --set")
    keys |= recorded
    config = RunConfig(name=out.name, preset="imported").with_overrides({**keys, **sizes_of(first, files[0])})
    task = make_task(config.task)
    true_labels = task.true_labels()
    if train_rows is not None:
        train = read_rows(Path(train_rows), task.n_inputs)
    else:
        train = split_from([info for _, info in read], config.task.p)
    if train is None:
        say("no split recorded or given (--train-rows FILE): measured on all inputs; no train or test metrics")
        train = np.zeros(0, dtype=np.int64)
    elif (true_labels[train] < 0).any():
        bad = int(train[true_labels[train] < 0][0])
        raise GrokscopeError(
            f"training input {bad} (a = {bad // config.task.p}, b = {bad % config.task.p}) is not an input of {task.named()}"
        )
    test = np.setdiff1d(np.flatnonzero(true_labels >= 0), train) if train.size else train
    if train.size and not test.size:
        raise GrokscopeError("the split needs at least one test input: every input is a training input")
    if train.size:  # the config says how many inputs were trained on (run tables show it)
        config = config.with_overrides({"task.n_train": len(train)})
    corrupted = np.zeros(len(train), dtype=bool)
    dataset = Dataset(task.n_classes, train, test, true_labels[train].copy(), true_labels, corrupted)
    model = build_model(config).eval()
    expected = {n: p.shape for n, p in model.named_parameters()}
    for file, (state, _) in zip(files, read):
        shapes = {n: t.shape for n, t in state.items()}
        if shapes != expected:
            wrong = next((n for n in expected if shapes.get(n) != expected[n]), None)
            if wrong is None:
                raise GrokscopeError(
                    f"{file}: {min(set(shapes) - set(expected))} is not a parameter of the transformer"
                )
            raise GrokscopeError(
                f"{file}: {wrong} {'is missing' if wrong not in shapes else f'has shape {list(shapes[wrong])}'}; "
                f"the transformer the first checkpoint ({files[0].name}) describes has {list(expected[wrong])}"
            )
    curves = source_curves([info for _, info in read], steps[-1] + 1)
    extra = {"sources": sorted({str(f) for f in files})}
    return write_series(out, config, dataset, steps, [state for state, _ in read], extra, curves, force=force, say=say)
