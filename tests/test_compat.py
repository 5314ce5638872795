"""Runs written by an earlier release still open, give their numbers back and can be analysed: two small runs
written by the release before schema_version (tests/fixtures, kept as they were written)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import grokscope
from grokscope import analysis
from grokscope.config import SCHEMA_VERSION
from grokscope.models import load_model

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.mark.parametrize("name", ["v1_transformer", "v1_mlp"])
def test_a_run_of_the_earlier_release_opens_with_its_numbers(name):
    written = json.loads((FIXTURES / name / "config.json").read_text())
    assert "schema_version" not in written  # really a schema-1 run
    run = grokscope.open_run(FIXTURES / name)
    assert run.complete and run.config.schema_version == SCHEMA_VERSION and run.config.task.kind == "modular"
    assert run.config.task.p == written["task"]["p"] and run.config.model.kind == written["model"]["kind"]
    net, data = load_model(run, int(run.steps[-1])), run.dataset
    predicted = net.all_logits(net.task_inputs(run.task, data)).argmax(-1).numpy()
    # the accuracies recorded by the earlier release, recomputed from its saved weights
    assert (predicted[data.test_rows] == data.test_labels).mean() == run.metrics["test_acc"][-1]
    assert (predicted[data.train_rows] == data.train_labels).mean() == run.metrics["train_acc"][-1]


def test_an_earlier_release_s_analyses_are_recomputed_not_trusted(tmp_path, capsys):
    """Caches from before they were bound to their run cannot be told from a copied one: recomputed, once,
    to the same numbers."""
    shutil.copytree(FIXTURES / "v1_transformer", tmp_path / "run")
    run = grokscope.open_run(tmp_path / "run")
    with np.load(tmp_path / "run" / "analysis" / "spectra@v1.npz") as old:
        before = old["embed_power"]
    assert "spectra" in analysis.missing(run)
    assert "not bound to its run" in capsys.readouterr().err
    analysis.analyze(run, progress=False)
    assert analysis.missing(run) == []
    np.testing.assert_allclose(analysis.load(run, "spectra")["embed_power"], before, rtol=1e-12)


def test_a_missing_upstream_cache_is_reported_not_raised(tmp_path):
    """progress cached, key_frequencies gone (deleted, or a new version of it): missing() lists both, the app's
    readiness check does not crash, and analyze() brings both back."""
    shutil.copytree(FIXTURES / "v1_transformer", tmp_path / "run")
    run = grokscope.open_run(tmp_path / "run")
    analysis.analyze(run, progress=False)
    for stale in (tmp_path / "run" / "analysis").glob("key_frequencies@*"):
        stale.unlink()
    assert {"key_frequencies", "progress"} <= set(analysis.missing(run))
    assert set(analysis.analyze(run, progress=False)) >= {"key_frequencies"}
    assert analysis.missing(run) == []


@pytest.mark.parametrize("bad", [{"train_rows": np.zeros((2, 2), dtype=np.int64)}, {"train_rows": np.int64(3)}])
def test_a_misshapen_split_file_is_a_clear_error(tmp_path, bad):
    shutil.copytree(FIXTURES / "v1_mlp", tmp_path / "run")
    path = tmp_path / "run" / "data.npz"
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    np.savez(path, **{**arrays, **bad})
    with pytest.raises(grokscope.GrokscopeError, match="data.npz: corrupt"):
        _ = grokscope.open_run(tmp_path / "run").dataset


def test_a_boolean_schema_version_is_refused():
    from grokscope.config import upgrade

    with pytest.raises(grokscope.GrokscopeError, match="schema_version True"):
        upgrade({"schema_version": True})


def test_subpackages_are_attributes_of_the_package():
    assert grokscope.store.open_run is grokscope.open_run and grokscope.analysis.load is analysis.load
