"""Every key-frequency rule on runs: each rule's set with its restricted loss beside the test loss, and for
every frequency what removing it from the inputs does (the ablation rule's evidence).

    python benchmarks/key_frequencies.py RUN...          # runs trained or imported already
    PYTHONPATH=.tl3 python benchmarks/key_frequencies.py --tl3-series OUT
        # a grokking run trained by TransformerLens 3's own HookedTransformer (its grokking demo's model at
        # the demo preset's sizes), saved every 50 steps with its split, for `grokscope import`

Prints one markdown row per run for benchmarks/README.md, then per run the frequencies whose removal
costs the most.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def tl3_series(out: Path, p: int = 59, steps: int = 2500, every: int = 50) -> None:
    """(a + b) mod p, 40% of the pairs for training, TransformerLens 3's HookedTransformer (1 layer, d_model
    128, 4 heads, d_mlp 512, ReLU, no LayerNorm), AdamW lr 3e-3, wd 1, betas (0.9, 0.98), full batch."""
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    out.mkdir(parents=True, exist_ok=True)
    config = HookedTransformerConfig(
        n_layers=1, n_heads=4, d_model=128, d_head=32, d_mlp=512, act_fn="relu", normalization_type=None,
        d_vocab=p + 1, d_vocab_out=p, n_ctx=3, init_weights=True, device="cpu", seed=0,
    )  # fmt: skip
    model = HookedTransformer(config)
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    tokens = torch.stack([a.flatten(), b.flatten(), torch.full((p * p,), p)], 1)
    labels = (a.flatten() + b.flatten()) % p
    train = torch.randperm(p * p, generator=torch.Generator().manual_seed(0))[: int(0.4 * p * p)].sort().values
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1.0, betas=(0.9, 0.98))
    for step in range(steps + 1):
        if step % every == 0:
            torch.save(model.state_dict(), out / f"step{step}.pt")
        if step == steps:
            break
        loss = torch.nn.functional.cross_entropy(model(tokens[train])[:, -1], labels[train])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    (out / "train.json").write_text(json.dumps(train.tolist()))
    with torch.no_grad():
        test = np.setdiff1d(np.arange(p * p), train.numpy())
        acc = (model(tokens[test])[:, -1].argmax(-1) == labels[test]).double().mean()
    print(f"{out}: {steps} steps, final test accuracy {float(acc):.3f}")


def report(path: str) -> None:
    import grokscope
    from grokscope import analysis
    from grokscope.analysis.progress import KEY_RULES, loss_ratios

    run = grokscope.open_run(path)
    found = analysis.key_frequencies_at(run)
    loss, acc = float(found["test_loss"]), float(found["test_acc"])
    ratio = loss_ratios(found)
    drop = acc - found["ablated_test_acc"]
    keys = found["by_ablation"]
    others = np.setdiff1d(np.arange(1, len(ratio) + 1), keys)

    def named(keys: np.ndarray) -> str:
        return f"all {len(ratio)}" if len(keys) == len(ratio) else str(keys.tolist())

    sets = " | ".join(f"{named(found[f'by_{r}'])} ({float(found[f'restricted_loss_by_{r}']):.2g})" for r in KEY_RULES)
    key_effects = ", ".join(f"{k}: ×{ratio[k - 1]:.3g}, −{drop[k - 1]:.3f}" for k in keys) or "–"
    worst = int(others[np.argmax(ratio[others - 1])]) if len(others) else None
    other = "–" if worst is None else f"{worst}: ×{ratio[worst - 1]:.3g}, −{max(drop[others - 1].max(), 0):.3f}"
    print(
        f"| {run.name} | {acc:.3f} | {loss:.2g} | {sets} | {found['rule']} | {key_effects} | {other} |",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*")
    parser.add_argument("--tl3-series", type=Path, help="train and save a TransformerLens 3 series here")
    args = parser.parse_args()
    if args.tl3_series:
        tl3_series(args.tl3_series)
        return 0
    from grokscope.analysis.progress import KEY_RULES

    print(
        "| run | test acc | test loss | "
        + " | ".join(f"{r} (restricted loss)" for r in KEY_RULES)
        + " | used | removing each key: loss ×, accuracy − | costliest other |"
    )
    print("|" + "---|" * (6 + len(KEY_RULES)))
    for path in args.runs:
        report(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
