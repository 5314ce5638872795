"""Shared fixtures: small runs trained once per test session."""

from __future__ import annotations

import shutil

import pytest

import grokscope


def small_config(**overrides) -> grokscope.RunConfig:
    """The tiny preset, shortened: a few hundred steps of a p = 31 transformer (about a second)."""
    base = {"train.steps": 120, "checkpoints.dense_until": 20, "checkpoints.n_log": 20, "checkpoints.n_uniform": 20}
    return grokscope.load_preset("tiny").with_overrides({**base, **overrides})


@pytest.fixture(scope="session")
def small_run(tmp_path_factory):
    """A complete short run (does not grok): for store, reader and CLI tests."""
    out = tmp_path_factory.mktemp("runs") / "small"
    grokscope.train(small_config(), out, progress=False)
    return grokscope.open_run(out)


@pytest.fixture(scope="session")
def grokked_run(tmp_path_factory):
    """The tiny preset trained to the end: it groks (test accuracy >= 0.99) in ~700 of its 1,000 steps."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    grokscope.train(grokscope.load_preset("tiny"), out, progress=False)
    return grokscope.open_run(out)


# the analyses computed on request, at sizes that take a second or two on the tiny run
ON_REQUEST_OPTIONS = {
    "local_complexity": {
        "radii": [0.5, 2.0],
        "directions": 4,
        "max_train": 8,
        "max_test": 8,
        "n_random": 8,
        "n_boundary": 4,
    },
    "robustness": {"max_points": 16, "iterations": 3},
}


@pytest.fixture(scope="session")
def analyzed_run(grokked_run, tmp_path_factory):
    """A copy of the grokked tiny run with every analysis computed, those on request at small sizes
    (ON_REQUEST_OPTIONS) (read it; copy it to change it)."""
    from grokscope import analysis

    path = tmp_path_factory.mktemp("analyzed") / "tiny"
    shutil.copytree(grokked_run.path, path)
    run = grokscope.open_run(path)
    analysis.analyze(run, progress=False)
    analysis.analyze(run, only=list(ON_REQUEST_OPTIONS), options=ON_REQUEST_OPTIONS, progress=False)
    return run


P, WIDTH = 31, 256


def coexistence_config(**overrides) -> grokscope.RunConfig:
    """The corrupted preset shrunk to run in ~2 s on CPU: p = 31, 256 neurons, 1,000 steps, 85% train,
    10% of it corrupted, wd 0. At this size it both memorizes the corrupted labels and generalizes
    (coexistence): it fits 100% of the corrupted labels with a test accuracy near 0.9 (0.896 for seed 0).
    (At p = 31 the preset's 50% / 35% split leaves too few clean examples to generalize.)"""
    base = {
        "task.p": P,
        "task.train_frac": 0.85,
        "task.corrupt_frac": 0.1,
        "model.d_mlp": WIDTH,
        "model.init_std": (16 * WIDTH) ** (-1 / 3),  # the paper's N(0, (16N)^(-2/3))
        "train.steps": 1000,
        "task.seed": 0,
        "model.seed": 0,
        "checkpoints.dense_until": 10,
        "checkpoints.n_log": 20,
        "checkpoints.n_uniform": 50,
    }
    return grokscope.load_preset("corrupted").with_overrides({**base, **overrides})


@pytest.fixture(scope="session")
def coexistence_run(tmp_path_factory):
    """The coexistence run of coexistence_config, trained once (read it; copy it to change it)."""
    out = tmp_path_factory.mktemp("memorization") / "coexist"
    grokscope.train(coexistence_config(), out, progress=False)
    return grokscope.open_run(out)


SWEEP_SPEC = """
preset = "tiny"
[set]
"train.steps" = 24
"task.p" = 13
"checkpoints.n_log" = 0
"checkpoints.n_uniform" = 4
"checkpoints.dense_until" = 2
[grid]
"optim.weight_decay" = [0.5, 1.0]
"model.seed" = [0, 1]
"""


@pytest.fixture(scope="session")
def small_sweep(tmp_path_factory):
    """A 2 × 2 sweep (weight decay × model seed) of 24-step p = 13 runs, in <tmp>/wd (read it; copy it to change
    it)."""
    from grokscope.store.sweep import open_sweep
    from grokscope.sweep import sweep

    root = tmp_path_factory.mktemp("sweeps")
    (root / "wd.toml").write_text(SWEEP_SPEC)
    sweep(root / "wd.toml", root / "wd", say=lambda _: None, progress=False)
    return open_sweep(root / "wd")


def tiny_moe_lm(architecture: str = "olmoe", seed: int = 0):
    """A randomly initialised causal LM of a Hugging Face MoE architecture, 2 layers of 4 experts, top-2,
    over 32 tokens (built from a config: nothing is downloaded)."""
    import torch
    from transformers import AutoModelForCausalLM, MixtralConfig, OlmoeConfig

    torch.manual_seed(seed)
    sizes = {
        "vocab_size": 32,
        "hidden_size": 16,
        "intermediate_size": 8,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
    }
    sizes |= {"num_key_value_heads": 2, "num_experts_per_tok": 2, "max_position_embeddings": 64}
    sizes |= {"eos_token_id": None, "pad_token_id": None, "bos_token_id": None}
    if architecture == "olmoe":
        config = OlmoeConfig(num_experts=4, **sizes)
    else:
        config = MixtralConfig(num_local_experts=4, **sizes)
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.fixture(scope="session")
def hf_series(tmp_path_factory):
    """A tiny OLMoE trained 20 steps on a synthetic language (every odd token is the one before it, plus 1),
    saved at steps 0, 10 and 20 as `save_pretrained` directories, with 16 training and 8 held-out samples
    of 12 tokens as jsonl files. Returns the folder: series/step{0,10,20}, train.jsonl, test.jsonl."""
    import json

    import torch

    root = tmp_path_factory.mktemp("hf")
    model = tiny_moe_lm().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    data = torch.randint(0, 32, (24, 12), generator=torch.Generator().manual_seed(0))
    data[:, 1::2] = (data[:, 0::2] + 1) % 32
    for step in range(21):
        if step % 10 == 0:
            model.save_pretrained(root / "series" / f"step{step}")
        loss = model(input_ids=data, labels=data).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for name, rows in (("train", data[:16]), ("test", data[16:])):
        (root / f"{name}.jsonl").write_text("".join(json.dumps({"input_ids": r}) + "\n" for r in rows.tolist()))
    return root


def levenshtein(a: list[int], b: list[int]) -> int:
    """The textbook edit distance (one row of the dynamic programme): the plain reference the pathway tests
    check rapidfuzz's against."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]
