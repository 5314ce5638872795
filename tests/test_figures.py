"""Figure builders and `grokscope figures`."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import grokscope
from grokscope import analysis, figures
from grokscope.cli import main
from grokscope.figures.builders import AT_LAST_STEP, TIME_AXIS
from grokscope.figures.export import NO_BROWSER
from grokscope.models import load_model
from grokscope.store import layout


@pytest.fixture
def run(analyzed_run):
    return analyzed_run


def cursor_lines(fig) -> list[float]:
    return [shape.x0 for shape in fig.layout.shapes if shape.type == "line"]


@pytest.mark.parametrize("name", list(figures.FIGURES))
def test_every_figure_plots_its_data_and_marks_the_step(run, name):
    step = int(run.steps[len(run.steps) // 2])
    plot = figures.FIGURES[name][0](run, step)
    assert plot.figure.data, "no traces"
    lengths = {len(np.asarray(column)) for column in plot.data.values()}
    assert len(lengths) == 1 and lengths.pop() > 0
    if name in TIME_AXIS:
        assert step in cursor_lines(plot.figure)
    elif name in AT_LAST_STEP:
        assert f"at step {int(run.steps[-1])}" in plot.figure.layout.title.text
    else:  # the others show the step itself
        assert str(step) in plot.figure.layout.title.text


@pytest.mark.parametrize("name", list(figures.FIGURES))
def test_every_figure_draws_a_live_run_whose_last_checkpoint_has_no_metrics_yet(run, tmp_path, name):
    # a run still training saves a checkpoint before the metrics row of its step: the figures draw what is
    # recorded (the progress figure's test loss once raised an IndexError there)
    path = tmp_path / "live"
    shutil.copytree(run.path, path)
    (path / layout.COMPLETE).unlink()
    progress = layout.read_json(path / layout.PROGRESS)
    last = int(run.steps[-1])
    layout.write_json(path / layout.PROGRESS, dict(progress, n_metric_steps=last))
    live = grokscope.open_run(path)
    assert live.n_metric_steps == last and int(live.steps[-1]) == last
    plot = figures.FIGURES[name][0](live, last)
    assert plot.figure.data, "no traces"
    if name == "progress_measures":
        assert np.isnan(plot.data["test_loss"][-1])
        np.testing.assert_array_equal(plot.data["test_loss"][:-1], run.metrics["test_loss"][run.steps[:-1]])


def test_step_dependent_figures_change_with_the_step(run):
    early, late = (figures.FIGURES["embedding_spectrum"][0](run, int(s)) for s in (run.steps[1], run.steps[-1]))
    assert not np.allclose(early.data["share"], late.data["share"])
    keys = analysis.load(run, "key_frequencies")["frequencies"]
    assert late.data["frequency"][late.data["key"]].tolist() == keys.tolist()
    # after grokking the key frequencies hold most of the power (see test_analysis for the threshold)
    assert late.data["share"][late.data["key"]].sum() > 0.6


def test_phases_are_shaded_on_time_axes(run):
    plot = figures.FIGURES["training_curves"][0](run, None)
    labels = [a.text for a in plot.figure.layout.annotations]
    assert {"memorization", "circuit formation", "clean-up", "stable"} <= set(labels)


@pytest.mark.slow
def test_figures_command_writes_data_and_images(run, tmp_path, capsys):
    out = tmp_path / "figs"
    code = main(["figures", str(run.path), "--out", str(out), "--format", "svg"])
    _, err = capsys.readouterr()
    for name in figures.standard(run):
        header = (out / f"{name}.csv").read_text().splitlines()[0]
        assert header.split(",") == list(figures.FIGURES[name][0](run, None).data)
    if shutil.which("chromium") or shutil.which("google-chrome"):
        assert code == 0
        for fmt, magic in (("svg", b"<svg"), ("pdf", b"%PDF"), ("png", b"\x89PNG")):
            if fmt != "svg":
                assert main(["figures", str(run.path), "--out", str(out), "--format", fmt]) == 0
            for name in figures.standard(run):
                assert magic in (out / f"{name}.{fmt}").read_bytes()[:400], f"{name}.{fmt}"
    else:  # no browser to render with: a one-line message, the CSVs kept
        assert code == 2 and NO_BROWSER in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "jpg"], "unknown format 'jpg'"),
        (["--only", "nope"], "unknown figure 'nope'"),
        (["--step", "99999"], "step 99999 was not saved"),
    ],
)
def test_figures_bad_input(run, tmp_path, capsys, args, message):
    code = main(["figures", str(run.path), "--out", str(tmp_path / "f"), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_attention_and_neuron_figures(run):
    from grokscope.analysis.probes import attention_patterns

    step = int(run.steps[-1])
    plot = figures.FIGURES["attention"][0](run, step)
    expected = attention_patterns(load_model(run, step))[:, 1, 0].numpy()  # head 1's attention to a
    np.testing.assert_allclose(plot.data["head_1"], expected)
    neuron = figures.FIGURES["neuron_activation"][0](run, step)
    fractions = analysis.load(run, "neurons")["fraction"][-1]
    assert f"neuron {int(np.argmax(fractions))} " in neuron.figure.layout.title.text  # the most clustered
    with pytest.raises(grokscope.GrokscopeError, match="no neuron"):
        figures.builders.neuron_activation(run, step, neuron=10**6)


def test_neuron_frequency_map_agrees_with_the_cached_clustering(run):
    step = int(run.steps[-1])
    plot = figures.FIGURES["neuron_frequency_map"][0](run, step)
    share = plot.data["share"].reshape(-1, 15)  # (d_mlp, frequencies 1..15) for p = 31
    cached = analysis.load(run, "neurons")
    np.testing.assert_allclose(share.max(1), cached["fraction"][-1], rtol=1e-4, atol=1e-6)


def test_export_starts_chromium_offline(analyzed_run, tmp_path, monkeypatch):
    """Chromium's background lookups go to a closed local port while exporting, and the setting is undone."""
    import os

    import kaleido
    import plotly.io as pio

    from grokscope.figures.export import OFFLINE_PROXY, export

    key, value = OFFLINE_PROXY
    seen = []
    # the browser starts with the server, so that is when the setting must be there
    monkeypatch.setattr(kaleido, "start_sync_server", lambda **k: seen.append(os.environ.get(key)))
    monkeypatch.setattr(kaleido, "stop_sync_server", lambda **k: None)
    monkeypatch.setattr(pio, "write_image", lambda *a, **k: None)
    monkeypatch.delenv(key, raising=False)
    export({"training": figures.builders.training_curves(analyzed_run)}, tmp_path / "out", "pdf")
    assert seen == [value] and key not in os.environ


def test_export_without_a_browser_is_one_line_and_keeps_the_csv(analyzed_run, tmp_path, monkeypatch):
    """kaleido's server would wait forever for a browser that cannot start: the lookup comes first."""
    from grokscope.figures.export import export

    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-chromium"))
    with pytest.raises(grokscope.GrokscopeError, match="renders through Chromium or Chrome"):
        export({"training": figures.builders.training_curves(analyzed_run)}, tmp_path / "out", "pdf")
    assert (tmp_path / "out" / "training.csv").is_file()


def test_an_on_request_figure_says_how_to_compute_it(small_run, tmp_path, capsys):
    code = main(["figures", str(small_run.path), "--out", str(tmp_path / "f"), "--only", "local_complexity"])
    err = capsys.readouterr().err
    assert code == 2 and "is computed on request: grokscope analyze" in err and len(err.strip().splitlines()) == 1


def test_the_key_frequency_ablation_figure_draws_the_rule_evidence(run):
    """Against a probe of the same model: each bar is the test loss with that frequency removed over the
    test loss without; the key ones are the ablation rule's."""
    from grokscope.analysis.probes import ablate

    plot = figures.FIGURES["key_frequency_ablation"][0](run)
    found = analysis.load(run, "key_frequencies")
    assert plot.data["frequency"][plot.data["key"]].tolist() == found["by_ablation"].tolist()
    model = load_model(run, int(found["step"]))
    k = int(found["by_ablation"][0])
    probe = ablate(model, run.config, run.dataset, frequencies=[k])["test_loss"]  # the run's loss: cross-entropy
    assert plot.data["loss_ratio"][k - 1] == pytest.approx(probe["ablated"] / probe["base"], rel=1e-4)
    assert np.allclose(plot.figure.data[1].y, 10.0)  # the threshold drawn
