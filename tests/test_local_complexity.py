"""Local complexity (Humayun et al. 2024): the frame, the count against exact computations, the analysis over
checkpoints against the one-model form, its options and how it is cached."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import grokscope
from grokscope import analysis
from grokscope.analysis.local_complexity import (
    SETS,
    LocalComplexityOptions,
    PointSets,
    boundary_points,
    forward_from,
    frame,
    lc_rows,
    local_complexity,
)
from grokscope.config import ModelConfig
from grokscope.models import build_model, load_model
from grokscope.models.deep_mlp import DeepMLP

SMALL = {"radii": [0.5, 2.0], "directions": 4, "max_train": 12, "max_test": 12, "n_random": 12, "n_boundary": 6}


def digits_config(**overrides) -> grokscope.RunConfig:
    base = {
        "task.kind": "digits",
        "task.n_train": 60,
        "model.kind": "deep_mlp",
        "model.n_layers": 2,
        "model.d_mlp": 16,
        "model.bias": True,
        "train.steps": 12,
        "optim.warmup_steps": 0,
        "checkpoints.dense_until": 3,
        "checkpoints.n_log": 3,
        "checkpoints.n_uniform": 3,
    }
    return grokscope.RunConfig(name="digits").with_overrides({**base, **overrides})


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lc") / "digits"
    grokscope.train(digits_config(), out, progress=False)
    return grokscope.open_run(out)


def test_the_frame_is_orthonormal_and_the_same_on_every_call():
    directions = frame(64, 25, seed=0)
    assert directions.shape == (25, 64)
    torch.testing.assert_close(directions @ directions.T, torch.eye(25), atol=1e-6, rtol=0)
    assert torch.equal(directions, frame(64, 25, seed=0)) and not torch.equal(directions, frame(64, 25, seed=1))
    assert frame(3, 25, seed=0).shape == (3, 3)  # no more directions than dimensions


def test_the_first_layer_count_is_the_exact_hyperplane_hull_test(digits_run):
    model = load_model(digits_run, int(digits_run.steps[-1]))
    points = torch.randn(40, 64, generator=torch.Generator().manual_seed(0))
    directions = frame(64, 8, seed=3)
    layer = model.blocks[0].mlp
    for radius in (0.1, 1.0, 4.0):
        counts = local_complexity(model, points, points, directions, radius)[:, 0]
        # independent: the hyperplane w·z + b = 0 cuts the cross-polytope x ± r·v_k exactly when its value at
        # the centre is within r·max_k |w·v_k| of zero (the extremes of a linear function sit at vertices)
        centre = points @ layer.W_in + layer.b_in  # (N, d_mlp)
        reach = radius * (directions @ layer.W_in).abs().max(0).values  # (d_mlp,)
        exact = (centre.abs() < reach).sum(-1)
        assert torch.equal(counts, exact)


class Line:
    """A task of one continuous input, for a network whose regions are known."""

    kind, offers, d_vector, n_classes = "line", ("vectors",), 1, 2


def test_a_one_dimensional_network_with_known_kinks():
    """Layer 1: neuron i is relu(x − k_i); layer 2: neuron j reads neuron j alone, relu(x − k_j) − c_j, which
    changes sign at x = k_j + c_j. So on [x − r, x + r] layer 1 counts the k_i inside and layer 2 the k_j + c_j."""
    kinks, shifts = torch.tensor([-2.0, -0.5, 0.3, 1.0, 2.5]), torch.tensor([0.5, 0.25, 1.0, 0.1, 0.4])
    cfg = ModelConfig(kind="deep_mlp", n_layers=2, d_mlp=5, bias=True)
    model = DeepMLP(cfg, Line(), torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.blocks[0].mlp.W_in.copy_(torch.ones(1, 5))
        model.blocks[0].mlp.b_in.copy_(-kinks)
        model.blocks[1].mlp.W_in.copy_(torch.eye(5))
        model.blocks[1].mlp.b_in.copy_(-shifts)
    x = torch.tensor([[-1.0], [0.0], [0.8], [2.2], [5.0]])
    radius = 0.6
    counts = local_complexity(model, x, x, frame(1, 25, seed=0), radius)

    def inside(at: torch.Tensor) -> torch.Tensor:  # how many of `at` lie strictly inside each [x − r, x + r]
        return ((at > x - radius) & (at < x + radius)).sum(-1)

    assert torch.equal(counts[:, 0], inside(kinks)) and torch.equal(counts[:, 1], inside(kinks + shifts))
    assert counts.sum().item() > 0  # the case tests something


def test_boundary_points_sit_where_the_predicted_class_changes(digits_run):
    model = load_model(digits_run, int(digits_run.steps[-1]))
    inputs = model.task_inputs(digits_run.task, digits_run.dataset)
    found = boundary_points(model, inputs[:60], inputs, 10, seed=0)
    assert 0 < len(found) <= 10
    # a boundary point: a small step either way along some direction changes the prediction nearby; here:
    # its two nearest classes' logits are (almost) tied, within what 12 bisections leave
    logits = forward_from(model, found, inputs, layers=False)[0]
    top = logits.topk(2).values
    assert ((top[:, 0] - top[:, 1]) < 0.05 * top[:, 0].abs().clamp(min=1)).all()


def test_the_analysis_over_checkpoints_equals_the_one_model_form(digits_run, tmp_path):
    import shutil

    shutil.copytree(digits_run.path, tmp_path / "run")
    run = grokscope.open_run(tmp_path / "run")
    assert "local_complexity" not in analysis.missing(run)  # on request only
    analysis.analyze(run, only=["local_complexity"], options={"local_complexity": SMALL}, progress=False)
    cached = analysis.load(run, "local_complexity")
    options = LocalComplexityOptions(**SMALL)
    model = load_model(run, int(run.steps[0]))
    sets = PointSets.of(model, run, options)
    for row in (0, run.n_checkpoints - 1):
        one = lc_rows(load_model(run, int(run.steps[row])), sets, options)
        assert np.array_equal(cached["lc"][row], one["lc"], equal_nan=True)
    assert cached["lc"].shape == (run.n_checkpoints, len(SETS), 2, 2)
    assert np.isfinite(cached["lc"][:, :3]).all() and (cached["n_points"][:, :3] == 12).all()
    # once cached, a plain analyze keeps it current (with the options it was computed with)
    from grokscope.analysis.scheduler import by_default

    assert "local_complexity" in by_default(run) and "local_complexity" not in analysis.missing(run)


def test_options_persist_change_recomputes_and_bad_options_say_why(digits_run, tmp_path):
    import shutil

    shutil.copytree(digits_run.path, tmp_path / "run")
    run = grokscope.open_run(tmp_path / "run")
    every = {**SMALL, "every": 3}
    analysis.analyze(run, only=["local_complexity"], options={"local_complexity": every}, progress=False)
    lc = analysis.load(run, "local_complexity")["lc"]
    analysed = np.isfinite(lc[:, 0, 0, 0])
    expected = (np.arange(run.n_checkpoints) % 3 == 0) | (np.arange(run.n_checkpoints) == run.n_checkpoints - 1)
    assert np.array_equal(analysed, expected)
    assert analysis.analyze(run, only=["local_complexity"], progress=False) == []  # the cached options hold
    changed = {"local_complexity": {"radii": [1.0]}}
    assert analysis.analyze(run, only=["local_complexity"], options=changed, progress=False) == ["local_complexity"]
    assert analysis.load(run, "local_complexity")["lc"].shape[2] == 1
    with pytest.raises(grokscope.GrokscopeError, match="no option 'radius'"):
        analysis.analyze(run, only=["local_complexity"], options={"local_complexity": {"radius": 1}})
    with pytest.raises(grokscope.GrokscopeError, match="radii must be positive"):
        analysis.analyze(run, only=["local_complexity"], options={"local_complexity": {"radii": [-1]}})
    with pytest.raises(grokscope.GrokscopeError, match="takes no options"):
        analysis.analyze(run, only=["weight_norms"], options={"weight_norms": {"x": 1}})


@pytest.mark.parametrize("kind", ["transformer", "mlp"])
def test_token_models_count_their_neurons_in_their_perturbed_space(kind):
    from grokscope.tasks import make_task

    sizes = {"transformer": {"model.d_model": 8, "model.n_heads": 2, "model.d_head": 4}, "mlp": {}}[kind]
    config = grokscope.RunConfig().with_overrides({"task.p": 7, "model.kind": kind, "model.d_mlp": 16, **sizes})
    model = build_model(config).eval()
    task = make_task(config.task)
    inputs = model.task_inputs(task, task.dataset())
    from grokscope.analysis.local_complexity import space_points

    points = space_points(model, inputs)
    assert points.shape == (49, 3 * 8 if kind == "transformer" else 14)
    logits, pre = forward_from(model, points, inputs)
    torch.testing.assert_close(logits, model.output_logits(model(inputs)))  # unperturbed: the model itself
    assert len(pre) == 1 and pre[0].shape == (49, 16)  # the MLP neurons where the logits are read
    counts = local_complexity(model, points[:5], inputs, frame(points.shape[1], 25, 0), 1.0)
    assert counts.shape == (5, 1) and (counts >= 0).all() and (counts <= 16).all() and counts.sum() > 0


class Plane:
    """A task of two continuous inputs and two classes."""

    kind, offers, d_vector, n_classes = "plane", ("vectors",), 2, 2


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_finds_exactly_the_points_a_linear_model_cannot_defend(norm):
    """relu(x) − relu(−x) = x makes the deep MLP linear: logits A·x + b. The class-0 margin m(x) = Δ·x + β
    (Δ = A_0 − A_1) falls by at most eps·‖Δ‖_1 over an ℓ∞ ball, eps·‖Δ‖_2 over an ℓ2 ball (the dual norms):
    a point stays correct under attack exactly when m(x) exceeds that."""
    from grokscope.analysis.robustness import pgd

    cfg = ModelConfig(kind="deep_mlp", n_layers=1, d_mlp=4, bias=True)
    model = DeepMLP(cfg, Plane(), torch.Generator().manual_seed(0)).eval()
    A, b = torch.tensor([[1.5, -0.5], [-0.5, 1.0]]), torch.tensor([0.2, -0.1])
    with torch.no_grad():
        model.blocks[0].mlp.W_in.copy_(torch.tensor([[1.0, 0, -1, 0], [0, 1, 0, -1]]))
        model.blocks[0].mlp.b_in.zero_()
        model.unembed.W_U.copy_(torch.cat([A.T, -A.T]))
        model.unembed.b_U.copy_(b)
    model.attack_norm = norm
    points = torch.randn(400, 2, generator=torch.Generator().manual_seed(1))
    delta, beta = A[0] - A[1], b[0] - b[1]
    margin = points @ delta + beta
    keep = margin > 0  # points the model calls class 0
    eps = 0.3
    reach = eps * (delta.abs().sum() if norm == "linf" else delta.norm())
    clear = (margin - reach).abs() > 0.1 * reach  # ℓ2 PGD converges to the worst case, not onto it
    points, margin = points[keep & clear], margin[keep & clear]
    labels = torch.zeros(len(points), dtype=torch.long)
    attacked = pgd(model, points, labels, points, eps, eps / 4, 20, torch.Generator().manual_seed(2))
    robust = model(attacked).argmax(-1) == 0
    assert torch.equal(robust, margin > reach) and 0 < robust.sum() < len(points)
    size = (attacked - points).abs().max(-1).values if norm == "linf" else (attacked - points).norm(dim=-1)
    assert (size <= eps + 1e-5).all()


def test_the_robustness_analysis_reports_clean_and_adversarial_accuracy(digits_run, tmp_path):
    import shutil

    from grokscope.analysis.local_complexity import sample

    shutil.copytree(digits_run.path, tmp_path / "run")
    run = grokscope.open_run(tmp_path / "run")
    options = {"max_points": 40, "eps": 0.5, "every": 2}
    analysis.analyze(run, only=["robustness"], options={"robustness": options}, progress=False)
    result = analysis.load(run, "robustness")
    last = run.n_checkpoints - 1
    model = load_model(run, int(run.steps[last]))
    rows = sample(run.dataset.test_rows, 40, 1)  # the test sample: the seed + 1 of the options' seed 0
    vectors = model.task_inputs(run.task, run.dataset)[rows]
    independent = float((model(vectors).argmax(-1).numpy() == run.dataset.true_labels[rows]).mean())
    assert result["clean_acc"][last, 1] == pytest.approx(independent)
    analysed = np.isfinite(result["adv_acc"][:, 0])
    assert analysed[0] and not analysed[1] and analysed[last]
    assert (result["adv_acc"][analysed] <= result["clean_acc"][analysed]).all()


def test_a_cache_of_another_run_is_not_recomputed_unasked(analyzed_run, small_run, tmp_path):
    """An on-request result that does not load here (copied from another run) waits to be asked for again:
    a plain analyze would otherwise recompute it with the default options (minutes, not seconds)."""
    import shutil

    from grokscope.analysis.cache import path_of

    shutil.copytree(small_run.path, tmp_path / "run")
    run = grokscope.open_run(tmp_path / "run")
    spec = analysis.ANALYSES["local_complexity"]
    (run.path / "analysis").mkdir(exist_ok=True)
    shutil.copy(path_of(analyzed_run, spec), path_of(run, spec))
    assert "local_complexity" not in analysis.by_default(run)
    assert "local_complexity" not in analysis.analyze(run, progress=False)
    assert "local_complexity" in analysis.by_default(analyzed_run)  # its own cache: kept current
