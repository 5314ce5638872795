"""Run by tests/test_import.py under TransformerLens 3 (PYTHONPATH=.tl3): load what `grokscope export --to
tl3` wrote as that README says, write the logits at `=` for every input (row a·p + b) and the model's own
state dict (for the round trip back into grokscope).

    python tests/tl3_load.py EXPORT_DIR STEP
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

folder, step = Path(sys.argv[1]), int(sys.argv[2])
config = HookedTransformerConfig(**json.loads((folder / "hooked_transformer_config.json").read_text()))
model = HookedTransformer(config)
missing = model.load_state_dict(torch.load(folder / f"step{step}.pt", weights_only=True), strict=False)
assert not missing.unexpected_keys and all(k.endswith(("mask", "IGNORE")) for k in missing.missing_keys), missing
p = config.d_vocab_out
a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
with torch.no_grad():
    logits = model(torch.stack([a.flatten(), b.flatten(), torch.full((p * p,), p)], 1))[:, -1]
np.save(folder / "tl3_logits.npy", logits.numpy())
(folder / "resaved").mkdir(exist_ok=True)
torch.save(model.state_dict(), folder / "resaved" / f"step{step}.pt")
