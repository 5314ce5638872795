"""`grokscope import-hf` end to end on small OLMoE series built here (nothing is downloaded), timed, with
where the time goes, against a plain loop doing the same work.

    python benchmarks/import_hf.py

Two series: the tests' tiny one (3 checkpoints; 2 layers × 4 experts, hidden 16; 16 + 8 samples of 12
tokens) and a larger one (20 checkpoints; 4 layers × 8 experts top-2, hidden 64; 256 + 64 samples of 64
tokens). Each is trained a few AdamW steps between checkpoints on a synthetic language. The plain loop: per
checkpoint `from_pretrained`, a forward with `labels` for the loss and one with `output_router_logits`
for the routes, and a pure-Python Levenshtein over the same 2,000 pairs.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from pathways import levenshtein  # benchmarks/pathways.py: the same textbook reference
from transformers import AutoModelForCausalLM, OlmoeConfig

from grokscope.analysis.pathways import sample_pairs
from grokscope.importers.hf import import_hf

SERIES = {
    "tiny": {"layers": 2, "experts": 4, "hidden": 16, "checkpoints": 3, "every": 10, "train": 16, "test": 8, "len": 12},
    "small": {
        "layers": 4,
        "experts": 8,
        "hidden": 64,
        "checkpoints": 20,
        "every": 5,
        "train": 256,
        "test": 64,
        "len": 64,
    },
}


def build(root: Path, s: dict) -> tuple[list[Path], Path, Path]:
    torch.manual_seed(0)
    config = OlmoeConfig(
        vocab_size=64, hidden_size=s["hidden"], intermediate_size=s["hidden"] // 2, num_hidden_layers=s["layers"],
        num_attention_heads=4, num_key_value_heads=4, num_experts=s["experts"], num_experts_per_tok=2,
        max_position_embeddings=128, eos_token_id=None, pad_token_id=None, bos_token_id=None,
    )  # fmt: skip
    model = AutoModelForCausalLM.from_config(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    data = torch.randint(0, 64, (s["train"] + s["test"], s["len"]), generator=torch.Generator().manual_seed(0))
    data[:, 1::2] = (data[:, 0::2] + 1) % 64
    dirs = []
    for step in range(s["every"] * (s["checkpoints"] - 1) + 1):
        if step % s["every"] == 0:
            dirs.append(root / f"step{step}")
            model.save_pretrained(dirs[-1])
        loss = model(input_ids=data[: s["train"]], labels=data[: s["train"]]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    files = []
    for name, rows in (("train", data[: s["train"]]), ("test", data[s["train"] :])):
        files.append(root / f"{name}.jsonl")
        files[-1].write_text("".join(json.dumps({"input_ids": r}) + "\n" for r in rows.tolist()))
    return dirs, files[0], files[1]


@torch.no_grad()
def plain_loop(dirs: list[Path], train: torch.Tensor, test: torch.Tensor) -> float:
    start = time.perf_counter()
    pairs = sample_pairs(len(train), 2000, 0)
    for d in dirs:
        model = AutoModelForCausalLM.from_pretrained(d).eval()
        for ids in (train, test):
            model(input_ids=ids, labels=ids)
        out = model(input_ids=train, output_router_logits=True)
        k = model.config.num_experts_per_tok
        routes = torch.cat([lg.view(*train.shape, -1)[:, -1].softmax(-1).topk(k)[1] for lg in out.router_logits], 1)
        routes = routes.tolist()
        np.mean([levenshtein(routes[i], routes[j]) / len(routes[i]) for i, j in pairs])
    return time.perf_counter() - start


def main() -> None:
    from transformers.utils import logging

    logging.disable_progress_bar()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    for name, s in SERIES.items():
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            dirs, train, test = build(root / "series", s)
            start = time.perf_counter()
            import_hf(dirs, root / "run", train, test=test, progress=False, say=lambda _: None)
            ours = time.perf_counter() - start
            ids = [
                torch.tensor([json.loads(x)["input_ids"] for x in f.read_text().splitlines()]) for f in (train, test)
            ]
            plain = plain_loop(dirs, *ids)
            print(
                f"{name}: {len(dirs)} checkpoints, {s['train']} + {s['test']} samples × {s['len']} tokens: "
                f"import {ours:.2f} s ({ours / len(dirs) * 1000:.0f} ms a checkpoint); plain loop {plain:.2f} s "
                f"(ratio {plain / ours:.2f}×)"
            )


if __name__ == "__main__":
    main()
