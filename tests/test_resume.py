"""A `kill -9` at any moment leaves a readable run; resuming it gives bit-for-bit the uninterrupted run."""

import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import small_config
from safetensors.torch import load_file

import grokscope
from grokscope.store import layout

STEPS = 300


def train_in_subprocess(out, overrides):
    args = [sys.executable, "-m", "grokscope", "train", "--preset", "tiny", "--out", str(out), "--commit-every", "0"]
    for key, value in overrides.items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_when_past(process, out, step, sig=signal.SIGKILL):
    """SIGKILL (or send `sig` to) the trainer once its durable progress has passed `step`."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            progress = json.loads((out / layout.PROGRESS).read_text())
            if (progress["step"] or 0) >= step:
                break
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        assert process.poll() is None, process.stderr.read().decode()
        time.sleep(0.005)
    process.send_signal(sig)
    if sig == signal.SIGKILL:
        process.wait()


def blank_uncommitted(run):
    """Overwrite what a reader may not trust with NaN, so resuming must really rewrite it."""
    for name in run.param_names:
        array = np.load(run.path / layout.PARAMS / f"{name}.npy", mmap_mode="r+")
        array[run.n_checkpoints :] = np.nan
        array.flush()
    for column in layout.METRIC_COLUMNS:
        array = np.load(run.path / layout.METRICS / f"{column}.npy", mmap_mode="r+")
        array[run.n_metric_steps :] = np.nan
        array.flush()


def assert_same_run(run, reference):
    assert run.complete
    assert np.array_equal(run.steps, reference.steps)
    for name in reference.param_names:
        assert np.array_equal(run.trajectory(name), reference.trajectory(name)), name
    for column, values in reference.metrics.items():
        assert np.array_equal(run.metrics[column], values, equal_nan=True), column


# the corrupted-label MLP with dropout: its dropout draws and split metrics must resume exactly too
MLP_DROPOUT = {"model.kind": "mlp", "model.act": "square", "model.dropout": 0.2, "task.corrupt_frac": 0.3}
# Grokfast's filter state must resume exactly too: the MA window (20) has filled and wrapped by the kill
GROKFAST_MA = {"grokfast.kind": "ma", "grokfast.ma_window": 20}
GROKFAST_EMA_ORTHO = {"grokfast.kind": "ema", "optim.orthograd": True, "train.loss": "stablemax"}
# the MoE transformer: its routing and router losses must resume exactly too
MOE = {"model.kind": "moe", "model.n_layers": 2, "model.d_model": 32, "model.d_head": 8, "model.d_mlp": 16}
MOE |= {"model.n_experts": 4, "model.router_z_coef": 0.001}
# test metrics every 3rd step and at checkpoints: the steps between read the training inputs alone
EVAL_EVERY = {"train.eval_every": 3}


@pytest.mark.parametrize(
    "extra",
    [{"train.batch_size": 0}, {"train.batch_size": 64}, MLP_DROPOUT, GROKFAST_MA, GROKFAST_EMA_ORTHO, MOE, EVAL_EVERY],
    ids=["full", "minibatch", "mlp", "grokfast-ma", "grokfast-ema-orthograd-stablemax", "moe", "eval-every"],
)
@pytest.mark.slow
def test_resume_after_kill_is_bit_exact(tmp_path, extra):
    overrides = {"train.steps": STEPS, "checkpoints.n_uniform": STEPS // 2, **extra}
    config = grokscope.load_preset("tiny").with_overrides(overrides)
    reference = grokscope.open_run(grokscope.train(config, tmp_path / "reference", progress=False))

    out = tmp_path / "killed"
    kill_when_past(train_in_subprocess(out, overrides), out, STEPS // 3)

    killed = grokscope.open_run(out)
    assert not killed.complete
    assert STEPS // 3 <= killed.steps[-1] < STEPS
    assert len(killed.metrics["test_acc"]) == killed.steps[-1]  # metrics up to the last durable step
    assert np.all(np.isfinite(killed.metrics["test_loss"]))

    blank_uncommitted(killed)
    grokscope.train(out=out, resume=True, progress=False)
    assert_same_run(grokscope.open_run(out), reference)
    final, expected = load_file(out / layout.FINAL), load_file(reference.path / layout.FINAL)
    assert all((final[k] == expected[k]).all() for k in expected)
    assert len(list((out / layout.STATE).iterdir())) == 1  # older training states are cleaned up


class Crash(Exception):
    """Stands in for the process dying at one file replacement."""


def count_replacements(monkeypatch, crash_at=None):
    calls = {"n": 0}
    real = os.replace

    def replace(src, dst):
        calls["n"] += 1
        if calls["n"] == crash_at:
            raise Crash
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    return calls


@pytest.fixture(scope="module")
def reference_and_writes(tmp_path_factory):
    """An uninterrupted run committing at every checkpoint, and how many files it replaced atomically."""
    monkeypatch = pytest.MonkeyPatch()
    calls = count_replacements(monkeypatch)
    out = tmp_path_factory.mktemp("ref") / "run"
    grokscope.train(small_config(), out, progress=False, commit_every_s=0)
    monkeypatch.undo()
    return grokscope.open_run(out), calls["n"]


@pytest.mark.parametrize("when", [1, 4, 5, 6, 7, 0.5, -2, -1])
def test_a_crash_at_any_write_leaves_a_run_that_resumes_exactly(tmp_path, monkeypatch, reference_and_writes, when):
    """Crash at the k-th atomic replacement: during creation (k <= 5), at a commit, or while finishing."""
    reference, n_writes = reference_and_writes
    k = {0.5: n_writes // 2, -2: n_writes - 1, -1: n_writes}.get(when, when)
    out = tmp_path / "run"
    count_replacements(monkeypatch, crash_at=k)
    with pytest.raises(Crash):
        grokscope.train(small_config(), out, progress=False, commit_every_s=0)
    monkeypatch.undo()
    if out.exists():  # laid out: it opens, says it is incomplete, and resumes to the same run
        assert not grokscope.open_run(out).complete
        grokscope.train(out=out, resume=True, progress=False)
    else:  # crashed while being laid out: nothing at `out`; training again starts cleanly
        grokscope.train(small_config(), out, progress=False)
    assert_same_run(grokscope.open_run(out), reference)


def test_resume_uses_the_run_s_own_thread_count(tmp_path, monkeypatch):
    """CPU float reductions depend on the thread count: a run records it, and resuming restores it."""
    threads = torch.get_num_threads()
    out = tmp_path / "run"
    try:
        torch.set_num_threads(1)
        count_replacements(monkeypatch, crash_at=8)  # laid out, then killed at a commit
        with pytest.raises(Crash):
            grokscope.train(small_config(), out, progress=False, commit_every_s=0)
        monkeypatch.undo()
        assert grokscope.open_run(out).meta["threads"] == 1
        torch.set_num_threads(2)
        grokscope.train(out=out, resume=True, progress=False)
        assert torch.get_num_threads() == 1 and grokscope.open_run(out).complete
    finally:
        torch.set_num_threads(threads)


def stopped(process):
    """Wait until SIGSTOP has stopped the process (it takes effect asynchronously)."""
    deadline = time.monotonic() + 30
    stat = pathlib.Path(f"/proc/{process.pid}/stat")
    while stat.read_text().rsplit(")", 1)[1].split()[0] != "T":
        assert time.monotonic() < deadline
        time.sleep(0.01)


@pytest.mark.slow
def test_a_run_being_trained_refuses_other_writers_until_its_trainer_dies(tmp_path, capsys):
    """Two writers of one run would interleave checkpoints and progress: while a trainer holds a run (here
    stopped mid-run with SIGSTOP, so it holds it for as long as the test needs), resuming or replacing it is one
    line naming the trainer's process, exit 2, and writes nothing. The lock goes with the trainer's process: after
    a kill -9 the run resumes, and no lock file is left."""
    from grokscope.cli import main

    out = tmp_path / "run"
    process = train_in_subprocess(out, {"train.steps": STEPS})
    try:
        kill_when_past(process, out, 10, sig=signal.SIGSTOP)
        stopped(process)
        files = {f: f.read_bytes() for f in sorted(out.rglob("*")) if f.is_file()}
        for args in (
            ["train", "--resume", "--out", str(out)],
            ["train", "--preset", "tiny", "--out", str(out), "--force"],
        ):
            assert main(args) == 2
            err = capsys.readouterr().err
            assert err.strip() == (
                f"grokscope: error: {out} is being written by another process (pid {process.pid} on "
                f"{socket.gethostname()}): wait for it to end, or stop it"
            )
        assert {f: f.read_bytes() for f in sorted(out.rglob("*")) if f.is_file()} == files
    finally:
        process.kill()
        process.wait()
    assert (tmp_path / ".run.lock").exists()  # left by the killed trainer, unlocked
    grokscope.train(out=out, resume=True, progress=False)
    assert grokscope.open_run(out).complete
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_a_sweep_stops_at_a_run_or_a_directory_another_writer_holds(tmp_path):
    """A sweep names the run another writer holds (here this process, taking it as the sweep reaches it, as
    another sweep's worker or a `train --resume` would) and leaves it alone; a second sweep on a directory that a
    sweep holds is refused before it reads or writes its manifest."""
    from conftest import SWEEP_SPEC

    from grokscope.errors import GrokscopeError
    from grokscope.store.sweep import MANIFEST
    from grokscope.store.writer import writing
    from grokscope.sweep import sweep
    from grokscope.sweep.spec import load_spec

    spec = tmp_path / "wd.toml"
    spec.write_text(SWEEP_SPEC)
    name = load_spec(spec)[1].name
    with contextlib.ExitStack() as held:

        def say(line):
            if line.startswith(f"{name}: "):
                held.enter_context(writing(tmp_path / "wd" / name))

        with pytest.raises(GrokscopeError, match=f"{name}: .* is being written by another writer in this process"):
            sweep(spec, tmp_path / "wd", say=say, progress=False)
        assert not (tmp_path / "wd" / name).exists()
    manifest = (tmp_path / "wd" / MANIFEST).read_bytes()
    with writing(tmp_path / "wd"), pytest.raises(GrokscopeError, match="wd is being written by another writer in"):
        sweep(spec, tmp_path / "wd", say=lambda _: None, progress=False)
    assert (tmp_path / "wd" / MANIFEST).read_bytes() == manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wd", "wd.toml"]
