"""Scrub latency in a real browser: from the key press that moves the cursor to the last chart on the page
showing the new step, per page (headless Chromium through Playwright).

A move is one ← on the focused step slider (one checkpoint back), the way a researcher steps through
training. A chart shows step S when its dashed line (the cursor) stands at S or its title names step S; the
page is polled every animation frame, so times are rounded up to the next frame (~16 ms). A burst of
10 presses 30 ms apart is timed from its last press (rapid presses must not queue).

    python benchmarks/app_scrub.py --url http://localhost:8501 --runs-dir checkpoints --run demo [--moves 15]

Serve the app first (`grokscope app checkpoints --run demo`); the run's analyses must be computed.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from playwright.sync_api import sync_playwright

import grokscope

PAGES = tuple(os.environ.get("PAGES", "").split()) or (
    "training",
    "fourier",
    "neurons",
    "memorization",
    "progress",
    "attention",
)
CHARTS = ".js-plotly-plot"
SLIDER = "input[type=range], [role=slider]"

# true once every chart shows `step`; resolves with the time it first did (performance.now())
SHOWS = """([step, timeout]) => new Promise((resolve) => {
  const pattern = new RegExp(`step ${step}(?!\\\\d)`);
  const shows = (gd) => (gd.layout?.shapes || []).some((s) => s.line?.dash === "dash" && Number(s.x0) === step)
    || pattern.test(gd.layout?.title?.text || "");
  const start = performance.now();
  const poll = () => {
    const charts = [...document.querySelectorAll(".js-plotly-plot")];
    if (charts.length && charts.every(shows)) resolve(performance.now());
    else if (performance.now() - start > timeout) resolve(null);
    else requestAnimationFrame(poll);
  };
  poll();
})"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://localhost:8501")
    parser.add_argument("--runs-dir", default="checkpoints")
    parser.add_argument("--run", default="demo")
    parser.add_argument("--moves", type=int, default=15)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    steps = [int(s) for s in grokscope.open_run(os.path.join(args.runs_dir, args.run)).steps]
    print(
        f"run {args.run}: {len(steps)} checkpoints; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 1200})
        page.add_init_script("document.addEventListener('keydown', (e) => { window.pressedAt = e.timeStamp }, true)")
        for name in PAGES:
            page.goto(f"{args.url}/{name}")
            page.locator(SLIDER).first.wait_for(timeout=300_000)
            if page.evaluate(SHOWS, [steps[-1], 300_000]) is None:
                print(f"{name:14} the charts never showed the last step")
                continue
            time.sleep(2)
            n_charts = page.locator(CHARTS).count()
            slider = page.locator(SLIDER).first
            slider.focus()
            times, row = [], len(steps) - 1
            for _ in range(args.moves):
                row -= 1
                slider.press("ArrowLeft")
                shown = page.evaluate(SHOWS, [steps[row], 30_000])
                if shown is None:
                    raise SystemExit(f"{name}: the charts did not show step {steps[row]} within 30 s")
                times.append(shown - page.evaluate("window.pressedAt"))
                time.sleep(0.6)  # the move settles (the server hears of it, reruns, redraws what it must)
            for _ in range(10):
                row -= 1
                slider.press("ArrowLeft")
                time.sleep(0.03)
            shown = page.evaluate(SHOWS, [steps[row], 60_000])
            burst = "never" if shown is None else f"{shown - page.evaluate('window.pressedAt'):5.0f} ms"
            print(
                f"{name:14} {n_charts} charts: median {statistics.median(times):5.0f} ms, max {max(times):5.0f} ms "
                f"per move; after a burst of 10: {burst}"
            )
        browser.close()


if __name__ == "__main__":
    main()
