"""grokscope app: the router. Pages (app/pages/*.py) only lay out figures from grokscope.figures; what
they share (the run chooser, the training-time cursor) is in app/common.py and every page draws it.

Adding a page is one file in pages/ (plus its figure builders in grokscope/figures): its name's number
prefix gives its place, the rest its URL, and its docstring's first words before ':' its title."""

import ast
from pathlib import Path

import streamlit as st

PAGES = Path(__file__).parent / "pages"


def page(path: Path) -> st.Page:
    title = ast.get_docstring(ast.parse(path.read_text())).split(":")[0]
    return st.Page(f"pages/{path.name}", title=title, url_path=path.stem.split("_", 1)[1])


st.set_page_config(page_title="grokscope", layout="wide")
st.navigation([page(path) for path in sorted(PAGES.glob("[0-9]*_*.py"))]).run()
