"""A `kill -9` at any moment leaves a readable run; resuming it gives bit-for-bit the uninterrupted run."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
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


def kill_when_past(process, out, step):
    """SIGKILL the trainer once its durable progress has passed `step`."""
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
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.mark.parametrize("batch_size", [0, 64])
def test_resume_after_kill_is_bit_exact(tmp_path, batch_size):
    overrides = {"train.steps": STEPS, "train.batch_size": batch_size, "checkpoints.n_uniform": STEPS // 2}
    config = grokscope.load_preset("tiny").with_overrides(overrides)
    reference = grokscope.open_run(grokscope.train(config, tmp_path / "reference", progress=False))

    out = tmp_path / "killed"
    kill_when_past(train_in_subprocess(out, overrides), out, STEPS // 3)

    killed = grokscope.open_run(out)
    assert not killed.complete
    assert STEPS // 3 <= killed.steps[-1] < STEPS
    assert len(killed.metrics["test_acc"]) == killed.steps[-1]  # metrics up to the last durable step
    assert np.all(np.isfinite(killed.metrics["test_loss"]))

    grokscope.train(out=out, resume=True, progress=False)
    resumed = grokscope.open_run(out)
    assert resumed.complete
    assert np.array_equal(resumed.steps, reference.steps)
    for name in reference.param_names:
        assert np.array_equal(resumed.trajectory(name), reference.trajectory(name)), name
    for column, values in reference.metrics.items():
        assert np.array_equal(resumed.metrics[column], values), column
    final, expected = load_file(out / layout.FINAL), load_file(reference.path / layout.FINAL)
    assert all((final[k] == expected[k]).all() for k in expected)
    assert len(list((out / layout.STATE).iterdir())) == 1  # older training states are cleaned up


def test_kill_before_the_first_commit_resumes_from_scratch(tmp_path):
    config = small_config()
    reference = grokscope.open_run(grokscope.train(config, tmp_path / "reference", progress=False))
    out = tmp_path / "fresh"
    grokscope.train(config, out, progress=False)
    # roll the run back to the state right after creation, before any checkpoint was committed
    for item in (layout.COMPLETE, layout.FINAL):
        (out / item).unlink()
    progress = json.loads((out / layout.PROGRESS).read_text())
    (out / progress["state"]).unlink()
    (out / layout.PROGRESS).write_text(
        json.dumps({"n_checkpoints": 0, "n_metric_steps": 0, "step": None, "state": None})
    )
    assert len(grokscope.open_run(out).steps) == 0

    grokscope.train(out=out, resume=True, progress=False)
    resumed = grokscope.open_run(out)
    for name in reference.param_names:
        assert np.array_equal(resumed.trajectory(name), reference.trajectory(name)), name
    assert np.array_equal(resumed.metrics["train_loss"], reference.metrics["train_loss"])
