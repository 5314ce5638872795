"""Writing figures for papers: a static image per figure (kaleido, through a system Chromium) and its
data as CSV."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import plotly.io as pio

from grokscope.errors import GrokscopeError
from grokscope.figures.builders import Plot
from grokscope.store import layout

FORMATS = ("pdf", "svg", "png")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")  # what kaleido renders through
NO_BROWSER = (
    "static export (pdf, svg, png) renders through Chromium or Chrome and none was found: install Debian's "
    "chromium (apt-get install chromium) or Google Chrome; the CSV files were written"
)


# Chromium's own background traffic (DNS-over-HTTPS probes, lookups: 85-93 DNS queries for three figures,
# measured with strace) goes to a closed local port instead; the figures need no network (plotly.js is local)
OFFLINE_PROXY = ("CHOREO_PROXY_SERVER", "127.0.0.1:9")


@contextlib.contextmanager
def offline_browser():
    """While exporting: the Chromium that kaleido starts sends every request to OFFLINE_PROXY."""
    key, value = OFFLINE_PROXY
    before = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def found_browser() -> bool:
    """Whether the browser kaleido would start exists (its lookup honours BROWSER_PATH)."""
    from choreographer.browsers.chromium import Chromium

    path = Chromium.find_browser(skip_local=False)
    return bool(path) and Path(path).is_file()


def has_browser() -> bool:
    """Whether a Chromium or Chrome is on the PATH for static export."""
    return any(shutil.which(b) for b in BROWSERS)


def export(plots: dict[str, Plot], out: str | Path, fmt: str = "pdf", progress: bool = False) -> list[Path]:
    """Write <out>/<name>.csv for every plot, then <out>/<name>.<fmt> for each of them through one Chromium
    session (a progress bar per figure where `progress`); returns the files written."""
    import kaleido
    from tqdm.auto import tqdm

    if fmt not in FORMATS:
        raise GrokscopeError(f"unknown format '{fmt}' (use {', '.join(FORMATS)})")
    out = Path(out)
    layout.claim_outputs(out, [f"{name}.{ext}" for name in plots for ext in ("csv", fmt)])
    written = [write_csv(plot.data, out / f"{name}.csv") for name, plot in plots.items()]
    images = [out / f"{name}.{fmt}" for name in plots]
    if not found_browser():  # kaleido's server would wait forever on a browser that never starts
        raise GrokscopeError(NO_BROWSER)
    try:
        with offline_browser(), warnings.catch_warnings():
            # plotly hands its default options to each call; the server was started with them already
            warnings.filterwarnings("ignore", message="The kopts argument is ignored")
            kaleido.start_sync_server(silence_warnings=True)  # one browser for every figure
            try:
                pairs = zip(plots.values(), images)
                for plot, image in tqdm(pairs, total=len(images), desc=f"figures ({fmt})", disable=not progress):
                    pio.write_image(plot.figure, image, format=fmt, scale=2 if fmt == "png" else 1)
            finally:
                kaleido.stop_sync_server(silence_warnings=True)
    except RuntimeError as e:
        if "Chrome" in str(e) or "Chromium" in str(e):
            raise GrokscopeError(NO_BROWSER) from None
        raise
    return written + images


def write_csv(data: dict[str, np.ndarray], path: Path) -> Path:
    path.write_text(csv_text(data))
    return path


def csv_text(data: dict[str, np.ndarray]) -> str:
    """Columns of equal length → CSV text with a header row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(data.keys())
    writer.writerows(zip(*(np.asarray(c).tolist() for c in data.values())))
    return buffer.getvalue()
