"""App latency: server-side time per cursor move on each page, through streamlit.testing.

A cursor move is one `select_slider` change followed by the app's rerun; AppTest reruns the whole page
script (a browser session reruns only the cursor's fragment), so these times are an upper bound on what
the server spends per move. The figures read one checkpoint from the store and the cached analyses.

    python benchmarks/app_latency.py --runs-dir checkpoints --run canonical [--moves 15]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

import grokscope
from grokscope import analysis

APP = str(Path(__file__).resolve().parent.parent / "app" / "app.py")
PAGES = sorted(f"pages/{path.name}" for path in (Path(APP).parent / "pages").glob("[0-9]*_*.py"))  # as app.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", default="checkpoints")
    parser.add_argument("--run", default="canonical")
    parser.add_argument("--moves", type=int, default=15)
    args = parser.parse_args()
    run = grokscope.open_run(Path(args.runs_dir) / args.run)
    analysis.analyze(run)  # the app reads cached analyses; computing them is not part of a move
    os.environ.update(GROKSCOPE_RUNS_DIR=str(Path(args.runs_dir).resolve()), GROKSCOPE_RUN=args.run)
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    rng = np.random.default_rng(0)
    print(f"run {args.run}: {len(run.steps)} checkpoints; {platform.processor() or platform.machine()}")
    for page in PAGES:
        at.switch_page(page).run()
        if not any(s.key == "cursor" for s in at.select_slider):
            continue  # a page without the cursor (runs, compare)
        slider = at.select_slider(key="cursor")
        times = []
        for step in rng.choice(slider.options, size=args.moves, replace=False):
            start = time.perf_counter()
            at.select_slider(key="cursor").set_value(int(step)).run()
            times.append((time.perf_counter() - start) * 1000)
            assert not at.exception, at.exception[0].value
        print(f"{page:22} median {statistics.median(times):6.0f} ms, max {max(times):6.0f} ms per move")


if __name__ == "__main__":
    main()
