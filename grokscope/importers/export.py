"""`grokscope export`: one checkpoint of a run for other tools.

- `safetensors`: step<S>.safetensors, the parameters under HookedTransformer's names, with the run's
  config.json beside it (`grokscope import` reads the file back);
- `tl3`: step<S>.pt, a state dict TransformerLens 3's `HookedTransformer` loads (torch.save of tensors only:
  `torch.load(..., weights_only=True)` reads it), zero biases where the model has none, and
  hooked_transformer_config.json, the `HookedTransformerConfig` arguments. Load it with
  `HookedTransformer(HookedTransformerConfig(**json.load(f)))` then `model.load_state_dict(state, strict=False)`
  (only its attention buffers `mask` and `IGNORE`, which it builds itself, are missing);
- `tl4`: step<S>.safetensors in the names and layout of TransformerLens 4's native `TransformerBridge` (its
  linear layers: q/k/v/o, mlp.in/out, unembed as (out, in) matrices, heads flattened head by head) and
  transformer_bridge_config.json; load with `TransformerBridge.boot_native(json.load(f))` then
  `bridge.load_state_dict(safetensors.torch.load_file("step<S>.safetensors"))`.
The transformer only (TransformerLens has no one-hot MLP); activations relu and gelu.
"""

from __future__ import annotations

from pathlib import Path

import torch

from grokscope.errors import GrokscopeError
from grokscope.store import Run, layout

FORMATS = ("safetensors", "tl3", "tl4")
TL_ACTIVATIONS = {"relu": "relu", "gelu": "gelu"}  # grokscope's gelu is the exact (erf) one, as TransformerLens'


def hooked_transformer_config(run: Run) -> dict:
    """The HookedTransformerConfig arguments of a run's transformer."""
    c = run.config.model
    if c.kind != "transformer":
        raise GrokscopeError(f"export to TransformerLens needs model.kind 'transformer'; {run.name} has '{c.kind}'")
    if c.act not in TL_ACTIVATIONS:
        raise GrokscopeError(f"TransformerLens has no '{c.act}' activation (it has {', '.join(TL_ACTIVATIONS)})")
    p = run.config.task.p
    return {
        "n_layers": c.n_layers, "n_heads": c.n_heads, "d_model": c.d_model, "d_head": c.d_head, "d_mlp": c.d_mlp,
        "act_fn": TL_ACTIVATIONS[c.act], "normalization_type": None, "d_vocab": p + 1, "d_vocab_out": p, "n_ctx": 3,
    }  # fmt: skip


def with_zero_biases(params: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """HookedTransformer's biases, zero where the model has none (the same function)."""
    H, e, d = config["n_heads"], config["d_head"], config["d_model"]
    shapes = {"unembed.b_U": (config["d_vocab_out"],)}
    for l in range(config["n_layers"]):
        shapes |= {f"blocks.{l}.attn.b_{x}": (H, e) for x in "QKV"}
        shapes |= {
            f"blocks.{l}.attn.b_O": (d,),
            f"blocks.{l}.mlp.b_in": (config["d_mlp"],),
            f"blocks.{l}.mlp.b_out": (d,),
        }
    return {**{n: torch.zeros(s) for n, s in shapes.items()}, **params}


def to_bridge_layout(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """HookedTransformer's parameters (biases included) in the native TransformerBridge's names and layout."""
    H, e, d = config["n_heads"], config["d_head"], config["d_model"]
    out = {
        "embed.weight": state["embed.W_E"],
        "pos_embed.weight": state["pos_embed.W_pos"],
        "unembed.weight": state["unembed.W_U"].T,
        "unembed.bias": state["unembed.b_U"],
    }
    for l in range(config["n_layers"]):
        attn, mlp = f"blocks.{l}.attn", f"blocks.{l}.mlp"
        for x in "QKV":
            out[f"{attn}.{x.lower()}.weight"] = state[f"{attn}.W_{x}"].permute(0, 2, 1).reshape(H * e, d)
            out[f"{attn}.{x.lower()}.bias"] = state[f"{attn}.b_{x}"].reshape(H * e)
        out[f"{attn}.o.weight"] = state[f"{attn}.W_O"].reshape(H * e, d).T
        out[f"{attn}.o.bias"] = state[f"{attn}.b_O"]
        out[f"{mlp}.in.weight"], out[f"{mlp}.in.bias"] = state[f"{mlp}.W_in"].T, state[f"{mlp}.b_in"]
        out[f"{mlp}.out.weight"], out[f"{mlp}.out.bias"] = state[f"{mlp}.W_out"].T, state[f"{mlp}.b_out"]
    return {n: t.contiguous() for n, t in out.items()}


def export(run: Run, step: int, to: str, out: str | Path) -> Path:
    """Write checkpoint `step` of `run` into the directory `out` in format `to`; returns the weights' file."""
    if to not in FORMATS:
        raise GrokscopeError(f"--to must be one of {', '.join(FORMATS)}; got '{to}'")
    if run.checkpoint_dirs is not None:
        raise GrokscopeError(f"{run.name} is an imported Hugging Face series: its checkpoints are already files")
    params = {n: t.contiguous() for n, t in run.params(step).items()}
    config = None if to == "safetensors" else hooked_transformer_config(run)  # refused before anything is made
    out = Path(out)
    layout.check_creatable(out)
    out.mkdir(parents=True, exist_ok=True)
    if to == "safetensors":
        from safetensors.torch import save

        target = out / f"step{step}.safetensors"
        layout.write_bytes(target, save(params))
        layout.write_json(out / layout.CONFIG, run.config.to_dict())
        return target
    state = with_zero_biases(params, config)
    if to == "tl4":
        from safetensors.torch import save

        target = out / f"step{step}.safetensors"
        layout.write_bytes(target, save(to_bridge_layout(state, config)))
        layout.write_json(out / "transformer_bridge_config.json", config)
        return target
    target = out / f"step{step}.pt"
    layout.atomic_write(target, lambda tmp: torch.save(state, tmp))
    layout.write_json(out / "hooked_transformer_config.json", config)
    return target
