"""The Task and Model interfaces: every registered task with every registered model that can read it goes through
train → store → open → analyze → figures; what does not apply says so; the registries match the vocabularies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import grokscope
from grokscope import analysis, figures
from grokscope.config import ModelKind, TaskKind, choices
from grokscope.models import MODELS, load_model
from grokscope.tasks import TASKS, make_task

TASK_SIZES = {
    "modular": {"task.p": 7, "task.train_frac": 0.5},
    "digits": {"task.n_train": 100},
}
MODEL_SIZES = {
    # with HookedTransformer's biases: the bias-free transformer is every other test's model
    "transformer": {"model.d_model": 8, "model.n_heads": 2, "model.d_head": 4, "model.d_mlp": 16, "model.bias": True},
    "mlp": {"model.d_mlp": 16},
    "deep_mlp": {"model.n_layers": 2, "model.d_mlp": 16, "model.bias": True},
    "moe": {"model.n_layers": 2, "model.d_model": 8, "model.n_heads": 2, "model.d_head": 4, "model.d_mlp": 8}
    | {"model.n_experts": 4, "model.top_k": 2, "model.router_z_coef": 0.001},
}
IMPORTED = {"text": "hf"}  # the kinds only `grokscope import-hf` makes (tests/test_hf_import.py), never trained
PAIRS = [
    (t, m)
    for t, task in TASKS.items()
    for m, model in MODELS.items()
    if model.reads in task.offers and t not in IMPORTED
]


def tiny_config(task: str, model: str, **overrides) -> grokscope.RunConfig:
    base = {"task.kind": task, "model.kind": model, "train.steps": 12, "optim.warmup_steps": 0}
    base |= {"checkpoints.dense_until": 3, "checkpoints.n_log": 3, "checkpoints.n_uniform": 3}
    return grokscope.RunConfig(name=f"{task}-{model}").with_overrides(
        {**base, **TASK_SIZES[task], **MODEL_SIZES[model], **overrides}
    )


def test_the_registries_list_the_config_vocabularies():
    assert tuple(TASKS) == choices(TaskKind) and tuple(MODELS) == choices(ModelKind)
    # this file covers every kind grokscope trains
    assert set(TASK_SIZES) | set(IMPORTED) == set(TASKS) and set(MODEL_SIZES) | set(IMPORTED.values()) == set(MODELS)


def test_an_imported_kind_is_refused_for_training_in_one_line(tmp_path):
    config = {"task.kind": "text", "task.n_train": 4, "task.seq_len": 8, "task.vocab": 32, "model.kind": "hf"}
    with pytest.raises(grokscope.GrokscopeError, match="read from its checkpoint directories"):
        grokscope.train(grokscope.RunConfig().with_overrides(config), tmp_path / "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(grokscope.GrokscopeError, match="'text' and model.kind 'hf' go together"):
        grokscope.RunConfig().with_overrides({**config, "model.kind": "transformer"})


@pytest.mark.parametrize("task, model", PAIRS)
def test_every_task_and_model_trains_opens_analyzes_and_draws(task, model, tmp_path):
    run = grokscope.open_run(grokscope.train(tiny_config(task, model), tmp_path / "run", progress=False))
    assert run.complete and len(run.steps) >= 4
    # the metrics recorded at the last step are those of the saved model, recomputed through its plain forward
    net, dataset = load_model(run, int(run.steps[-1])), run.dataset
    logits = net.output_logits(net(net.task_inputs(run.task, dataset)))
    test_acc = (logits[dataset.test_rows].argmax(-1).numpy() == dataset.test_labels).mean()
    assert test_acc == pytest.approx(run.metrics["test_acc"][-1], abs=1e-12)
    computed = analysis.analyze(run, progress=False)
    skipped = analysis.not_applicable(run)
    on_request = {name for name, spec in analysis.ANALYSES.items() if spec.on_request}
    assert set(computed) == set(analysis.ANALYSES) - set(skipped) - on_request
    small = {"local_complexity": {"radii": [1.0], "max_train": 8, "max_test": 8, "n_random": 8, "n_boundary": 4}}
    small["robustness"] = {"max_points": 8, "iterations": 2}
    small = {name: options for name, options in small.items() if name not in skipped}
    assert analysis.analyze(run, only=list(small), options=small, progress=False) == list(small)
    layers = len(MODELS[model].neuron_layers(run.config.model))
    if layers:
        assert analysis.load(run, "local_complexity")["lc"].shape == (len(run.steps), 4, 1, layers)
    else:
        assert "experts" in skipped["local_complexity"]
    assert np.isfinite(analysis.load(run, "robustness")["adv_acc"]).all()
    assert {"weight_norms", "phases"} <= set(computed)  # these apply to every run
    assert all(reason and "\n" not in reason for reason in skipped.values())
    norms = analysis.load(run, "weight_norms")
    own = sum(float(p.detach().double().square().sum()) for p in net.parameters())
    assert norms["sq_norm"][-1] == pytest.approx(own, rel=1e-9)  # against the model's own parameters
    summary = analysis.summary(run)
    assert summary["step"] == int(run.steps[-1])
    assert (summary["key_frequencies"] is None) == ("key_frequencies" in skipped)
    not_drawn = figures.builders.not_applicable(run)
    assert set(figures.standard(run)) == set(figures.FIGURES) - set(not_drawn)
    assert ("embedding_spectrum" in not_drawn) == ("spectra" in skipped)
    for name in figures.standard(run):
        plot = figures.FIGURES[name][0](run, None)
        assert plot.figure.data and all(len(c) == len(next(iter(plot.data.values()))) for c in plot.data.values())


@pytest.mark.parametrize("task, model", [("digits", "transformer"), ("digits", "mlp")])
def test_a_model_that_cannot_read_the_task_is_refused_before_anything_is_written(task, model, tmp_path):
    config = tiny_config(task, "deep_mlp", **{"model.bias": False}).with_overrides({"model.kind": model})
    with pytest.raises(grokscope.GrokscopeError, match=f"model.kind '{model}' reads .*task.kind '{task}'"):
        grokscope.train(config, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_digits_are_standardised_with_training_statistics_only():
    config = tiny_config("digits", "deep_mlp").task
    task = make_task(config)
    data = task.dataset()
    x = task.vectors(data).double().numpy()
    train = x[data.train_rows]
    from sklearn.datasets import load_digits  # the independent reference: scikit-learn's own arrays

    raw = load_digits().data
    varying = raw[data.train_rows].std(0) > 0
    np.testing.assert_allclose(train.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(train.std(0)[varying], 1, atol=1e-5)
    assert (x[:, ~varying] == raw[:, ~varying] - raw[data.train_rows][:, ~varying].mean(0)).all()
    assert len(data.train_rows) == 100 and len(data.test_rows) == 1797 - 100
    assert (data.true_labels == load_digits().target).all()


def test_digits_in_unit_pixels_are_the_images_over_16_and_attacked_at_mnists_radius():
    from sklearn.datasets import load_digits

    from grokscope.analysis.robustness import RobustnessOptions, attack_settings

    standard = make_task(tiny_config("digits", "deep_mlp").task)
    unit = make_task(tiny_config("digits", "deep_mlp", **{"task.pixels": "unit"}).task)
    x = unit.vectors(unit.dataset()).double().numpy()
    np.testing.assert_allclose(x, load_digits().data / 16, atol=1e-7)  # float32 of k/16 is exact
    assert x.min() == 0 and x.max() == 1 and "pixels in [0, 1]" in unit.describe()
    # the default ℓ∞ radius follows the units: 0.25 standard deviations, or 0.1 in [0, 1]; an explicit eps wins
    assert attack_settings(RobustnessOptions(), "linf", standard) == (0.25, 0.0625)
    assert attack_settings(RobustnessOptions(), "linf", unit) == (0.1, 0.025)
    assert attack_settings(RobustnessOptions(eps=0.2), "linf", unit) == (0.2, 0.05)


def test_digits_label_corruption_is_seeded_and_counted():
    a = make_task(tiny_config("digits", "deep_mlp", **{"task.corrupt_frac": 0.2}).task).dataset()
    b = make_task(tiny_config("digits", "deep_mlp", **{"task.corrupt_frac": 0.2}).task).dataset()
    assert a.corrupted.sum() == 20 and (a.train_labels == b.train_labels).all()
    changed = a.train_labels != a.true_labels[a.train_rows]
    assert not changed[~a.corrupted].any() and changed[a.corrupted].mean() > 0.7  # 9 in 10 draws differ


@pytest.mark.parametrize("n_train", [1797, 10_000])
def test_a_split_without_test_inputs_is_refused(n_train):
    with pytest.raises(grokscope.GrokscopeError, match="at least 1 training and 1 test input"):
        make_task(tiny_config("digits", "deep_mlp", **{"task.n_train": n_train}).task).dataset()


def test_init_scale_multiplies_every_initial_parameter():
    config = tiny_config("digits", "deep_mlp")
    one, six = grokscope.build_model(config), grokscope.build_model(config.with_overrides({"model.init_scale": 6.0}))
    for (name, a), (_, b) in zip(one.named_parameters(), six.named_parameters()):
        torch.testing.assert_close(6 * a, b, msg=name)


def test_deep_mlp_hooks_and_names_follow_hooked_transformer():
    model = grokscope.build_model(tiny_config("digits", "deep_mlp"))
    names = [n for n, _ in model.named_parameters()]
    assert names == [*(f"blocks.{i}.mlp.{w}" for i in range(2) for w in ("W_in", "b_in")), "unembed.W_U", "unembed.b_U"]
    x = torch.randn(5, 64)
    logits, cache = model.run_with_cache(x)
    pre = cache["blocks.1.mlp.hook_pre"]
    torch.testing.assert_close(cache["blocks.1.mlp.hook_post"], pre.relu())
    torch.testing.assert_close(logits, cache["blocks.1.mlp.hook_post"] @ model.unembed.W_U + model.unembed.b_U)
    unbiased = grokscope.build_model(tiny_config("digits", "deep_mlp", **{"model.bias": False}))
    assert [n for n, _ in unbiased.named_parameters()] == ["blocks.0.mlp.W_in", "blocks.1.mlp.W_in", "unembed.W_U"]


def test_the_figures_command_names_what_does_not_apply(tmp_path, capsys):
    from grokscope.cli import main

    run = grokscope.train(tiny_config("digits", "deep_mlp"), tmp_path / "run", progress=False)
    assert main(["figures", str(run), "--out", str(tmp_path / "figs"), "--only", "neuron_clusters"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("grokscope: error: the figure neuron_clusters does not apply") and "\n" not in error
    assert not (tmp_path / "figs").exists()


def test_what_the_deep_mlp_lacks_is_a_one_line_error(tmp_path):
    from grokscope.analysis.memorization import activation_scores
    from grokscope.analysis.pruning import Pruner

    config = tiny_config("modular", "deep_mlp", **{"model.n_layers": 1, "task.corrupt_frac": 0.2})
    run = grokscope.open_run(grokscope.train(config, tmp_path / "run", progress=False))
    net = load_model(run, int(run.steps[-1]))
    with pytest.raises(grokscope.GrokscopeError, match="activation score needs a transformer or one-hot MLP"):
        activation_scores(net, run.dataset)
    with pytest.raises(grokscope.GrokscopeError, match="activation score needs"):
        Pruner(run, None, "activation")
    with pytest.raises(grokscope.GrokscopeError, match="Fourier measures do not apply"):
        analysis.measure_model(net, run.config, run.dataset)
    assert Pruner(run, None, "magnitude").n_neurons == 16  # one hidden layer with unembed.W_U as its W_out
