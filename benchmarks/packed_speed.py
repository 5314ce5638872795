"""Many runs in one process on CPU: R seeds packed with torch.func (stack_module_state + functional_call + vmap)
against the same R runs trained one after another with grokscope's fast step, ms per run-step, same process.

Both do a full-batch training step's work: the logits of every input, the float64 cross-entropy on the
training inputs, backward and AdamW (fused, over the stacked parameters for the pack: with the per-run
losses summed, each run's update is its own). The pack's logits are the 1-layer transformer's at `=`
from per-token vectors (Transformer.grid_resid, then the MLP and the read-out as plain products): vmap cannot
enter the fast step's in-place blocked forward and custom backward. The pack's logits and gradients are
also checked against the same maths for one run outside vmap, to the bit.

    python benchmarks/packed_speed.py [--preset tiny] [--runs 8 32] [--steps 5]
"""

from __future__ import annotations

import argparse
import copy
import platform
import time

import torch
from torch.func import functional_call, stack_module_state, vmap

import grokscope
from grokscope.models import build_model
from grokscope.tasks import make_task
from grokscope.train.losses import cross_entropy
from grokscope.train.optim import make_optimizer


class GridLogits(torch.nn.Module):
    """A 1-layer transformer's logits at `=` for every input (p², p), in plain differentiable products."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self) -> torch.Tensor:
        model = self.model
        mlp, W_U = model.blocks[0].mlp, model.unembed.W_U
        resid = model.grid_resid()
        return mlp.act(resid @ mlp.W_in) @ (mlp.W_out @ W_U) + resid @ W_U


def timed(step, n_steps: int) -> float:
    for _ in range(3):  # warm-up: a model's first steps take far longer (about 0.8 s each for the first three)
        step()
    start = time.perf_counter()
    for _ in range(n_steps):
        step()
    return (time.perf_counter() - start) / n_steps * 1e3


def measure(config, data, n_runs: int, n_steps: int) -> tuple[float, float, bool]:
    """ms per run-step one after another and packed, and whether the pack's run 0 is the same maths alone."""
    rows, labels = torch.as_tensor(data.train_rows), torch.as_tensor(data.train_labels)
    models = [build_model(config.with_overrides({"model.seed": seed})) for seed in range(n_runs)]
    inputs = models[0].task_inputs(make_task(config.task), data)
    optimizers = [make_optimizer(dict(m.named_parameters()), config.optim) for m in models]

    def sequential() -> None:
        for model, opt in zip(models, optimizers):
            opt.zero_grad(set_to_none=True)
            cross_entropy(model.all_logits(inputs, grad_rows=rows)[rows], labels).backward()
            opt.step()

    params, buffers = stack_module_state([GridLogits(m) for m in models])
    base = GridLogits(copy.deepcopy(models[0]).to("meta"))
    packed_opt = make_optimizer(params, config.optim)

    def packed_logits() -> torch.Tensor:
        return vmap(lambda p, b: functional_call(base, (p, b), ()))(params, buffers)

    def packed() -> None:
        packed_opt.zero_grad(set_to_none=True)
        logits = packed_logits()
        torch.stack([cross_entropy(logits[r][rows], labels) for r in range(n_runs)]).sum().backward()
        packed_opt.step()

    one = GridLogits(models[0])  # the pack's first run, outside vmap, at the same parameters
    with torch.no_grad():
        for name, p in one.named_parameters():
            p.copy_(params[name][0])
    packed_opt.zero_grad(set_to_none=True)
    logits = packed_logits()
    torch.stack([cross_entropy(logits[r][rows], labels) for r in range(n_runs)]).sum().backward()
    alone = one()
    cross_entropy(alone[rows], labels).backward()
    same = torch.equal(alone.detach(), logits[0].detach()) and all(
        torch.equal(p.grad, params[name].grad[0]) for name, p in one.named_parameters()
    )
    seq_ms, packed_ms = timed(sequential, n_steps), timed(packed, n_steps)
    return seq_ms / n_runs, packed_ms / n_runs, same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--runs", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    config = grokscope.load_preset(args.preset)
    data = make_task(config.task).dataset()
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"preset {args.preset}: p = {config.task.p}, {len(data.train_rows)} training inputs")
    for n_runs in args.runs:
        seq_ms, packed_ms, same = measure(config, data, n_runs, args.steps)
        print(
            f"{n_runs} runs: one after another {seq_ms:.1f} ms per run-step, packed {packed_ms:.1f} "
            f"(packed / sequential {packed_ms / seq_ms:.2f}); pack's run 0 = the same maths alone, to the bit: {same}"
        )


if __name__ == "__main__":
    main()
