"""Run by tests/test_import.py under TransformerLens 3 (PYTHONPATH=.tl3, installed there by the README's test
command): a grokking HookedTransformer trained a few steps with TransformerLens 3's own code, its state dict
saved at three steps as a training loop would, with its logits at `=` for every input and the split; and
the same run saved as TransformerLens' grokking demo saves one, in one file (bundle/full_run.pth: its
config object, the checkpoints of every 5th epoch after that epoch's update, the final model, both loss
curves, the split's indices).

    python tests/tl3_series.py OUT_DIR
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

P = 13
out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
config = HookedTransformerConfig(
    n_layers=1, n_heads=4, d_model=32, d_head=8, d_mlp=64, act_fn="relu", normalization_type=None,
    d_vocab=P + 1, d_vocab_out=P, n_ctx=3, init_weights=True, device="cpu", seed=999,
)  # fmt: skip
model = HookedTransformer(config)
a, b = torch.meshgrid(torch.arange(P), torch.arange(P), indexing="ij")
tokens = torch.stack([a.flatten(), b.flatten(), torch.full((P * P,), P)], 1)  # row a·P + b: `a b =`
labels = (a.flatten() - b.flatten()) % P  # subtraction
train = torch.randperm(P * P, generator=torch.Generator().manual_seed(0))[: P * P // 2].sort().values
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1.0)
test = torch.tensor(sorted(set(range(P * P)) - set(train.tolist())))
checkpoints, checkpoint_epochs, train_losses, test_losses = [], [], [], []
for step in range(11):
    if step % 5 == 0:
        torch.save(model.state_dict(), out / f"step{step}.pt")
        with torch.no_grad():
            np.save(out / f"logits_{step}.npy", model(tokens)[:, -1].numpy())
    loss = torch.nn.functional.cross_entropy(model(tokens[train])[:, -1], labels[train])
    optimizer.zero_grad()
    loss.backward()
    train_losses.append(loss.item())
    optimizer.step()
    with torch.no_grad():
        test_losses.append(torch.nn.functional.cross_entropy(model(tokens[test])[:, -1], labels[test]).item())
    if (step + 1) % 5 == 0:  # the grokking demo's checkpointing: after epoch `step`'s update
        checkpoint_epochs.append(step)
        checkpoints.append({k: v.clone() for k, v in model.state_dict().items()})
(out / "train.json").write_text(json.dumps(train.tolist()))
with torch.no_grad():
    np.save(out / "logits_11.npy", model(tokens)[:, -1].numpy())
(out / "bundle").mkdir()
torch.save(
    {
        "model": model.state_dict(), "config": model.cfg, "checkpoints": checkpoints,
        "checkpoint_epochs": checkpoint_epochs, "test_losses": test_losses, "train_losses": train_losses,
        "train_indices": train, "test_indices": test,
    },
    out / "bundle" / "full_run.pth",
)  # fmt: skip
