"""Grokfast filters, StableMax, ⊥Grad and the numerical-stability metrics: each against its definition, and
in training runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import small_config

import grokscope
from grokscope.cli import main
from grokscope.figures.builders import LOSS_NAMES
from grokscope.models import load_model
from grokscope.store import layout
from grokscope.train.filters import GrokfastEMA, GrokfastMA, make_filter
from grokscope.train.losses import LOSSES, cross_entropy, softmax_collapse, stablemax, stablemax_cross_entropy
from grokscope.train.optim import make_optimizer, orthogonalize_

SHAPES = {"a": (3,), "b": (2, 2)}


def gradient_sequence(n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [{name: torch.randn(shape, generator=g) for name, shape in SHAPES.items()} for _ in range(n)]


def run_filter(filt, grads: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
    out = []
    for step in grads:
        step = {k: v.clone() for k, v in step.items()}
        filt.apply_(step)
        out.append(step)
    return out


def params_like() -> dict[str, torch.Tensor]:
    return {name: torch.zeros(shape) for name, shape in SHAPES.items()}


def test_grokfast_ema_matches_its_formula():
    alpha, lamb = 0.9, 2.0
    grads = gradient_sequence(6)
    filtered = run_filter(GrokfastEMA(params_like(), alpha, lamb), grads)
    for name in SHAPES:
        g = [step[name].double().numpy() for step in grads]
        mu = g[0]  # μ starts at the first gradient: the first filtered gradient is (1 + λ) g₀
        np.testing.assert_allclose(filtered[0][name].numpy(), (1 + lamb) * g[0], rtol=1e-6)
        for t in range(1, len(g)):
            mu = alpha * mu + (1 - alpha) * g[t]
            np.testing.assert_allclose(filtered[t][name].numpy(), g[t] + lamb * mu, rtol=1e-5, atol=1e-6)


def test_grokfast_ma_matches_its_formula_as_the_window_fills_and_slides():
    window, lamb = 3, 5.0
    grads = gradient_sequence(2 * window + 2)  # fills, then slides past the ring buffer's wrap twice
    filtered = run_filter(GrokfastMA(params_like(), window, lamb), grads)
    for name in SHAPES:
        g = [step[name].double().numpy() for step in grads]
        for t in range(len(g)):
            if t + 1 < window:  # fewer than w gradients held: left as they are
                expected = g[t]
            else:
                expected = g[t] + lamb * np.mean(g[t + 1 - window : t + 1], axis=0)
            np.testing.assert_allclose(filtered[t][name].numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["ema", "ma"])
def test_a_filter_state_round_trip_continues_exactly(kind):
    config = small_config(**{"grokfast.kind": kind, "grokfast.ma_window": 3}).grokfast
    grads = gradient_sequence(7)
    whole = make_filter(params_like(), config)
    expected = run_filter(whole, grads)
    first = make_filter(params_like(), config)
    run_filter(first, grads[:4])
    resumed = make_filter(params_like(), config)
    resumed.load_state(first.state())
    for got, want in zip(run_filter(resumed, grads[4:]), expected[4:]):
        assert all(torch.equal(got[k], want[k]) for k in SHAPES)
    with pytest.raises(ValueError, match="Grokfast"):
        resumed.load_state({k: v for k, v in first.state().items() if k != "grokfast.n_seen"})


def test_stablemax_matches_its_definition():
    logits = torch.tensor([[2.0, -1.5, 0.0, 0.25], [-3.0, -0.5, 4.0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 2])

    def s(x: float) -> float:
        return x + 1 if x >= 0 else 1 / (1 - x)

    for row, label in zip(logits.tolist(), labels.tolist()):
        total = sum(s(x) for x in row)
        expected = [s(x) / total for x in row]
        np.testing.assert_allclose(stablemax(torch.tensor(row, dtype=torch.float64)).numpy(), expected, rtol=1e-15)
    by_hand = np.mean([-math.log(s(row[y]) / sum(s(x) for x in row)) for row, y in zip(logits.tolist(), labels)])
    assert stablemax_cross_entropy(logits, labels).item() == pytest.approx(by_hand, rel=1e-14)


def test_stablemax_loss_and_gradient_are_finite_for_huge_float32_logits():
    g = torch.Generator().manual_seed(0)
    logits = ((torch.rand(64, 31, generator=g) * 2 - 1) * 1e4).float()
    logits[0] = 1e4  # ties at the extreme
    logits[1] = -1e4
    logits[2, :] = 0.0  # exactly at the kink
    logits.requires_grad_()
    labels = torch.randint(0, 31, (64,), generator=g)
    loss = stablemax_cross_entropy(logits, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert torch.isfinite(stablemax_cross_entropy(logits, labels, per_example=True)).all()
    # softmax cross-entropy in float32 on the same logits: most examples' softmax has collapsed
    assert softmax_collapse(logits.detach()).float().mean() > 0.9


def test_softmax_collapse_fraction_is_one_for_huge_logit_gaps_and_zero_for_small_logits():
    g = torch.Generator().manual_seed(0)
    small = torch.randn(200, 31, generator=g)  # gaps of a few units: every other class keeps some probability
    huge = small.clone()
    huge[torch.arange(200), torch.randint(0, 31, (200,), generator=g)] += 200.0  # exp(-200) is 0 in float32
    assert softmax_collapse(small).float().mean() == 0
    assert softmax_collapse(huge).float().mean() == 1
    # float64 cross-entropy still sees a loss; float32 cross-entropy is exactly zero for the collapsed correct class
    labels = huge.argmax(-1)
    assert (LOSSES["ce32"](huge, labels, per_example=True) == 0).all()
    assert (cross_entropy(huge, labels, per_example=True) == 0).all()  # gap 200 ≫ 37: float64 collapses too
    gap_30 = small.clone()
    gap_30[torch.arange(200), labels] += 30.0  # beyond float32's reach (≈ 17), within float64's (≈ 37)
    assert softmax_collapse(gap_30).all() and (cross_entropy(gap_30, labels, per_example=True) > 0).all()


def test_orthograd_gradient_is_orthogonal_to_the_weights_with_its_norm():
    g = torch.Generator().manual_seed(0)
    params = {n: torch.nn.Parameter(torch.randn(s, generator=g)) for n, s in {"W": (8, 5), "z": (4,)}.items()}
    params["z"].data.zero_()  # a zero tensor keeps its gradient
    grads = {n: torch.randn(p.shape, generator=g) + 3 * p.detach() for n, p in params.items()}  # partly along w
    for n, p in params.items():
        p.grad = grads[n].clone()
    orthogonalize_(params)
    W, gW = params["W"].detach().flatten(), params["W"].grad.flatten()
    assert abs(torch.dot(W, gW)) < 1e-5 * W.norm() * gW.norm()
    assert gW.norm().item() == pytest.approx(grads["W"].norm().item(), rel=1e-5)
    assert torch.equal(params["z"].grad, grads["z"])
    # the update of plain SGD behind ⊥Grad is orthogonal to the weights
    before = W.clone()
    torch.optim.SGD([params["W"]], lr=0.1).step()
    update = params["W"].detach().flatten() - before
    assert abs(torch.dot(update, before)) < 1e-5 * update.norm() * before.norm()


def test_orthograd_passes_the_base_optimizers_settings_through(tmp_path):
    """Three steps of a ⊥AdamW run with Grokfast-EMA equal a hand loop: the filter, then ⊥Grad, then torch's
    AdamW with the run's own betas and eps, on the gradients of the same forward; with other betas the run
    differs (they do reach the optimizer). Swapping the filter and ⊥Grad changes the result (checked)."""
    overrides = {"optim.orthograd": True, "optim.betas": [0.5, 0.6], "optim.eps": 1e-4, "optim.warmup_steps": 0}
    config = small_config(**overrides, **{"train.steps": 3, "grokfast.kind": "ema", "grokfast.ema_alpha": 0.5})
    run = grokscope.open_run(grokscope.train(config, tmp_path / "ortho", progress=False))
    model = grokscope.build_model(config)
    params = dict(model.named_parameters())
    opt, filt = make_optimizer(params, config.optim), make_filter(params, config.grokfast)
    rows, labels = torch.as_tensor(run.dataset.train_rows), torch.as_tensor(run.dataset.train_labels)
    for _ in range(3):
        opt.zero_grad()
        cross_entropy(model.grid_logits(grad_rows=rows)[rows], labels).backward()
        filt.apply_({name: p.grad for name, p in params.items()})
        orthogonalize_(params)
        opt.step()
    for name, p in params.items():
        torch.testing.assert_close(torch.tensor(run.trajectory(name)[-1]), p.detach(), rtol=1e-5, atol=1e-7)
    default_betas = config.with_overrides({"optim.betas": [0.9, 0.98]})
    other = grokscope.open_run(grokscope.train(default_betas, tmp_path / "other", progress=False))
    assert not np.allclose(other.trajectory("embed.W_E")[-1], run.trajectory("embed.W_E")[-1], rtol=1e-3)


def test_a_new_run_records_the_stability_metrics_of_its_logits(grokked_run):
    m = grokked_run.metrics
    for column in layout.STABILITY_COLUMNS:
        assert np.isfinite(m[column]).all(), column
    assert ((0 <= m["sc_fraction"]) & (m["sc_fraction"] <= 1)).all()
    # recomputed from the final model: the metrics at the last step are those of the final parameters
    model = load_model(grokked_run, int(grokked_run.steps[-1]))
    with torch.no_grad():
        logits = model.grid_logits()[torch.as_tensor(grokked_run.dataset.train_rows)]
    assert m["sc_fraction"][-1] == softmax_collapse(logits).double().mean().item()
    assert m["logit_norm"][-1] == pytest.approx(logits.double().norm(dim=-1).mean().item(), rel=1e-6)
    assert m["logit_norm"][-1] > m["logit_norm"][0]  # memorizing grows the logits


def test_a_stablemax_run_evaluates_with_stablemax(tmp_path):
    config = small_config(**{"train.loss": "stablemax", "optim.weight_decay": 0.0})
    run = grokscope.open_run(grokscope.train(config, tmp_path / "sm", progress=False))
    model = load_model(run, int(run.steps[-1]))
    data = run.dataset
    with torch.no_grad():
        logits = model.grid_logits()
    test_logits, test_labels = logits[torch.as_tensor(data.test_rows)], torch.as_tensor(data.test_labels)
    expected = stablemax_cross_entropy(test_logits, test_labels).item()
    assert run.metrics["test_loss"][-1] == pytest.approx(expected, rel=1e-6)
    assert expected != pytest.approx(cross_entropy(test_logits, test_labels).item(), rel=1e-3)
    assert run.metrics["train_acc"][-1] > 0.9  # it trains: 120 steps fit most of the tiny training set

    from grokscope.analysis.probes import ablate

    report = ablate(model, run.config, data, neurons=[0])
    assert report["test_loss"]["base"] == pytest.approx(expected, rel=1e-6)  # probes use the run's loss too


@pytest.mark.parametrize(
    "setting, message",
    [
        ("grokfast.kind=fast", "grokfast.kind must be one of"),
        ("grokfast.ma_window=0", "grokfast.ma_window must be at least 1"),
        ("grokfast.ema_alpha=1", "grokfast.ema_alpha must be in"),
        ("train.loss=softmax", "train.loss must be one of"),
        ("optim.orthograd=1", "expects true or false"),
    ],
)
def test_bad_intervention_settings_are_one_line_errors(tmp_path, capsys, setting, message):
    code = main(["train", "--preset", "tiny", "--set", setting, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_a_moving_average_window_longer_than_the_run_is_refused():
    with pytest.raises(grokscope.GrokscopeError, match="longer than train.steps .* the filter would never act"):
        small_config(**{"grokfast.kind": "ma", "grokfast.ma_window": 200})  # the run trains 120 steps


def test_a_float32_run_records_its_exactly_zero_losses(tmp_path, capsys):
    """ce32 without weight decay at lr 0.01: by step 120 about a quarter of the training losses are exactly 0 in
    float32. The column equals the per-example losses recomputed from the final model, and `info --json`
    reports it with the other stability columns."""
    config = small_config(**{"train.loss": "ce32", "optim.weight_decay": 0.0, "optim.lr": 0.01})
    run = grokscope.open_run(grokscope.train(config, tmp_path / "ce32", progress=False))
    model = load_model(run, int(run.steps[-1]))
    with torch.no_grad():
        logits = model.grid_logits()[torch.as_tensor(run.dataset.train_rows)]
    losses = LOSSES["ce32"](logits, torch.as_tensor(run.dataset.train_labels), per_example=True)
    zero = run.metrics["zero_loss_fraction"][-1]
    assert zero == (losses == 0).double().mean().item()
    assert 0.05 < zero < 0.95  # seen: 0.24
    assert main(["info", str(run.path), "--json"]) == 0
    final = json.loads(capsys.readouterr().out)["final"]
    assert final["zero_loss_fraction"] == zero and set(layout.STABILITY_COLUMNS) <= set(final)


def test_each_intervention_changes_training(tmp_path):
    """The same seeds and data with each intervention on: every one changes the weights (none is silently off)."""
    base = small_config(**{"train.steps": 30})
    plain = grokscope.open_run(grokscope.train(base, tmp_path / "plain", progress=False))
    for name, overrides in {
        "ema": {"grokfast.kind": "ema"},
        "ma": {"grokfast.kind": "ma", "grokfast.ma_window": 10},
        "stablemax": {"train.loss": "stablemax"},
        "ce32": {"train.loss": "ce32"},
        "orthograd": {"optim.orthograd": True},
    }.items():
        run = grokscope.open_run(grokscope.train(base.with_overrides(overrides), tmp_path / name, progress=False))
        assert not np.array_equal(run.trajectory("embed.W_E")[-1], plain.trajectory("embed.W_E")[-1]), name
        assert np.isfinite(run.metrics["train_loss"]).all(), name


@pytest.mark.slow
def test_orthograd_generalizes_where_plain_adamw_without_weight_decay_only_memorizes(tmp_path):
    """Prieto et al.'s claim at test size: the stability preset shrunk to p = 31 (60% train, 256 neurons, 1,000
    steps, no weight decay). Across seeds 0-4 plain AdamW ends at test accuracy 0.000 with a mean logit norm of
    ~40, ⊥AdamW at 0.78-0.89 with ~6.4: the thresholds (≤ 0.05, ≥ 0.5, norm ratio > 3) leave room for
    float rounding across CPUs without letting either outcome pass for the other."""
    overrides = {"task.p": 31, "task.train_frac": 0.6, "model.d_mlp": 256, "train.steps": 1000}
    overrides |= {"task.seed": 0, "model.seed": 0, "checkpoints.n_log": 20, "checkpoints.n_uniform": 20}
    base = grokscope.load_preset("stability").with_overrides(overrides)
    plain = grokscope.open_run(grokscope.train(base, tmp_path / "plain", progress=False)).metrics
    ortho = grokscope.open_run(
        grokscope.train(base.with_overrides({"optim.orthograd": True}), tmp_path / "ortho", progress=False)
    ).metrics
    assert plain["train_acc"][-1] == 1.0 and ortho["train_acc"][-1] == 1.0
    assert plain["test_acc"][-1] <= 0.05
    assert ortho["test_acc"][-1] >= 0.5
    assert plain["logit_norm"][-1] > 3 * ortho["logit_norm"][-1]


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_and_filter_is_named_in_the_run_tables(loss):
    from grokscope.figures.builders import training_label

    for kind, expected in (("", None), ("ema", "Grokfast-EMA α 0.98, λ 2"), ("ma", "Grokfast-MA w 100, λ 5")):
        label = training_label(small_config(**{"train.loss": loss, "grokfast.kind": kind, "optim.orthograd": True}))
        assert label.startswith("⊥AdamW lr 0.003, wd 1") and LOSS_NAMES[loss] in label
        assert expected is None or expected in label


def test_the_loss_names_agree_everywhere():
    from grokscope.config import LossName, choices

    assert set(choices(LossName)) == set(LOSSES) == set(LOSS_NAMES)


def test_the_training_curves_show_the_stability_columns_only_where_the_run_has_them(small_run, tmp_path):
    import shutil

    from grokscope.figures.builders import training_curves

    def names(run) -> set[str]:
        return {trace.name for trace in training_curves(run).figure.data}

    stability = {"mean logit norm (train)", "Softmax Collapse (float32 top probability exactly 1)", "loss exactly 0"}
    assert stability <= names(small_run)
    old = tmp_path / "old"  # a run made before the columns existed
    shutil.copytree(small_run.path, old)
    for column in layout.STABILITY_COLUMNS:
        (old / layout.METRICS / f"{column}.npy").unlink()
    assert not stability & names(grokscope.open_run(old))


def test_compare_shows_each_runs_sc_fraction_and_how_it_was_trained(small_run, tmp_path):
    from grokscope.figures.builders import compare, run_table, training_label

    config = small_config(**{"train.steps": 30, "optim.orthograd": True})
    ortho = grokscope.open_run(grokscope.train(config, tmp_path / "ortho", progress=False))
    plot = compare([small_run, ortho])
    sc_traces = [t for t in plot.figure.data if t.name.endswith("SC fraction")]
    assert [t.name for t in sc_traces] == [f"{small_run.name} SC fraction", "ortho SC fraction"]
    np.testing.assert_array_equal(sc_traces[1].y, ortho.metrics["sc_fraction"])
    table = run_table([small_run, ortho])
    assert table["training"] == [training_label(small_run.config), training_label(config)]
    assert table["training"][1].startswith("⊥AdamW") and not table["training"][0].startswith("⊥")
