"""The app's first page on a fresh server, in headless Chromium: how long from opening the page until
Streamlit's page shell, the Runs page's title, the run table, and the table's model column (which needs
torch) are on screen. Each try starts a new `grokscope app` (the first session of a server pays for the
imports) and opens the page once the server answers.

    python benchmarks/app_first_page.py --runs-dir checkpoints [--tries 3]
"""

from __future__ import annotations

import argparse
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
MARKS = {  # what is on screen → a CSS selector that shows it, and the state it must reach
    "page shell": ('[data-testid="stApp"]', "visible"),
    "title": ('h1:has-text("Runs")', "visible"),
    "run table": ('[data-testid="stDataFrame"], [data-testid="stTable"]', "visible"),
    # the grid draws on a canvas; its column headers are in an accessible table that is never "visible"
    "model column": ('[data-testid="stDataFrame"] th:text-is("model")', "attached"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def one_try(browser, runs_dir: str) -> dict[str, float]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "grokscope", "app", runs_dir, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://localhost:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("grokscope app did not start") from None
                time.sleep(0.2)
        page = browser.new_page()
        start = time.perf_counter()
        page.goto(url, wait_until="commit")
        times = {}
        for mark, (selector, state) in MARKS.items():
            page.wait_for_selector(selector, state=state, timeout=60_000)
            times[mark] = time.perf_counter() - start
        page.close()
        return times
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", default="checkpoints")
    parser.add_argument("--tries", type=int, default=3)
    args = parser.parse_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        tries = [one_try(browser, args.runs_dir) for _ in range(args.tries)]
        browser.close()
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, {args.tries} tries")
    for mark in MARKS:
        values = [t[mark] for t in tries]
        print(f"{mark}: median {statistics.median(values):.2f} s, {min(values):.2f}–{max(values):.2f} s")


if __name__ == "__main__":
    main()
