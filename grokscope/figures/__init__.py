"""Plotly figure builders, shared by `grokscope figures` and the app.

Each builder takes an open run and a saved step (the cursor: a vertical line on time axes, or the
checkpoint shown) and returns a `Plot`: the figure and the columns it plots (for CSV export). Builders
read the run store and the cached analyses only, computing missing analyses first. Styling is for
papers: 14 pt text, the Okabe–Ito colour-blind-safe palette, white background, no gridline clutter.
"""

from grokscope.figures.builders import FIGURES, Plot, standard
from grokscope.figures.export import FORMATS, export

__all__ = ["FIGURES", "FORMATS", "Plot", "export", "standard"]
