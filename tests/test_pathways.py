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


def test_the_load_balancing_and_z_losses_match_a_plain_computation():
    model, inputs, _ = moe_model()
    rows = torch.tensor([0, 3, 5, 8, 13, 21])
    with torch.no_grad():
        model(inputs)
        got = float(model.extra_loss(rows))
    expected = 0.0
    for block in model.blocks:
        logits = block.mlp.routing[0][rows].reshape(-1, 4).double()
        tokens = len(logits)
        probs = torch.softmax(logits, -1)
        chosen = [set(torch.topk(probs[i], 2).indices.tolist()) for i in range(tokens)]
        share = [sum(e in c for c in chosen) / tokens for e in range(4)]  # f_e: tokens whose top-2 holds e
        mean_prob = probs.mean(0)
        expected += 0.01 * 4 * sum(share[e] * float(mean_prob[e]) for e in range(4))
        expected += 0.001 * float((torch.logsumexp(logits, -1) ** 2).mean())
    assert got == pytest.approx(expected, rel=1e-9)
    # perfect balance gives the loss's minimum, top_k × coefficient: uniform router probabilities
    with torch.no_grad():
        for block in model.blocks:
            block.mlp.W_gate.zero_()
        model(inputs)
    # (Σ_e f_e = top_k whichever experts the ties pick; logsumexp of four zeros is log 4), in both layers
    assert float(model.extra_loss(rows)) == pytest.approx(2 * (0.01 * 2 + 0.001 * np.log(4) ** 2), rel=1e-9)


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
    # one checkpoint by hand: the same samples and pairs, the model at that step
    from grokscope.analysis.local_complexity import sample
    from grokscope.analysis.pathways import sample_pairs
    from grokscope.models import load_model

    row = 4
    model = load_model(run, int(run.steps[row]))
    rows = sample(run.dataset.train_rows, 20, 0)
    inputs = model.task_inputs(run.task, run.dataset)[torch.as_tensor(rows)]
    paths = pathways_of(model, inputs, PathwayOptions())
    np.testing.assert_allclose(result["distance"][row], edit_distances(paths.ids, sample_pairs(len(rows), 50, 0)))
    names = [name for name, *_ in correlations(run, result)]
    assert names == ["distance", "jaccard", "consistency", "stability"]
    rho = {name: value for name, value, *_ in correlations(run, result)}
    assert all(np.isnan(v) or -1 <= v <= 1 for v in rho.values())
