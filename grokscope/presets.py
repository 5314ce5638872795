"""Named configurations. `load_preset(name)` returns a fresh, validated RunConfig."""

from __future__ import annotations

from grokscope.config import RunConfig
from grokscope.errors import GrokscopeError

PRESETS: dict[str, tuple[str, dict]] = {
    "canonical": (
        (
            "Nanda et al. 2023: (a + b) mod 113, 30% train, 1-layer transformer (d_model 128, 4 heads, d_mlp 512), "
            "AdamW lr 1e-3, wd 1, full batch, 25k steps"
        ),
        {},
    ),
    "demo": (
        (
            "groks on a 2-core CPU in about a minute: (a + b) mod 59, 40% train, the canonical architecture, "
            "lr 3e-3, 2.5k steps"
        ),
        {"task.p": 59, "task.train_frac": 0.4, "optim.lr": 3e-3, "train.steps": 2500},
    ),
    "tiny": (
        "groks in seconds, for smoke tests: (a + b) mod 31, 60% train, d_model 64, d_mlp 256, 1k steps",
        {
            "task.p": 31,
            "task.train_frac": 0.6,
            "model.d_model": 64,
            "model.d_head": 16,
            "model.d_mlp": 256,
            "optim.lr": 3e-3,
            "train.steps": 1000,
            "checkpoints.n_log": 100,
            "checkpoints.n_uniform": 200,
        },
    ),
    "corrupted": (
        (
            "Doshi et al. 2023: (a + b) mod 97, 50% train, 35% of training labels random; MLP one-hot(a)‖one-hot(b) "
            "→ 500 → x² → 97, no biases, init N(0, 0.05²), MSE, AdamW lr 1e-2 without warm-up, wd 0, full batch, 2k steps"
        ),
        {
            "task.p": 97,
            "task.train_frac": 0.5,
            "task.corrupt_frac": 0.35,
            "model.kind": "mlp",
            "model.d_mlp": 500,
            "model.act": "square",
            "model.init_std": 0.05,  # (16 N)^(-1/3), the paper's initialisation
            "train.loss": "mse",
            "optim.lr": 1e-2,
            "optim.weight_decay": 0.0,
            "optim.warmup_steps": 0,
            "train.steps": 2000,
            "checkpoints.dense_until": 50,
            "checkpoints.n_log": 100,
            "checkpoints.n_uniform": 300,
        },
    ),
    "stability": (
        (
            "Prieto et al. 2025's setting: (a + b) mod 59, 40% train, MLP one-hot(a)‖one-hot(b) → 512 → ReLU → 59, "
            "AdamW lr 1e-2 without warm-up or weight decay, full batch, 3k steps: memorizes and does not generalize; "
            "with ⊥Grad (optim.orthograd=true) or weight decay it groks"
        ),
        {
            "task.p": 59,
            "task.train_frac": 0.4,
            "model.kind": "mlp",
            "model.d_mlp": 512,
            "optim.lr": 1e-2,
            "optim.weight_decay": 0.0,
            "optim.warmup_steps": 0,
            "train.steps": 3000,
            "checkpoints.dense_until": 50,
            "checkpoints.n_log": 100,
            "checkpoints.n_uniform": 300,
        },
    ),
    "digits": (
        (
            "Omnigrok's large-initialisation grokking on scikit-learn's 8 × 8 digits: 300 training images, the rest "
            "for test; MLP 64 → 200 → 200 → 10, ReLU, biases, every initial weight × 6, MSE on one-hot targets, AdamW "
            "lr 1e-3 without warm-up, wd 0.1, full batch, 15k steps"
        ),
        {
            "task.kind": "digits",
            "task.n_train": 300,
            "model.kind": "deep_mlp",
            "model.n_layers": 2,
            "model.d_mlp": 200,
            "model.bias": True,
            "model.init_scale": 6.0,
            "train.loss": "mse",
            "optim.weight_decay": 0.1,
            "optim.warmup_steps": 0,
            "train.steps": 15_000,
            "checkpoints.n_log": 200,
            "checkpoints.n_uniform": 400,
        },
    ),
    "moe": (
        (
            "a mixture-of-experts transformer on (a + b) mod 31, 70% train: 2 layers, d_model 64, 4 heads of 16, "
            "each MLP 8 experts of width 64 with top-2 routing (load-balancing loss 0.01), AdamW lr 5e-3, wd 1, "
            "10 warm-up steps, full batch, 6,000 steps"
        ),
        {
            "task.p": 31,
            "task.train_frac": 0.7,
            "model.kind": "moe",
            "model.n_layers": 2,
            "model.d_model": 64,
            "model.n_heads": 4,
            "model.d_head": 16,
            "model.d_mlp": 64,
            "model.n_experts": 8,
            "model.top_k": 2,
            "optim.lr": 5e-3,
            "train.steps": 6_000,
        },
    ),
    "digits_robust": (
        (
            "Humayun et al.'s MNIST setting on the 8 × 8 digits, where local complexity rises, then falls while "
            "robustness arrives late: 1,000 training images, pixels in [0, 1], MLP 64 → 4 × 200 → 10, ReLU, "
            "biases, default initialisation, cross-entropy, AdamW lr 1e-3 without warm-up, wd 1.0 (their 0.01 "
            "over 10⁵ steps, shortened), full batch, 5k steps"
        ),
        {
            "task.kind": "digits",
            "task.n_train": 1000,
            "task.pixels": "unit",
            "model.kind": "deep_mlp",
            "model.n_layers": 4,
            "model.d_mlp": 200,
            "model.bias": True,
            "train.loss": "ce",
            "optim.weight_decay": 1.0,
            "optim.warmup_steps": 0,
            "train.steps": 5_000,
            "checkpoints.n_log": 100,
            "checkpoints.n_uniform": 100,
        },
    ),
}


def load_preset(name: str) -> RunConfig:
    if name not in PRESETS:
        raise GrokscopeError(f"unknown preset '{name}' (known: {', '.join(PRESETS)})")
    return RunConfig(name=name, preset=name).with_overrides(PRESETS[name][1])
