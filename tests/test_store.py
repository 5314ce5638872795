import json

import numpy as np
import pytest
import torch

import grokscope
from grokscope import GrokscopeError, open_run
from grokscope.models import load_model
from grokscope.store import layout
from grokscope.train.losses import accuracy, cross_entropy
from grokscope.train.schedule import checkpoint_steps


def test_schedule_is_dense_then_log_then_uniform():
    canonical = grokscope.load_preset("canonical")
    steps = checkpoint_steps(canonical.train.steps, canonical.checkpoints)
    assert len(steps) >= 1000
    assert np.array_equal(steps[:101], np.arange(101))  # every step for the first 100
    assert steps[-1] == 25_000 and np.all(np.diff(steps) > 0)
    gaps = np.diff(steps)
    assert gaps.max() <= 25_000 / 800 + 1  # the uniform part bounds every gap


def test_open_run_exposes_steps_params_trajectories_and_metrics(small_run):
    run = small_run
    assert run.complete
    assert np.array_equal(run.steps, checkpoint_steps(run.config.train.steps, run.config.checkpoints))
    step = int(run.steps[7])
    params = run.params(step)
    assert set(params) == set(run.param_names)
    traj = run.trajectory("embed.W_E")
    assert traj.shape == (len(run.steps), run.config.task.p + 1, run.config.model.d_model)
    assert np.array_equal(traj[7], params["embed.W_E"].numpy())
    assert not np.array_equal(traj[0], traj[-1])  # training moved the weights
    metrics = run.metrics
    assert set(metrics) == {"step", *layout.METRIC_COLUMNS}
    assert len(metrics["train_loss"]) == run.config.train.steps + 1
    assert np.all(np.isfinite(metrics["test_loss"]))


def test_saved_model_reproduces_the_recorded_metrics(small_run):
    """A checkpoint is the exact state the metrics were measured at: evaluating it again gives them back."""
    run, data = small_run, small_run.dataset
    for step in (0, int(run.steps[len(run.steps) // 2]), run.config.train.steps):
        model = load_model(run, step)
        with torch.no_grad():
            logits = model.plain_logits(torch.as_tensor(data.test_rows))
        labels = torch.as_tensor(data.test_labels)
        assert accuracy(logits, labels).item() == pytest.approx(run.metrics["test_acc"][step], abs=1e-12)
        # plain vs fast forward differ in float32 rounding only
        assert cross_entropy(logits, labels).item() == pytest.approx(run.metrics["test_loss"][step], rel=1e-4)


def test_final_weights_are_safetensors_equal_to_the_last_checkpoint(small_run):
    from safetensors.torch import load_file

    final = load_file(small_run.path / layout.FINAL)
    last = small_run.params(int(small_run.steps[-1]))
    assert final.keys() == last.keys()
    assert all(torch.equal(final[k], last[k]) for k in final)


def test_unsaved_step_is_a_clear_error(small_run):
    unsaved = int(np.setdiff1d(np.arange(small_run.config.train.steps), small_run.steps)[0])
    with pytest.raises(GrokscopeError, match=f"step {unsaved} was not saved"):
        small_run.params(unsaved)
    with pytest.raises(GrokscopeError, match="no parameter 'W_nope'"):
        small_run.trajectory("W_nope")


def test_config_and_provenance_are_saved(small_run):
    config = json.loads((small_run.path / layout.CONFIG).read_text())
    assert grokscope.RunConfig.from_dict(config) == small_run.config
    meta = json.loads((small_run.path / layout.META).read_text())
    assert (
        meta["versions"]["torch"] == torch.__version__.split("+")[0] or meta["versions"]["torch"] == torch.__version__
    )
    assert meta["n_params"] == sum(np.prod(s) for s in meta["param_shapes"].values())


def copy_run(run, tmp_path):
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(run.path, dst)
    return dst


@pytest.mark.parametrize(
    "damage, file",
    [
        ("truncate", "params/blocks.0.mlp.W_in.npy"),
        ("garbage", "params/unembed.W_U.npy"),
        ("truncate", "metrics/test_loss.npy"),
        ("garbage", "config.json"),
        ("garbage", "progress.json"),
        ("delete", "params/embed.W_E.npy"),
        ("garbage", "steps.npy"),
        ("garbage", "meta.json"),
    ],
)
def test_damaged_files_are_named_in_the_error(small_run, tmp_path, damage, file):
    path = copy_run(small_run, tmp_path)
    target = path / file
    if damage == "truncate":
        size = target.stat().st_size
        with open(target, "r+b") as f:
            f.truncate(size // 2)
    elif damage == "garbage":
        target.write_bytes(b"\x00not what it should be\xff" * 3)
    else:
        target.unlink()
    with pytest.raises(GrokscopeError) as e:
        open_run(path)
    assert file in str(e.value)


def test_corrupt_split_is_named(small_run, tmp_path):
    path = copy_run(small_run, tmp_path)
    (path / layout.DATA).write_bytes(b"PK\x03\x04 broken zip")
    with pytest.raises(GrokscopeError, match="data.npz"):
        _ = open_run(path).dataset


def test_not_a_run(tmp_path):
    with pytest.raises(GrokscopeError, match="not a grokscope run"):
        open_run(tmp_path)
    with pytest.raises(GrokscopeError, match="no such run directory"):
        open_run(tmp_path / "missing")


def test_reader_trusts_only_committed_rows(small_run, tmp_path):
    """Rows past progress.json's count (written but not committed before a crash) are not shown."""
    path = copy_run(small_run, tmp_path)
    (path / layout.COMPLETE).unlink()
    progress = json.loads((path / layout.PROGRESS).read_text())
    step = int(small_run.steps[4])
    progress.update(n_checkpoints=5, n_metric_steps=step, step=step, state=f"state/step_{step}.safetensors")
    progress["checksums"] = progress["checksums"][:5]
    (path / layout.PROGRESS).write_text(json.dumps(progress))
    run = open_run(path)
    assert not run.complete
    assert len(run.steps) == 5 and run.trajectory("embed.W_E").shape[0] == 5
    assert len(run.metrics["test_acc"]) == step
    with pytest.raises(GrokscopeError, match="was not saved"):
        run.params(int(small_run.steps[6]))


def test_eval_every_measures_the_test_inputs_at_its_steps_only(small_run, tmp_path):
    """train.eval_every: the test metrics every N steps, at saved steps and at the last (NaN between); the
    training metrics every step; the same run as evaluating every step, up to float32 rounding (the steps
    between evaluations compute the training rows' logits by other products)."""
    from conftest import small_config

    run = grokscope.open_run(grokscope.train(small_config(**{"train.eval_every": 7}), tmp_path / "r", progress=False))
    m, steps = run.metrics, np.arange(run.config.train.steps + 1)
    expected = (steps % 7 == 0) | np.isin(steps, run.steps) | (steps == steps[-1])
    assert not expected.all()  # some steps read the training inputs alone
    for column in ("test_loss", "test_acc"):
        assert np.array_equal(np.isfinite(m[column]), expected), column
    for column in ("train_loss", "train_acc", "weight_norm", "sc_fraction", "logit_norm"):
        assert np.isfinite(m[column]).all(), column
    # the two runs are the same maths; their weights drift apart by float32 rounding, which training amplifies,
    # most once the run memorizes (Adam's normalized step turns rounding in a near-zero gradient into a step's
    # worth): observed up to 2e-4 relative in the losses by step 120 on a 2-core AMD EPYC (AVX2), but 2.6e-2 by
    # step 80 on a 2-core Intel Xeon (AVX-512), where the losses agree to 1.7e-6 by step 30 and 9.2e-5 by step
    # 40, growing ~8x per 5 steps. So compare the 40 steps before it memorizes (train accuracy 0.47 at step 40):
    # 1e-3 leaves headroom, while a wrong step (logits not aligned with their labels, a missing term) moves the
    # losses by far more; accuracies within 1% of the rows (observed: 3 of 577 rows, 0.5%, from near-ties)
    window = steps <= 40
    for column in ("train_loss", "test_loss"):
        got, want = m[column][expected & window], small_run.metrics[column][expected & window]
        np.testing.assert_allclose(got, want, rtol=1e-3, err_msg=column)
    assert np.abs(m["train_acc"] - small_run.metrics["train_acc"])[window].max() <= 0.01
    # a run stopped between evaluations reports its test metrics at the last step that measured them
    last = int(steps[~expected][-1])  # a step between evaluations, as the last recorded one
    previous = int(steps[: last + 1][expected[: last + 1]][-1])
    run.pin = (run.n_checkpoints, last + 1)
    run.refresh()
    assert not np.isfinite(run.metrics["test_acc"][last])
    assert run.summary()["final"]["test_acc"] == run.metrics["test_acc"][previous]


def test_a_lock_removed_by_its_last_holder_while_being_taken_is_taken_again(tmp_path, monkeypatch):
    """The writer before this one removes the lock file as it ends; one that opened the file before that and
    locks it after holds a removed file, which guards nothing: it must see that and lock the file now there."""
    import fcntl

    from grokscope.store import writer

    run, lock = tmp_path / "run", tmp_path / ".run.lock"
    real_flock, calls = fcntl.flock, []

    def flock(fd, operation):
        calls.append(fd)
        if len(calls) == 1:
            lock.unlink()  # the previous holder ends between this writer's open and its flock
        real_flock(fd, operation)

    monkeypatch.setattr(writer.fcntl, "flock", flock)
    with writer.writing(run):
        assert len(calls) == 2 and lock.exists()
        monkeypatch.setattr(writer.fcntl, "flock", real_flock)
        with (
            pytest.raises(GrokscopeError, match="being written by another writer in this process"),
            writer.writing(run),
        ):
            pass
    assert not lock.exists()


def test_a_refused_lock_keeps_no_descriptor_and_an_unlockable_file_system_warns(tmp_path, monkeypatch, capsys):
    import errno
    import os

    from grokscope.store import writer

    fds = len(os.listdir("/proc/self/fd"))
    with writer.writing(tmp_path / "run"):
        for _ in range(3):
            with pytest.raises(GrokscopeError, match="being written"), writer.writing(tmp_path / "run"):
                pass
        assert len(os.listdir("/proc/self/fd")) == fds + 1  # its own
    assert len(os.listdir("/proc/self/fd")) == fds

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(writer.fcntl, "flock", no_locks)
    ran = False
    with writer.writing(tmp_path / "run"):
        ran = True
    assert ran and list(tmp_path.iterdir()) == []
    assert capsys.readouterr().err.startswith(f"grokscope: warning: cannot lock {tmp_path / '.run.lock'} (")
    assert len(os.listdir("/proc/self/fd")) == fds


def test_a_run_refused_before_training_leaves_nothing(tmp_path):
    """A config that cannot train is refused before the run's directory, its parents or its lock are made; a
    path through a loop of links is one line, not a traceback."""
    from conftest import small_config

    with pytest.raises(GrokscopeError, match="larger than the training set"):
        grokscope.train(small_config(**{"train.batch_size": 99999}), tmp_path / "new" / "run", progress=False)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(GrokscopeError, match="loop"):
        grokscope.train(small_config(), tmp_path / "loop" / "run", progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["loop"]


def test_a_run_reached_through_a_link_shares_its_lock_and_is_never_replaced_through_it(tmp_path, monkeypatch, capsys):
    """A link to a run takes the run's own lock (a second writer through it is refused), and --force through a
    link, or on the current directory or one holding it, is one line that changes nothing: replacing would move
    the link aside (or the directory the process works in) and put a new directory in its place."""
    from conftest import small_config

    from grokscope.cli import main
    from grokscope.store.writer import writing

    grokscope.train(small_config(), tmp_path / "run", progress=False)
    (tmp_path / "run" / layout.COMPLETE).unlink()  # resumable
    (tmp_path / "link").symlink_to(tmp_path / "run")
    held = pytest.raises(GrokscopeError, match="link is being written by another writer in this process")
    with writing(tmp_path / "run"), held:
        grokscope.train(out=tmp_path / "link", resume=True, progress=False)
    files = {f: f.read_bytes() for f in sorted((tmp_path / "run").rglob("*")) if f.is_file()}
    assert main(["train", "--preset", "tiny", "--out", str(tmp_path / "link"), "--force"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"grokscope: error: {tmp_path / 'link'} is a link: give the run's own directory ({tmp_path / 'run'}) "
        "or another --out"
    )
    monkeypatch.chdir(tmp_path / "run")
    assert main(["train", "--preset", "tiny", "--out", ".", "--force"]) == 2
    assert capsys.readouterr().err.strip() == (
        "grokscope: error: --out . is the current directory: give the run its own, e.g. checkpoints/NAME"
    )
    monkeypatch.chdir(tmp_path / "run" / "metrics")  # replacing the run would delete the directory it works in
    assert main(["train", "--preset", "tiny", "--out", str(tmp_path / "run"), "--force"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"grokscope: error: --out {tmp_path / 'run'} holds the current directory: give the run its own, "
        "e.g. checkpoints/NAME"
    )
    assert (tmp_path / "link").is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == ["link", "run"]
    assert {f: f.read_bytes() for f in sorted((tmp_path / "run").rglob("*")) if f.is_file()} == files
