"""`grokscope import-hf`: a series of Hugging Face MoE checkpoints (OLMoE, Mixtral) as a grokscope run.

The run records what the series is (meta.json "hf": one checkpoint directory per step, absolute paths; the
weights stay there), the samples (data.npz: int64 token ids, training samples then held-out ones), each
checkpoint's causal LM loss and next-token accuracy on them (metrics/, at the checkpoints' steps, NaN
between), and its pathways (the `pathways` analysis, cached as for any run). It is laid out under a
temporary name and renamed into place when all of that is written.

Samples: a jsonl file, one sample a line, `{"input_ids": [...]}` or `{"text": "..."}` (tokenized with the
tokenizer saved with the first checkpoint). Every sample is cut to `seq_len` tokens (default: the shortest
training sample's length); shorter samples are left out and counted.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from grokscope.config import ModelConfig, RunConfig, TaskConfig, TrainConfig
from grokscope.errors import GrokscopeError
from grokscope.importers import check_out, laid_out
from grokscope.models.hf_moe import HFMoE, load_checkpoint, read_architecture
from grokscope.store import layout, open_run
from grokscope.store.writer import RunWriter
from grokscope.tasks.text import text_dataset


def step_of(directory: Path) -> int:
    """The training step a checkpoint directory's name gives: the number after "step" (OLMoE's revisions,
    e.g. step1000-tokens4B), else the name's last number; GrokscopeError where it has none."""
    name = directory.name
    found = re.search(r"step[-_]?(\d+)", name) or re.search(r"(\d+)(?!.*\d)", name)
    if not found:
        raise GrokscopeError(
            f"{directory}: no step in its name; give each directory's step (--steps, steps= in Python)"
        )
    return int(found.group(1))


def read_samples(path: Path, tokenizer_dir: Path) -> list[list[int]]:
    """The token ids of each sample of a jsonl file (see the module docstring)."""
    samples, tokenizer = [], None
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise GrokscopeError(f"{path}: cannot be read ({e})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise GrokscopeError(f"{path}:{number}: not a JSON object") from None
        if isinstance(record, dict) and "input_ids" in record:
            ids = record["input_ids"]
            if not (isinstance(ids, list) and all(type(i) is int and i >= 0 for i in ids)):
                raise GrokscopeError(f"{path}:{number}: input_ids must be a list of token ids (integers ≥ 0)")
        elif isinstance(record, dict) and isinstance(record.get("text"), str):
            if tokenizer is None:
                tokenizer = load_tokenizer(tokenizer_dir, f"{path}:{number}")
            ids = tokenizer(record["text"])["input_ids"]
        else:
            raise GrokscopeError(f'{path}:{number}: a sample is {{"input_ids": [...]}} or {{"text": "..."}}')
        samples.append(ids)
    if not samples:
        raise GrokscopeError(f"{path}: no samples")
    return samples


def load_tokenizer(directory: Path, where: str):
    """The tokenizer saved with a checkpoint (transformers would make an empty one where none was saved)."""
    from transformers import AutoTokenizer

    missing = GrokscopeError(
        f"{where}: a text sample needs the checkpoint's tokenizer, and {directory} has none; give input_ids"
    )
    if not any((directory / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        raise missing
    try:
        return AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError):
        raise missing from None


def cut(samples: list[list[int]], seq_len: int, vocab: int, path: Path) -> tuple[np.ndarray, int]:
    """The samples of at least seq_len tokens, cut to seq_len: int64 (n, seq_len), and how many were shorter."""
    kept = np.array([s[:seq_len] for s in samples if len(s) >= seq_len], dtype=np.int64).reshape(-1, seq_len)
    if len(kept) and kept.max() >= vocab:
        raise GrokscopeError(f"{path}: token id {int(kept.max())} is outside the checkpoints' vocabulary ({vocab})")
    return kept, len(samples) - len(kept)


def series_architecture(directories: list[Path]) -> dict[str, int | str]:
    """The architecture every checkpoint of the series shares (read_architecture); GrokscopeError naming the
    first that differs (a series mixing models would compare routes between different networks)."""
    first = read_architecture(directories[0])
    for d in directories[1:]:
        other = read_architecture(d)
        for key, value in first.items():
            if other[key] != value:
                raise GrokscopeError(
                    f"{d}: not of the series' architecture ({key} {other[key]}, the first checkpoint's {value})"
                )
    return first


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def import_hf(
    directories: list[str | Path],
    out: str | Path,
    data: str | Path,
    *,
    test: str | Path | None = None,
    steps: list[int] | None = None,
    seq_len: int | None = None,
    dtype: str = "float32",
    force: bool = False,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> Path:
    """Import the checkpoint `directories` (one per step: `steps`, else read from their names) with the
    training samples of `data` (and held-out ones of `test`) into the run directory `out`, reading the weights
    as `dtype`; returns it."""
    from grokscope.analysis import analyze
    from grokscope.train.loop import provenance

    directories = [Path(d).resolve() for d in directories]
    out, data = Path(out), Path(data)
    if steps is None:
        steps = [step_of(d) for d in directories]
    if len(steps) != len(directories):
        raise GrokscopeError(f"--steps gives {len(steps)} steps for {len(directories)} checkpoint directories")
    order = np.argsort(steps, kind="stable")
    steps, directories = [int(steps[i]) for i in order], [directories[i] for i in order]
    if len(set(steps)) != len(steps) or steps[0] < 0 or steps[-1] < 1:
        raise GrokscopeError(f"the checkpoints' steps must be distinct, ≥ 0 and end past 0; got {steps}")
    for d in directories:
        if not d.is_dir():
            raise GrokscopeError(f"{d}: no such checkpoint directory")
    shared = series_architecture(directories)
    check_out(out, force)
    first = load_checkpoint(directories[0], dtype)
    vocab = shared.pop("vocab")
    train_samples = read_samples(data, directories[0])
    test_samples = read_samples(Path(test), directories[0]) if test is not None else []
    seq_len = seq_len or min(len(s) for s in train_samples)
    if seq_len < 2:
        raise GrokscopeError(f"samples need at least 2 tokens (a next token to predict); seq_len is {seq_len}")
    train, short = cut(train_samples, seq_len, vocab, data)
    held_out, short_test = cut(test_samples, seq_len, vocab, Path(test)) if test is not None else (train[:0], 0)
    longer = sum(len(s) > seq_len for s in train_samples + test_samples)
    say(f"samples of {seq_len} tokens: {len(train)} training, {len(held_out)} held out ({longer} cut to that length)")
    if short + short_test:
        say(f"left out {short + short_test} samples shorter than {seq_len} tokens")
    if len(train) < 2:
        raise GrokscopeError(f"{data}: fewer than 2 samples of {seq_len} tokens (pathways compare pairs of samples)")
    model_type = shared.pop("model_type")
    config = RunConfig(
        name=out.name,
        preset="imported",
        task=TaskConfig(kind="text", n_train=len(train), n_test=len(held_out), seq_len=seq_len, vocab=vocab),
        model=ModelConfig(kind="hf", **shared),
        train=TrainConfig(steps=steps[-1]),
    )
    meta = {
        **provenance(first, torch.device("cpu")),
        "param_shapes": {},
        "metrics_at": "checkpoints",
        "checkpoint_dirs": [str(d) for d in directories],
        "hf": {
            "model_type": model_type,
            "dtype": dtype,
            "samples": {"train": str(data.resolve()), "train_sha256": digest(data)}
            | ({"test": str(Path(test).resolve()), "test_sha256": digest(Path(test))} if test is not None else {}),
        },
    }
    dataset = text_dataset(train, held_out, vocab)
    with laid_out(out, force) as building:
        writer = RunWriter.create(building, config, dataset, {}, meta, np.array(steps, dtype=np.int64))
        fingerprints = [layout.checkpoint_fingerprint(d) for d in directories]
        writer.commit(steps[-1], len(steps), steps[-1] + 1, {}, fingerprints)  # the steps and samples, for the analysis
        run = open_run(building)
        model = HFMoE.of_run(run)  # the model the pathways analysis reads: each checkpoint is read once

        def measure(row: int) -> None:  # the losses at each checkpoint as the analysis reads it
            losses, hits = model.language_metrics(torch.from_numpy(dataset.inputs))
            norm = torch.sqrt(sum(p.detach().double().square().sum() for p in model.hf.parameters())).item()
            values = {"train_loss": losses[: len(train)].mean(), "train_acc": hits[: len(train)].mean()}
            if len(held_out):
                values |= {"test_loss": losses[len(train) :].mean(), "test_acc": hits[len(train) :].mean()}
            writer.save_metrics(steps[row], {k: np.array([v]) for k, v in {**values, "weight_norm": norm}.items()})
            say(
                f"step {steps[row]}: train loss {values['train_loss']:.4f}, next-token accuracy {values['train_acc']:.3f}"
            )

        measure(0)
        model.on_load = measure
        analyze(run, only=["pathways"], progress=progress)
        model.on_load = None
        writer.commit(steps[-1], len(steps), steps[-1] + 1, {}, fingerprints)
        writer.finish({})
    return out
