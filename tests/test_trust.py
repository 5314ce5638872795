"""Trust under misuse: grokscope never destroys what it did not write, never trusts another run's cache, and
says so when a run's files were changed behind its back. Each test reproduces a defect found by trying the
tool as a careless user would."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import small_config

import grokscope
from grokscope import analysis
from grokscope.cli import main
from grokscope.store import layout
from grokscope.store.verify import verify


def copy_of(run, tmp_path, name="copy"):
    dst = tmp_path / name
    shutil.copytree(run.path, dst)
    return dst


def cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_force_refuses_a_run_holding_the_user_s_files_and_keeps_them(small_run, tmp_path, capsys):
    path = copy_of(small_run, tmp_path)
    (path / "notes.txt").write_text("my notes")
    (path / layout.ANALYSIS).mkdir(exist_ok=True)
    (path / layout.ANALYSIS / "my_plot.png").write_bytes(b"png")
    with pytest.raises(grokscope.GrokscopeError, match="did not write.*notes.txt"):
        grokscope.train(small_config(), path, force=True, progress=False)
    assert (path / "notes.txt").read_text() == "my notes" and (path / layout.ANALYSIS / "my_plot.png").is_file()
    assert grokscope.open_run(path).complete  # the run itself is untouched too

    (path / "notes.txt").unlink()
    (path / layout.ANALYSIS / "my_plot.png").unlink()
    old_id = grokscope.open_run(path).id
    grokscope.train(small_config(), path, force=True, progress=False)  # only grokscope's files: replaced
    assert grokscope.open_run(path).id != old_id


def test_outputs_never_overwrite_a_file_grokscope_did_not_write(analyzed_run, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"mine": true}')
    code, _, err = cli(["prune", analyzed_run.path, "--by", "magnitude", "--count", "3", "--out", out], capsys)
    assert code == 2 and "grokscope did not write it" in err and err.count("\n") == 1
    assert (out / "config.json").read_text() == '{"mine": true}'

    fresh = tmp_path / "pruned"
    for _ in range(2):  # its own files, written again: allowed
        code, _, err = cli(["prune", analyzed_run.path, "--by", "magnitude", "--count", "3", "--out", fresh], capsys)
        assert code == 0, err
    (fresh / "extra.txt").write_text("keep")
    assert cli(["prune", analyzed_run.path, "--by", "magnitude", "--count", "4", "--out", fresh], capsys)[0] == 0
    assert (fresh / "extra.txt").read_text() == "keep"


def test_a_cache_copied_from_another_run_is_recomputed(analyzed_run, small_run, tmp_path, capsys):
    """The other run's key frequencies must never be reported as this run's."""
    path = copy_of(small_run, tmp_path)
    shutil.copytree(analyzed_run.path / layout.ANALYSIS, path / layout.ANALYSIS, dirs_exist_ok=True)
    run = grokscope.open_run(path)
    assert "spectra" in analysis.missing(run)
    assert "computed for another run" in capsys.readouterr().err
    analysis.analyze(run, progress=False)
    # independent: the same analysis of a clean copy with no cache at all
    clean = grokscope.open_run(copy_of(small_run, tmp_path, "clean"))
    ours, theirs = analysis.summary(run), analysis.summary(clean)
    assert ours["key_frequencies"] == theirs["key_frequencies"]


def test_a_cache_for_another_config_or_changed_checkpoints_is_recomputed(analyzed_run, tmp_path, capsys):
    path = copy_of(analyzed_run, tmp_path)
    run = grokscope.open_run(path)
    assert analysis.missing(run) == []  # a plain copy of a run is the same run: its cache holds
    # a checkpoint changed (and its checksum with it, as a retraining in place would): neurons are recomputed
    params = np.load(path / layout.PARAMS / "blocks.0.mlp.W_in.npy", mmap_mode="r+")
    params[2] *= 2
    params.flush()
    progress = layout.read_json(path / layout.PROGRESS)
    progress["checksums"][2] = layout.row_checksum(
        {n: np.load(path / layout.PARAMS / f"{n}.npy", mmap_mode="r") for n in run.param_names}, 2
    )
    layout.write_json(path / layout.PROGRESS, progress)
    run.refresh()
    assert "neurons" in analysis.missing(run)
    assert "other checkpoints" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name, damage, why",
    [
        ("neurons", lambda r: {**r, "frequency": r["frequency"][:, :7], "fraction": r["fraction"][:, :7]}, "neurons"),
        ("key_frequencies", lambda r: {**r, "frequencies": r["frequencies"] + 100}, "outside"),
    ],
)
def test_cache_content_out_of_range_is_recomputed(analyzed_run, tmp_path, capsys, name, damage, why):
    path = copy_of(analyzed_run, tmp_path)
    file = next((path / layout.ANALYSIS).glob(f"{name}@v*.npz"))
    layout.write_npz(file, damage(layout.load_npz(file)))  # binding kept: only the content is wrong
    run = grokscope.open_run(path)
    assert name in analysis.missing(run)
    assert why in capsys.readouterr().err
    assert name in analysis.analyze(run, progress=False)


def test_verify_finds_a_changed_checkpoint_and_open_finds_a_changed_last_one(small_run, tmp_path, capsys):
    path = copy_of(small_run, tmp_path)
    assert cli(["verify", path], capsys)[0] == 0
    params = np.load(path / layout.PARAMS / "embed.W_E.npy", mmap_mode="r+")
    params[3, 0, 0] += 1.0
    params.flush()
    code, out, err = cli(["verify", path], capsys)
    assert code == 1 and f"steps {int(small_run.steps[3])}" in err and "problems found" in out
    params[-1, 0, 0] += 1.0
    params.flush()
    with pytest.raises(grokscope.GrokscopeError, match="does not match its checksum"):
        grokscope.open_run(path)


def test_a_complete_run_without_its_final_weights_says_so(small_run, tmp_path):
    path = copy_of(small_run, tmp_path)
    (path / layout.FINAL).write_bytes(b"garbage")
    assert any("final.safetensors" in p for p in verify(grokscope.open_run(path)))
    (path / layout.FINAL).unlink()
    run = grokscope.open_run(path)
    assert not run.complete and any("final.safetensors: missing" in p for p in verify(run))


def edit_config(path, **task):
    config = json.loads((path / layout.CONFIG).read_text())
    config["task"].update(task)
    (path / layout.CONFIG).write_text(json.dumps(config))


@pytest.mark.parametrize("command", ["info", "analyze", "verify", "probe"])
def test_an_edited_config_is_refused_by_every_command(small_run, tmp_path, capsys, command):
    path = copy_of(small_run, tmp_path)
    shutil.rmtree(path / layout.ANALYSIS, ignore_errors=True)  # other tests may have analysed the shared run
    edit_config(path, seed=1)  # not even a shape changes: only the marker's config digest can tell
    code, _, err = cli([command, path], capsys)
    assert code == 2 and "config.json: changed since the run was made" in err and err.count("\n") == 1
    assert not (path / layout.ANALYSIS).exists()


def test_an_edited_config_of_a_run_without_a_config_digest_is_caught_by_its_shapes(small_run, tmp_path, capsys):
    path = copy_of(small_run, tmp_path)
    shutil.rmtree(path / layout.ANALYSIS, ignore_errors=True)
    marker = json.loads((path / layout.MARKER).read_text())
    del marker["config_digest"]  # as runs made before the digest was recorded
    (path / layout.MARKER).write_text(json.dumps(marker))
    edit_config(path, p=29)
    code, _, err = cli(["analyze", path], capsys)
    assert code == 2 and "does not match the stored parameters" in err and err.count("\n") == 1
    assert not (path / layout.ANALYSIS).exists()
    assert cli(["verify", path], capsys)[0] == 1


@pytest.mark.parametrize(
    "bad, message",
    [
        (["--set", "model.seed=-1"], "model.seed must be in"),
        (["--set", "task.seed=99999999999999999999999"], "task.seed must be in"),
        (["--set", "train.seed=-3"], "train.seed must be in"),
        (["--set", "task.train_frac=0.0001"], "at least 1 training and 1 test input"),
        (["--set", "task.train_frac=0.9999"], "at least 1 training and 1 test input"),
        (["--commit-every", "nan"], "--commit-every must be"),
        (["--commit-every", "-1"], "--commit-every must be"),
        (["--commit-every", "inf"], "--commit-every must be"),
    ],
)
def test_meaningless_training_inputs_are_refused_before_anything_is_written(tmp_path, capsys, bad, message):
    out = tmp_path / "run"
    code, _, err = cli(["train", "--preset", "tiny", "--steps", "5", "--out", out, *bad], capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_format_the_command_will_not_use_is_refused(analyzed_run, tmp_path, capsys):
    out = tmp_path / "pruned"
    code, _, err = cli(
        ["prune", analyzed_run.path, "--by", "ipr", "--count", "2", "--format", "svg", "--out", out], capsys
    )
    assert code == 2 and "--format is for --sweep" in err and not out.exists()


def test_messages_say_the_truth(small_run, tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    code, _, err = cli(["train", "--preset", "tiny", "--steps", "5", "--out", tmp_path / "afile" / "run"], capsys)
    assert code == 2 and "afile is a file: cannot create" in err and err.count("\n") == 1

    path = copy_of(small_run, tmp_path)
    np.save(path / layout.STEPS, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(grokscope.GrokscopeError, match="holds Python objects, which grokscope never loads") as e:
        grokscope.open_run(path)
    assert "allow_pickle" not in str(e.value)

    with pytest.raises(grokscope.GrokscopeError, match="a step is an integer; got '10'"):
        small_run.params("10")
    with pytest.raises(grokscope.GrokscopeError, match="a run is a directory path; got 5"):
        grokscope.open_run(5)


def test_info_on_a_run_with_no_checkpoint_yet(small_run, tmp_path, capsys):
    path = copy_of(small_run, tmp_path)
    (path / layout.COMPLETE).unlink()
    layout.write_json(path / layout.PROGRESS, layout.empty_progress())
    code, out, _ = cli(["info", path], capsys)
    assert code == 0 and "no checkpoint saved yet" in out and "None" not in out.split("config:")[0]
    code, _, err = cli(["analyze", path], capsys)
    assert code == 2 and "no checkpoint saved yet" in err


def test_threads_are_chosen_recorded_and_checked(tmp_path, capsys):
    import torch

    before = torch.get_num_threads()
    out = tmp_path / "run"
    try:
        assert cli(["train", "--preset", "tiny", "--steps", "5", "--threads", "1", "--out", out], capsys)[0] == 0
        assert grokscope.open_run(out).meta["threads"] == 1
    finally:
        torch.set_num_threads(before)
    code, _, err = cli(["train", "--preset", "tiny", "--steps", "5", "--threads", "0", "--out", tmp_path / "b"], capsys)
    assert code == 2 and "--threads must be at least 1" in err
    code, _, err = cli(["train", "--resume", "--out", out, "--threads", "2"], capsys)
    assert code == 2 and "own thread count" in err


@pytest.mark.parametrize("bad", [None, 5])
def test_the_api_takes_a_run_or_its_path_and_says_so_otherwise(analyzed_run, bad):
    path = str(analyzed_run.path)
    assert analysis.summary(path)["key_frequencies"] == analysis.summary(analyzed_run)["key_frequencies"]
    assert grokscope.load_model(path, int(analyzed_run.steps[-1])) is not None
    for call in (
        lambda: grokscope.load_model(bad, 0),
        lambda: analysis.load(bad, "spectra"),
        lambda: analysis.summary(bad),
    ):
        with pytest.raises(grokscope.GrokscopeError, match="a run is a directory path"):
            call()


@contextlib.contextmanager
def as_another_user():
    """Act as a user that does not own the test's files: as root (CI), the effective ids become nobody's
    for the block (restored after it); any other user is already held to the file modes."""
    if os.geteuid() != 0:
        yield
        return
    # what the commands import lazily, imported now: nobody cannot read root's Python installation
    import encodings.cp437  # noqa: F401 - zipfile's file-name codec

    import grokscope.analysis.pruning
    import grokscope.analysis.tickets
    import grokscope.figures.export  # noqa: F401

    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def read_only_run(analyzed_run):
    """A copy of the analysed run, its analyses removed, in a directory nobody else may write."""
    root = Path(tempfile.mkdtemp())
    try:
        shutil.copytree(analyzed_run.path, root / "run")
        shutil.rmtree(root / "run" / layout.ANALYSIS)
        for path in [root, *root.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        yield root / "run"
    finally:
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755)
        shutil.rmtree(root)


@pytest.mark.parametrize(
    "command, message",
    [
        (["train", "--preset", "tiny", "--steps", "5", "--out", "{root}/new"], "is not writable: cannot create"),
        (["analyze", "{run}"], "not writable, and analyses are cached inside the run"),
        (["figures", "{run}", "--out", "{root}/figs"], "not writable, and analyses are cached inside the run"),
        (["prune", "{run}", "--by", "magnitude", "--count", "2"], "is not writable: cannot create"),
        (["ticket", "{run}", "--keep", "0.5"], "is not writable: cannot create"),
    ],
)
def test_a_location_that_is_not_writable_is_one_line(read_only_run, capsys, command, message):
    args = [a.format(run=read_only_run, root=read_only_run.parent) for a in command]
    with as_another_user():
        code, _, err = cli(args, capsys)
    assert code == 2 and message in err and err.count("error:") == 1, err
    assert "analyses:" not in err  # refused before any work
    assert sorted(p.name for p in read_only_run.parent.iterdir()) == ["run"]


@pytest.mark.parametrize("end", ["null", '"4"', "[1]"])
def test_final_weights_with_a_garbage_header_mean_not_complete(small_run, tmp_path, end):
    path = copy_of(small_run, tmp_path)
    header = b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, %s]}}' % end.encode()
    (path / layout.FINAL).write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    assert not grokscope.open_run(path).complete
