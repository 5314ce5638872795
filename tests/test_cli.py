import json
import subprocess
import sys
from collections import namedtuple

import pytest
import torch

import grokscope
from grokscope.cli import main
from grokscope.store import layout

SMALL = ["--preset", "tiny", "--steps", "60", "--set", "checkpoints.n_log=10", "--set", "checkpoints.n_uniform=10"]


def run_cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_train_then_info_json(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run_cli(["train", *SMALL, "--set", "task.p=23", "--out", str(out)], capsys)
    assert code == 0 and f"run: {out}" in stdout
    code, stdout, _ = run_cli(["info", str(out), "--json"], capsys)
    info = json.loads(stdout)
    keys = {"name", "complete", "n_checkpoints", "first_step", "last_step", "has_split", "grok_step", "diverged_step"}
    keys |= {"final"}
    assert set(info) == keys | {"config"}
    assert (
        info["diverged_step"] is None
        and info["has_split"] is True
        and info["complete"] is True
        and info["first_step"] == 0
        and info["last_step"] == 60
    )
    assert info["config"]["task"]["p"] == 23 and info["config"]["train"]["steps"] == 60
    assert {"train_loss", "test_loss", "train_acc", "test_acc"} <= set(info["final"])
    assert info["n_checkpoints"] == len(grokscope.open_run(out).steps)
    code, stdout, _ = run_cli(["info", str(out)], capsys)
    assert code == 0 and "complete" in stdout and "task.p = 23" in stdout


def test_existing_run_needs_resume_or_force(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(["train", *SMALL, "--out", str(out)], capsys)[0] == 0
    before = (out / layout.PROGRESS).read_text()
    code, _, err = run_cli(["train", *SMALL, "--out", str(out)], capsys)
    assert code == 2 and "already exists: use --resume" in err
    assert (out / layout.PROGRESS).read_text() == before  # untouched
    code, stdout, _ = run_cli(["train", "--resume", "--out", str(out)], capsys)
    assert code == 0 and "run:" in stdout  # a complete run resumes to itself
    code, _, _ = run_cli(["train", *SMALL, "--set", "task.p=23", "--out", str(out), "--force"], capsys)
    assert code == 0 and grokscope.open_run(out).config.task.p == 23


def test_force_refuses_to_delete_what_is_not_a_run(tmp_path, capsys):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    code, _, err = run_cli(["train", *SMALL, "--out", str(precious), "--force"], capsys)
    assert code == 2 and "not a grokscope run" in err
    assert (precious / "thesis.tex").read_text() == "do not delete"


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--preset", "nope"], "unknown preset 'nope'"),
        (["train", "--preset", "tiny", "--set", "task.q=1"], "unknown config key 'task.q'"),
        (["train", "--preset", "tiny", "--set", "optim.lr=fast"], "expects a finite number"),
        (["train", "--preset", "tiny", "--set", "task.op=div", "--set", "task.p=21"], "not prime"),
        (["train", "--preset", "tiny", "--set", "task.train_frac=1.2"], "must be in (0, 1)"),
        (["train", "--preset", "tiny", "--set", "novalue"], "--set expects key=value"),
        (["train", "--preset", "tiny", "--device", "tpu"], "unknown device 'tpu'"),
        (["train"], "needs --preset"),
        (["train", "--resume"], "--resume needs the run directory"),
        (["train", "--resume", "--out", "/nonexistent/run"], "no such run directory"),
        (["info", "/"], "not a grokscope run"),
        (["info", "/etc/hostname"], "not a directory"),
        (["train", "--preset", "tiny", "--set", "optim.lr=Infinity"], "expects a finite number"),
        (["train", "--preset", "tiny", "--set", "optim.weight_decay=NaN"], "expects a finite number"),
        (["train", "--preset", "tiny", "--set", "name=.."], "name must be a plain file name"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(args, message, capsys):
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_input_from_the_shell_prints_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "grokscope", "info", str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("grokscope: error:") and "Traceback" not in result.stderr


def test_no_disk_space_is_detected_before_writing(tmp_path, capsys, monkeypatch):
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr("shutil.disk_usage", lambda path: Usage(10**9, 10**9 - 1000, 1000))
    out = tmp_path / "run"
    code, _, err = run_cli(["train", *SMALL, "--out", str(out)], capsys)
    assert code == 2 and "not enough disk space" in err
    assert not out.exists()


def test_presets_lists_every_preset_and_key(capsys):
    code, stdout, _ = run_cli(["presets"], capsys)
    assert code == 0
    for name in grokscope.PRESETS:
        assert f"{name}:" in stdout
    assert "optim.weight_decay = 1.0" in stdout
    code, stdout, _ = run_cli(["presets", "--json"], capsys)
    assert json.loads(stdout)["canonical"]["config"]["task"]["p"] == 113


def test_corrupt_training_state_stops_resume_with_the_file_named(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(["train", *SMALL, "--out", str(out)], capsys)[0] == 0
    (out / layout.COMPLETE).unlink()
    state = out / json.loads((out / layout.PROGRESS).read_text())["state"]
    state.write_bytes(b"garbage")
    code, _, err = run_cli(["train", "--resume", "--out", str(out)], capsys)
    assert code == 2 and str(state) in err and err.count("\n") == 1


def test_full_disk_during_training_is_one_line_and_keeps_the_run(tmp_path, capsys, monkeypatch):
    """ENOSPC at a commit: a one-line error; the run opens at its last commit and resumes to the end."""
    import errno
    import os

    from grokscope.store import writer

    real, calls = writer.layout.write_bytes, {"n": 0}

    def write_bytes(path, data):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(writer.layout, "write_bytes", write_bytes)
    out = tmp_path / "run"
    code, _, err = run_cli(["train", *SMALL, "--out", str(out), "--commit-every", "0"], capsys)
    errors = [line for line in err.splitlines() if "error" in line]  # the rest is the progress bar
    assert code == 2 and len(errors) == 1 and "No space left on device" in errors[0] and "Traceback" not in err
    monkeypatch.undo()
    run = grokscope.open_run(out)
    assert not run.complete and len(run.steps) > 0
    assert run_cli(["train", "--resume", "--out", str(out)], capsys)[0] == 0
    assert grokscope.open_run(out).complete


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the unavailable-CUDA message cannot show")
def test_cuda_requested_without_cuda_is_one_line(capsys):
    code, _, err = run_cli(["train", *SMALL, "--device", "cuda", "--out", "/tmp/never-created"], capsys)
    assert code == 2 and "CUDA is not available" in err and err.count("\n") == 1


def test_analyze_summary_json_and_cache(small_run, tmp_path, capsys):
    import shutil

    path = tmp_path / "run"
    shutil.copytree(small_run.path, path)
    code, stdout, _ = run_cli(["analyze", str(path)], capsys)
    assert code == 0 and "computed: spectra" in stdout
    code, stdout, _ = run_cli(["analyze", str(path)], capsys)
    assert code == 0 and "computed: nothing" in stdout
    code, stdout, _ = run_cli(["analyze", str(path), "--summary", "--json"], capsys)
    summary = json.loads(stdout)
    assert {"key_frequencies", "key_frequency_rule", "phases", "key_power_share", "clustered_neuron_share"} <= set(
        summary
    )
    assert set(summary["key_frequency_rules"]) == {"ablation", "neurons", "embed", "logit_map"}
    assert set(summary["phases"]) == {"memorization_end", "cleanup_start", "stable_start"}
    code, stdout, _ = run_cli(["analyze", str(path), "--summary"], capsys)
    assert code == 0 and "key frequencies" in stdout
    code, stdout, _ = run_cli(["analyze", "--list"], capsys)
    assert code == 0 and "progress (v1)" in stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["analyze", "{run}", "--only", "spectra,nope"], "unknown analysis 'nope'"),
        (["analyze", "{tmp}"], "not a grokscope run"),
        (["analyze", "{run}", "--json"], "--json goes with --summary"),
        (["probe", "{run}", "--heads", "7"], "no head 7"),
        (["probe", "{run}", "--frequencies", "99"], "no frequency 99"),
        (["probe", "{run}", "--neurons", "a"], "comma-separated integers"),
        (["probe", "{run}"], "nothing to ablate"),
        (["probe", "{run}", "--step", "99999", "--heads", "0"], "step 99999 was not saved"),
    ],
)
def test_analyze_and_probe_bad_input(small_run, tmp_path, capsys, args, message):
    args = [a.format(run=small_run.path, tmp=tmp_path) for a in args]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_probe_reports_base_and_ablated(small_run, capsys):
    code, stdout, _ = run_cli(["probe", str(small_run.path), "--heads", "0", "--json"], capsys)
    result = json.loads(stdout)
    assert code == 0 and result["step"] == int(small_run.steps[-1])
    assert set(result) == {"step", "train_loss", "train_acc", "test_loss", "test_acc"}
    for values in (v for k, v in result.items() if k != "step"):
        assert values["change"] == pytest.approx(values["ablated"] - values["base"])


def test_app_moves_to_the_next_free_port():
    import socket

    from grokscope.cli import free_port

    with socket.socket() as taken:
        taken.bind(("localhost", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert free_port("localhost", port) != port


def test_app_refuses_an_unknown_run_before_starting(tmp_path, capsys):
    code = main(["app", str(tmp_path), "--run", "nope"])
    assert code == 2 and "no run 'nope' inside" in capsys.readouterr().err
