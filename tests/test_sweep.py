"""`grokscope sweep`: every run of a spec in its own run directory; again, complete runs are skipped and
interrupted ones resumed; bad specs are refused in one line."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import SWEEP_SPEC

import grokscope
from grokscope.analysis.sweeps import OUTCOMES, cells, outcome, sweep_table, varied_keys
from grokscope.cli import main
from grokscope.figures.export import NO_BROWSER
from grokscope.store import layout
from grokscope.store.sweep import open_sweep
from grokscope.sweep import load_spec, sweep
from grokscope.sweep.executors import SweepBar, jobs_for
from grokscope.train.loop import Trainer

SPEC = SWEEP_SPEC


def test_a_grid_trains_each_run_once_and_resumes_an_interrupted_one(tmp_path, monkeypatch):
    spec = tmp_path / "wd.toml"
    spec.write_text(SPEC)
    names = [r.name for r in load_spec(spec)]
    assert names == [f"optim.weight_decay={wd}__model.seed={s}" for wd in (0.5, 1.0) for s in (0, 1)]

    step = Trainer.step

    def interrupted(self, s):  # the third run stops at step 10 (after a commit at every checkpoint)
        if self.config.name == names[2] and s == 10:
            raise KeyboardInterrupt
        step(self, s)

    monkeypatch.setattr(Trainer, "step", interrupted)
    quiet = {"say": lambda _: None, "progress": False, "commit_every_s": 0}
    with pytest.raises(KeyboardInterrupt):
        sweep(spec, tmp_path / "out", **quiet)
    monkeypatch.setattr(Trainer, "step", step)
    said = []
    runs = sweep(spec, tmp_path / "out", say=said.append, progress=False)
    assert said == [f"{names[0]}: complete", f"{names[1]}: complete", f"{names[2]}: resuming", f"{names[3]}: training"]
    for path, name in zip(runs, names):
        run = grokscope.open_run(path)
        assert run.complete and run.name == name and run.config.task.p == 13
        assert run.config.optim.weight_decay == float(name.split("=")[1].split("__")[0])
    # the resumed run is the uninterrupted one, bit for bit (CPU)
    alone = grokscope.train(grokscope.open_run(runs[2]).config, tmp_path / "alone", progress=False)
    for name, value in grokscope.open_run(alone).params(24).items():
        assert torch.equal(grokscope.open_run(runs[2]).params(24)[name], value), name
    manifest = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert [r["name"] for r in manifest["runs"]] == names
    assert sweep(spec, tmp_path / "out", say=said.append) == runs and said[-4:] == [f"{n}: complete" for n in names]


def test_the_bar_of_runs_training_elsewhere_counts_each_run_s_durable_steps(tmp_path, monkeypatch):
    """--jobs and Ray show one bar: every run's last committed step, read from its run directory."""
    spec = tmp_path / "wd.toml"
    spec.write_text(SPEC)
    runs = load_spec(spec)
    step = Trainer.step

    def interrupted(self, s):  # the second run stops at step 10; its last commit is at checkpoint step 8
        if self.config.name == runs[1].name and s == 10:
            raise KeyboardInterrupt
        step(self, s)

    monkeypatch.setattr(Trainer, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sweep(spec, tmp_path / "out", say=lambda _: None, progress=False, commit_every_s=0)
    todo = jobs_for([(run.config, tmp_path / "out" / run.name) for run in runs[1:]], pack=1)
    said = []
    bar = SweepBar(todo, said.append, show=True)
    assert (bar.bar.total, bar.bar.n) == (3 * 24, 8)  # 3 runs of 24 steps to train; 8 of them durable
    bar.ended(todo[0])
    assert said == [f"{runs[1].name}: resumed"] and bar.bar.postfix == "1 of 3 runs done"
    bar.close()


def test_runs_in_parallel_processes(tmp_path):
    spec = tmp_path / "two.toml"
    spec.write_text(SPEC.replace('"model.seed" = [0, 1]', ""))
    runs = sweep(spec, tmp_path / "out", jobs=2, say=lambda _: None)
    assert len(runs) == 2 and all(grokscope.open_run(r).complete for r in runs)
    # each run is its config's own: the weight decays differ, so do the final weights
    finals = [grokscope.open_run(r).params(24)["embed.W_E"].numpy() for r in runs]
    assert not np.array_equal(*finals)


@pytest.fixture(scope="module")
def ray_files():
    """Ray's files (its session under RAY_TMPDIR, its token under ~/.ray) in a directory removed afterwards, so
    the tests leave the machine as they found it; a short path, for the Unix sockets Ray makes in it (107 bytes
    at most). One for the module: Ray keeps the token it read for the life of the process."""
    where = tempfile.mkdtemp(prefix="gs-ray-")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_TMPDIR", where)
        patch.setenv("HOME", where)
        yield
    shutil.rmtree(where, ignore_errors=True)


def test_a_sweep_on_ray_trains_and_resumes_the_runs_the_local_executor_trains(tmp_path, monkeypatch, ray_files):
    """Ray's local instance (this machine's cores, one run per core) finishes a sweep the local executor left
    interrupted: the complete runs are skipped, the interrupted one resumed, the last one trained, and every run
    equals the same run trained here, bit for bit (one torch thread each, as Ray's tasks have)."""
    spec = tmp_path / "wd.toml"
    spec.write_text(SPEC)
    names = [r.name for r in load_spec(spec)]
    step, threads = Trainer.step, torch.get_num_threads()

    def interrupted(self, s):
        if self.config.name == names[2] and s == 10:
            raise KeyboardInterrupt
        step(self, s)

    torch.set_num_threads(1)
    try:
        monkeypatch.setattr(Trainer, "step", interrupted)
        with pytest.raises(KeyboardInterrupt):
            sweep(spec, tmp_path / "out", say=lambda _: None, progress=False, commit_every_s=0)
        monkeypatch.setattr(Trainer, "step", step)
        here = sweep(spec, tmp_path / "here", say=lambda _: None, progress=False)
    finally:
        torch.set_num_threads(threads)
    said = []
    runs = sweep(spec, tmp_path / "out", executor="ray", say=said.append)
    assert said[:3] == [
        f"{names[0]}: complete",
        f"{names[1]}: complete",
        f"Ray: 2 runs on {os.cpu_count()} cores, one run per core",
    ]
    assert sorted(said[3:]) == sorted([f"{names[2]}: resumed", f"{names[3]}: trained"])  # in the order they end
    for ray_run, local_run in zip(runs, here):
        ray_run, local_run = grokscope.open_run(ray_run), grokscope.open_run(local_run)
        assert ray_run.complete and ray_run.meta["threads"] == 1
        for name, value in local_run.params(24).items():
            assert torch.equal(ray_run.params(24)[name], value), (ray_run.name, name)
        assert np.array_equal(ray_run.metrics["test_loss"], local_run.metrics["test_loss"], equal_nan=True)


def test_ray_trains_a_pack_as_one_task_the_same_as_here(tmp_path, ray_files):
    """--pack on Ray: one task per pack, each run bit for bit the same pack trained here with one thread."""
    spec = tmp_path / "wd.toml"
    spec.write_text(SPEC)
    names = [r.name for r in load_spec(spec)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        here = sweep(spec, tmp_path / "here", pack=2, say=lambda _: None, progress=False)
    finally:
        torch.set_num_threads(threads)
    said = []
    runs = sweep(spec, tmp_path / "out", executor="ray", pack=2, say=said.append)
    assert said[0] == f"Ray: 2 jobs on {os.cpu_count()} cores, one job per core"
    packs = [f"{names[0]}, {names[1]}: trained (one pack of 2)", f"{names[2]}, {names[3]}: trained (one pack of 2)"]
    assert sorted(said[1:]) == packs
    for ray_run, local_run in zip(runs, here):
        ray_run, local_run = grokscope.open_run(ray_run), grokscope.open_run(local_run)
        assert ray_run.complete and ray_run.meta["pack"] == local_run.meta["pack"]
        for name, value in local_run.params(24).items():
            assert torch.equal(ray_run.params(24)[name], value), (ray_run.name, name)


def test_a_run_failing_on_ray_ends_the_sweep_in_one_line(tmp_path, capsys, ray_files):
    (tmp_path / "s.toml").write_text('preset = "tiny"\n[set]\n"task.p" = 7\n"train.batch_size" = 1000\n')
    assert main(["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out"), "--executor", "ray"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.batch_size 1000 is larger than the training set" in err, err


def test_the_ray_executor_without_ray_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    (tmp_path / "s.toml").write_text('preset = "tiny"\n[set]\n"task.p" = 7\n')
    assert main(["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out"), "--executor", "ray"]) == 2
    assert capsys.readouterr().err == "grokscope: error: the ray executor needs Ray: pip install 'grokscope[sweep]'\n"


def test_an_address_for_a_process_already_connected_to_ray_is_refused(tmp_path, monkeypatch):
    """ray.init in this process comes first (a notebook's), so an address would silently go unused."""
    import ray

    from grokscope.errors import GrokscopeError

    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    (tmp_path / "s.toml").write_text(SPEC)
    with pytest.raises(GrokscopeError, match="already connected to Ray, so address auto would not be used"):
        sweep(tmp_path / "s.toml", tmp_path / "out", executor="ray", address="auto", say=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.toml"]


def test_an_unreachable_ray_cluster_is_said_in_one_line(tmp_path, capsys):
    import socket

    with socket.socket() as closed:  # a port nothing listens on: bound, never listening
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        (tmp_path / "s.toml").write_text('preset = "tiny"\n[set]\n"task.p" = 7\n')
        options = ["--executor", "ray", "--address", f"127.0.0.1:{port}"]
        assert main(["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out"), *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"grokscope: error: cannot reach Ray at 127.0.0.1:{port} (") and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "options, message",
    [
        (["--executor", "dask"], "unknown executor 'dask' (use local or ray)"),
        (["--executor", "ray", "--jobs", "2"], "--jobs is for --executor local"),
        (["--address", "auto"], "--address is for --executor ray"),
        (["--jobs", "0"], "--jobs must be >= 1"),
        (["--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_executor_options_that_do_not_fit_are_refused(tmp_path, capsys, options, message):
    (tmp_path / "s.toml").write_text('preset = "tiny"\n[set]\n"task.p" = 7\n')
    assert main(["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out"), *options]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "spec, message",
    [
        ('preset = "tiny"\n[grid]\n"optim.lr" = 0.1\n', "grid key 'optim.lr' needs a non-empty list"),
        ('preset = "tiny"\n[set]\n"optim.nope" = 1\n', "run base: unknown config key 'optim.nope'"),
        ('preset = "tiny"\n[grid]\n"task.p" = [13, 2]\n', "run task.p=2: task.p must be in"),
        ('presets = "tiny"\n', "unknown entry 'presets'"),
        ("[grid\n", "not a TOML sweep spec"),
        ('preset = "huge"\n', "unknown preset"),
        ('preset = "tiny"\nruns = []\n', "the spec describes no run"),
    ],
)
def test_bad_specs_are_refused_in_one_line(tmp_path, capsys, spec, message):
    (tmp_path / "s.toml").write_text(spec)
    assert main(["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_a_directory_holding_another_sweep_is_refused(tmp_path, capsys):
    (tmp_path / "a.toml").write_text('preset = "tiny"\n[set]\n"train.steps" = 2\n"task.p" = 7\n')
    assert main(["sweep", str(tmp_path / "a.toml"), "--out", str(tmp_path / "out")]) == 0
    assert "base: test accuracy" in capsys.readouterr().out
    (tmp_path / "b.toml").write_text('preset = "tiny"\n[set]\n"train.steps" = 3\n"task.p" = 7\n')
    assert main(["sweep", str(tmp_path / "b.toml"), "--out", str(tmp_path / "out")]) == 2
    assert "holds another sweep" in capsys.readouterr().err


def test_a_run_failing_ends_a_parallel_sweep_while_another_still_trains(tmp_path, capsys):
    spec = 'preset = "tiny"\n[set]\n"task.p" = 13\n"train.steps" = 20000\n[[runs]]\n"model.seed" = 0\n'
    spec += '[[runs]]\n"model.seed" = 1\n"train.batch_size" = 1000\n'  # larger than the training set: fails
    (tmp_path / "s.toml").write_text(spec)
    assert main(["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out"), "--jobs", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grokscope: error: model.seed=1__train.batch_size=1000: train.batch_size 1000 is larger")
    assert not (tmp_path / "out" / "model.seed=0" / "COMPLETE").exists()  # not waited for: stopped where it was


def test_a_link_inside_a_sweep_is_not_one_of_its_runs(small_sweep, small_run, tmp_path):
    shutil.copytree(small_sweep.path, tmp_path / "wd")
    first = next(iter(small_sweep.configs))
    shutil.rmtree(tmp_path / "wd" / first)
    (tmp_path / "wd" / first).symlink_to(small_run.path)  # a run directory elsewhere
    wd = open_sweep(tmp_path / "wd")
    assert first not in wd.started() and len(wd.started()) == 3
    assert sweep_table(wd)["status"][0] == "not started"
    with pytest.raises(grokscope.GrokscopeError, match="has no started run"):
        wd.open(first)


@pytest.mark.parametrize(
    "manifest, message",
    [
        ({"runs": [{"name": 5, "config": {}}]}, "not a sweep manifest"),
        ({"runs": ["a"]}, "not a sweep manifest"),
        ({"runs": [{"name": "a", "config": {}}, {"name": "a", "config": {}}]}, "two runs share a name"),
        ({"runs": [{"name": "..", "config": {}}]}, "is not a directory name"),
        ({"runs": [{"name": "a", "config": {"optim.nope": 1}}]}, "unknown config key"),
    ],
)
def test_a_bad_manifest_is_one_line(tmp_path, manifest, message):
    (tmp_path / "sweep.json").write_text(json.dumps(manifest))
    with pytest.raises(grokscope.GrokscopeError, match=message) as caught:
        open_sweep(tmp_path)
    assert "\n" not in str(caught.value)


def test_a_sweep_made_before_the_manifest_kept_its_keys_goes_on(small_sweep, tmp_path):
    shutil.copytree(small_sweep.path, tmp_path / "wd")
    manifest = json.loads((tmp_path / "wd" / "sweep.json").read_text())
    (tmp_path / "wd" / "sweep.json").write_text(json.dumps({"runs": manifest["runs"]}))
    assert open_sweep(tmp_path / "wd").keys == []  # read as it is: the varied keys in config order
    (tmp_path / "wd.toml").write_text(SPEC)
    said = []
    sweep(tmp_path / "wd.toml", tmp_path / "wd", say=said.append)
    assert said == [f"{name}: complete" for name in small_sweep.configs]
    assert open_sweep(tmp_path / "wd").keys == ["optim.weight_decay", "model.seed"]


def test_the_same_config_twice_is_refused(tmp_path, capsys):
    (tmp_path / "s.toml").write_text('preset = "tiny"\n[grid]\n"optim.weight_decay" = [1, 1.0]\n')
    assert main(["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out")]) == 2
    assert "runs optim.weight_decay=1 and optim.weight_decay=1.0 have the same config" in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_stops_a_parallel_sweep_and_the_same_sweep_resumes_it(tmp_path):
    """Ctrl-C during `--jobs 2`: the command ends at once (queued runs never start, running ones stop where
    they are, crash-safe); the same command again finishes every run."""
    import signal
    import subprocess
    import sys
    import time

    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.replace('"train.steps" = 24', '"train.steps" = 1000'))
    command = [sys.executable, "-m", "grokscope", "sweep", str(spec), "--out", str(tmp_path / "out"), "--jobs", "2"]
    # a terminal's Ctrl-C: the child starts with SIGINT handled even where this process ignores it (a test run
    # in the background of a shell does, and a child inherits an ignored signal, not a handler)
    ignored = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, ignored)
    deadline = time.monotonic() + 120
    while not any((tmp_path / "out").glob("[!.]*/progress.json")) and time.monotonic() < deadline:
        time.sleep(0.2)  # until the workers have started their first runs
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    assert "leaked" not in err, err  # no semaphore left behind by a worker ended mid-run
    # the runs started (a run stopped while its directory was being laid out leaves none: it starts afresh)
    runs = [p for p in (tmp_path / "out").iterdir() if layout.is_run(p)]
    assert 0 < len(runs) <= 2 and not any((p / "COMPLETE").is_file() for p in runs)  # 4 runs, 2 at a time
    done = subprocess.run(command[:-2], check=False, capture_output=True, text=True, timeout=600)  # one at a time
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("resuming") == len(runs) and done.stdout.count("training") == 4 - len(runs)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="the workers' parent-death signal is Linux's prctl")
def test_a_parallel_sweep_killed_outright_takes_its_workers_with_it(tmp_path):
    """kill -9 of `--jobs 2`: its workers end with it, within seconds (they would train their runs on unseen,
    holding them: each run here takes a minute or more), so no run is held when the sweep is run again."""
    import subprocess
    import time

    from grokscope.store.writer import writing

    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.replace('"train.steps" = 24', '"train.steps" = 50000'))
    command = [sys.executable, "-m", "grokscope", "sweep", str(spec), "--out", str(tmp_path / "out"), "--jobs", "2"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list((tmp_path / "out").glob("[!.]*/progress.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)  # until both workers have started their runs

    def children() -> list[int]:
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:  # a process that ended meanwhile
                continue
            if int(fields[1]) == process.pid:  # its parent
                found.append(int(stat.parent.name))
        return found

    workers = [pid for pid in children() if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(workers) == 2, workers  # the pool's two workers
    process.kill()
    process.wait()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers):
        assert time.monotonic() < deadline, "the workers outlived their sweep"
        time.sleep(0.1)
    for run in load_spec(spec):
        with writing(tmp_path / "out" / run.name):  # no run is held: the same sweep again can resume each
            pass


def fake_run(final: dict, corrupt_frac: float = 0.1, has_split: bool = True) -> SimpleNamespace:
    """What `outcome` reads of a run: its final metrics, whether it has a split, its corruption."""
    task = SimpleNamespace(corrupt_frac=corrupt_frac)
    return SimpleNamespace(final_metrics=lambda: final, has_split=has_split, config=SimpleNamespace(task=task))


@pytest.mark.parametrize(
    "test, train, noisy, true, corrupt, expected",
    [
        (0.95, 1.0, 1.0, 0.0, 0.1, "coexistence"),  # every corrupted label memorized, the rule learnt
        (0.95, 0.9, 0.0, 1.0, 0.1, "full inversion"),  # every corrupted example answered with its true label
        (0.95, 0.95, 0.5, 0.5, 0.1, "partial inversion"),
        (0.9, 0.95, 0.98, 0.0, 0.1, "partial inversion"),  # at the generalizing threshold; 98% memorized is not all
        (0.89, 1.0, 1.0, 0.0, 0.1, "memorization"),  # just short of generalizing, the training set fitted
        (0.5, 0.98, 0.9, 0.0, 0.1, "not fitted"),
        (0.99, 1.0, float("nan"), float("nan"), 0.0, "generalization"),  # no corruption: no inversion to speak of
        (float("nan"), float("nan"), float("nan"), float("nan"), 0.1, None),  # diverged: no outcome
        (0.95, 0.95, float("nan"), float("nan"), 0.01, "generalization"),  # ξ > 0 but no example drawn
    ],
)
def test_outcome_rules(test, train, noisy, true, corrupt, expected):
    final = {"test_acc": test, "train_acc": train, "corrupted_noisy_acc": noisy, "corrupted_true_acc": true}
    assert outcome(fake_run(final, corrupt)) == expected
    assert outcome(fake_run(final, corrupt, has_split=False)) is None


def test_the_outcome_of_a_corrupted_run_reads_its_final_predictions(coexistence_run):
    """The accuracies `outcome` reads equal those of the final model's predictions (computed here, not read
    from the recorded metrics): every corrupted label memorized, the test accuracy on either side of 0.9."""
    from grokscope.models import load_model

    run, data = coexistence_run, coexistence_run.dataset
    model = load_model(run, int(run.steps[-1]))
    with torch.no_grad():
        predicted = model.all_logits(model.task_inputs(run.task, data)).argmax(-1).numpy()
    test_acc = (predicted[data.test_rows] == data.test_labels).mean()
    corrupted = data.train_rows[data.corrupted]
    noisy_acc = (predicted[corrupted] == data.train_labels[data.corrupted]).mean()
    final = run.final_metrics()
    assert final["test_acc"] == test_acc and final["corrupted_noisy_acc"] == noisy_acc == 1.0
    assert outcome(run) == ("coexistence" if test_acc >= 0.9 else "memorization")


def test_the_sweep_table_reads_every_run(small_sweep):
    table = sweep_table(small_sweep)
    assert varied_keys(table) == ["optim.weight_decay", "model.seed"]
    assert table["optim.weight_decay"] == [0.5, 0.5, 1.0, 1.0] and table["model.seed"] == [0, 1, 0, 1]
    for i, name in enumerate(table["run"]):
        run = grokscope.open_run(small_sweep.path / name)
        assert table["status"][i] == "complete"
        assert table["final test acc"][i] == run.metrics["test_acc"][-1]
        assert table["final train acc"][i] == run.metrics["train_acc"][-1]
        assert table["grok step"][i] == run.grok_step and table["outcome"][i] == outcome(run)


def test_cells_pool_the_keys_off_the_axes():
    table = {
        "run": ["a", "b", "c", "d", "e", "f"],
        "wd": [1.0, 1.0, 2.0, 2.0, 2.0, 3.0],
        "seed": [0, 1, 0, 1, 2, 0],
        "status": ["complete"] * 5 + ["not started"],
        "final train acc": [1.0] * 5 + [None],
        "final test acc": [0.5, 1.0, 0.96, 0.2, 1.0, None],
        "grok step": [None, 100, 300, None, 500, None],
        "outcome": ["memorization", "generalization", "generalization", "memorization", "memorization", None],
    }
    one, two = cells(table, "wd", None, {})  # f has not started: no cell
    assert one["runs"] == ["a", "b"] and one["final test acc"] == 0.75 and one["grok step"] == 100
    assert one["grokked"] == 1 and one["outcome"] == "generalization" and one["outcome count"] == 1  # a tie: first
    assert two["runs"] == ["c", "d", "e"] and two["final test acc"] == pytest.approx((0.96 + 0.2 + 1.0) / 3)
    assert two["grok step"] == 400 and two["grokked"] == 2  # the median of the runs that grokked
    assert two["outcome"] == "memorization" and two["outcome count"] == 2
    (alone,) = cells(table, "wd", "seed", {"wd": 2.0, "seed": 1})
    assert alone["runs"] == ["d"] and alone["grok step"] is None and alone["x"] == 2.0 and alone["y"] == 1
    with pytest.raises(grokscope.GrokscopeError, match="does not vary 'lr'.*varies: wd, seed"):
        cells(table, "lr", None, {})


def test_the_phase_diagram_has_a_square_per_cell_that_opens_its_run(small_sweep):
    from grokscope.figures.builders import sweep_diagram

    table = sweep_table(small_sweep)
    plot = sweep_diagram(small_sweep, "optim.weight_decay", "model.seed")
    (trace,) = [t for t in plot.figure.data if t.name == "final test accuracy"]
    assert list(trace.customdata) == table["run"] and list(trace.x) == ["0.5", "0.5", "1.0", "1.0"]
    assert list(trace.marker.color) == table["final test acc"]
    np.testing.assert_array_equal(plot.data["final_test_acc"], table["final test acc"])
    pooled = sweep_diagram(small_sweep, "optim.weight_decay", None, "outcome")
    assert "pooled over model.seed" in pooled.figure.layout.title.text
    assert list(pooled.data["n_runs"]) == [2, 2] and set(pooled.data["outcome"]) <= set(OUTCOMES)
    assert {t.name for t in pooled.figure.data} == set(pooled.data["outcome"])  # one legend entry per outcome
    fixed = sweep_diagram(small_sweep, "optim.weight_decay", None, "grok step", {"model.seed": 1})
    assert list(fixed.data["runs"]) == [table["run"][1], table["run"][3]]
    with pytest.raises(grokscope.GrokscopeError, match="two different keys"):
        sweep_diagram(small_sweep, "model.seed", "model.seed")
    with pytest.raises(grokscope.GrokscopeError, match="unknown colouring"):
        sweep_diagram(small_sweep, "model.seed", None, "colour")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--x", "optim.lr"], "the sweep does not vary 'optim.lr'"),
        (["--step", "3"], "--step is for a run"),
        (["--only", "sweep_outcome"], "--only is for a run"),
        (["--fix", "model.seed"], "--fix expects KEY=VALUE"),
        (["--fix", "model.seed=7"], "the sweep has no run with model.seed = 7 (its values: 0, 1)"),
    ],
)
def test_sweep_figures_bad_input(small_sweep, tmp_path, capsys, args, message):
    assert main(["figures", str(small_sweep.path), "--out", str(tmp_path / "f"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_sweep_options_on_a_run_are_refused(small_run, tmp_path, capsys):
    assert main(["figures", str(small_run.path), "--out", str(tmp_path / "f"), "--x", "model.seed"]) == 2
    assert "--x, --y and --fix are for a sweep's directory" in capsys.readouterr().err


@pytest.mark.slow
def test_figures_of_a_sweep_are_its_phase_diagrams(small_sweep, tmp_path, capsys):
    out = tmp_path / "figs"
    code = main(["figures", str(small_sweep.path), "--out", str(out), "--format", "svg"])
    names = ["sweep_final_test_accuracy", "sweep_grok_step", "sweep_outcome"]
    for name in names:  # x and y: the first two keys the sweep varies
        header = (out / f"{name}.csv").read_text().splitlines()[0].split(",")
        assert header[:3] == ["optim.weight_decay", "model.seed", "runs"]
    if shutil.which("chromium") or shutil.which("google-chrome"):
        assert code == 0 and all(b"<svg" in (out / f"{n}.svg").read_bytes()[:400] for n in names)
    else:
        assert code == 2 and NO_BROWSER in capsys.readouterr().err
