"""Circuit probes at one checkpoint, through hooks on the plain forward over every input.

- `attention_patterns(model)`: where `=` attends, per head, for every input (hooks on the plain forward;
  for one layer the same numbers from the per-token scores, without running the MLP).
- `ablate(model, dataset, heads=, neurons=, frequencies=)`: zero-ablate attention heads (their output z),
  neurons of the first neuron layer (their activation), or remove Fourier directions of the embedding from the residual
  stream (for frequency k, the span of the cos k and sin k components of W_E, projected out of
  `blocks.0.hook_resid_pre` at every position); reports loss (the run's own: cross-entropy, MSE or
  StableMax) and accuracy on train and test inputs before and after.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from grokscope.analysis.fourier import fourier_basis, group_of
from grokscope.config import RunConfig
from grokscope.errors import GrokscopeError
from grokscope.tasks import Dataset, make_task
from grokscope.train.losses import LOSSES, accuracy


@torch.no_grad()
def attention_patterns(model: torch.nn.Module, layer: int = 0) -> torch.Tensor:
    """Attention of the `=` position over (a, b, =) per head, for every input row a * p + b: (p², H, 3)."""
    if not model.has_attention:
        raise GrokscopeError(
            f"attention patterns need a transformer; this run's model is a {model.describe(model.cfg)}"
        )
    if not 0 <= layer < model.cfg.n_layers:
        raise GrokscopeError(f"no layer {layer} (the model has {model.cfg.n_layers})")
    if model.cfg.n_layers == 1:  # the fast form: per-token scores, no MLP (equal to the hooks', tested)
        return model.grid_pattern().permute(1, 2, 3, 0).reshape(model.p**2, -1, 3)
    name = f"blocks.{layer}.attn.hook_pattern"
    _, cache = model.run_with_cache(model.grid_inputs(torch.arange(model.p**2)), names_filter=name)
    return cache[name][:, :, -1, :]


@torch.no_grad()
def ablate(
    model: torch.nn.Module,
    config: RunConfig,
    dataset: Dataset,
    heads: Sequence[int] = (),
    neurons: Sequence[int] = (),
    frequencies: Sequence[int] = (),
) -> dict[str, dict[str, float]]:
    """Loss (the run's training loss, train.loss) and accuracy on train and test before and after the ablation:
    {"train_loss": {"base", "ablated", "change"}, "train_acc": ..., "test_loss": ..., "test_acc": ...}."""
    hooks = ablation_hooks(model, config, heads, neurons, frequencies)
    if not hooks:
        raise GrokscopeError("nothing to ablate: give heads, neurons or frequencies")
    inputs = model.task_inputs(make_task(config.task), dataset)
    base = model.output_logits(model(inputs))
    ablated = model.output_logits(model.run_with_hooks(inputs, fwd_hooks=hooks))
    out = {}
    for split, split_rows, labels in (
        ("train", dataset.train_rows, dataset.train_labels),
        ("test", dataset.test_rows, dataset.test_labels),
    ):
        r, y = torch.as_tensor(split_rows), torch.as_tensor(labels)
        for metric, fn in (("loss", LOSSES[config.train.loss]), ("acc", accuracy)):
            b, a = float(fn(base[r], y)), float(fn(ablated[r], y))
            out[f"{split}_{metric}"] = {"base": b, "ablated": a, "change": a - b}
    return out


def ablation_hooks(model, config: RunConfig, heads, neurons, frequencies) -> list:
    transformer = model.has_attention  # the transformer: heads and a residual stream
    hooks = []
    if len(heads):
        if not transformer:
            raise GrokscopeError(
                f"head ablation needs a transformer; this run's model is a {model.describe(model.cfg)}"
            )
        bad = [h for h in heads if not 0 <= h < model.cfg.n_heads]
        if bad:
            raise GrokscopeError(f"no head {bad[0]} (the model has {model.cfg.n_heads}: 0..{model.cfg.n_heads - 1})")
        index = torch.as_tensor(list(heads))

        def zero_heads(z, hook):  # z: (batch, pos, head, d_head)
            z[:, :, index] = 0
            return z

        hooks.append(("blocks.0.attn.hook_z", zero_heads))
    if len(neurons):
        if not model.neuron_layers(model.cfg):
            raise GrokscopeError(
                f"neuron ablation needs an MLP every input passes through; this run's model is a {model.describe(model.cfg)}"
            )
        d_mlp = model.cfg.d_mlp
        bad = [n for n in neurons if not 0 <= n < d_mlp]
        if bad:
            raise GrokscopeError(f"no neuron {bad[0]} (the first MLP layer has {d_mlp}: 0..{d_mlp - 1})")
        index = torch.as_tensor(list(neurons))

        def zero_neurons(post, hook):  # post: (batch, [pos,] d_mlp)
            post[..., index] = 0
            return post

        hooks.append((model.neuron_layers(model.cfg)[0].hook_post, zero_neurons))
    if len(frequencies):
        if not transformer:
            raise GrokscopeError(
                f"frequency ablation needs a residual stream; this run's model is a {model.describe(model.cfg)}"
            )
        Q = frequency_directions(model, config, frequencies)

        def project_out(resid, hook):  # resid: (batch, pos, d_model)
            return resid - (resid @ Q) @ Q.T

        hooks.append(("blocks.0.hook_resid_pre", project_out))
    return hooks


def frequency_directions(model, config: RunConfig, frequencies: Sequence[int]) -> torch.Tensor:
    """Orthonormal basis (d_model, m) of the residual-stream directions that carry the given frequencies
    in the embedding: the cos k and sin k Fourier components of W_E (tokens in group coordinates)."""
    group = group_of(config.task)
    bad = [k for k in frequencies if not 1 <= k <= group.n // 2]
    if bad:
        raise GrokscopeError(f"no frequency {bad[0]} (frequencies are 1..{group.n // 2})")
    basis = fourier_basis(group.n).float()
    components = [c for c in range(1, group.n) if (c + 1) // 2 in set(frequencies)]
    directions = basis[components] @ model.embed.W_E[torch.as_tensor(group.tokens)]  # (m, d_model)
    Q, _ = torch.linalg.qr(directions.T)
    return Q


def ablation_table(result: dict[str, dict[str, float]]) -> str:
    """The result of `ablate` as aligned text lines."""
    lines = [f"{'':12}{'base':>12}{'ablated':>12}{'change':>12}"]
    for name, values in result.items():
        lines.append(f"{name:12}" + "".join(f"{values[k]:12.4g}" for k in ("base", "ablated", "change")))
    return "\n".join(lines)
