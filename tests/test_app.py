"""The Streamlit app through streamlit.testing: every page on a fixture run, the cursor, bad runs."""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import grokscope
from grokscope import analysis, figures

APP = str(Path(__file__).resolve().parent.parent / "app" / "app.py")
PAGES = sorted(f"pages/{path.name}" for path in (Path(APP).parent / "pages").glob("[0-9]*_*.py"))  # as app.py


@pytest.fixture(scope="module")
def runs_dir(analyzed_run, small_run, coexistence_run, small_sweep, tmp_path_factory):
    """tiny (analysed), small (not analysed), broken (a run whose files are damaged), coexist (the
    corrupted-label MLP, analysed) and the sweep wd (2 weight decays × 2 seeds)."""
    root = tmp_path_factory.mktemp("app_runs")
    shutil.copytree(small_sweep.path, root / "wd")
    shutil.copytree(analyzed_run.path, root / "tiny")
    shutil.copytree(coexistence_run.path, root / "coexist")
    analysis.analyze(grokscope.open_run(root / "coexist"), progress=False)
    shutil.copytree(small_run.path, root / "small")
    shutil.copytree(small_run.path, root / "broken")
    (root / "broken" / "progress.json").write_text("{")
    return root


KIND_CONFIGS = {  # one tiny run of every kind the app must show: what applies, and a note for the rest
    "poly": {"task.op": "poly"},
    "mul": {"task.op": "mul"},
    "digits": {
        "task.kind": "digits",
        "task.p": 113,
        "task.n_train": 100,
        "model.kind": "deep_mlp",
        "model.n_layers": 2,
    },
    "onehot": {"model.kind": "mlp"},
    "moe": {"model.kind": "moe", "model.n_layers": 2, "model.d_model": 16, "model.d_head": 8, "model.n_experts": 4},
}


@pytest.fixture(scope="module")
def kinds_dir(runs_dir, hf_series):
    """runs_dir plus analysed tiny runs of poly, mul, digits (deep MLP), one-hot MLP and MoE (p = 7, 30 steps);
    hf: a tiny OLMoE series imported with its pathways; imported: eight of tiny's checkpoints exported and
    imported again (metrics at those steps only), analysed; unsplit: the same imported without the split."""
    from grokscope.importers.export import export
    from grokscope.importers.hf import import_hf
    from grokscope.importers.state_dicts import import_state_dicts

    dirs = sorted((hf_series / "series").iterdir())
    import_hf(dirs, runs_dir / "hf", hf_series / "train.jsonl", test=hf_series / "test.jsonl", progress=False)
    tiny = grokscope.open_run(runs_dir / "tiny")
    exported = runs_dir.parent / "exported"
    for step in tiny.steps[:: max(len(tiny.steps) // 8, 1)].tolist():
        export(tiny, step, "safetensors", exported)
    (exported / "train.json").write_text(json.dumps(tiny.dataset.train_rows.tolist()))
    import_state_dicts([exported], runs_dir / "imported", exported / "train.json", say=lambda _: None)
    import_state_dicts([exported], runs_dir / "unsplit", say=lambda _: None)  # without its split
    for name in ("imported", "unsplit"):
        analysis.analyze(grokscope.open_run(runs_dir / name), progress=False)
    base = {"train.steps": 30, "checkpoints.dense_until": 5, "checkpoints.n_log": 5, "checkpoints.n_uniform": 5}
    for name, overrides in KIND_CONFIGS.items():
        sizes = {} if "task.kind" in overrides else {"task.p": 7, "task.train_frac": 0.6}
        config = grokscope.load_preset("tiny").with_overrides({**base, **sizes, "model.d_mlp": 16, **overrides})
        analysis.analyze(grokscope.open_run(grokscope.train(config, runs_dir / name, progress=False)), progress=False)
    return runs_dir


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("run", ["coexist", *KIND_CONFIGS, "hf", "imported", "unsplit"])
def test_every_page_renders_every_kind_of_run(kinds_dir, monkeypatch, page, run):
    at = app(kinds_dir, monkeypatch, run)
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    notes = [i.value for i in at.info]
    assert charts(at) or notes or page in ("pages/10_runs.py", "pages/70_compare.py", "pages/80_jobs.py")
    assert all("\n" not in note for note in notes)  # a one-line note, never a traceback


def app(runs_dir, monkeypatch, run: str | None = None) -> AppTest:
    monkeypatch.setenv("GROKSCOPE_RUNS_DIR", str(runs_dir))
    if run:
        monkeypatch.setenv("GROKSCOPE_RUN", run)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    return at


def charts(at: AppTest) -> list[str]:
    """Every figure on the page: those drawn by st.plotly_chart and those sent to scrub.js (as their data)."""
    moved = [json.loads(c.proto.json) for c in at.get("bidi_component")]
    return [chart.proto.spec for chart in at.get("plotly_chart")] + [d["figure"] for d in moved if d["kind"] == "chart"]


def cursor(at: AppTest) -> dict:
    """What the page sent the cursor (scrub.js): the run, its saved steps, the step, the jump marks."""
    (data,) = [
        json.loads(c.proto.json) for c in at.get("bidi_component") if json.loads(c.proto.json)["kind"] == "cursor"
    ]
    return data


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(runs_dir, monkeypatch, page):
    at = app(runs_dir, monkeypatch, "tiny")
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error
    if page not in ("pages/10_runs.py", "pages/80_jobs.py"):  # tables and forms only
        assert charts(at), "no figure"
        labels = [button.proto.label for button in at.get("download_button")]
        assert "data (CSV)" in labels


def test_runs_page_lists_every_run_with_its_status(runs_dir, monkeypatch):
    at = app(runs_dir, monkeypatch)
    table = at.dataframe[0].value
    status = dict(zip(table["run"], table["status"]))
    assert status["tiny"] == "complete" and status["small"] == "complete"
    assert status["broken"].startswith("unreadable") and "progress.json" in status["broken"]


def test_the_sweep_page_draws_the_phase_diagram_and_opens_its_runs(runs_dir, small_sweep, monkeypatch):
    at = app(runs_dir, monkeypatch, "tiny")
    at.switch_page("pages/75_sweep.py").run()
    assert not at.exception and not at.error
    (diagram,) = charts(at)
    squares = [trace for trace in json.loads(diagram)["data"]]
    assert sorted(name for trace in squares for name in trace["customdata"]) == sorted(small_sweep.configs)
    assert list(at.dataframe[0].value["run"]) == list(small_sweep.configs)
    at.selectbox(key="sweep y").set_value("(one row)").run()  # one row: the seeds pooled, then one seed fixed
    at.selectbox(key="sweep fix model.seed").set_value(1).run()
    (diagram,) = charts(at)
    assert [name for trace in json.loads(diagram)["data"] for name in trace["customdata"]] == [
        name for name in small_sweep.configs if name.endswith("model.seed=1")
    ]
    at.radio(key="sweep colour").set_value("outcome").run()
    assert not at.exception and "outcome" in json.loads(charts(at)[0])["layout"]["title"]["text"]
    # the sweep's runs are runs of the app: SWEEP/RUN opens on every page
    name = f"wd/{next(iter(small_sweep.configs))}"
    at = app(runs_dir, monkeypatch, name)
    at.switch_page("pages/20_training.py").run()
    assert not at.exception and not at.error and charts(at)
    assert at.session_state.chosen_run == name


def test_an_unreadable_sweep_says_so_on_its_page(runs_dir, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    shutil.copytree(runs_dir / "wd", root / "wd")
    shutil.copytree(runs_dir / "wd", root / "bad")
    (root / "wd" / "sweep.json").write_text('{"runs": [{"name": "../tiny", "config": {}}]}')
    (root / "bad" / "sweep.json").write_text('{"runs": [{"name": 5, "config": {}}]}')
    at = app(root, monkeypatch)
    assert not at.exception and not at.error  # the Runs page: the sweeps' runs are not listed, nothing breaks
    at.switch_page("pages/75_sweep.py").run()
    assert not at.exception
    (error,) = [e.value for e in at.error]  # the first sweep, bad
    assert "Sweep 'bad' cannot be read" in error and "not a sweep manifest" in error and "\n" not in error
    at.selectbox(key="sweep").set_value("wd").run()
    (error,) = [e.value for e in at.error]
    assert "Sweep 'wd' cannot be read" in error and "is not a directory name" in error and "\n" not in error


def test_the_runs_table_carries_the_header_columns_and_filters(runs_dir, monkeypatch):
    at = app(runs_dir, monkeypatch)
    table = at.dataframe[0].value.set_index("run")
    tiny = grokscope.open_run(runs_dir / "tiny")
    assert table.loc["tiny", "final test acc"] == tiny.metrics["test_acc"][-1]
    assert table.loc["tiny", "grok step"] == tiny.grok_step
    keys = analysis.load(tiny, "key_frequencies")["frequencies"].tolist()
    assert table.loc["tiny", "key frequencies"] == ", ".join(map(str, keys))
    assert table.loc["tiny", "phases"].startswith(f"memorization {int(tiny.steps[0])}–")
    at.text_input(key="runs filter").set_value("BROKEN").run()  # any part of a row, any case
    assert at.dataframe[0].value["run"].tolist() == ["broken"]


def test_the_cursor_survives_page_switches_and_marks_the_phases(runs_dir, monkeypatch):
    """The browser moves the cursor (tests/test_browser.py); here: the step the server holds, what it sends."""
    at = app(runs_dir, monkeypatch, "tiny")
    at.switch_page("pages/40_neurons.py").run()
    run = grokscope.open_run(runs_dir / "tiny")
    sent = cursor(at)
    assert sent["steps"] == run.steps.tolist() and sent["step"] == sent["steps"][-1]
    step = sent["steps"][5]
    before = charts(at)
    at.session_state["step"] = step  # what the cursor's state callback does when the moves pause
    at.run()
    # the neuron map needs a forward per step: its figure is sent once, then its values at the step alone
    assert charts(at)[0] == before[0]
    drawn = [json.loads(c.proto.json) for c in at.get("bidi_component")]
    (placed,) = [d["at"] for d in drawn if "at" in d and "share of variance" in d["at"]["title"]]
    assert placed["step"] == step and f"at step {step}" in placed["title"]
    (trace, attribute, encoded, shape) = placed["traces"][0]
    z = np.frombuffer(base64.b64decode(encoded), "<f4").reshape(shape)
    expected = figures.builders.neuron_frequency_map(run, step).figure.data[0].z  # built at the step
    assert (trace, attribute) == (0, "z") and np.allclose(z, expected, atol=1e-6)
    at.switch_page("pages/20_training.py").run()
    assert at.session_state["step"] == step and cursor(at)["step"] == step
    marks = dict(cursor(at)["marks"])
    assert marks["start"] == sent["steps"][0] and marks["end"] == sent["steps"][-1]
    assert marks["grok"] == run.steps[np.searchsorted(run.steps, run.grok_step)]  # the saved step at or after
    phases = analysis.phase_steps(run)  # each later phase: a jump to the saved step at or after its start
    for name, boundary in (("circuit formation", "memorization_end"), ("clean-up", "cleanup_start")):
        assert marks[name] == run.steps[np.searchsorted(run.steps, phases[boundary])]


def test_an_unreadable_run_shows_an_error_not_a_traceback(runs_dir, monkeypatch):
    at = app(runs_dir, monkeypatch, "broken")
    at.switch_page("pages/20_training.py").run()
    assert not at.exception
    assert at.error and "progress.json" in at.error[0].value


def test_missing_analyses_compute_in_the_background_and_training_draws_at_once(runs_dir, monkeypatch):
    at = app(runs_dir, monkeypatch, "small")
    at.switch_page("pages/20_training.py").run()  # reads the metrics only: drawn before any analysis
    assert not at.exception and charts(at) and not at.info
    at.switch_page("pages/50_progress.py").run()
    assert not charts(at) and "in the background" in at.info[0].value and "none analysed yet" in at.info[0].value
    deadline = time.monotonic() + 300
    while not charts(at):  # what the page's poll does
        assert time.monotonic() < deadline, "the background analyses did not finish"
        time.sleep(1)
        at.run()
    assert not at.exception and not at.error and not analysis.missing(grokscope.open_run(runs_dir / "small"))


def test_a_garbage_analysis_file_blocks_no_page(analyzed_run, tmp_path, monkeypatch):
    """The cache is derived data: a garbage file is recomputed in the background while Training draws."""
    shutil.copytree(analyzed_run.path, tmp_path / "garbage")
    (spectra,) = (tmp_path / "garbage" / "analysis").glob("spectra@*.npz")
    spectra.write_bytes(b"not an npz")
    at = app(tmp_path, monkeypatch, "garbage")
    at.switch_page("pages/20_training.py").run()
    assert not at.exception and not at.error and charts(at)
    at.switch_page("pages/30_fourier.py").run()
    assert not at.exception and not at.error
    assert charts(at) or "in the background" in at.info[0].value


def test_an_mlp_run_has_no_heads_picker_on_the_attention_page(kinds_dir, monkeypatch):
    at = app(kinds_dir, monkeypatch, "onehot")
    at.switch_page("pages/60_attention.py").run()
    assert not at.exception and "has no attention" in at.info[0].value
    assert [m.label for m in at.multiselect] == ["frequencies (key ones listed)"]


def test_a_run_without_a_split_says_so_and_names_what_needs_one(kinds_dir, monkeypatch):
    at = app(kinds_dir, monkeypatch, "unsplit")
    at.switch_page("pages/20_training.py").run()
    assert any("no split: final accuracy on all inputs" in c.value for c in at.caption)
    at.switch_page("pages/45_memorization.py").run()  # the IPR figures, and pruning said to need the split
    assert not at.exception and charts(at) and any("needs the train/test split" in i.value for i in at.info)
    at.switch_page("pages/10_runs.py").run()
    table = at.dataframe[0].value
    row = table[table["run"] == "unsplit"]
    assert (row["final all-inputs acc"] > 0).all() and row["final test acc"].isna().all()


def test_ablation_from_the_attention_page(runs_dir, monkeypatch):
    at = app(runs_dir, monkeypatch, "tiny")
    at.switch_page("pages/60_attention.py").run()
    at.multiselect(key="ablate heads").set_value([0, 1, 2, 3])
    at.button(key="ablate").click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    test_acc = table[table["metric"] == "test_acc"].iloc[0]
    assert test_acc["ablated"] < test_acc["base"] - 0.5  # every head gone: the circuit breaks
    at.text_input(key="ablate neurons").set_value("1,x")
    at.button(key="ablate").click().run()
    assert at.error and "comma-separated" in at.error[0].value


def test_memorization_page_prunes_live_and_saves_the_model(runs_dir, monkeypatch):
    from grokscope.analysis.pruning import load_pruned, split_accuracies

    at = app(runs_dir, monkeypatch, "coexist")
    at.switch_page("pages/45_memorization.py").run()
    assert not at.exception and not at.error
    assert at.selectbox(key="prune by").options == ["ipr", "activation", "magnitude"]  # corrupted labels
    before = at.dataframe[0].value
    at.slider(key="prune fraction").set_value(0.7).run()
    after = at.dataframe[0].value
    rows = dict(zip(after["accuracy on"], after["after"]))
    # lowest-IPR neurons pruned: the corrupted labels are forgotten (see test_memorization for thresholds)
    assert rows["corrupted train, vs corrupted labels"] < 0.35
    assert not before["after"].equals(after["after"])
    at.button(key="save pruned").click().run()
    assert at.success and "Saved to" in at.success[0].value
    (saved,) = (runs_dir / "coexist" / "pruned").iterdir()
    run = grokscope.open_run(runs_dir / "coexist")
    assert split_accuracies(load_pruned(saved), run.config, run.task, run.dataset)["test"] == rows["test"]


def test_compare_overlays_runs(runs_dir, monkeypatch):
    at = app(runs_dir, monkeypatch, "tiny")
    at.switch_page("pages/70_compare.py").run()
    at.multiselect(key="compare").set_value(["tiny", "small", "broken"]).run()
    assert not at.exception
    assert at.error and "broken" in at.error[0].value
    spec = charts(at)[0]
    assert "tiny test loss" in spec and "small test loss" in spec
    table = at.dataframe[0].value
    assert table["run"].tolist() == ["tiny", "small"] and table["kind"].tolist() == ["dense", "dense"]
    assert table["grokked at"][0] == grokscope.open_run(runs_dir / "tiny").grok_step


def test_a_run_still_training_extends_as_checkpoints_land(small_run, tmp_path, monkeypatch):
    from grokscope.store import layout

    shutil.copytree(small_run.path, tmp_path / "live")
    (tmp_path / "live" / layout.COMPLETE).unlink()
    progress = layout.read_json(tmp_path / "live" / layout.PROGRESS)
    steps = grokscope.open_run(tmp_path / "live").steps
    step = int(steps[len(steps) // 2 - 1])
    partial = dict(progress, n_checkpoints=len(steps) // 2, n_metric_steps=step, step=step)
    partial["checksums"] = progress["checksums"][: len(steps) // 2]
    layout.write_json(tmp_path / "live" / layout.PROGRESS, dict(partial, state=layout.state_name(step)))
    analysis.analyze(grokscope.open_run(tmp_path / "live"), progress=False)
    at = app(tmp_path, monkeypatch, "live")
    assert at.dataframe[0].value["status"][0] == f"training at step {step}"  # progress written just now
    old = time.time() - 3600
    os.utime(tmp_path / "live" / layout.PROGRESS, (old, old))
    assert app(tmp_path, monkeypatch, "live").dataframe[0].value["status"][0] == f"stopped at step {step}"
    at.switch_page("pages/20_training.py").run()
    assert cursor(at)["steps"][-1] == step
    layout.write_json(tmp_path / "live" / layout.PROGRESS, progress)  # training went on
    at.run()  # what a poll does
    assert not at.exception and not at.warning  # the analyses were topped up, not offered again
    assert cursor(at)["steps"][-1] == int(steps[-1])


def test_a_live_run_draws_what_was_analysed_while_the_next_pass_runs(small_run, tmp_path, monkeypatch):
    """While analyses top up in the background, a page draws the run as the last finished pass left it
    (its cursor stops there) and says how far that is, instead of blanking; then it catches up."""
    import threading

    from grokscope.store import layout

    path = tmp_path / "live"
    shutil.copytree(small_run.path, path)
    (path / layout.COMPLETE).unlink()
    progress = layout.read_json(path / layout.PROGRESS)
    steps = grokscope.open_run(path).steps
    n = len(steps) // 2
    step = int(steps[n - 1])
    half = dict(progress, n_checkpoints=n, n_metric_steps=step, step=step, state=layout.state_name(step))
    layout.write_json(path / layout.PROGRESS, dict(half, checksums=progress["checksums"][:n]))
    at = app(tmp_path, monkeypatch, "live")
    at.switch_page("pages/30_fourier.py").run()
    deadline = time.monotonic() + 300
    while not charts(at):  # the first pass, in the background; the page polls
        assert time.monotonic() < deadline, "the first background pass did not finish"
        time.sleep(1)
        at.run()
    assert cursor(at)["steps"][-1] == step
    # the charts appear once the pass has written its files; its thread then still reads them back for the
    # pages to draw during the next pass: let it finish, or that next pass would find nothing to draw yet
    for thread in threading.enumerate():
        if thread.name == "analyse live":
            thread.join(timeout=120)
    release, real = threading.Event(), analysis.analyze
    monkeypatch.setattr(analysis, "analyze", lambda run, **kw: release.wait(60) and real(run, **kw))
    layout.write_json(path / layout.PROGRESS, dict(progress, n_metric_steps=progress["n_metric_steps"]))
    at.run()  # training went on: the next pass is held back
    assert not at.exception and charts(at) and cursor(at)["steps"][-1] == step
    assert any(f"Analysed up to step {step}; analysing up to step {int(steps[-1])}" in c.value for c in at.caption)
    release.set()
    while cursor(at)["steps"][-1] != int(steps[-1]):
        assert time.monotonic() < deadline + 120, "the page did not catch up after the pass"
        time.sleep(1)
        at.run()
    assert charts(at) and not at.exception


def test_a_run_with_a_checkpoint_but_no_metrics_row_yet_says_so(small_run, tmp_path, monkeypatch):
    """The first commit of a run can hold checkpoint 0 before its metrics row: a message, not an empty chart."""
    from grokscope.store import layout

    shutil.copytree(small_run.path, tmp_path / "first")
    (tmp_path / "first" / layout.COMPLETE).unlink()
    progress = layout.read_json(tmp_path / "first" / layout.PROGRESS)
    first = dict(progress, n_checkpoints=1, n_metric_steps=0, step=0, state=layout.state_name(0))
    layout.write_json(tmp_path / "first" / layout.PROGRESS, dict(first, checksums=progress["checksums"][:1]))
    at = app(tmp_path, monkeypatch, "first")
    at.switch_page("pages/20_training.py").run()
    assert not at.exception and not at.error and not charts(at)
    assert any("Nothing to draw yet for training curves" in i.value for i in at.info)


def test_a_link_leading_outside_the_runs_directory_is_not_a_run(small_run, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    shutil.copytree(small_run.path, root / "inside")
    (root / "outside").symlink_to(small_run.path)
    at = app(root, monkeypatch)
    assert list(at.dataframe[0].value["run"]) == ["inside"]


def test_a_session_under_another_host_name_is_refused(runs_dir, monkeypatch):
    """DNS rebinding: a page on another site reaching the app under its own name sees no run. (The
    browser test opens the app under localhost through `grokscope app`, which sets the list.)"""
    monkeypatch.setenv("GROKSCOPE_HOSTS", "localhost,127.0.0.1,::1")
    at = AppTest.from_file(APP, default_timeout=60)  # streamlit.testing sends no Host header
    monkeypatch.setenv("GROKSCOPE_RUNS_DIR", str(runs_dir))
    at.run()
    assert any("only under its own address" in e.value for e in at.error) and not at.dataframe


def test_the_pages_shared_module_does_not_load_torch():
    """The Runs page draws its table from app/common.py and the store alone, so a fresh server shows the runs
    before torch and transformer-lens have loaded (2-3 s on a small machine)."""
    import subprocess
    import sys

    code = "import sys; import common; print(sorted({'torch', 'transformer_lens'} & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(APP).parent, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.fixture
def jobs_module(monkeypatch):
    """The app's jobs module (the one its pages use); every job still running is killed afterwards."""
    monkeypatch.syspath_prepend(str(Path(APP).parent))
    import jobs

    yield jobs
    for job in jobs.jobs():
        if job.process.poll() is None:
            job.process.kill()
            job.process.wait()


@pytest.fixture
def ctrl_c_ignored():
    """This process ignores Ctrl-C, as a server started in the background of a shell does (its children
    inherit that)."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    yield
    signal.signal(signal.SIGINT, previous)


def test_train_stop_resume_and_analyse_from_the_jobs_page(tmp_path, monkeypatch, jobs_module, ctrl_c_ignored):
    """A run trained from a preset with overrides, through `grokscope train` in its own process, then
    analysed the same way; a bad override is refused in one line before anything starts. Stop works also
    where the server ignores Ctrl-C."""
    at = app(tmp_path, monkeypatch)
    at.switch_page("pages/80_jobs.py").run()
    at.selectbox(key="job preset").set_value("tiny")
    at.text_input(key="job name").set_value("fromapp")
    at.text_area(key="job overrides").set_value("train.nope=1")
    at.button(key="job start").click().run()
    assert at.error and "nope" in at.error[0].value and "\n" not in at.error[0].value
    assert not (tmp_path / "fromapp").exists()
    sizes = "task.p=7\ntask.train_frac=0.6\nmodel.d_mlp=16\ntrain.steps=30\ncheckpoints.dense_until=5"
    at.text_area(key="job overrides").set_value(sizes)
    at.button(key="job start").click().run()
    assert not at.exception and not at.error

    def wait_for(state: str) -> None:
        """Until the newest job (listed first) is in that state."""
        deadline = time.monotonic() + 240
        while True:
            states = [c.value for c in at.caption if c.value.split(" ")[0] in ("running", "done", "stopped", "failed")]
            if states and states[0] == state:
                return
            assert time.monotonic() < deadline and not any(s.startswith("failed") for s in states[:1]), states
            time.sleep(1)
            at.run()

    wait_for("done")
    run = grokscope.open_run(tmp_path / "fromapp")
    assert run.complete and run.config.train.steps == 30 and run.config.model.d_mlp == 16
    # a long one, stopped once it has committed a checkpoint, then resumed to the end
    at.text_input(key="job name").set_value("long")
    at.text_area(key="job overrides").set_value(sizes.replace("train.steps=30", "train.steps=100000"))
    at.button(key="job start").click().run()
    deadline = time.monotonic() + 120
    while not (tmp_path / "long" / "progress.json").exists() or not grokscope.open_run(tmp_path / "long").n_checkpoints:
        assert time.monotonic() < deadline, "the long run committed no checkpoint"
        time.sleep(0.5)
    at.run()
    at.button(key="stop 0").click().run()
    wait_for("stopped (resumable)")
    stopped_at = grokscope.open_run(tmp_path / "long").n_checkpoints
    at.button(key="resume long").click().run()
    wait_for("running")
    deadline = time.monotonic() + 120
    while grokscope.open_run(tmp_path / "long").n_checkpoints <= stopped_at:
        assert time.monotonic() < deadline, "the resumed run saved nothing new"
        time.sleep(0.5)
    at.run()
    at.button(key="stop 0").click().run()
    wait_for("stopped (resumable)")
    assert analysis.missing(run)
    at.button(key="analyse fromapp").click().run()
    wait_for("done")  # the newest job is listed first
    assert not analysis.missing(grokscope.open_run(tmp_path / "fromapp"))


@pytest.mark.slow  # a real job with the default options: about 30 s on 2 idle cores
def test_local_complexity_is_computed_on_request_from_its_page(tmp_path, monkeypatch, jobs_module):
    """Not cached: the page says how to compute it and its button runs `grokscope analyze --only` as a job;
    then the page draws both figures (the region slice needs no analysis: drawn throughout)."""
    sizes = {"train.steps": 20, "checkpoints.dense_until": 2, "checkpoints.n_log": 2, "checkpoints.n_uniform": 2}
    config = {**KIND_CONFIGS["digits"], **sizes}
    trained = grokscope.train(grokscope.load_preset("tiny").with_overrides(config), tmp_path / "digits", progress=False)
    analysis.analyze(grokscope.open_run(trained), progress=False)  # what it computes by default
    at = app(tmp_path, monkeypatch, "digits")
    at.switch_page("pages/55_local_complexity.py").run()
    assert not at.exception and "computed on request" in at.info[0].value and len(charts(at)) == 1
    at.button(key="compute on request").click().run()
    deadline = time.monotonic() + 240
    while len(charts(at)) < 3:
        assert time.monotonic() < deadline and not at.exception, [i.value for i in at.info]
        time.sleep(1)
        at.run()
    run = grokscope.open_run(tmp_path / "digits")
    assert all(analysis.cached_result(run, name) is not None for name in ("local_complexity", "robustness"))


def test_the_fourier_page_sets_every_key_frequency_rule_side_by_side(runs_dir, monkeypatch):
    at = app(runs_dir, monkeypatch, "tiny")
    at.switch_page("pages/30_fourier.py").run()
    assert not at.exception and not at.error
    (table,) = [d.value for d in at.dataframe]
    found = analysis.load(grokscope.open_run(runs_dir / "tiny"), "key_frequencies")
    assert table["rule"].tolist() == ["ablation", "neurons", "embed", "logit_map"]
    assert table.loc[table["used"] == "yes", "rule"].tolist() == [str(found["rule"])]
    assert table["frequencies"][0] == ", ".join(map(str, found["by_ablation"].tolist()))
    assert table["restricted loss"][1] == pytest.approx(float(found["restricted_loss_by_neurons"]))
