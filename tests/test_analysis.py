"""Analyses: the Fourier conventions, the two forms agreeing, the cache, and the science on a grokked run."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
from conftest import small_config

import grokscope
from grokscope import analysis
from grokscope.analysis.cache import ANALYSIS_DIR
from grokscope.analysis.fourier import (
    component_frequency,
    fourier_basis,
    gini,
    group_of,
    per_frequency,
)
from grokscope.analysis.neurons import cluster, frequency_fractions
from grokscope.analysis.progress import key_directions, key_frequencies_by_power, phases
from grokscope.analysis.weights import spectra
from grokscope.config import TaskConfig
from grokscope.models import load_model
from grokscope.store import layout
from grokscope.tasks.modular import primitive_root


@pytest.mark.parametrize("n", [2, 7, 12, 31])
def test_fourier_basis_is_orthonormal_in_the_documented_order(n):
    F = fourier_basis(n)
    assert torch.allclose(F @ F.T, torch.eye(n, dtype=F.dtype), atol=1e-12)
    x = torch.arange(n, dtype=torch.float64)
    assert torch.allclose(F[0], torch.full((n,), n**-0.5, dtype=F.dtype))
    if n > 2:  # component 1 is cos 1, component 2 is sin 1
        assert torch.allclose(F[1], torch.cos(2 * math.pi * x / n) / math.sqrt(n / 2))
        assert torch.allclose(F[2], torch.sin(2 * math.pi * x / n) / math.sqrt(n / 2))
    assert list(component_frequency(n)) == [(c + 1) // 2 for c in range(n)]


def test_a_hand_built_embedding_is_recovered_exactly():
    p, keys = 31, (3, 7)
    x = torch.arange(p, dtype=torch.float64)
    columns = [torch.cos(2 * math.pi * k * x / p) for k in keys] + [torch.sin(2 * math.pi * 7 * x / p)]
    W_E = torch.zeros(p + 1, 8)
    W_E[:p, :3] = torch.stack(columns, dim=1).float()
    config = grokscope.load_preset("tiny").with_overrides({"model.d_model": 8, "model.d_head": 2})
    params = {n: t.detach()[None] for n, t in grokscope.build_model(config).named_parameters()}
    params["embed.W_E"] = W_E[None]
    power = spectra(params, config, group_of(config.task))["embed_freq_power"][0]
    # cos k has squared norm p/2 over Z_p: frequency 3 holds p/2, frequency 7 (cos and sin) holds p
    expected = torch.zeros(p // 2 + 1, dtype=torch.float64)
    expected[3], expected[7] = p / 2, p
    assert torch.allclose(power, expected, atol=1e-4)
    assert key_frequencies_by_power(power.numpy()).tolist() == [3, 7]


def test_a_neuron_reading_one_frequency_has_all_its_variance_there():
    n, k = 31, 5
    x = torch.arange(n, dtype=torch.float64)
    wave = 2 * math.pi * k / n
    acts = torch.stack(
        [
            torch.cos(wave * (x[:, None] + x[None, :])),  # the (c_k c_k, s_k s_k) block
            torch.cos(wave * x)[:, None].expand(n, n) + 0.5 * torch.sin(wave * x)[None, :],  # the (k, 0), (0, k) parts
            torch.randn(n, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64),
        ],
        dim=-1,
    )  # [x, y, neuron]
    fractions = frequency_fractions(acts)
    assert torch.allclose(fractions[:2, k - 1], torch.ones(2, dtype=torch.float64))
    assert fractions[:2].sum(-1).allclose(torch.ones(2, dtype=torch.float64))
    c = cluster(fractions)
    assert c["frequency"][:2].tolist() == [k, k] and c["clustered"].tolist() == [True, True, False]
    # noise spreads over all frequencies: its largest share is far below the 0.85 cluster threshold
    assert fractions[2].max() < 0.5


def test_gini_of_known_vectors():
    values = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    assert gini(values).tolist() == pytest.approx([0.0, 0.75, 0.0])


def test_multiplicative_tasks_use_discrete_log_coordinates():
    for op, sign in (("mul", 1), ("div", -1)):
        group = group_of(TaskConfig(op=op, p=13))
        g = primitive_root(13)
        assert g == 2 and group.n == 12 and group.sign == sign
        assert sorted(group.tokens.tolist()) == list(range(1, 13))  # every nonzero residue once
        x, y = np.divmod(np.arange(144), 12)
        a, b = group.tokens[x], group.tokens[y]
        label = (a * b) % 13 if op == "mul" else (a * np.array([pow(int(v), 11, 13) for v in b])) % 13
        assert (group.tokens[group.label_coordinate()] == label).all()
    with pytest.raises(grokscope.GrokscopeError, match="has none"):
        group_of(TaskConfig(op="poly", p=13))


def test_key_directions_are_orthonormal_with_even_n():
    group = group_of(TaskConfig(op="mul", p=13))  # n = 12 is even: frequency 6 has no sine
    Q = key_directions(group, np.array([1, 4, 6]))
    assert Q.shape == (144, 5)
    assert torch.allclose(Q.T @ Q, torch.eye(5, dtype=Q.dtype), atol=1e-12)


def test_phases_on_synthetic_curves():
    steps = np.arange(1000)
    train_acc = np.where(steps >= 100, 1.0, 0.5)
    test_loss = np.where(steps < 400, 5.0, 5.0 * np.exp(-(steps - 400) / 50))
    bounds = phases(train_acc >= 0.99, test_loss)
    assert bounds["memorization_end"] == 100
    # log loss falls linearly from 400 (slope 1/50 per step); its total fall by step 999 is 599/50
    assert bounds["cleanup_start"] == 400 + math.ceil(0.1 * 599)
    assert bounds["stable_start"] == 400 + math.ceil(0.9 * 599)
    flat = phases(train_acc >= 0.99, np.full(1000, 5.0))  # no fall: no clean-up
    assert flat == {"memorization_end": 100, "cleanup_start": None, "stable_start": None}


@pytest.fixture
def analyzed(analyzed_run):
    return analyzed_run


def test_batched_and_one_checkpoint_forms_agree(analyzed):
    keys = analysis.load(analyzed, "key_frequencies")["frequencies"]
    cached = {name: analysis.load(analyzed, name) for name in ("spectra", "weight_norms", "neurons", "progress")}
    for row in (0, len(analyzed.steps) // 3, len(analyzed.steps) - 1):
        step = int(analyzed.steps[row])
        single = analysis.measure_model(load_model(analyzed, step), analyzed.config, analyzed.dataset, keys)
        for name, result in cached.items():
            for key, values in result.items():
                if key in ("steps", "key_frequencies", "threads"):
                    continue
                if key == "frequency":  # an argmax: it must agree where it is decided (clustered neurons);
                    clustered = single["fraction"] >= 0.85  # near-ties elsewhere may break either way
                    np.testing.assert_array_equal(values[row][clustered], single[key][clustered])
                    continue
                np.testing.assert_allclose(values[row], single[key], rtol=2e-4, atol=1e-5, err_msg=f"{name}.{key}")


def test_a_grokked_run_shows_the_circuit(analyzed):
    run = analyzed
    summary = analysis.summary(run)
    # A handful of key frequencies (of 15) carries most of W_E's non-constant power: with a random
    # embedding 3 frequencies would hold about 3/15 = 20%; the grokked tiny run measures ~88%.
    assert 1 <= len(summary["key_frequencies"]) <= 6
    assert summary["key_power_share"] >= 0.6
    # Most neurons cluster to one frequency (share >= 0.85, a level noise neurons never reach, see the
    # synthetic test); the grokked tiny run measures ~69%.
    assert summary["clustered_neuron_share"] >= 0.5

    steps, metrics, progress = run.steps, run.metrics, analysis.load(run, "progress")
    restricted, test_loss = progress["restricted_loss"], metrics["test_loss"][steps]
    # "Falls below its initial value" read as: halves, so step-to-step noise at the start cannot decide it.
    # The restricted loss halves at ~step 54, the test loss at ~step 296.
    assert restricted.min() < 0.5 * restricted[0] and test_loss.min() < 0.5 * test_loss[0]
    assert steps[np.argmax(restricted < 0.5 * restricted[0])] < steps[np.argmax(test_loss < 0.5 * test_loss[0])]

    bounds = analysis.phase_steps(run)
    assert None not in bounds.values()
    assert 0 < bounds["memorization_end"] < bounds["cleanup_start"] < bounds["stable_start"] <= steps[-1]
    # The excluded loss on train rises after memorization (to ~2x on this run) while train loss is low.
    excluded = progress["excluded_loss"]
    start, end = np.searchsorted(steps, bounds["memorization_end"]), np.searchsorted(steps, bounds["stable_start"])
    peak = start + int(np.argmax(excluded[start:end]))
    assert excluded[peak] > 1.5 * excluded[start]
    assert metrics["train_loss"][steps[peak]] < 0.01 * excluded[peak]


def test_probes_hurt_with_key_frequencies_not_others(analyzed):
    from grokscope.analysis.probes import ablate, attention_patterns

    model = load_model(analyzed, int(analyzed.steps[-1]))
    keys = analysis.load(analyzed, "key_frequencies")["frequencies"]
    other = next(k for k in range(1, 16) if k not in keys)
    hit = ablate(model, analyzed.config, analyzed.dataset, frequencies=[int(keys[0])])
    miss = ablate(model, analyzed.config, analyzed.dataset, frequencies=[other])
    # one key frequency of ~3 removed costs clearly more test accuracy (measured ~16 points) than a
    # frequency the network does not use (measured 0)
    assert hit["test_acc"]["change"] < -0.05
    assert miss["test_acc"]["change"] > -0.01
    every = ablate(model, analyzed.config, analyzed.dataset, neurons=range(model.cfg.d_mlp))
    assert every["test_acc"]["ablated"] < 0.5
    pattern = attention_patterns(model)
    assert pattern.shape == (31 * 31, model.cfg.n_heads, 3)
    assert torch.allclose(pattern.sum(-1), torch.ones(()))
    with pytest.raises(grokscope.GrokscopeError, match="no head"):
        ablate(model, analyzed.config, analyzed.dataset, heads=[99])


def half_durable(path) -> dict:
    """Make the run at `path` look still training, with only the first half of its checkpoints durable;
    returns its progress record, to write back when it has "trained on"."""
    progress = layout.read_json(path / layout.PROGRESS)
    n = progress["n_checkpoints"] // 2
    step = int(np.load(path / layout.STEPS)[n - 1])
    half = dict(progress, n_checkpoints=n, n_metric_steps=step, step=step, state=layout.state_name(step))
    half["checksums"] = progress["checksums"][:n]
    layout.write_json(path / layout.PROGRESS, half)
    return progress


def test_cache_is_reused_topped_up_and_recomputed_when_stale_or_corrupt(small_run, tmp_path, capsys):
    path = tmp_path / "run"
    shutil.copytree(small_run.path, path)
    run = grokscope.open_run(path)
    full = len(run.steps)
    progress = half_durable(path)
    run.refresh()
    by_default = {name for name, spec in analysis.ANALYSES.items() if not spec.on_request}
    assert set(analysis.analyze(run, progress=False)) == by_default
    assert len(analysis.load(run, "neurons")["steps"]) == full // 2

    layout.write_json(path / layout.PROGRESS, progress)
    run.refresh()
    analysis.analyze(run, progress=False)  # topped up to every checkpoint
    topped = {name: analysis.load(run, name) for name in ("spectra", "neurons", "weight_norms")}
    assert analysis.analyze(run, progress=False) == []  # nothing left to do

    shutil.copytree(small_run.path, tmp_path / "fresh")
    fresh = {name: analysis.load(grokscope.open_run(tmp_path / "fresh"), name) for name in topped}
    for name, result in topped.items():  # bit for bit: a row gets the same bits whenever it is computed
        for key in result:
            np.testing.assert_array_equal(result[key], fresh[name][key], err_msg=f"{name}.{key}")

    corrupt = path / ANALYSIS_DIR / "neurons@v1.npz"
    corrupt.write_bytes(corrupt.read_bytes()[:100])
    assert "neurons" in analysis.analyze(run, progress=False)
    assert "neurons@v1.npz" in capsys.readouterr().err
    # files that load but lack an array, or hold one of the wrong shape, are not trusted either
    damaged = dict(analysis.load(run, "progress"))
    del damaged["excluded_loss"]
    layout.write_npz(path / ANALYSIS_DIR / "progress@v1.npz", damaged)
    keys = dict(analysis.load(run, "key_frequencies"), step=np.array([1, 2]))
    layout.write_npz(analysis.cache.path_of(run, analysis.ANALYSES["key_frequencies"]), keys)
    assert {"progress", "key_frequencies"} <= set(analysis.analyze(run, progress=False))
    assert "excluded_loss missing" in capsys.readouterr().err


def test_a_pinned_run_keeps_its_state_and_analyses_while_the_run_goes_on(small_run, tmp_path):
    """What the app draws while analyses top up in the background: the run pinned where the last pass
    left it. Training going on and a new pass rewriting the cache must not move it."""
    path = tmp_path / "run"
    shutil.copytree(small_run.path, path)
    progress = half_durable(path)
    run = grokscope.open_run(path)
    analysis.analyze(run, progress=False)
    pinned = run.pinned()
    half = {name: analysis.load(pinned, name) for name in ("spectra", "neurons", "phases")}
    steps = pinned.steps.copy()
    layout.write_json(path / layout.PROGRESS, progress)  # training went on (and finished)
    analysis.analyze(grokscope.open_run(path), progress=False)  # the next pass rewrote the cache
    pinned.refresh()
    assert np.array_equal(pinned.steps, steps) and len(steps) == progress["n_checkpoints"] // 2
    assert not pinned.complete and pinned.n_metric_steps == int(steps[-1])
    for name, result in half.items():
        again = analysis.load(pinned, name)
        assert all(np.array_equal(again[k], v) for k, v in result.items()), name
    assert len(analysis.load(pinned, "neurons")["steps"]) == len(steps)
    assert len(analysis.load(grokscope.open_run(path), "neurons")["steps"]) == progress["n_checkpoints"]


def test_a_top_up_uses_the_thread_count_of_the_cached_rows(small_run, tmp_path, capsys):
    # float reductions split across CPU threads round differently (on this run, 1 and 2 threads give other
    # neuron fractions and restricted losses in the last bits): rows topped up with another count than the
    # cached ones would make a result that no clean analysis gives. The top-up uses the cached count.
    per_checkpoint = [name for name, spec in analysis.ANALYSES.items() if spec.rows and not spec.on_request]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        clean = tmp_path / "clean"
        shutil.copytree(small_run.path, clean)
        analysis.analyze(grokscope.open_run(clean), progress=False)
        expected = {name: analysis.load(grokscope.open_run(clean), name) for name in per_checkpoint}

        path = tmp_path / "run"
        shutil.copytree(small_run.path, path)
        progress = half_durable(path)
        analysis.analyze(grokscope.open_run(path), progress=False)  # with 1 thread, half the checkpoints
        layout.write_json(path / layout.PROGRESS, progress)
        torch.set_num_threads(2)
        capsys.readouterr()
        run = grokscope.open_run(path)
        assert set(per_checkpoint) <= set(analysis.analyze(run, progress=False))
        assert "with 1 CPU thread, as cached" in capsys.readouterr().err
        assert torch.get_num_threads() == 2  # put back after the top-up
        for name in per_checkpoint:
            got = analysis.load(run, name)
            assert int(got["threads"]) == 1
            for key, value in expected[name].items():
                np.testing.assert_array_equal(got[key], value, err_msg=f"{name}.{key}")
    finally:
        torch.set_num_threads(before)


def test_a_new_analysis_version_recomputes_it_and_what_depends_on_it(small_run, tmp_path, monkeypatch):
    import dataclasses

    path = tmp_path / "run"
    shutil.copytree(small_run.path, path)
    run = grokscope.open_run(path)
    analysis.analyze(run, progress=False)
    for name in ("weight_norms", "neurons"):
        monkeypatch.setitem(analysis.ANALYSES, name, dataclasses.replace(analysis.ANALYSES[name], version=2))
    assert set(analysis.analyze(run, progress=False)) == {"weight_norms", "neurons", "key_frequencies"}
    assert sorted(p.name for p in (path / ANALYSIS_DIR).glob("weight_norms@*")) == ["weight_norms@v2.npz"]


def test_analyses_that_do_not_apply_say_so(tmp_path):
    run_dir = grokscope.train(small_config(**{"task.op": "poly", "train.steps": 10}), tmp_path / "poly", progress=False)
    run = grokscope.open_run(run_dir)
    # a poly run has no group: the Fourier analyses say why; those that need none run
    assert set(analysis.analyze(run, progress=False)) == {"weight_norms", "phases", "pathways"}
    with pytest.raises(grokscope.GrokscopeError, match="has none"):
        analysis.analyze(run, only=["neurons"], progress=False)


def test_multiplication_runs_are_analysed_on_z_p_minus_1(tmp_path):
    run_dir = grokscope.train(small_config(**{"task.op": "mul", "train.steps": 20}), tmp_path / "mul", progress=False)
    run = grokscope.open_run(run_dir)
    summary = analysis.summary(run)
    assert "Z_30" in summary["coordinates"] and "discrete logarithm" in summary["coordinates"]
    assert analysis.load(run, "spectra")["embed_power"].shape == (len(run.steps), 30)
    assert per_frequency(torch.ones(30), 30).shape == (16,)


@pytest.mark.parametrize("op, p, keys", [("sub", 11, [2, 5]), ("mul", 13, [1, 6])])  # mul: n = 12, 6 = n/2
def test_restricted_and_excluded_loss_follow_the_definition(op, p, keys):
    from grokscope.analysis.progress import LossProbe
    from grokscope.models.common import Readout

    group = group_of(TaskConfig(op=op, p=p))
    n, keys = group.n, np.array(keys)
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(n * n, p, generator=g, dtype=torch.float64) * 3
    labels = torch.as_tensor(group.tokens[group.label_coordinate()])
    train = torch.rand(n * n, generator=g) < 0.4
    trained_labels = torch.where(train, labels, -1)
    got = LossProbe(group, keys, labels, train.numpy(), trained_labels)(Readout([(logits, None)]))

    # the definition written out, one key at a time: c_k(x, y) = cos(w_k (x ± y)), s_k likewise (no
    # sine at k = n/2, where it vanishes)
    x = torch.arange(n, dtype=torch.float64)
    z = x[:, None] + group.sign * x[None, :]

    def projection(ks):
        P = torch.zeros(n * n, n * n, dtype=torch.float64)
        for k in ks:
            for wave in (torch.cos, torch.sin) if 2 * k != n else (torch.cos,):
                v = wave(2 * math.pi * k * z / n).reshape(-1)
                v = v / v.norm()
                P += torch.outer(v, v)
        return P @ logits

    def cross_entropy(L, rows):
        return torch.nn.functional.cross_entropy(L[rows], labels[rows])

    everything = torch.ones(n * n, dtype=torch.bool)
    restricted = projection(keys) + logits.mean(0) - projection(keys).mean(0)
    assert got["restricted_loss"] == pytest.approx(float(cross_entropy(restricted, everything)))
    assert got["excluded_loss"] == pytest.approx(float(cross_entropy(logits - projection(keys), train)))
    for i, k in enumerate(keys):
        expected = cross_entropy(logits - projection([k]), train)
        assert got["excluded_loss_per_freq"][i] == pytest.approx(float(expected))


def test_key_frequencies_at_any_step_and_rule(analyzed):
    last = analysis.key_frequencies_at(analyzed)
    cached = analysis.load(analyzed, "key_frequencies")
    assert last["frequencies"].tolist() == cached["frequencies"].tolist()
    assert str(last["rule"]) == "ablation"
    # after grokking every rule agrees on this run (measured: 9, 13, 15)
    for rule in ("neurons", "embed", "logit_map"):
        assert analysis.key_frequencies_at(analyzed, rule=rule)["frequencies"].tolist() == last["frequencies"].tolist()
    early = analysis.key_frequencies_at(analyzed, step=0)
    assert int(early["step"]) == 0
    # at initialisation no frequency is needed and no neuron clustered: the default falls back to the embed rule
    assert len(early["by_ablation"]) == 0 and len(early["by_neurons"]) == 0 and str(early["rule"]) == "embed"
    with pytest.raises(grokscope.GrokscopeError, match="unknown key-frequency rule"):
        analysis.key_frequencies_at(analyzed, rule="nope")


def test_one_analysis_topped_up_leaves_the_others_intact(small_run, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(small_run.path, path)
    run = grokscope.open_run(path)
    analysis.analyze(run, only=["spectra", "neurons"], progress=False)
    spectra_before, neurons_before = analysis.load(run, "spectra"), analysis.load(run, "neurons")
    assert set(analysis.analyze(run, only=["spectra", "weight_norms", "neurons", "progress"], progress=False)) == {
        "weight_norms",
        "key_frequencies",
        "progress",
    }
    for before, name in ((spectra_before, "spectra"), (neurons_before, "neurons")):
        after = analysis.load(run, name)
        assert set(after) == set(before)
        for key in before:
            np.testing.assert_array_equal(after[key], before[key])


def test_fast_attention_patterns_equal_the_hooked_forwards(grokked_run):
    from grokscope.analysis.probes import attention_patterns

    model = load_model(grokked_run, int(grokked_run.steps[-1]))
    _, cache = model.run_with_cache(model.grid_inputs(torch.arange(31 * 31)), names_filter="blocks.0.attn.hook_pattern")
    hooked = cache["blocks.0.attn.hook_pattern"][:, :, -1, :]
    torch.testing.assert_close(attention_patterns(model), hooked)


def test_the_forward_analyses_share_one_pass_over_the_checkpoints(small_run, tmp_path, monkeypatch):
    """neurons and progress read the same whole-grid forward: the scheduler runs it once for both."""
    from grokscope.analysis import scheduler

    shutil.copytree(small_run.path, tmp_path / "run")
    passes = []
    original = scheduler.forward_pass
    monkeypatch.setattr(
        scheduler,
        "forward_pass",
        lambda run, group, specs, *a: passes.append([s.name for s in specs]) or original(run, group, specs, *a),
    )
    analysis.analyze(grokscope.open_run(tmp_path / "run"), progress=False)
    assert passes == [["neurons", "progress"]]
