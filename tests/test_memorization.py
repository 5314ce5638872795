"""Corrupted-label runs, memorizing-neuron scores, pruning and grokking tickets."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
from conftest import WIDTH, P, coexistence_config, small_config
from safetensors.torch import load_file

import grokscope
from grokscope import analysis
from grokscope.analysis import analyze, group_of
from grokscope.analysis.memorization import activation_scores, ipr, ipr_scores, magnitude_scores, mlp_params
from grokscope.analysis.pruning import Pruner, load_pruned, split_accuracies
from grokscope.analysis.tickets import magnitude_mask, ticket
from grokscope.cli import main
from grokscope.models import load_model
from grokscope.store import layout


def numpy_ipr(v: np.ndarray, r: int = 2) -> float:
    """Doshi et al.'s definition, written independently: Σ_j (|rfft(v)_j| / ‖|rfft(v)|‖₂)^(2r)."""
    a = np.abs(np.fft.rfft(v))
    return float(np.sum((a / np.linalg.norm(a)) ** (2 * r)))


def test_ipr_is_taken_in_group_coordinates():
    """For a·b the neurons are read on Z_(p−1) by discrete logarithm: a neuron whose weights are one cosine
    of the logarithm has IPR 1 for a, b and its output; in token order it would look spread out."""
    config = small_config(**{"task.op": "mul", "model.kind": "mlp", "model.d_mlp": 4})
    group = group_of(config.task)
    wave = torch.tensor(np.cos(2 * np.pi * 3 * np.arange(group.n) / group.n), dtype=torch.float32)
    W_in, W_out = torch.randn(2 * P, 4), torch.randn(4, P)
    W_in[:, 0] = 0
    W_in[torch.as_tensor(group.tokens), 0] = wave
    W_in[P + torch.as_tensor(group.tokens), 0] = wave
    W_out[0] = 0
    W_out[0, torch.as_tensor(group.tokens)] = wave
    scores = ipr_scores({"mlp.W_in": W_in, "mlp.W_out": W_out}, config, group)
    for key in ("ipr_a", "ipr_b", "ipr_out", "ipr"):
        assert scores[key][0].item() == pytest.approx(1.0, abs=1e-5), key
        assert scores[key][1].item() < 0.5, key  # random weights: spread over frequencies
    assert ipr(W_in[:P, 0]).item() < 0.5  # the same neuron in token order


def test_ipr_matches_its_definition():
    n = 31
    x = np.arange(n)
    assert ipr(torch.tensor(np.cos(2 * np.pi * 5 * x / n))).item() == pytest.approx(1.0)  # one frequency
    delta = np.zeros(n)
    delta[3] = 1.0  # flat spectrum over the n // 2 + 1 rfft bins
    assert ipr(torch.tensor(delta)).item() == pytest.approx(1 / (n // 2 + 1))
    rng = np.random.default_rng(0)
    batch = rng.normal(size=(4, 7, n))
    expected = np.array([[numpy_ipr(v) for v in row] for row in batch])
    np.testing.assert_allclose(ipr(torch.tensor(batch)).numpy(), expected, rtol=1e-10)


def test_split_metrics_recorded_during_training_match_the_saved_model(coexistence_run):
    run = coexistence_run
    m = run.metrics
    for step in (0, int(run.steps[len(run.steps) // 3]), int(run.steps[-1])):
        acc = split_accuracies(load_model(run, step), run.config, run.task, run.dataset)
        assert m["corrupted_noisy_acc"][step] == pytest.approx(acc["corrupted_vs_noisy"])
        assert m["corrupted_true_acc"][step] == pytest.approx(acc["corrupted_vs_true"])
        assert m["clean_train_acc"][step] == pytest.approx(acc["clean_train"])
        assert m["test_acc"][step] == pytest.approx(acc["test"])
    # the run is in the coexistence phase the pruning test needs (see coexistence_config)
    assert m["corrupted_noisy_acc"][-1] >= 0.95 and m["test_acc"][-1] >= 0.85


def test_scores_batched_over_checkpoints_equal_the_one_checkpoint_form(coexistence_run):
    run = coexistence_run
    analyze(run, only=["memorization"], progress=False)
    cached = analysis.load(run, "memorization")
    group = group_of(run.config.task)
    for step in (0, int(run.steps[len(run.steps) // 2]), int(run.steps[-1])):
        row, model = run.row(step), load_model(run, step)
        params = {n: p.detach() for n, p in model.named_parameters()}
        single = {**ipr_scores(params, run.config, group), "magnitude": magnitude_scores(params, run.config)}
        single["activation"] = activation_scores(model, run.dataset)
        for key, value in single.items():
            np.testing.assert_allclose(cached[key][row], value.numpy(), rtol=1e-5, atol=1e-7, err_msg=key)
    ipr_last = cached["ipr"][-1]
    assert ipr_last.shape == (WIDTH,) and np.all((ipr_last > 0) & (ipr_last <= 1 + 1e-6))


def test_pruning_low_ipr_neurons_removes_memorization_and_keeps_generalization(coexistence_run):
    """Doshi et al.'s result on a run trained here. At 60% pruned, over seeds 0-4 of this config: lowest-IPR
    first leaves 21-35% of corrupted labels fitted (from 100%; chance is 1/31 ≈ 3%) and moves test accuracy
    by 0.00..+0.03; highest-IPR first leaves test accuracy at 1-5%. The thresholds leave margin over that."""
    low = Pruner(coexistence_run, None, "ipr", lowest=True)
    high = Pruner(coexistence_run, None, "ipr", lowest=False)
    n = round(0.6 * low.n_neurons)
    _, pruned_low = low.prune(n)
    _, pruned_high = high.prune(n)
    before, after = pruned_low["before"], pruned_low["after"]
    assert before["corrupted_vs_noisy"] >= 0.95
    assert after["corrupted_vs_noisy"] <= 0.45  # memorization mostly gone
    assert after["corrupted_vs_true"] > before["corrupted_vs_true"] + 0.3  # the true rule shows through
    assert after["test"] >= before["test"] - 0.03  # generalization kept
    assert pruned_high["after"]["test"] <= 0.15  # the periodic neurons carried generalization


def test_activation_score_also_finds_the_memorizing_neurons(coexistence_run):
    """The Fourier-free score finds the memorizing neurons too, less cleanly. At 50% pruned, over seeds 0-4:
    20-28% of corrupted labels still fitted (from 100%) while test accuracy falls 0.06-0.19: corrupted-label
    accuracy falls at least 3.5× as much as test accuracy in every seed."""
    low = Pruner(coexistence_run, None, "activation", lowest=True)
    _, report = low.prune(round(0.5 * low.n_neurons))
    before, after = report["before"], report["after"]
    assert after["corrupted_vs_noisy"] <= 0.4
    assert before["corrupted_vs_noisy"] - after["corrupted_vs_noisy"] >= 3 * (before["test"] - after["test"])


def test_prune_cli_writes_a_loadable_model_and_report(coexistence_run, tmp_path, capsys):
    run = coexistence_run
    out = tmp_path / "pruned"
    code = main(["prune", str(run.path), "--by", "ipr", "--fraction", "0.5", "--out", str(out), "--json"])
    stdout = capsys.readouterr().out
    assert code == 0
    report = json.loads(stdout)
    assert set(report) == {"neurons_pruned", "before", "after"}
    assert len(report["neurons_pruned"]) == WIDTH // 2
    for split in ("corrupted_vs_noisy", "corrupted_vs_true", "clean_train", "test"):
        assert 0 <= report["before"][split] <= 1 and 0 <= report["after"][split] <= 1
    model = load_pruned(out)
    W_in, W_out = mlp_params(dict(model.named_parameters()), model_config(out))
    pruned = report["neurons_pruned"]
    assert torch.all(W_in[:, pruned] == 0) and torch.all(W_out[pruned] == 0)
    kept = sorted(set(range(WIDTH)) - set(pruned))
    assert torch.equal(W_in[:, kept], run.params(int(run.steps[-1]))["mlp.W_in"][:, kept])
    assert split_accuracies(model, run.config, run.task, run.dataset) == report["after"]
    saved = json.loads((out / "report.json").read_text())
    assert {k: saved[k] for k in report} == report
    assert saved["settings"] == {"run": run.name, "step": int(run.steps[-1]), "by": "ipr", "order": "lowest"}


def model_config(path):
    return grokscope.RunConfig.from_dict(json.loads((path / layout.CONFIG).read_text()))


def test_prune_sweep_writes_the_table_and_figure_data(coexistence_run, tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(
        ["prune", str(coexistence_run.path), "--by", "magnitude", "--sweep", "--out", str(out), "--format", "svg"]
    )
    captured = capsys.readouterr()
    assert code == 0
    sweep = json.loads((out / "report.json").read_text())["sweep"]
    assert sweep["fraction"][0] == 0 and sweep["fraction"][-1] == 1
    assert sweep["test"][-1] < 0.1  # every neuron pruned: the model outputs nothing useful
    csv_lines = (out / "pruning_sweep.csv").read_text().splitlines()
    assert csv_lines[0].startswith("fraction,n_pruned,corrupted_vs_noisy") and len(csv_lines) == 42
    if shutil.which("chromium") or shutil.which("google-chrome"):
        assert (out / "pruning_sweep.svg").read_text().lstrip().startswith("<svg")
    else:
        assert "chromium" in captured.err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fraction", "1.5"], "--fraction must be in [0, 1]"),
        (["--fraction", "-0.1"], "--fraction must be in [0, 1]"),
        (["--count", "9999"], "the count to prune must be in [0, 256]"),
        (["--fraction", "0.1", "--step", "999999"], "step 999999 was not saved"),
    ],
)
def test_prune_bad_input_is_one_line(coexistence_run, capsys, args, message):
    before = sorted(p.name for p in coexistence_run.path.rglob("*"))
    code = main(["prune", str(coexistence_run.path), "--by", "ipr", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in coexistence_run.path.rglob("*")) == before  # nothing written


def test_a_model_without_an_mlp_is_refused():
    with pytest.raises(grokscope.GrokscopeError, match="need a single MLP layer"):
        mlp_params({"embed.W_E": torch.zeros(3, 3)}, small_config())


def test_transformer_neurons_are_scored_through_the_embedding(analyzed_run):
    """The canonical architecture: scores per block-0 neuron, input through W_E, output through W_U."""
    cached = analysis.load(analyzed_run, "memorization")
    d_mlp = analyzed_run.config.model.d_mlp
    assert cached["ipr"].shape == (len(analyzed_run.steps), d_mlp)
    assert np.isnan(cached["activation"]).all()  # no corrupted labels: no activation score
    # grokking makes the neurons periodic: their mean IPR rises from initialisation to the end
    assert cached["ipr"][-1].mean() > cached["ipr"][0].mean() + 0.1


def test_magnitude_mask_keeps_the_largest_weights_globally():
    params = {"a.W": torch.tensor([[0.1, -5.0], [2.0, 0.3]]), "b.W": torch.tensor([[-1.0, 0.2]]), "c.b": torch.zeros(2)}
    mask = magnitude_mask(params, keep=0.5)  # 3 of the 6 matrix weights
    assert mask["a.W"].tolist() == [[0, 1], [1, 0]] and mask["b.W"].tolist() == [[1, 0]]
    assert mask["c.b"].tolist() == [1, 1]  # biases are never masked
    with pytest.raises(grokscope.GrokscopeError, match="fraction of weights kept"):
        magnitude_mask(params, keep=0)


@pytest.fixture(scope="module")
def tickets(coexistence_run):
    """A ticket (mask at the last step) and both controls, 60 steps each."""
    run = coexistence_run
    return {
        kind: grokscope.open_run(
            ticket(run, None, 0.3, control=None if kind == "ticket" else kind, steps=60, progress=False)
        )
        for kind in ("ticket", "memorization", "random")
    }


def test_ticket_starts_from_the_masked_initial_weights_and_keeps_them_zero(coexistence_run, tickets):
    run, t = coexistence_run, tickets["ticket"]
    assert t.config.ticket.kind == "ticket" and t.config.ticket.keep == 0.3
    assert t.config.ticket.step == int(run.steps[-1]) and t.config.ticket.source == run.name
    mask = t.mask
    n_matrix = sum(m.numel() for n, m in mask.items())
    assert sum(int(m.sum()) for m in mask.values()) == round(0.3 * n_matrix)
    for name in t.param_names:
        np.testing.assert_array_equal(t.trajectory(name)[0], run.params(0)[name].numpy() * mask[name].numpy())
        masked = mask[name].numpy() == 0
        assert np.all(t.trajectory(name)[:, masked] == 0), name  # held at exactly zero every step
    assert np.any(t.trajectory("mlp.W_in")[-1] != t.trajectory("mlp.W_in")[0])  # the rest trains


def test_ticket_controls(coexistence_run, tickets):
    from grokscope.analysis import phase_steps

    memorized = phase_steps(coexistence_run)["memorization_end"]
    step = tickets["memorization"].config.ticket.step
    assert step >= memorized and step == int(coexistence_run.steps[coexistence_run.steps >= memorized][0])
    ticket_mask, random_mask = tickets["ticket"].mask, tickets["random"].mask
    memorization_mask = tickets["memorization"].mask
    expected = magnitude_mask(coexistence_run.params(step), 0.3)
    assert all(torch.equal(memorization_mask[n], m) for n, m in expected.items())  # the mask of that step
    for name, m in ticket_mask.items():
        assert int(random_mask[name].sum()) == int(m.sum())  # the same sparsity in every matrix
    assert any(not torch.equal(random_mask[n], m) for n, m in ticket_mask.items())
    for control in ("memorization", "random"):
        run = tickets[control]
        for name, m in run.mask.items():
            assert np.all(run.trajectory(name)[:, m.numpy() == 0] == 0), (control, name)


def test_ticket_refuses_bad_input(coexistence_run, tickets, capsys):
    for args, message in (
        (["--keep", "0"], "must be in (0, 1]"),
        (["--keep", "1.5"], "must be in (0, 1]"),
        (["--keep", "0.3", "--step", "999999"], "was not saved"),
        (["--keep", "0.3", "--step", "5", "--control", "memorization"], "--memorization-step"),
    ):
        assert main(["ticket", str(coexistence_run.path), *args]) == 2
        assert message in capsys.readouterr().err
    assert main(["ticket", str(tickets["ticket"].path), "--keep", "0.3"]) == 2
    assert "is itself a ticket" in capsys.readouterr().err


def test_ticket_resumes_exactly_after_a_crash(coexistence_run, tickets, tmp_path, monkeypatch):
    """A crash at a commit halfway leaves a ticket that resumes to the uninterrupted one, mask included."""
    real, calls = os.replace, {"n": 0}

    def replace(src, dst):
        calls["n"] += 1
        if calls["n"] == 40:  # creation takes 6; then two per checkpoint committed
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    out = tmp_path / "ticket"
    with pytest.raises(KeyboardInterrupt):
        ticket(coexistence_run, None, 0.3, steps=60, out=out, progress=False, commit_every_s=0)
    monkeypatch.undo()
    assert not grokscope.open_run(out).complete
    grokscope.train(out=out, resume=True, progress=False)
    resumed, reference = grokscope.open_run(out), tickets["ticket"]
    for name in reference.param_names:
        np.testing.assert_array_equal(resumed.trajectory(name), reference.trajectory(name))
    final = load_file(out / layout.FINAL)
    assert all(torch.equal(final[k], v) for k, v in load_file(reference.path / layout.FINAL).items())


def test_runs_made_before_the_later_metrics_and_keys_still_open_and_resume(small_run, tmp_path):
    path = tmp_path / "old"
    shutil.copytree(small_run.path, path)
    (path / layout.COMPLETE).unlink()  # an interrupted old run
    for column in layout.LATER_COLUMNS:
        (path / layout.METRICS / f"{column}.npy").unlink()
    config = json.loads((path / layout.CONFIG).read_text())
    del config["ticket"], config["grokfast"], config["model"]["dropout"], config["model"]["init_std"]
    del config["optim"]["orthograd"], config["schema_version"], config["task"]["kind"], config["task"]["n_train"]
    del config["model"]["init_scale"]  # a schema-1 config.json, as the first releases wrote it
    (path / layout.CONFIG).write_text(json.dumps(config))
    (path / layout.MARKER).unlink()  # nor did those releases write a marker
    run = grokscope.open_run(path)
    assert set(run.metrics) == {"step", "train_loss", "test_loss", "train_acc", "test_acc", "weight_norm"}
    assert run.config.model.dropout == 0 and run.config.ticket.kind == ""
    grokscope.train(out=path, resume=True, progress=False)
    resumed = grokscope.open_run(path)
    assert resumed.complete and set(resumed.metrics) == set(run.metrics)


def test_dropout_acts_in_training_only(tmp_path):
    config = coexistence_config(**{"model.dropout": 0.5, "train.steps": 20})
    model = grokscope.build_model(config)
    rows = torch.arange(P * P)
    model.eval()
    torch.testing.assert_close(model.plain_logits(rows), model.grid_logits(), rtol=1e-4, atol=1e-5)
    model.train()
    assert not torch.allclose(model.plain_logits(rows), model.grid_logits(), rtol=1e-3, atol=1e-4)
    with_dropout = grokscope.open_run(grokscope.train(config, tmp_path / "d", progress=False))
    without = grokscope.open_run(
        grokscope.train(config.with_overrides({"model.dropout": 0.0}), tmp_path / "n", progress=False)
    )
    assert not np.array_equal(with_dropout.trajectory("mlp.W_in")[-1], without.trajectory("mlp.W_in")[-1])
    with pytest.raises(grokscope.GrokscopeError, match="apply to model.kind 'mlp' only"):
        small_config(**{"model.dropout": 0.1})


def test_compare_table_tells_tickets_and_controls_apart(coexistence_run, tickets):
    from grokscope.figures.builders import run_table

    table = run_table([coexistence_run, tickets["ticket"], tickets["memorization"], tickets["random"]])
    assert table["kind"] == ["dense", "ticket", "memorization control", "random control"]
    assert table["weights kept"] == [1.0, 0.3, 0.3, 0.3]
    assert table["mask from"][1] == f"{coexistence_run.name} @ {int(coexistence_run.steps[-1])}"
    assert table["grokked at"][0] == coexistence_run.grok_step


def test_a_pruned_model_is_never_written_over_a_run(coexistence_run, small_run, capsys):
    before = (small_run.path / layout.CONFIG).read_text()
    code = main(["prune", str(coexistence_run.path), "--by", "ipr", "--count", "3", "--out", str(small_run.path)])
    assert code == 2 and "is a training run" in capsys.readouterr().err
    assert (small_run.path / layout.CONFIG).read_text() == before
