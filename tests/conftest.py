"""Shared fixtures: small runs trained once per test session."""

from __future__ import annotations

import shutil

import pytest

import grokscope


def small_config(**overrides) -> grokscope.RunConfig:
    """The tiny preset, shortened: a few hundred steps of a p = 31 transformer (about a second)."""
    base = {"train.steps": 120, "checkpoints.dense_until": 20, "checkpoints.n_log": 20, "checkpoints.n_uniform": 20}
    return grokscope.load_preset("tiny").with_overrides({**base, **overrides})


@pytest.fixture(scope="session")
def small_run(tmp_path_factory):
    """A complete short run (does not grok): for store, reader and CLI tests."""
    out = tmp_path_factory.mktemp("runs") / "small"
    grokscope.train(small_config(), out, progress=False)
    return grokscope.open_run(out)


@pytest.fixture(scope="session")
def grokked_run(tmp_path_factory):
    """The tiny preset trained to the end: it groks (test accuracy >= 0.99) in ~700 of its 1,000 steps."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    grokscope.train(grokscope.load_preset("tiny"), out, progress=False)
    return grokscope.open_run(out)


# the analyses computed on request, at sizes that take a second or two on the tiny run
ON_REQUEST_OPTIONS = {
    "local_complexity": {
        "radii": [0.5, 2.0],
        "directions": 4,
        "max_train": 8,
        "max_test": 8,
        "n_random": 8,
        "n_boundary": 4,
    },
    "robustness": {"max_points": 16, "iterations": 3},
}


@pytest.fixture(scope="session")
def analyzed_run(grokked_run, tmp_path_factory):
    """A copy of the grokked tiny run with every analysis computed, those on request at small sizes
    (ON_REQUEST_OPTIONS) (read it; copy it to change it)."""
    from grokscope import analysis

    path = tmp_path_factory.mktemp("analyzed") / "tiny"
    shutil.copytree(grokked_run.path, path)
    run = grokscope.open_run(path)
    analysis.analyze(run, progress=False)
    analysis.analyze(run, only=list(ON_REQUEST_OPTIONS), options=ON_REQUEST_OPTIONS, progress=False)
    return run


P, WIDTH = 31, 256


def coexistence_config(**overrides) -> grokscope.RunConfig:
    """The corrupted preset shrunk to run in ~2 s on CPU: p = 31, 256 neurons, 1,000 steps, 85% train,
    10% of it corrupted, wd 0. At this size it both memorizes the corrupted labels and generalizes
    (coexistence): across seeds 0-4 it fits 100% of the corrupted labels with test accuracy 0.90-0.97.
    (At p = 31 the preset's 50% / 35% split leaves too few clean examples to generalize.)"""
    base = {
        "task.p": P,
        "task.train_frac": 0.85,
        "task.corrupt_frac": 0.1,
        "model.d_mlp": WIDTH,
        "model.init_std": (16 * WIDTH) ** (-1 / 3),  # the paper's N(0, (16N)^(-2/3))
        "train.steps": 1000,
        "task.seed": 0,
        "model.seed": 0,
        "checkpoints.dense_until": 10,
        "checkpoints.n_log": 20,
        "checkpoints.n_uniform": 50,
    }
    return grokscope.load_preset("corrupted").with_overrides({**base, **overrides})


@pytest.fixture(scope="session")
def coexistence_run(tmp_path_factory):
    """The coexistence run of coexistence_config, trained once (read it; copy it to change it)."""
    out = tmp_path_factory.mktemp("memorization") / "coexist"
    grokscope.train(coexistence_config(), out, progress=False)
    return grokscope.open_run(out)
