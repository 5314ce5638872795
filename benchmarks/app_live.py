"""A run still training, watched in the app: how soon its first curve appears, and how much of the time
its pages are usable while it trains (headless Chromium through Playwright).

Starts `grokscope train --preset demo` into a fresh runs directory and `grokscope app` on it, opens the
Training and Fourier pages in two tabs, and samples both twice a second while the run trains. A page is
usable when it shows at least one chart and none is greyed out (Streamlit fades what a rerun has not
redrawn yet: every chart's effective opacity is at least 0.9); the Fourier page reads analyses, which top
up in the background.

    python benchmarks/app_live.py [--port 8765]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

WAITING = "() => document.body.innerText.includes('in the background')"  # a page that polls by itself
# a chart is usable when it is drawn and not greyed out: its opacity, times its containers', at least 0.9
USABLE = """() => {
  const charts = [...document.querySelectorAll('.js-plotly-plot')].filter((c) => c.querySelector('.main-svg'));
  const opacity = (el) => el ? Number(getComputedStyle(el).opacity) * opacity(el.parentElement) : 1;
  return charts.length > 0 && charts.every((c) => opacity(c) >= 0.9);
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as root:
        runs = Path(root)
        url = f"http://localhost:{args.port}"
        app = subprocess.Popen(
            [sys.executable, "-m", "grokscope", "app", str(runs), "--port", str(args.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        train = None
        try:
            wait_for(f"{url}/_stcore/health", 60)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=["--no-sandbox"])
                pages = {
                    name: browser.new_page(viewport={"width": 1400, "height": 1000}) for name in ("training", "fourier")
                }
                start = time.monotonic()
                train = subprocess.Popen(
                    [sys.executable, "-m", "grokscope", "train", "--preset", "demo", "--out", str(runs / "live")],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                first, opened = {}, dict.fromkeys(pages, -1e9)
                usable, samples = dict.fromkeys(pages, 0), 0
                while train.poll() is None or len(first) < len(pages):
                    if time.monotonic() - start > 900:
                        break
                    for name, page in pages.items():
                        shown = bool(page.evaluate(USABLE))
                        if shown and name not in first:
                            first[name] = time.monotonic() - start
                        if "training" in first and train.poll() is None:
                            usable[name] += shown  # from the first curve to the end of training
                        if name not in first and time.monotonic() - opened[name] > 3 and not page.evaluate(WAITING):
                            page.goto(f"{url}/{name}")  # as a user reloads until the run is listed
                            opened[name] = time.monotonic()
                    samples += "training" in first and train.poll() is None
                    time.sleep(0.5)
                for name in pages:
                    when = f"{first[name]:5.1f} s" if name in first else "never"
                    print(f"{name:9} first chart {when} after the training command started")
                    share = usable[name] / max(samples, 1)
                    print(f"{name:9} usable in {usable[name]} of {samples} samples ({share:.0%}) while the run trained")
                browser.close()
        finally:
            for process in (train, app):
                if process is not None:
                    process.terminate()
                    process.wait(timeout=30)


def wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"nothing answered at {url}") from None
            time.sleep(0.5)


if __name__ == "__main__":
    main()
