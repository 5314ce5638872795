"""The fast grid path must be the plain model's maths: same logits and gradients to float32 precision."""

import pytest
import torch

from grokscope import build_model, load_preset
from grokscope.train.losses import cross_entropy

P = 23


def config(**overrides):
    base = {"task.p": P, "model.d_model": 32, "model.d_head": 8, "model.d_mlp": 64}
    return load_preset("canonical").with_overrides({**base, **overrides})


CASES = {
    "transformer": {},
    "transformer-gelu": {"model.act": "gelu"},
    "transformer-bias": {"model.bias": True},  # b_Q, b_K, b_V, b_O, b_in, b_out, b_U
    "mlp-square": {"model.kind": "mlp", "model.act": "square"},
    "mlp-bias-embed-relu": {"model.kind": "mlp", "model.bias": True, "model.d_embed": 16},
}


def perturbed(model):
    """Random non-zero values everywhere, biases included, so no term of the maths is skipped silently."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model


def fast_and_plain(model, rows, labels, grad_rows):
    fast = model.grid_logits(grad_rows=rows if grad_rows else None)[rows]
    fast_grads = torch.autograd.grad(cross_entropy(fast, labels), list(model.parameters()))
    plain = model.plain_logits(rows)
    plain_grads = torch.autograd.grad(cross_entropy(plain, labels), list(model.parameters()))
    return fast, plain, fast_grads, plain_grads


@pytest.mark.parametrize("grad_rows", [False, True], ids=["autograd", "grad-rows"])
@pytest.mark.parametrize("case", CASES)
def test_fast_logits_and_gradients_equal_the_plain_forward(case, grad_rows):
    model = perturbed(build_model(config(**CASES[case])))
    names = [n for n, _ in model.named_parameters()]
    rows = torch.randperm(P * P, generator=torch.Generator().manual_seed(0))[:300]
    labels = torch.randint(0, P, (300,), generator=torch.Generator().manual_seed(2))

    # in float64 the two forms are the same maths up to rounding at ~1e-16: any wrong term shows
    fast, plain, fast_grads, plain_grads = fast_and_plain(model.double(), rows, labels, grad_rows)
    torch.testing.assert_close(fast, plain, rtol=1e-10, atol=1e-10)
    for name, a, b in zip(names, fast_grads, plain_grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=f"float64 gradient of {name}")

    # in float32 (as trained) they agree to float32 precision: they sum the same terms in another
    # order, so differences are a few ulps of the largest terms (~1e-6 relative to the logit scale)
    fast, plain, fast_grads, plain_grads = fast_and_plain(model.float(), rows, labels, grad_rows)
    scale = plain.abs().max().item()
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5 * scale)
    # b_K's gradient is zero in exact arithmetic (a bias on the keys shifts all of a query's scores alike, and
    # softmax ignores that), so in float32 both forms give rounding noise: compare it at the scale of all
    largest = max(b.abs().max().item() for b in plain_grads)
    for name, a, b in zip(names, fast_grads, plain_grads):
        scale = largest if name.endswith("b_K") else b.abs().max().item()
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * scale, msg=f"gradient of {name}")


def test_multi_layer_transformer_trains_through_the_plain_forward(tmp_path):
    from conftest import small_config

    import grokscope

    config = small_config(**{"model.n_layers": 2, "train.steps": 60})
    run = grokscope.open_run(grokscope.train(config, tmp_path / "deep", progress=False))
    assert "blocks.1.mlp.W_in" in run.param_names
    loss = run.metrics["train_loss"]
    assert loss[-1] < 0.9 * loss[0]  # it learns: a 10% drop is far outside step-to-step noise at init


def test_transformer_names_follow_hooked_transformer():
    model = build_model(config())
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    assert shapes == {
        "embed.W_E": (P + 1, 32),
        "pos_embed.W_pos": (3, 32),
        "blocks.0.attn.W_Q": (4, 32, 8),
        "blocks.0.attn.W_K": (4, 32, 8),
        "blocks.0.attn.W_V": (4, 32, 8),
        "blocks.0.attn.W_O": (4, 8, 32),
        "blocks.0.mlp.W_in": (32, 64),
        "blocks.0.mlp.W_out": (64, 32),
        "unembed.W_U": (32, P),
    }


def test_run_with_cache_exposes_the_standard_hooks():
    model = build_model(config())
    tokens = torch.tensor([[1, 2, P], [3, 4, P]])
    logits, cache = model.run_with_cache(tokens)
    assert logits.shape == (2, 3, P)
    assert cache["blocks.0.attn.hook_pattern"].shape == (2, 4, 3, 3)
    assert cache["blocks.0.mlp.hook_post"].shape == (2, 3, 64)
    assert torch.all(cache["blocks.0.mlp.hook_post"] >= 0)  # ReLU
    # causal: the first position attends only to itself
    assert torch.allclose(cache["blocks.0.attn.hook_pattern"][:, :, 0, 0], torch.ones(2, 4))


def test_hooks_change_the_output():
    model = build_model(config())
    tokens = torch.tensor([[1, 2, P]])

    def zero(activation, hook):
        return torch.zeros_like(activation)

    clean = model(tokens)
    ablated = model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.mlp.hook_post", zero)])
    assert not torch.allclose(clean, ablated)


def test_initialisation_is_seeded():
    a, b = build_model(config()), build_model(config())
    c = build_model(config(**{"model.seed": 1}))
    assert torch.equal(a.embed.W_E, b.embed.W_E)
    assert not torch.equal(a.embed.W_E, c.embed.W_E)


@pytest.mark.parametrize("case", CASES)
def test_the_rows_only_form_equals_the_plain_forward(case):
    """What a step between evaluations computes (train.eval_every): logits and gradients of some rows only."""
    model = perturbed(build_model(config(**CASES[case]))).double()
    rows = torch.randperm(P * P, generator=torch.Generator().manual_seed(0))[:300]
    labels = torch.randint(0, P, (300,), generator=torch.Generator().manual_seed(2))
    fast = model.rows_logits(model.task_inputs(None, None), rows)
    fast_grads = torch.autograd.grad(cross_entropy(fast, labels), list(model.parameters()))
    plain = model.plain_logits(rows)
    plain_grads = torch.autograd.grad(cross_entropy(plain, labels), list(model.parameters()))
    torch.testing.assert_close(fast, plain, rtol=1e-10, atol=1e-10)  # float64: the same maths up to rounding
    for (name, _), a, b in zip(model.named_parameters(), fast_grads, plain_grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=f"float64 gradient of {name}")


def test_a_second_training_forward_before_the_first_backward_raises_not_corrupts():
    """The fast training forward writes into buffers the model reuses (Workspace); a backward whose saved
    activations were overwritten since must fail loudly (autograd's version counter), not give wrong gradients."""
    model = perturbed(build_model(config()))
    rows = torch.arange(0, P * P, 3)
    first = model.grid_logits(grad_rows=rows)[rows].sum()
    model.grid_logits(grad_rows=rows)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        first.backward()


def test_a_measurement_leaves_a_pending_backward_alone_and_inference_mode_does_not_stick():
    """A no-graph measurement between a training forward and its backward writes its own buffer; buffers made
    under torch.inference_mode are made again outside it."""
    model = perturbed(build_model(config()))
    rows = torch.arange(0, P * P, 3)
    loss = model.grid_logits(grad_rows=rows)[rows].sum()
    with torch.no_grad():
        measured = model.grid_logits()
    loss.backward()
    with torch.inference_mode():
        model.grid_logits()
    with torch.no_grad():
        torch.testing.assert_close(model.grid_logits(), measured, rtol=0, atol=0)  # the same weights: the same bits
