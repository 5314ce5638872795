"""One end-to-end test in a real headless browser: `grokscope app` serves a run, a Plotly chart renders,
the cursor moves it (a jump button, the keyboard, a click on a time axis), and the figure downloads as a
PDF named for the step."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

CHROMIUM = "/usr/bin/chromium"
# Streamlit marks its root with the state of the page's script run
IDLE = "document.querySelector('[data-testid=stApp]')?.dataset.testScriptState === 'notRunning'"


def ensure_chromium() -> None:
    """Debian's chromium, which the README's test command and .ci/run install (a test never installs it)."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no {CHROMIUM}: install Debian's chromium package, as .ci/run and the README's test command do")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(analyzed_run, tmp_path_factory):
    pytest.importorskip("playwright", reason="the Playwright package is in the [test] extra")
    ensure_chromium()
    root = tmp_path_factory.mktemp("browser_runs")
    shutil.copytree(analyzed_run.path, root / "tiny")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "grokscope", "app", str(root), "--port", str(port), "--run", "tiny"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://localhost:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail(f"grokscope app did not start: {server.stdout.read().decode()[-2000:]}")
            time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(timeout=30)
    assert urllib_refused(url), "the app server kept running after `grokscope app` was terminated"


def urllib_refused(url: str) -> bool:
    """True once nothing answers at url (the server behind `grokscope app` stopped with it)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
        except OSError:
            return True
        time.sleep(0.5)
    return False


@contextlib.contextmanager
def opened(url: str):
    """A page at url in headless Chromium, and the list its script errors go to."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        yield page, errors
        browser.close()


@pytest.mark.slow
def test_chart_renders_follows_the_cursor_and_downloads(served, analyzed_run):
    """The cursor moves the charts in the browser (a jump button, the keyboard, a click on a time axis),
    the server hears of the step (the download is made and named at it), and the PDF is a PDF."""
    steps = analyzed_run.steps.tolist()
    with opened(f"{served}/fourier") as (page, errors):
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .bars path').length > 0", timeout=60_000)
        label = page.locator(".grokscope-step")

        def bar_shapes() -> list[str]:
            return page.eval_on_selector_all(".js-plotly-plot .bars path", "els => els.map(e => e.getAttribute('d'))")

        def changes(what, before) -> None:
            deadline = time.monotonic() + 60
            while what() == before:
                assert time.monotonic() < deadline, "the page did not change after moving the cursor"
                time.sleep(0.2)

        assert label.text_content().startswith(f"step {steps[-1]} ")
        before = bar_shapes()
        page.get_by_role("button", name="start", exact=True).click()
        changes(bar_shapes, before)
        assert label.text_content().startswith(f"step {steps[0]} ")
        page.get_by_label("training step").press("ArrowRight")
        assert label.text_content().startswith(f"step {steps[1]} ")
        heatmap = page.locator(".js-plotly-plot").nth(1).locator(".nsewdrag").first
        box = heatmap.bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2)  # click-to-jump
        changes(label.text_content, f"step {steps[1]} · checkpoint 2 of {len(steps)}")
        jumped = int(label.text_content().split()[1])
        assert steps[1] < jumped < steps[-1]
        time.sleep(2)  # the server hears of the step when the moves pause
        with page.expect_download(timeout=120_000) as download:
            page.get_by_role("button", name="figure (PDF)").first.click()
        assert download.value.suggested_filename == f"tiny_embedding_spectrum_step{jumped}.pdf"
        with open(download.value.path(), "rb") as pdf:
            assert pdf.read(4) == b"%PDF"
        assert not errors


@pytest.mark.slow
def test_figures_that_need_a_forward_per_step_follow_the_cursor(served, analyzed_run):
    """On the Neurons page the neuron map and one neuron's activation are computed by the server at the
    step (Scrub.at) and put in place in the browser: after a move their titles name the step and the map's
    values are the builder's at that step."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    from grokscope.figures.builders import neuron_frequency_map

    steps = analyzed_run.steps.tolist()
    with opened(f"{served}/neurons") as (page, errors):
        titles = "[...document.querySelectorAll('.js-plotly-plot')].map((gd) => gd.layout.title.text)"
        page.wait_for_function(f"{titles}.length === 3", timeout=60_000)
        page.wait_for_function(IDLE, timeout=60_000)  # the page's first run has ended: its cursor stays put
        # Under a loaded CI machine a move has (rarely) gone unanswered by the server for over a minute; not
        # reproduced on an idle machine. A second move must then be answered: the figures follow the cursor
        # either way, and what the page held after the first is printed with the failure if neither is.
        for back in (2, 3):
            page.get_by_label("training step").press("ArrowLeft")
            assert page.locator(".grokscope-step").text_content().startswith(f"step {steps[-back]} ")
            at_step = f"{titles}.filter((t) => t.includes('at step {steps[-back]}')).length === 2"  # clusters: no step
            try:
                page.wait_for_function(at_step, timeout=45_000)
                break
            except PlaywrightTimeout:
                print(f"after the move to step {steps[-back]}: titles {page.evaluate(titles)}, errors {errors}")
                if back == 3:
                    raise
        shown = page.evaluate("Array.from(document.querySelector('.js-plotly-plot').data[0].z, (r) => Array.from(r))")
        expected = neuron_frequency_map(analyzed_run, steps[-back]).figure.data[0].z
        assert np.allclose(shown, expected, atol=1e-6)  # float32 on the way
        assert not errors
