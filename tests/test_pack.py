"""Packed training (`grokscope sweep --pack`): runs trained together in one process are each the run trained
alone (to float32 rounding: the pack computes the same maths in another order), each its own ordinary run
directory, and a pack resumes bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SWEEP_SPEC, small_config

import grokscope
from grokscope.cli import main
from grokscope.errors import GrokscopeError
from grokscope.sweep import load_spec, sweep
from grokscope.train import pack as packing
from grokscope.train.loop import Trainer
from grokscope.train.pack import Pack, train_pack

STEPS = 30
SHORT = {"train.steps": STEPS, "checkpoints.dense_until": 5, "checkpoints.n_log": 5, "checkpoints.n_uniform": 10}
MLP = {"model.kind": "mlp", "model.act": "square", "model.d_mlp": 48, "task.p": 17, "optim.lr": 1e-2}
# runs differing in what a pack lets differ: seeds, split, corruption, loss, lr, weight decay, Grokfast, ⊥Grad
VARIANTS = [
    {},
    {"model.seed": 1, "task.seed": 2, "optim.lr": 3e-3, "optim.weight_decay": 3.0, "task.corrupt_frac": 0.2},
    {"model.seed": 2, "train.loss": "mse", "grokfast.kind": "ema", "optim.orthograd": True},
    {"model.seed": 3, "grokfast.kind": "ma", "grokfast.ma_window": 4, "task.op": "sub"},
]


def configs(base: dict) -> list[grokscope.RunConfig]:
    return [small_config(**{**SHORT, **base, **variant, "name": f"r{i}"}) for i, variant in enumerate(VARIANTS)]


def trajectories(path) -> dict[str, np.ndarray]:
    run = grokscope.open_run(path)
    return {name: np.asarray(run.trajectory(name)) for name in run.param_names}


@pytest.mark.parametrize(
    "base", [MLP, {"task.p": 13}, {"task.p": 13, "train.batch_size": 32}], ids=["mlp", "transformer", "minibatch"]
)
def test_each_packed_run_is_that_run_trained_alone(tmp_path, base):
    runs = configs(base)
    packed = train_pack(runs, [tmp_path / "pack" / c.name for c in runs], progress=False)
    alone = [grokscope.train(c, tmp_path / "alone" / c.name, progress=False) for c in runs]
    packed_params, alone_params = [trajectories(p) for p in packed], [trajectories(p) for p in alone]
    for i, (mine, theirs) in enumerate(zip(packed_params, alone_params)):
        run = grokscope.open_run(packed[i])
        assert run.complete and run.config == runs[i] and run.meta["pack"] == [c.name for c in runs]
        assert np.array_equal(run.steps, grokscope.open_run(alone[i]).steps)
        # the pack's forward (every row differentiated, batched products) and the fast step (the training rows
        # only, a custom backward) round differently, a few float32 ulps per step; after these 30 AdamW steps the
        # weights (scale ~1) differed by at most 3.6e-7 (MLP) and 2.0e-5 (transformer) on this project's CPU.
        # 1e-3 leaves 50× for other CPUs' kernels and is far below what a mixed-up update gives: the runs
        # differ from each other by more than 0.38
        for name in theirs:
            assert np.abs(mine[name] - theirs[name]).max() < 1e-3, (i, name)
            if i:
                assert np.abs(mine[name][-1] - packed_params[0][name][-1]).max() > 0.1, (i, name)
        mine_metrics, their_metrics = run.metrics, grokscope.open_run(alone[i]).metrics
        for column in ("train_loss", "test_loss"):
            assert np.allclose(mine_metrics[column], their_metrics[column], rtol=1e-3), column
        for column in ("train_acc", "test_acc", "corrupted_noisy_acc"):  # an example near a tie may flip
            mine_column, their_column = mine_metrics[column], their_metrics[column]
            assert np.array_equal(np.isnan(mine_column), np.isnan(their_column)), column  # no split: all NaN
            assert not (np.abs(mine_column - their_column) > 0.05).any(), column


def interrupt_pack_at(monkeypatch, step_at: int):
    step = Pack.step

    def interrupted(self, s):
        if s == step_at:
            raise KeyboardInterrupt
        step(self, s)

    monkeypatch.setattr(Pack, "step", interrupted)


def test_a_sweep_packs_runs_and_resumes_the_pack_bit_for_bit(tmp_path, monkeypatch):
    spec = tmp_path / "wd.toml"
    spec.write_text(SWEEP_SPEC)  # 4 runs: weight decay 0.5, 1 × model seed 0, 1
    names = [run.name for run in load_spec(spec)]
    reference = sweep(spec, tmp_path / "reference", pack=3, say=lambda _: None, progress=False)

    interrupt_pack_at(monkeypatch, 10)
    quiet = {"say": lambda _: None, "progress": False, "commit_every_s": 0}
    with pytest.raises(KeyboardInterrupt):
        sweep(spec, tmp_path / "out", pack=3, **quiet)
    monkeypatch.undo()
    said = []
    runs = sweep(spec, tmp_path / "out", pack=1, say=said.append, progress=False)  # the pack resumes as a pack
    assert said == [f"{names[3]}: training", f"{', '.join(names[:3])}: resuming (one pack of 3)"]
    for path, expected in zip(runs, reference):
        mine, theirs = grokscope.open_run(path), grokscope.open_run(expected)
        assert mine.complete and mine.meta.get("pack") == theirs.meta.get("pack")
        for name, values in trajectories(expected).items():
            assert np.array_equal(np.asarray(mine.trajectory(name)), values), name
        for column, values in theirs.metrics.items():
            assert np.array_equal(mine.metrics[column], values, equal_nan=True), column
    assert grokscope.open_run(runs[3]).meta.get("pack") is None  # the fourth run alone: a pack of one is a run


def stopped_between_commits(tmp_path, monkeypatch) -> tuple:
    """The 4 runs of SWEEP_SPEC in one pack in <tmp>/out, stopped after the first run's commit at step 16 and
    before the others': (spec, run names)."""
    spec = tmp_path / "wd.toml"
    spec.write_text(SWEEP_SPEC)
    names = [run.name for run in load_spec(spec)]
    commit = Trainer.commit

    def stopped(self, step, n_checkpoints, n_metric_steps):
        commit(self, step, n_checkpoints, n_metric_steps)
        if self.config.name == names[0] and step == 16:  # a checkpoint step (0, 1, 2, 8, 16, 24)
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "commit", stopped)
    with pytest.raises(KeyboardInterrupt):
        sweep(spec, tmp_path / "out", pack=4, say=lambda _: None, progress=False, commit_every_s=0)
    monkeypatch.undo()
    steps = [grokscope.open_run(tmp_path / "out" / name).steps[-1] for name in names]
    assert steps[0] == 16 and all(s == 8 for s in steps[1:])
    return spec, names


def test_a_pack_stopped_between_its_runs_commits_resumes_and_finishes(tmp_path, monkeypatch):
    """A pack commits its runs one after another: stopped between two, they resume as two packs."""
    spec, names = stopped_between_commits(tmp_path, monkeypatch)
    said = []
    runs = sweep(spec, tmp_path / "out", pack=4, say=said.append, progress=False)
    assert sorted(said) == sorted(
        [f"{names[0]}: resuming (one pack of 1)", f"{', '.join(names[1:])}: resuming (one pack of 3)"]
    )
    assert all(grokscope.open_run(path).complete for path in runs)


def test_runs_that_cannot_share_a_pack_train_alone_or_apart(tmp_path):
    spec = tmp_path / "mixed.toml"
    spec.write_text(SWEEP_SPEC.replace('"model.seed" = [0, 1]', '"model.kind" = ["transformer", "moe"]'))
    said = []
    sweep(spec, tmp_path / "out", pack=4, say=said.append, progress=False)
    # the two transformers pack; the MoE transformer's router losses read module state: each trains alone
    assert said == [
        "optim.weight_decay=0.5__model.kind=moe: training",
        "optim.weight_decay=1.0__model.kind=moe: training",
        (
            "optim.weight_decay=0.5__model.kind=transformer, optim.weight_decay=1.0__model.kind=transformer: "
            "training (one pack of 2)"
        ),
    ]
    longer = small_config(**{**SHORT, "train.steps": STEPS + 1, "name": "longer"})
    with pytest.raises(GrokscopeError, match="differ only in seeds"):
        train_pack([small_config(**SHORT, name="a"), longer], [tmp_path / "a", tmp_path / "longer"], progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "longer").exists()  # refused before anything is written
    moe = small_config(**{**SHORT, "model.kind": "moe", "name": "moe"})
    with pytest.raises(GrokscopeError, match="model.kind 'moe' cannot be packed"):
        train_pack([moe, moe.with_overrides({"name": "moe2"})], [tmp_path / "m1", tmp_path / "m2"], progress=False)
    assert not (tmp_path / "m1").exists()


@pytest.mark.parametrize(
    "spec",
    [
        # division leaves out the pairs with b = 0: a training set of another size
        'preset = "tiny"\n[set]\n"task.p" = 13\n"train.steps" = 4\n[grid]\n"task.op" = ["add", "div"]\n',
        # the digits task standardises its pixels by its split: other inputs for another split seed
        'preset = "digits"\n[set]\n"train.steps" = 4\n"checkpoints.n_uniform" = 2\n[grid]\n"task.seed" = [1, 2]\n',
    ],
    ids=["div", "digits-split"],
)
def test_runs_whose_data_differ_do_not_pack(tmp_path, spec):
    (tmp_path / "s.toml").write_text(spec)
    said = []
    runs = sweep(tmp_path / "s.toml", tmp_path / "out", pack=2, say=said.append, progress=False)
    assert said == [f"{path.name}: training" for path in runs]  # each alone, not one pack of 2
    assert all(grokscope.open_run(path).complete for path in runs)


def test_a_started_pack_that_can_no_longer_pack_resumes_its_runs_alone(tmp_path, monkeypatch, capsys):
    """A pack made before a rule that refuses it (here: every run its own key) resumes run by run."""
    spec = tmp_path / "wd.toml"
    spec.write_text(SWEEP_SPEC)
    names = [run.name for run in load_spec(spec)]
    interrupt_pack_at(monkeypatch, 10)
    with pytest.raises(KeyboardInterrupt):
        sweep(spec, tmp_path / "out", pack=2, say=lambda _: None, progress=False, commit_every_s=0)
    monkeypatch.undo()
    monkeypatch.setattr(packing, "pack_key", lambda config: config.name)
    said = []
    runs = sweep(spec, tmp_path / "out", pack=2, say=said.append, progress=False)
    assert said == [f"{names[0]}: resuming", f"{names[1]}: resuming", f"{names[2]}: training", f"{names[3]}: training"]
    assert all(grokscope.open_run(path).complete for path in runs)
    assert capsys.readouterr().err.count("resumed alone, the rest of it is not bit-exact") == 2


def test_pack_misuse_is_one_line(tmp_path, capsys):
    spec = tmp_path / "wd.toml"
    spec.write_text(SWEEP_SPEC)
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--pack", "0"]) == 2
    assert capsys.readouterr().err.strip() == "grokscope: error: --pack must be >= 1; got 0"
    assert not (tmp_path / "out").exists()


def test_a_packed_run_resumed_alone_says_it_is_not_bit_exact(tmp_path, monkeypatch, capsys):
    runs = configs(MLP)[:2]
    interrupt_pack_at(monkeypatch, 10)
    with pytest.raises(KeyboardInterrupt):
        train_pack(runs, [tmp_path / c.name for c in runs], progress=False, commit_every_s=0)
    monkeypatch.undo()
    grokscope.train(out=tmp_path / "r0", resume=True, progress=False)
    assert "trained in a pack of 2 runs; resumed alone" in capsys.readouterr().err
    assert grokscope.open_run(tmp_path / "r0").complete


def test_a_pack_refuses_one_directory_twice_and_runs_at_different_steps(tmp_path, monkeypatch):
    """Before it writes anything: one directory twice (two of the pack's runs would write it) and started runs
    at different steps (a pack steps its runs together from one step)."""
    config = small_config(**SHORT)
    with pytest.raises(GrokscopeError, match="each run of a pack needs a directory of its own"):
        train_pack([config, config], [tmp_path / "pack", tmp_path / "x" / ".." / "pack"], progress=False)
    assert list(tmp_path.iterdir()) == []
    spec, names = stopped_between_commits(tmp_path, monkeypatch)
    runs = [tmp_path / "out" / name for name in names[:2]]
    progress = [(run / "progress.json").read_bytes() for run in runs]
    with pytest.raises(GrokscopeError, match="must be at one step to resume together; they are at 16, 8"):
        train_pack([run.config for run in load_spec(spec)[:2]], runs, progress=False)
    assert [(run / "progress.json").read_bytes() for run in runs] == progress
