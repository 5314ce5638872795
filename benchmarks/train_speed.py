"""Training speed: grokscope's loop against a plain eager reference loop, same process, same maths.

The reference trains the way the TransformerLens grokking demo does: the hooked model's forward over
all positions, loss at the last position in float64, backward, AdamW, the test loss every step, and a
state-dict copy every step. grokscope's loop is measured with its run store on and a checkpoint at every
step too (the canonical schedule's densest stretch, so the worst case for both).

    python benchmarks/train_speed.py [--preset canonical] [--steps 200] [--ref-steps 30] [--device cpu]
                                     [--eval-every N]

--eval-every N also times grokscope with train.eval_every N (the test metrics and a checkpoint every N steps,
the steps between reading the training inputs alone): not the reference's work, reported apart.
"""

from __future__ import annotations

import argparse
import copy
import platform
import tempfile
import time

import torch

import grokscope
from grokscope.models import build_model
from grokscope.tasks import make_dataset, tokens
from grokscope.train.losses import cross_entropy
from grokscope.train.optim import lr_at, make_optimizer


def reference_ms_per_step(config: grokscope.RunConfig, n_steps: int, device: str) -> float:
    data = make_dataset(config.task)
    model = build_model(config).to(device)
    opt = make_optimizer(dict(model.named_parameters()), config.optim)
    x_train, x_test = (
        tokens(data.train_rows, config.task.p).to(device),
        tokens(data.test_rows, config.task.p).to(device),
    )
    y_train = torch.as_tensor(data.train_labels, device=device)
    y_test = torch.as_tensor(data.test_labels, device=device)
    saved = []

    def one_step(step: int) -> None:
        loss = cross_entropy(model(x_train)[:, -1], y_train)
        loss.backward()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, config.optim)
        opt.step()
        opt.zero_grad()
        with torch.inference_mode():
            cross_entropy(model(x_test)[:, -1], y_test).item()
        loss.item()
        saved.append(copy.deepcopy(model.state_dict()))

    one_step(0)  # warm-up
    sync(device)
    start = time.perf_counter()
    for step in range(1, n_steps + 1):
        one_step(step)
    sync(device)
    return (time.perf_counter() - start) / n_steps * 1000


def grokscope_ms_per_step(config: grokscope.RunConfig, n_steps: int, device: str, every: int = 0) -> float:
    """every: a checkpoint at exactly every this many steps, run lengths rounded up to a multiple of it (0: the
    config's schedule)."""

    def length(steps: int) -> dict:
        if not every:
            return {"train.steps": steps}
        steps = -(-steps // every) * every
        return {"train.steps": steps, "checkpoints.n_uniform": steps // every + 1}

    warm = config.with_overrides(length(5))
    long = config.with_overrides(length(warm.train.steps + n_steps))
    n_steps = long.train.steps - warm.train.steps
    with tempfile.TemporaryDirectory() as tmp:
        grokscope.train(warm, f"{tmp}/warm", device=device, progress=False)
        start = time.perf_counter()
        grokscope.train(warm, f"{tmp}/short", device=device, progress=False)
        short = time.perf_counter() - start
        start = time.perf_counter()
        grokscope.train(long, f"{tmp}/long", device=device, progress=False)
        # the difference of two runs cancels run set-up and the final write
        return (time.perf_counter() - start - short) / n_steps * 1000


def floor_ms(config: grokscope.RunConfig) -> dict[str, float]:
    """How fast a step of the 1-layer transformer could be on this CPU: the FLOPs of the products the maths
    needs (the factored pre-activations and skip path over all p² inputs, the read-out of all p² logits for
    the test metrics, the four products of the training rows' backward and the skip path's two) at the
    machine's measured float32 matrix-product rate, plus the bytes of the passes it needs (the (p², d_mlp)
    activations written and read once, the (p², p) logits written and read once, the training rows'
    activations gathered) at its measured copy bandwidth."""
    p, m = config.task.p, config.model
    P, H, d, k = p * p, m.n_heads, m.d_model, m.d_mlp
    n = len(make_dataset(config.task).train_rows)
    flops = 2 * P * (3 * H + 1) * (k + p)  # per input: 3H + 1 weighted per-token vectors, k + p wide
    flops += 2 * P * k * p  # the read-out
    flops += 2 * n * (2 * k * p + 2 * d * k + 2 * d * p)  # backward: g·Mᵀ, hᵀ·g, xᵀ·δ, δ·W_inᵀ, the skip path's two
    moved = 4 * (2 * P * k + 2 * P * p + n * k)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    rate = max(2 * 2048**3 / timed(lambda: a @ b) for _ in range(3))  # FLOP/s
    x = torch.empty(P * k)
    y = torch.empty_like(x)
    bandwidth = max(2 * 4 * P * k / timed(lambda: y.copy_(x)) for _ in range(3))  # bytes/s
    return {
        "gflop": flops / 1e9,
        "gflops_per_s": rate / 1e9,
        "mb": moved / 1e6,
        "gb_per_s": bandwidth / 1e9,
        "ms": (flops / rate + moved / bandwidth) * 1000,
    }


def timed(f) -> float:
    """Seconds for one call of f, the best of five after a warm-up."""
    f()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - start)
    return best


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="canonical")
    parser.add_argument("--steps", type=int, default=200, help="grokscope steps timed")
    parser.add_argument("--ref-steps", type=int, default=30, help="reference steps timed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--eval-every", type=int, default=0, help="also time train.eval_every N (see above)")
    args = parser.parse_args()
    config = grokscope.load_preset(args.preset).with_overrides({"checkpoints.n_uniform": 10**6})
    ref = reference_ms_per_step(config, args.ref_steps, args.device)
    ours = grokscope_ms_per_step(config, args.steps, args.device)
    machine = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    print(f"preset {args.preset}, device {args.device} ({machine}), torch {torch.__version__}")
    print(f"reference (eager, all positions, test loss every step): {ref:8.2f} ms/step")
    print(f"grokscope (fast path, metrics every step, checkpoint every step): {ours:8.2f} ms/step")
    print(f"speed-up: {ref / ours:.1f}x")
    if args.eval_every > 1:
        n = args.eval_every
        sparse = config.with_overrides(
            {"train.eval_every": n, "checkpoints.dense_until": 0, "checkpoints.n_log": 0, "checkpoints.n_uniform": 0}
        )
        # a checkpoint every n steps too: n_uniform evenly spaced over each timed run's length
        sparse_ms = grokscope_ms_per_step(sparse, args.steps, args.device, every=n)
        print(
            f"grokscope with train.eval_every {n} (test metrics and a checkpoint every {n} steps; not the "
            f"reference's work): {sparse_ms:8.2f} ms/step, {ref / sparse_ms:.1f}x the reference"
        )
    if args.device == "cpu" and config.model.kind == "transformer" and config.model.n_layers == 1:
        f = floor_ms(config)
        print(
            f"floor: {f['gflop']:.2f} GFLOP at {f['gflops_per_s']:.0f} GFLOP/s + {f['mb']:.0f} MB at "
            f"{f['gb_per_s']:.0f} GB/s = {f['ms']:.1f} ms/step; grokscope's step is {ours / f['ms']:.1f}x that"
        )


if __name__ == "__main__":
    main()
