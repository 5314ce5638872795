"""The mixture-of-experts transformer (router, top-k, load balancing) against plain references, and the pathway
metrics (edit distance, Jaccard, consistency, stability, the dense analogue) against hand-worked values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import grokscope
from grokscope import analysis
from grokscope.analysis.pathways import (
    PathwayOptions,
    Pathways,
    consistency,
    correlations,
    edit_distances,
    pathway_row,
    pathways_of,
)
from grokscope.models import build_model
from grokscope.tasks import make_task

MOE = {
    "task.p": 7,
    "task.train_frac": 0.5,
    "model.kind": "moe",
    "model.n_layers": 2,
    "model.d_model": 8,
    "model.n_heads": 2,
    "model.d_head": 4,
    "model.d_mlp": 8,
    "model.n_experts": 4,
    "model.top_k": 2,
    "model.router_z_coef": 0.001,
}


def moe_model(**overrides):
    config = grokscope.RunConfig(name="moe").with_overrides({**MOE, **overrides})
    model = build_model(config)
    task = make_task(config.task)
    return model, model.task_inputs(task, task.dataset()), config


def test_the_router_chooses_the_top_k_experts_and_the_block_sums_them_by_weight():
    model, inputs, _ = moe_model()
    mlp = model.blocks[0].mlp
    x = torch.randn(5, 3, 8, generator=torch.Generator().manual_seed(0))
    _, cache = model.run_with_cache(inputs[:5], names_filter=lambda n: n.startswith("blocks.0.mlp.hook"))
    with (
        torch.no_grad()
    ):  # the plain reference: per token, softmax over the experts, the two most probable, renormalised
        out = mlp(x)
        for b in range(5):
            for t in range(3):
                probs = torch.softmax(x[b, t] @ mlp.W_gate, -1)
                order = sorted(range(4), key=lambda e: -float(probs[e]))[:2]
                weights = probs[order] / probs[order].sum()
                expected = sum(w * mlp.experts[e](x[b, t][None])[0] for w, e in zip(weights, order))
                torch.testing.assert_close(out[b, t], expected, rtol=1e-5, atol=1e-6)
                assert mlp.routing[1][b, t].tolist() == order  # highest weight first
    weights, indices = cache["blocks.0.mlp.hook_expert_weights"], cache["blocks.0.mlp.hook_expert_indices"]
    assert weights.shape == (5, 3, 4) and indices.shape == (5, 3, 2)
    assert ((weights > 0).sum(-1) == 2).all() and torch.allclose(weights.sum(-1), torch.ones(5, 3))
    assert (weights.gather(-1, indices) > 0).all()


def test_the_router_losses_match_transformers_olmoe_and_reach_the_gradients(tmp_path):
    from transformers.models.olmoe.modeling_olmoe import load_balancing_loss_func  # the independent reference

    model, inputs, _ = moe_model(**{"model.n_layers": 3})
    rows = torch.tensor([0, 3, 5, 8, 13, 21])
    with torch.no_grad():
        model(inputs)
        got = float(model.extra_loss(rows))
    gate_logits = tuple(block.mlp.routing[0][rows].reshape(-1, 4) for block in model.blocks)
    balance = float(load_balancing_loss_func(gate_logits, num_experts=4, top_k=2))
    z = float(torch.cat(gate_logits).double().logsumexp(-1).square().mean())  # pooled over layers and tokens
    assert got == pytest.approx(0.01 * balance + 0.001 * z, rel=1e-5)  # theirs sums in float32
    # uniform routing gives top_k (Σ_e f_e = top_k whichever experts the ties pick; logsumexp of four zeros is log 4)
    with torch.no_grad():
        for block in model.blocks:
            block.mlp.W_gate.zero_()
        model(inputs)
    assert float(model.extra_loss(rows)) == pytest.approx(0.01 * 2 + 0.001 * np.log(4) ** 2, rel=1e-9)
    # the trainer adds them: one step with a larger coefficient moves the routers differently, same metrics at 0
    runs = {}
    for coef in (0.0, 1.0):
        config = grokscope.RunConfig(name="moe").with_overrides(
            {**MOE, "model.router_aux_coef": coef, "train.steps": 1, "optim.warmup_steps": 0}
        )
        runs[coef] = grokscope.open_run(grokscope.train(config, tmp_path / str(coef), progress=False))
    a, b = runs[0.0], runs[1.0]
    assert a.metrics["train_loss"][0] == b.metrics["train_loss"][0]  # the recorded loss is the task's alone
    assert not np.array_equal(a.trajectory("blocks.0.mlp.W_gate")[-1], b.trajectory("blocks.0.mlp.W_gate")[-1])


def test_neuron_ablation_on_an_moe_run_says_why_not():
    from grokscope.analysis.probes import ablate

    model, _, config = moe_model()
    with pytest.raises(grokscope.GrokscopeError, match="neuron ablation needs an MLP"):
        ablate(model, config, make_task(config.task).dataset(), neurons=[0])


def test_a_pathway_over_every_position_holds_each_positions_choices_in_turn():
    model, inputs, _ = moe_model()
    last = pathways_of(model, inputs[:6], PathwayOptions())
    every = pathways_of(model, inputs[:6], PathwayOptions(position="all"))
    assert every.ids.shape == (6, 2, 3 * 2)  # layers × (positions a, b, = × top-2)
    assert torch.equal(every.ids[:, :, -2:], last.ids)  # the `=` position last
    _, cache = model.run_with_cache(inputs[:6], names_filter=lambda n: n.endswith("hook_expert_indices"))
    assert every.ids[:, 0].tolist() == cache["blocks.0.mlp.hook_expert_indices"].flatten(1).tolist()
    torch.testing.assert_close(every.weights.sum(-1), torch.ones(6, 2))


def test_edit_distance_of_hand_worked_pathways():
    # pathways (2 layers × top-2): A = 1 2 | 3 4, B = 2 1 | 3 4, C = 1 2 | 4 3, D = 5 6 | 7 8
    ids = torch.tensor([[[1, 2], [3, 4]], [[2, 1], [3, 4]], [[1, 2], [4, 3]], [[5, 6], [7, 8]]])
    pairs = np.array([[0, 1], [0, 2], [0, 3]])
    # layer 1 only: A-B two substitutions of 2 symbols (1.0), A-C equal (0), A-D all differ (1.0)
    # both layers: A-B 2 of 4 (0.5), A-C 2 of 4 (0.5), A-D 4 of 4 (1.0)
    np.testing.assert_allclose(edit_distances(ids, pairs), [(1 + 0 + 1) / 3, (0.5 + 0.5 + 1) / 3], rtol=1e-6)
    # an insertion and a deletion cost one each (Levenshtein, not Hamming): 1 2 3 4 vs 2 3 4 9 is 2 edits
    shifted = torch.tensor([[[1, 2], [3, 4]], [[2, 3], [4, 9]]])
    assert edit_distances(shifted, np.array([[0, 1]]))[-1] == pytest.approx(2 / 4)


def test_jaccard_stability_and_consistency_by_hand():
    ids = torch.tensor([[[0, 1], [2, 3]], [[1, 2], [2, 3]]])
    weights = torch.tensor([[[0.75, 0.25], [0.5, 0.5]], [[0.5, 0.5], [1.0, 0.0]]])
    paths = Pathways(ids, weights, [4, 4])
    earlier = Pathways(torch.tensor([[[0, 1], [0, 1]], [[1, 2], [2, 3]]]), weights, [4, 4])
    # embeddings: layer 0 experts along e_0..e_3, layer 1 experts along e_0..e_3 too (d = 4)
    embeddings = torch.eye(4).expand(2, 4, 4)
    row = pathway_row(paths, earlier, np.array([[0, 1]]), embeddings)
    # layer 0 sets {0,1} vs {1,2}: 1 shared of 3 → distance 2/3; layer 1 {2,3} vs {2,3}: 0
    np.testing.assert_allclose(row["jaccard"], [2 / 3, 0.0], rtol=1e-6)
    # sample 0 kept its layer-0 set and lost its whole layer-1 set; sample 1 kept both
    np.testing.assert_allclose(row["stability"], [1.0, 0.5], rtol=1e-6)
    # sample 0: v0 = (.75, .25, 0, 0), v1 = (0, 0, .5, .5): cos 0; sample 1: v0 = (0, .5, .5, 0),
    # v1 = (0, 0, 1, 0): cos = .5 / (√.5 · 1)
    assert consistency(paths, embeddings) == pytest.approx((0 + 0.5 / np.sqrt(0.5)) / 2, rel=1e-6)
    assert np.isnan(consistency(paths, None))  # a dense model has no expert embeddings


def test_the_dense_analogue_takes_each_layers_most_active_neurons():
    config = grokscope.RunConfig(name="d").with_overrides(
        {"task.kind": "digits", "model.kind": "deep_mlp", "model.n_layers": 2, "model.d_mlp": 5}
    )
    model = build_model(config)
    with torch.no_grad():  # layer 0: neuron j reads pixel j with weight j + 1; layer 1: neuron j copies neuron 4 − j
        model.blocks[0].mlp.W_in.zero_()
        for j in range(5):
            model.blocks[0].mlp.W_in[j, j] = j + 1.0
        model.blocks[1].mlp.W_in.copy_(torch.eye(5).flip(1))
    x = torch.zeros(1, 64)
    x[0, :5] = 1.0
    paths = pathways_of(model, x, PathwayOptions(neurons=2))
    assert paths.ids.tolist() == [[[4, 3], [0, 1]]]  # activations 5 > 4 in layer 0; copied in reverse in layer 1
    torch.testing.assert_close(paths.weights[0, 0], torch.tensor([5 / 9, 4 / 9]))
    assert pathways_of(model, x, PathwayOptions(neurons=2, order="id")).ids.tolist() == [[[3, 4], [0, 1]]]
    # one active neuron where two are asked for: the other place is "none" (id 5), weight 0, in no set
    x = torch.zeros(1, 64)
    x[0, 2] = 1.0
    paths = pathways_of(model, x, PathwayOptions(neurons=2))
    assert paths.ids.tolist() == [[[2, 5], [2, 5]]] and paths.weights.tolist() == [[[1.0, 0.0], [1.0, 0.0]]]
    assert [u.nonzero()[:, 1].tolist() for u in paths.used()] == [[2], [2]]
    # GELU's negative outputs never make weights negative or above 1
    gelu = build_model(config.with_overrides({"model.act": "gelu"}))
    weights = pathways_of(gelu, torch.randn(50, 64), PathwayOptions(neurons=4)).weights
    assert (weights >= 0).all() and (weights <= 1 + 1e-6).all()


def test_pathways_over_training_are_cached_topped_up_and_correlated(tmp_path):
    config = grokscope.RunConfig(name="moe").with_overrides(
        {**MOE, "train.steps": 30, "optim.warmup_steps": 0, "checkpoints.dense_until": 5}
        | {"checkpoints.n_log": 3, "checkpoints.n_uniform": 3}
    )
    run = grokscope.open_run(grokscope.train(config, tmp_path / "run", progress=False))
    options = {"pathways": {"max_samples": 20, "n_pairs": 50}}
    analysis.analyze(run, only=["pathways"], options=options, progress=False)
    result = analysis.load(run, "pathways")
    n = len(run.steps)
    assert result["distance"].shape == (n, 2) and result["jaccard"].shape == (n, 2)
    assert result["consistency"].shape == (n,) and np.isnan(result["stability"][0]).all()
    assert np.isfinite(result["stability"][1:]).all() and np.isfinite(result["consistency"]).all()
    assert ((result["distance"] >= 0) & (result["distance"] <= 1)).all()
    # one checkpoint by hand: the routers' choices at `=` read through the hooks, a textbook edit distance
    from conftest import levenshtein
    from scipy.stats import rankdata

    from grokscope.analysis.local_complexity import sample
    from grokscope.analysis.pathways import sample_pairs
    from grokscope.models import load_model

    row = 4
    model = load_model(run, int(run.steps[row]))
    samples = sample(run.dataset.train_rows, 20, 0)
    _, cache = model.run_with_cache(model.task_inputs(run.task, run.dataset)[torch.as_tensor(samples)])
    hooks = [cache[f"blocks.{layer}.mlp.hook_expert_indices"][:, -1].tolist() for layer in range(2)]
    paths = [hooks[0][s] + hooks[1][s] for s in range(20)]  # layer 0's two experts, then layer 1's
    pairs = sample_pairs(20, 50, 0)
    expected = np.mean([levenshtein(paths[i], paths[j]) / 4 for i, j in pairs])
    assert result["distance"][row, -1] == pytest.approx(expected, rel=1e-6)
    # Spearman's ρ is Pearson's on the ranks
    (name, rho, _, n), *_ = correlations(run, result)
    accuracy = run.metrics["test_acc"][run.steps]
    assert name == "distance" and n == len(run.steps)
    assert rho == pytest.approx(np.corrcoef(rankdata(result["distance"][:, -1]), rankdata(accuracy))[0, 1], rel=1e-9)
