"""The misuse list: bad inputs to every command and to the Python API, as a careless or curious user would
type them, each with the outcome it must have. A refusal is one `error:` line, a non-zero exit and nothing
written; an accepted input exits 0; nothing is ever a traceback (an exception escaping `main` fails the
case), and after every case each file of the user's is byte-for-byte what it was. The README's reliability
table counts these cases."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import grokscope
from grokscope import analysis
from grokscope.cli import main
from grokscope.store import layout

TRAIN = "train --preset tiny --steps 20"
# (id, command line, cwd below the sandbox, expected): "refuse" or "accept"
CLI_CASES = [
    ("T1", "train --preset nope --steps 20 --out t/1", "", "refuse"),
    ("T2", "train --preset tiny --steps -5 --out t/2", "", "refuse"),
    ("T3", "train --preset tiny --steps 0 --out t/3", "", "refuse"),
    ("T4", "train --preset tiny --steps abc --out t/4", "", "refuse"),
    ("T5", "train --preset tiny --steps 1e3 --out t/5", "", "refuse"),
    ("T6", f"{TRAIN} --set foo.bar=1 --out t/6", "", "refuse"),
    ("T7", f"{TRAIN} --set task.p=abc --out t/7", "", "refuse"),
    ("T8", f"{TRAIN} --set task.p=30 --set task.op=mul --out t/8", "", "refuse"),
    ("T9", f"{TRAIN} --set task.train_frac=0 --out t/9", "", "refuse"),
    ("T10", f"{TRAIN} --set task.train_frac=1 --out t/10", "", "refuse"),
    ("T11", f"{TRAIN} --set task.train_frac=1.5 --out t/11", "", "refuse"),
    ("T12", f"{TRAIN} --set task.train_frac=nan --out t/12", "", "refuse"),
    ("T13", f"{TRAIN} --set optim.lr=nan --out t/13", "", "refuse"),
    ("T14", f"{TRAIN} --set optim.lr=inf --out t/14", "", "refuse"),
    ("T15", f"{TRAIN} --set optim.lr=-1 --out t/15", "", "refuse"),
    ("T16", f"{TRAIN} --set task.p=1 --out t/16", "", "refuse"),
    ("T17", f"{TRAIN} --set task.p=-7 --out t/17", "", "refuse"),
    ("T18", f"{TRAIN} --set task.p=0 --out t/18", "", "refuse"),
    ("T19", f"{TRAIN} --set model.d_model=0 --out t/19", "", "refuse"),
    ("T20", f"{TRAIN} --set model.n_heads=3 --out t/20", "", "accept"),  # d_head is its own key, as in TL
    ("T21", f"{TRAIN} --set model.kind=cnn --out t/21", "", "refuse"),
    ("T22", f"{TRAIN} --set task.op=pow --out t/22", "", "refuse"),
    ("T23", f"{TRAIN} --set model.act=tanhh --out t/23", "", "refuse"),
    ("T24", f"{TRAIN} --set task.corrupt_frac=2 --out t/24", "", "refuse"),
    ("T25", f"{TRAIN} --set optim.betas=0.9 --out t/25", "", "refuse"),
    ("T26", f"{TRAIN} --set optim.name=lion --out t/26", "", "refuse"),
    ("T27", f"{TRAIN} --set train.batch_size=-3 --out t/27", "", "refuse"),
    ("T28", f"{TRAIN} --set train.loss=hinge --out t/28", "", "refuse"),
    ("T29", f"{TRAIN} --set noequals --out t/29", "", "refuse"),
    ("T30", f"{TRAIN} --set model.bias=maybe --out t/30", "", "refuse"),
    ("T31", f"{TRAIN} --set model.dropout=1.5 --out t/31", "", "refuse"),
    ("T32", f"{TRAIN} --set grokfast.kind=xyz --out t/32", "", "refuse"),
    ("T33", f"{TRAIN} --set checkpoints.n_log=-1 --out t/33", "", "refuse"),
    ("T34", f"{TRAIN} --device tpu --out t/34", "", "refuse"),
    ("T35", f"{TRAIN} --threads 0 --out t/35", "", "refuse"),
    ("T36", f"{TRAIN} --threads -2 --out t/36", "", "refuse"),
    ("T37", f"{TRAIN} --commit-every -1 --out t/37", "", "refuse"),
    ("T38", f"{TRAIN} --commit-every nan --out t/38", "", "refuse"),
    ("T39", f"{TRAIN} --set task.p=1000000007 --out t/39", "", "refuse"),  # p³ logits per step cannot fit
    ("T40", f"{TRAIN} --set task.p=32.5 --out t/40", "", "refuse"),
    ("T41", f"{TRAIN} --set task.train_frac=0.001 --out t/41", "", "accept"),  # 1 of 961 inputs: legal, if odd
    ("T42", f"{TRAIN} --set task.train_frac=0.999 --out t/42", "", "accept"),  # 1 test input left
    ("T43", f"{TRAIN} --set task.kind=digits --set task.n_train=100000 --out t/43", "", "refuse"),
    ("T44", f"{TRAIN} --resume --out t/nonexist", "", "refuse"),
    ("T45", f"{TRAIN} --out file/x", "", "refuse"),
    ("T46", f"{TRAIN} --out file", "", "refuse"),
    ("T47", f"{TRAIN} --set optim.eps=0 --out t/47", "", "refuse"),
    ("T48", f"{TRAIN} --set ticket.kind=magnitude --out t/48", "", "refuse"),
    ("T49", f"{TRAIN} --set optim.weight_decay=-1 --out t/49", "", "refuse"),
    ("T50", f"{TRAIN} --set model.n_layers=0 --out t/50", "", "refuse"),
    ("T51", f"{TRAIN} --set task.train_frac=0.0001 --out t/51", "", "refuse"),  # 0 training inputs
    ("T52", f"{TRAIN} --set task.train_frac=0.99999 --out t/52", "", "refuse"),  # 0 test inputs
    ("T53", f"{TRAIN} --set model.kind=mlp --set model.dropout=1.5 --out t/53", "", "refuse"),
    ("T54", f"{TRAIN} --set model.kind=mlp --set model.dropout=-0.1 --out t/54", "", "refuse"),
    ("T55", f"{TRAIN} --set task.op=div --set task.p=33 --out t/55", "", "refuse"),
    ("T56", f"{TRAIN} --set model.d_mlp=-4 --out t/56", "", "refuse"),
    ("T57", f"{TRAIN} --set optim.lr=1e308 --out t/57", "", "refuse"),  # overflowed float32 in the update
    ("T58", "train --preset tiny --steps 99999999999999999999 --out t/58", "", "refuse"),
    ("T59", f"{TRAIN} --set train.batch_size=100000 --out t/59", "", "refuse"),  # larger than the training set
    ("T60", f"{TRAIN} --set task.seed=-1 --out t/60", "", "refuse"),
    ("T61", f"{TRAIN} --set optim.betas=[1.5,0.9] --out t/61", "", "refuse"),
    ("T62", f"{TRAIN} --set optim.betas=[0.9] --out t/62", "", "refuse"),
    ("T63", f"{TRAIN} --set grokfast.kind=ema --set grokfast.ema_alpha=2 --out t/63", "", "refuse"),
    ("T64", f"{TRAIN} --set grokfast.kind=ma --set grokfast.ma_window=0 --out t/64", "", "refuse"),
    ("T65", f"{TRAIN} --set ticket.keep=0 --out t/65", "", "refuse"),
    ("T66", f"{TRAIN} --set task.p= --out t/66", "", "refuse"),
    ("T67", f"{TRAIN} --set =5 --out t/67", "", "refuse"),
    ("T68", f"{TRAIN} --set TASK.P=31 --out t/68", "", "refuse"),
    ("T69", f"{TRAIN} --set task=5 --out t/69", "", "refuse"),
    ("T70", f"{TRAIN} --set model.init_scale=0 --out t/70", "", "refuse"),
    ("T71", f"{TRAIN} --set optim.momentum=-1 --out t/71", "", "refuse"),
    ("T72", f"{TRAIN} --set checkpoints.dense_until=-5 --out t/72", "", "refuse"),
    ("T73", f"{TRAIN} --set optim.warmup_steps=-1 --out t/73", "", "refuse"),
    ("T74", f"{TRAIN} --set task.kind=digits --set task.n_train=-1 --out t/74", "", "refuse"),
    ("T75", f"{TRAIN} --set model.seed=abc --out t/75", "", "refuse"),
    ("T76", f"{TRAIN} --set model.bias=1 --out t/76", "", "refuse"),
    ("T77", f"{TRAIN} --set model.d_mlp=100000000 --set model.d_model=100000 --out t/77", "", "refuse"),  # no memory
    ("T78", f"{TRAIN} --out own1", "", "refuse"),
    ("T79", f"{TRAIN} --out own2 --force", "", "refuse"),
    ("T80", f"{TRAIN} --out '' --force", "sand", "refuse"),
    ("T81", f"{TRAIN} --out . --force", "sand", "refuse"),
    ("T82", f"{TRAIN} --out runs/a", "", "refuse"),
    ("T83", "train --resume --out own2", "", "refuse"),
    ("T84", "train --resume --out runs/a --steps 10", "", "refuse"),
    ("T85", "train --resume --out emptyd", "", "refuse"),
    ("T86", f"{TRAIN} --out /proc/nope", "", "refuse"),
    ("T87", f"{TRAIN} --out runs/fz --force", "", "refuse"),  # a run holding the user's notes
    ("T88", "train --resume --out runs/a --threads 1", "", "refuse"),
    ("I1", "info", "", "refuse"),
    ("I2", "info nonexist", "", "refuse"),
    ("I3", "info file", "", "refuse"),
    ("I4", "info own2", "", "refuse"),
    ("I5", "info file/x", "", "refuse"),
    ("I6", "info runs", "", "refuse"),
    ("I7", "info runs/a --json --bogus", "", "refuse"),
    ("A1", "analyze", "", "refuse"),
    ("A2", "analyze nonexist", "", "refuse"),
    ("A3", "analyze runs/a --only nope", "", "refuse"),
    ("A4", "analyze runs/a --only ,", "", "refuse"),
    ("A5", "analyze runs/a --threads 0", "", "refuse"),
    ("A6", "analyze runs/a --json", "", "refuse"),
    ("A7", "analyze own2", "", "refuse"),
    ("A8", "analyze file", "", "refuse"),
    ("A9", "analyze runs/a --list --summary", "", "refuse"),  # --list would ignore --summary
    ("A10", "analyze runs/a --threads abc", "", "refuse"),
    ("P1", "probe runs/a --step 999999 --heads 0", "", "refuse"),
    ("P2", "probe runs/a --step -1 --heads 0", "", "refuse"),
    ("P3", "probe runs/a --step abc --heads 0", "", "refuse"),
    ("P4", "probe runs/a --heads 9", "", "refuse"),
    ("P5", "probe runs/a --heads -1", "", "refuse"),
    ("P6", "probe runs/a --heads a,b", "", "refuse"),
    ("P7", "probe runs/a --neurons 100000", "", "refuse"),
    ("P8", "probe runs/a --neurons -3", "", "refuse"),
    ("P9", "probe runs/a --frequencies 0", "", "refuse"),
    ("P10", "probe runs/a --frequencies 16", "", "refuse"),  # p = 31: frequencies 1..15
    ("P11", "probe runs/a --frequencies 1000", "", "refuse"),
    ("P12", "probe runs/a --heads ''", "", "refuse"),  # nothing to ablate
    ("P13", "probe runs/a --heads 1,1", "", "accept"),
    ("P14", "probe runs/a --step 3.5 --heads 0", "", "refuse"),
    ("P15", "probe runs/a --neurons nan", "", "refuse"),
    ("P16", "probe nonexist --heads 0", "", "refuse"),
    ("P17", "probe runs/a --step 7 --heads 0", "", "accept"),
    ("R1", "prune runs/a --by ipr --fraction 1.5", "", "refuse"),
    ("R2", "prune runs/a --by ipr --fraction nan", "", "refuse"),
    ("R3", "prune runs/a --by ipr --count -1", "", "refuse"),
    ("R4", "prune runs/a --by ipr --count 100000", "", "refuse"),
    ("R5", "prune runs/a --by bogus --fraction 0.1", "", "refuse"),
    ("R6", "prune runs/a --by ipr --sweep --format gif", "", "refuse"),
    ("R7", "prune runs/a --by ipr --fraction 0.1 --out own1", "", "accept"),  # beside the user's files, never over
    ("R7b", "prune runs/a --by ipr --fraction 0.1 --out own2", "", "refuse"),  # would overwrite their config.json
    ("R8", "prune runs/a --by ipr --fraction 0.1 --out file", "", "refuse"),
    ("R9", "prune runs/a --by ipr --count 2 --format svg", "", "refuse"),  # --format is for --sweep
    ("R10", "prune runs/a --by ipr --count 2 --out runs/fz", "", "refuse"),  # into a run
    ("K1", "ticket runs/a --keep 0", "", "refuse"),
    ("K2", "ticket runs/a --keep 1.5", "", "refuse"),
    ("K3", "ticket runs/a --keep nan", "", "refuse"),
    ("K4", "ticket runs/a --keep 0.5 --steps -1", "", "refuse"),
    ("K5", "ticket runs/a --keep 0.5 --out own2 --force", "", "refuse"),
    ("K6", "ticket runs/a --keep 0.5 --step 12345", "", "refuse"),
    ("K7", "ticket runs/a --keep 0.5 --memorization-step 5", "", "refuse"),
    ("F1", "figures runs/a --out figs --format gif", "", "refuse"),
    ("F2", "figures runs/a --out figs --only nope", "", "refuse"),
    ("F3", "figures runs/a --out file", "", "refuse"),
    ("F4", "figures runs/a --out figs --step 99999", "", "refuse"),
    ("F5", "figures runs/a --out own2/precious.txt", "", "refuse"),  # a user's file as the directory
    ("V1", "verify runs/c_trunc", "", "refuse"),
    ("V2", "verify runs/c_progress", "", "refuse"),
    ("V3", "verify runs/c_nometa", "", "refuse"),
    ("V4", "verify runs/c_row", "", "refuse"),
    ("V5", "verify runs/c_final", "", "refuse"),
    ("V6", "verify runs/c_config", "", "refuse"),
    ("V7", "verify runs/c_data", "", "refuse"),
    ("V8", "verify runs/a", "", "accept"),
    ("D1", "info runs/c_trunc", "", "refuse"),
    ("D2", "analyze runs/c_progress --force", "", "refuse"),
    ("D3", "info runs/c_nometa", "", "refuse"),
    ("D4", "probe runs/c_row --step 3 --heads 0", "", "refuse"),  # the changed checkpoint is never used
    ("D5", "probe runs/c_row --heads 0", "", "accept"),  # the sound last one is
    ("D6", "info runs/c_final", "", "accept"),  # says it is not complete
    ("D7", "info runs/c_config", "", "refuse"),
    ("D8", "probe runs/c_data --heads 0", "", "refuse"),
    ("D9", "analyze runs/c_metrics", "", "refuse"),
    ("D10", "analyze runs/c_cache --summary", "", "accept"),  # the copied cache is recomputed, not trusted
    ("X1", "app runs --port 99999", "", "refuse"),
    ("X2", "app runs --port -1", "", "refuse"),
    ("X3", "app nonexist", "", "refuse"),
    ("X4", "app runs --run nope", "", "refuse"),
    ("X5", "app runs --run ../own2", "", "refuse"),
    ("X6", "", "", "accept"),  # plain `grokscope`: its help
    ("X7", "nope", "", "refuse"),
]


# the user's own files in the sandbox (made by the fixture): none may ever change or go
USER_FILES = ("own1/precious.txt", "own1/results.csv", "own2/precious.txt", "own2/config.json", "sand/precious.txt")
USER_FILES += ("file", "runs/fz/notes.txt")


def user_files(root: Path) -> dict[str, str | None]:
    """Each of USER_FILES → sha256 of its content (None where it is gone)."""
    return {
        f: hashlib.sha256((root / f).read_bytes()).hexdigest() if (root / f).is_file() else None for f in USER_FILES
    }


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under the sandbox with its size and modification time (what a refused case must leave as
    it was)."""
    return {str(f.relative_to(root)): (f.stat().st_size, f.stat().st_mtime_ns) for f in root.rglob("*") if f.is_file()}


def damaged(src: Path, dst: Path, damage) -> None:
    shutil.copytree(src, dst)
    damage(dst)


def flip_row(path: Path, row: int) -> None:
    params = np.load(path / layout.PARAMS / "embed.W_E.npy", mmap_mode="r+")
    params[row, 0, 0] += 1.0
    params.flush()


def edit_json(file: Path, change) -> None:
    data = json.loads(file.read_text())
    change(data)
    file.write_text(json.dumps(data))


def bad_rows(path: Path) -> None:
    data = layout.load_npz(path / layout.DATA)
    data["train_rows"] = data["train_rows"] + 10**6
    layout.write_npz(path / layout.DATA, data)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, analyzed_run, small_run):
    """A working directory as a user has it: runs (sound and damaged), their own files beside them."""
    root = tmp_path_factory.mktemp("sandbox")
    runs = root / "runs"
    shutil.copytree(analyzed_run.path, runs / "a")
    small = small_run.path
    damaged(small, runs / "fz", lambda p: (p / "notes.txt").write_text("my notes"))
    damaged(small, runs / "c_trunc", lambda p: (p / layout.PARAMS / "embed.W_E.npy").write_bytes(b"\x93NUMPY"))
    damaged(small, runs / "c_progress", lambda p: (p / layout.PROGRESS).write_text("{garbage"))
    damaged(small, runs / "c_nometa", lambda p: (p / layout.META).unlink())
    damaged(small, runs / "c_row", lambda p: flip_row(p, small_run.row(3)))
    damaged(small, runs / "c_final", lambda p: (p / layout.FINAL).write_bytes(b"garbage"))
    damaged(small, runs / "c_config", lambda p: edit_json(p / layout.CONFIG, lambda c: c["task"].update(p=29)))
    damaged(small, runs / "c_data", bad_rows)
    damaged(small, runs / "c_metrics", lambda p: (p / layout.METRICS / "test_acc.npy").write_bytes(b"junk"))
    damaged(
        small,
        runs / "c_cache",
        lambda p: shutil.copytree(analyzed_run.path / layout.ANALYSIS, p / "analysis", dirs_exist_ok=True),
    )
    for name in ("own1", "own2", "sand"):
        (root / name).mkdir()
        (root / name / "precious.txt").write_text(f"the user's own {name}")
    (root / "own1" / "results.csv").write_text("a,b\n1,2\n")
    (root / "own2" / "config.json").write_text('{"mine": true}')  # a name grokscope also writes
    (root / "emptyd").mkdir()
    (root / "file").write_text("hi")
    return root


@pytest.mark.parametrize("case, line, where, expected", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_misuse(sandbox, monkeypatch, capsys, case, line, where, expected):
    import shlex

    monkeypatch.chdir(sandbox / where)
    before_files, before_tree = user_files(sandbox), tree(sandbox)
    assert None not in before_files.values()
    try:  # any other exception escaping here is a traceback: the case fails
        code = main(shlex.split(line))
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    out, err = capsys.readouterr()
    assert user_files(sandbox) == before_files, "a file of the user's was changed or removed"
    assert "Traceback" not in out + err
    if expected == "accept":
        assert code == 0, err
        return
    errors = [e for e in err.splitlines() if "error:" in e or e.startswith("grokscope: ")]
    assert code != 0 and errors, f"accepted: {out[-300:]}"
    if not line.startswith("verify"):  # verify lists each problem it found on its own line
        assert len([e for e in err.splitlines() if "error:" in e]) == 1, err
    assert tree(sandbox) == before_tree, "a refused command wrote something"


def test_a_diverged_run_says_so(sandbox, monkeypatch, capsys):
    """lr 1000 blows the weights up: training runs, and every report of it says it diverged."""
    monkeypatch.chdir(sandbox)
    assert main(["train", "--preset", "tiny", "--steps", "20", "--set", "optim.lr=1000", "--out", "t/div"]) == 0
    assert "training diverged at step" in capsys.readouterr().err
    assert main(["info", "t/div"]) == 0
    out, err = capsys.readouterr()
    assert "final test_loss: n/a" in out and "training diverged at step" in err


def test_a_run_marked_complete_with_garbage_final_weights_is_not_complete(sandbox, capsys):
    assert main(["info", str(sandbox / "runs" / "c_final")]) == 0
    assert "marked complete, but final.safetensors is missing or corrupt" in capsys.readouterr().out


API_CASES = [
    ("API1", lambda s, run: grokscope.open_run(s / "nonexist"), "refuse"),
    ("API2", lambda s, run: grokscope.open_run(s / "file"), "refuse"),
    ("API3", lambda s, run: grokscope.open_run(None), "refuse"),
    ("API4", lambda s, run: grokscope.open_run(123), "refuse"),
    ("API5", lambda s, run: grokscope.open_run(s / "own2"), "refuse"),
    ("API6", lambda s, run: run.params(999999), "refuse"),
    ("API7", lambda s, run: run.params(-1), "refuse"),
    ("API8", lambda s, run: run.params("abc"), "refuse"),
    ("API9", lambda s, run: run.params(None), "refuse"),
    ("API10", lambda s, run: run.params(3.5), "refuse"),
    ("API11", lambda s, run: run.params(float("nan")), "refuse"),
    ("API12", lambda s, run: run.trajectory("nope"), "refuse"),
    ("API13", lambda s, run: run.trajectory(None), "refuse"),
    ("API14", lambda s, run: run.trajectory(5), "refuse"),
    ("API15", lambda s, run: grokscope.load_model(run, 999999), "refuse"),
    ("API16", lambda s, run: grokscope.load_model(run, "x"), "refuse"),
    ("API17", lambda s, run: grokscope.load_model(s / "runs" / "a", 0), "accept"),
    ("API18", lambda s, run: grokscope.load_model(None, 0), "refuse"),
    ("API19", lambda s, run: analysis.load(run, "nope"), "refuse"),
    ("API20", lambda s, run: analysis.load(run, None), "refuse"),
    ("API21", lambda s, run: analysis.load(s / "runs" / "a", "spectra"), "accept"),
    ("API22", lambda s, run: analysis.summary(None), "refuse"),
    ("API23", lambda s, run: analysis.summary(s / "runs" / "a"), "accept"),
    ("API24", lambda s, run: grokscope.open_run(s / "runs" / "c_progress"), "refuse"),
    ("API25", lambda s, run: grokscope.load_model(grokscope.open_run(s / "runs" / "c_row"), 3), "refuse"),
    ("API26", lambda s, run: grokscope.open_run(s / "runs" / "c_nometa"), "refuse"),
    ("API27", lambda s, run: grokscope.open_run(s / "runs" / "c_config"), "refuse"),
    ("API28", lambda s, run: run.params(True), "refuse"),
    ("API29", lambda s, run: grokscope.open_run(s / "runs" / "c_data").dataset, "refuse"),
    ("API30", lambda s, run: run.trajectory(""), "refuse"),
]


@pytest.mark.parametrize("case, call, expected", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_misuse(sandbox, case, call, expected):
    """A user mistake through the API is a GrokscopeError with a one-line message, never TypeError/KeyError."""
    run = grokscope.open_run(sandbox / "runs" / "a")
    if expected == "accept":
        call(sandbox, run)
        return
    with pytest.raises(grokscope.GrokscopeError) as e:
        call(sandbox, run)
    assert "\n" not in str(e.value)
