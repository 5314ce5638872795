"""Key frequencies by ablation: removing a frequency from the inputs, and the rule that reads it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import grokscope
from grokscope import analysis
from grokscope.analysis.fourier import group_of
from grokscope.analysis.probes import ablate, frequencies_removed
from grokscope.config import RunConfig
from grokscope.importers import write_series
from grokscope.models import build_model, load_model
from grokscope.tasks import make_task

P, KEYS, WEAK = 23, (3, 7), 7


def spread_state(amplitude: float = 2.0) -> dict[str, torch.Tensor]:
    """A one-hot x² MLP that computes (a + b) mod 23 exactly with frequencies 3 and 7, built by hand
    (Gromov 2023's construction): per frequency k, 16 neurons with phases φ, ψ on a quarter-turn grid read
    cos(w a + φ) + cos(w b + ψ) and write cos(w c + φ + ψ); the grid cancels every term but
    logit(c) = 4·amplitude·Σ_k cos(w_k (a + b − c)). Frequency 7 reads its inputs at a quarter of the scale
    and writes at 16× (the same function). So no rule but ablation finds both:
    - x² puts a fifth of each neuron's variance on the harmonic 2k (the product term's variance 1 against
      2 × 1/8 for cos² a and cos² b), so the largest fraction is 0.8 and no neuron is clustered (≥ 0.85);
    - frequency 7 has 1/16 of frequency 3's power in the inputs (under the embed rule's 0.1);
    - frequency 3 has 1/256 of frequency 7's in the output map (under the logit-map rule's 0.1)."""
    x = torch.arange(P, dtype=torch.float64)
    W_in, W_out = torch.zeros(2 * P, 16 * len(KEYS), dtype=torch.float64), torch.zeros(16 * len(KEYS), P)
    n = 0
    for k in KEYS:
        w, scale = 2 * math.pi * k / P, 0.25 if k == WEAK else 1.0
        for phi in np.arange(4) * math.pi / 2:
            for psi in np.arange(4) * math.pi / 2:
                W_in[:P, n], W_in[P:, n] = scale * torch.cos(w * x + phi), scale * torch.cos(w * x + psi)
                W_out[n] = amplitude / scale**2 * torch.cos(w * x + phi + psi)
                n += 1
    return {"mlp.W_in": W_in.float(), "mlp.W_out": W_out.float()}


def spread_config() -> RunConfig:
    overrides = {"task.p": P, "model.kind": "mlp", "model.act": "square", "model.d_mlp": 16 * len(KEYS)}
    return RunConfig(name="spread").with_overrides({**overrides, "train.steps": 1})


@pytest.fixture(scope="module")
def spread_run(tmp_path_factory):
    config = spread_config()
    state = spread_state()
    out = tmp_path_factory.mktemp("runs") / "spread"
    write_series(out, config, make_task(config.task).dataset(), [0, 1], [state, state], {}, say=lambda _: None)
    run = grokscope.open_run(out)
    analysis.analyze(run, progress=False)
    return run


def test_ablation_finds_the_frequencies_every_other_rule_misses(spread_run):
    found = analysis.load(spread_run, "key_frequencies")
    fractions = analysis.load(spread_run, "neurons")["fraction"][-1]
    assert np.allclose(fractions, 0.8, atol=1e-4)  # the x² harmonic, as the construction's docstring derives
    assert found["by_neurons"].tolist() == []
    assert found["by_embed"].tolist() == [3]
    assert found["by_logit_map"].tolist() == [7]
    assert found["by_ablation"].tolist() == [3, 7]
    assert str(found["rule"]) == "ablation" and found["frequencies"].tolist() == [3, 7]
    # the logits depend on the input only through a + b and only at 3 and 7, so the restricted loss with
    # both is the test loss (every input's loss is the same); with one of them it is hundreds of times more
    test_loss = float(found["test_loss"])
    assert float(found["restricted_loss_by_ablation"]) == pytest.approx(test_loss, rel=1e-4)
    assert float(found["restricted_loss_by_embed"]) > 100 * test_loss
    assert float(found["restricted_loss_by_logit_map"]) > 100 * test_loss


def test_removing_a_frequency_from_the_inputs_silences_its_neurons(spread_run):
    """Independently: without frequency k in its inputs, each of k's x² neurons reads 0 and writes 0, so the
    model equals the hand-built one with k's neurons' output weights zeroed."""
    found = analysis.load(spread_run, "key_frequencies")
    config, dataset = spread_run.config, spread_run.dataset
    rows, labels = torch.as_tensor(dataset.test_rows), torch.as_tensor(dataset.test_labels)
    for i, k in enumerate(KEYS):
        state = spread_state()
        state["mlp.W_out"][16 * i : 16 * (i + 1)] = 0
        model = build_model(config)
        model.load_state_dict(state)
        with torch.no_grad():
            logits = model.plain_logits(rows).double()
        expected_loss = float(torch.nn.functional.cross_entropy(logits, labels))
        assert float(found["ablated_test_loss"][k - 1]) == pytest.approx(expected_loss, rel=1e-5)
        expected_acc = float((logits.argmax(-1) == labels).double().mean())
        assert float(found["ablated_test_acc"][k - 1]) == pytest.approx(expected_acc)
    # a frequency the model does not use: nothing changes
    assert float(found["ablated_test_loss"][0]) == pytest.approx(float(found["test_loss"]), rel=1e-4)


def test_no_needed_frequency_falls_back_and_says_so(tmp_path):
    """The same model at a fifth of the scale: removing either frequency raises the loss only ~5-fold and
    keeps every answer (a lone cosine still peaks at the right one), so ablation finds nothing needed; the
    default falls back (no neuron is clustered, so to the embed rule) and the result says which rule."""
    config = spread_config()
    state = spread_state(amplitude=0.5)
    out = write_series(
        tmp_path / "faint", config, make_task(config.task).dataset(), [0, 1], [state, state], {}, say=lambda _: None
    )
    run = grokscope.open_run(out)
    analysis.analyze(run, only=["key_frequencies"], progress=False)
    found = analysis.load(run, "key_frequencies")
    assert found["by_ablation"].tolist() == []
    assert str(found["rule"]) == "embed" and found["frequencies"].tolist() == [3]
    assert analysis.key_frequencies_at(run, rule="ablation")["frequencies"].tolist() == []


def assert_only_removed(before: torch.Tensor, inside: torch.Tensor, tokens, k: int) -> None:
    """Against numpy's FFT over the rows `tokens` (in group order): a map's power at frequency k is gone and
    every other frequency's kept; the rows of every other token (`=`, the a·b task's 0) are untouched."""
    tokens = np.asarray(tokens)
    power_before = np.abs(np.fft.rfft(before.double().numpy()[tokens], axis=0)) ** 2
    power_inside = np.abs(np.fft.rfft(inside.double().numpy()[tokens], axis=0)) ** 2
    scale = power_before[1:].max()
    assert power_inside[k].max() < 1e-10 * scale
    others = [f for f in range(len(power_before)) if f != k]
    np.testing.assert_allclose(power_inside[others], power_before[others], atol=1e-8 * scale)
    untouched = [t for t in range(len(before)) if t not in set(tokens.tolist())]
    assert untouched and torch.equal(inside[untouched], before[untouched])


def test_frequencies_removed_takes_out_exactly_those_frequencies_and_restores(grokked_run):
    """Against numpy's FFT over the tokens: after removing frequency k from the transformer's W_E, its rows
    for the number tokens have no power at k and the same at every other frequency; the `=` row is kept,
    and leaving the block restores W_E bit for bit."""
    model = load_model(grokked_run, int(grokked_run.steps[-1]))
    group = group_of(grokked_run.config.task)
    before = model.embed.W_E.detach().clone()
    k = 4
    with frequencies_removed(model, group, [k]):
        inside = model.embed.W_E.detach().clone()
    assert torch.equal(model.embed.W_E.detach(), before)
    assert_only_removed(before, inside, group.tokens, k)


def test_probe_removes_frequencies_from_a_one_hot_mlp_too(spread_run):
    """The probe and the rule remove frequencies the same way, now in the MLP's input rows as well."""
    model = load_model(spread_run, 1)
    report = ablate(model, spread_run.config, spread_run.dataset, frequencies=[WEAK])
    found = analysis.load(spread_run, "key_frequencies")
    assert report["test_acc"]["ablated"] == pytest.approx(float(found["ablated_test_acc"][WEAK - 1]))
    assert torch.equal(model.mlp.W_in.detach(), spread_state()["mlp.W_in"])  # restored


@pytest.mark.parametrize("kind", ["transformer", "mlp"])
def test_frequencies_removed_in_discrete_log_coordinates_with_even_n(kind):
    """a·b mod 13 is addition on Z_12 over the tokens' discrete logarithms: frequency 6 has a cosine only, the
    token 0 is no input of the group. Against numpy's FFT in the group's order; the token 0 and `=` rows are
    untouched; and an exception inside the block still restores the maps bit for bit."""
    config = RunConfig().with_overrides({"task.op": "mul", "task.p": 13, "model.kind": kind, "model.d_mlp": 16})
    model = build_model(config)
    group = group_of(config.task)
    assert group.n == 12 and 0 not in group.tokens
    before = [m.clone() for m in model.token_inputs()]
    for k in (6, 2):
        with frequencies_removed(model, group, [k]):
            inside = [m.clone() for m in model.token_inputs()]
        for b, i in zip(before, inside):
            assert_only_removed(b, i, group.tokens, k)
    with pytest.raises(RuntimeError, match="inside"), frequencies_removed(model, group, [1]):
        raise RuntimeError("inside")
    assert all(torch.equal(m, b) for m, b in zip(model.token_inputs(), before))
