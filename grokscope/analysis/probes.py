"""Circuit probes at one checkpoint, through hooks on the plain forward over every input.

- `attention_patterns(model)`: where `=` attends, per head, for every input (hooks on the plain forward;
  for one layer the same numbers from the per-token scores, without running the MLP).
- `ablate(model, dataset, heads=, neurons=, frequencies=)`: zero-ablate attention heads (their output z),
  neurons of the first neuron layer (their activation), or remove frequencies from the model's inputs
  (`frequencies_removed`); reports loss (the run's own: cross-entropy, MSE or StableMax) and accuracy on
  train and test inputs before and after.
- `frequencies_removed(model, group, frequencies)`: for frequency k, the cos k and sin k components over
  the tokens (group coordinates) are subtracted from every map the tokens index (W_E; the one-hot MLP's
  input rows), so each token's input loses exactly its frequency-k part and nothing else. Projecting the
  directions of W_E's components out of the residual stream instead also removes whatever of the other
  frequencies lies along them: a weak frequency's direction is mostly the strong ones' leakage, and on the
  demo run projecting out frequencies 14, 18 and 27 (each under 1% of W_E's power) cost 3 to 9 points of
  test accuracy, while removing them over the tokens costs none.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext

import torch

from grokscope.analysis.fourier import fourier_basis, group_of
from grokscope.config import RunConfig
from grokscope.errors import GrokscopeError
from grokscope.tasks import Dataset, Group, make_task
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
    {"train_loss": {"base", "ablated", "change"}, "train_acc": ..., "test_loss": ..., "test_acc": ...}; on all
    inputs where the dataset has no split: {"all_loss": ..., "all_acc": ...}."""
    if not (len(heads) or len(neurons) or len(frequencies)):
        raise GrokscopeError("nothing to ablate: give heads, neurons or frequencies")
    hooks = ablation_hooks(model, heads, neurons)
    inputs = model.task_inputs(make_task(config.task), dataset)
    base = model.output_logits(model(inputs))
    with frequencies_removed(model, group_of(config.task), frequencies) if len(frequencies) else nullcontext():
        ablated = model.output_logits(model.run_with_hooks(inputs, fwd_hooks=hooks))
    out = {}
    splits = (
        (("train", dataset.train_rows, dataset.train_labels), ("test", dataset.test_rows, dataset.test_labels))
        if dataset.has_split
        else (("all", dataset.all_rows, dataset.true_labels[dataset.all_rows]),)
    )
    for split, split_rows, labels in splits:
        r, y = torch.as_tensor(split_rows), torch.as_tensor(labels)
        for metric, fn in (("loss", LOSSES[config.train.loss]), ("acc", accuracy)):
            b, a = float(fn(base[r], y)), float(fn(ablated[r], y))
            out[f"{split}_{metric}"] = {"base": b, "ablated": a, "change": a - b}
    return out


def ablation_hooks(model, heads, neurons) -> list:
    hooks = []
    if len(heads):
        if not model.has_attention:
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
    return hooks


@contextmanager
def frequencies_removed(model, group: Group, frequencies: Sequence[int]) -> Iterator[None]:
    """Within the block, the model without the given frequencies in its inputs (see the module's docstring):
    every map M of model.token_inputs() has M[t] ← M[t] − Σ_c F[c, x] (F·M[tokens])[c] for the token t of
    each coordinate x, c over the frequencies' components. The maps are restored on leaving."""
    bad = [k for k in frequencies if not 1 <= k <= group.n // 2]
    if bad:
        raise GrokscopeError(f"no frequency {bad[0]} (frequencies are 1..{group.n // 2})")
    maps = model.token_inputs()
    saved = [m.clone() for m in maps]
    tokens = torch.as_tensor(group.tokens)
    chosen = {int(k) for k in frequencies}
    F = fourier_basis(group.n)[[c for c in range(1, group.n) if (c + 1) // 2 in chosen]]  # (m, n) float64
    try:
        for m in maps:
            rows = m[tokens].double()
            m[tokens] = (rows - F.T @ (F @ rows)).to(m.dtype)
        yield
    finally:
        for m, original in zip(maps, saved):
            m.copy_(original)


def ablation_table(result: dict[str, dict[str, float]]) -> str:
    """The result of `ablate` as aligned text lines."""
    lines = [f"{'':12}{'base':>12}{'ablated':>12}{'change':>12}"]
    for name, values in result.items():
        lines.append(f"{name:12}" + "".join(f"{values[k]:12.4g}" for k in ("base", "ablated", "change")))
    return "\n".join(lines)
