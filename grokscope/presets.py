"""Named configurations. `load_preset(name)` returns a fresh, validated RunConfig."""

from __future__ import annotations

from grokscope.config import RunConfig
from grokscope.errors import GrokscopeError

PRESETS: dict[str, tuple[str, dict]] = {
    "canonical": (
        "Nanda et al. 2023: (a + b) mod 113, 30% train, 1-layer transformer (d_model 128, 4 heads, d_mlp 512), "
        "AdamW lr 1e-3, wd 1, full batch, 25k steps",
        {},
    ),
    "demo": (
        "groks on a 2-core CPU in about a minute: (a + b) mod 59, 50% train, the canonical architecture, "
        "lr 3e-3, 3k steps",
        {"task.p": 59, "task.train_frac": 0.5, "optim.lr": 3e-3, "train.steps": 3000},
    ),
    "tiny": (
        "a smoke test in seconds: (a + b) mod 23, 50% train, d_model 32, d_mlp 128, 1.5k steps",
        {
            "task.p": 23,
            "task.train_frac": 0.5,
            "model.d_model": 32,
            "model.d_head": 8,
            "model.d_mlp": 128,
            "optim.lr": 3e-3,
            "train.steps": 1500,
            "checkpoints.n_log": 100,
            "checkpoints.n_uniform": 200,
        },
    ),
}


def load_preset(name: str) -> RunConfig:
    if name not in PRESETS:
        raise GrokscopeError(f"unknown preset '{name}' (known: {', '.join(PRESETS)})")
    return RunConfig(name=name, preset=name).with_overrides(PRESETS[name][1])
