"""grokscope app: the router. Pages (app/pages/*.py) only lay out figures from grokscope.figures; what
they share (the run chooser, the training-time cursor) is in app/common.py and every page draws it.

Adding a page is one file in pages/ (plus its figure builders in grokscope/figures): its name's number
prefix gives its place, the rest its URL, and its docstring's first words before ':' its title."""

import ast
import os
from pathlib import Path

import streamlit as st

PAGES = Path(__file__).parent / "pages"
HOSTS_ENV = "GROKSCOPE_HOSTS"  # set by `grokscope app`: the host names it answers to, comma-separated


def refused_host() -> str | None:
    """The Host header of this session when it is not a name `grokscope app` serves under (a page on another
    site reaching localhost through DNS rebinding comes with its own name), else None. Without the list
    (the app not started by `grokscope app`) nothing is refused."""
    allowed = os.environ.get(HOSTS_ENV)
    if not allowed:
        return None
    host = st.context.headers.get("Host") or ""
    name = host[1 : host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
    return None if name.lower() in allowed.split(",") else host


def page(path: Path) -> st.Page:
    title = ast.get_docstring(ast.parse(path.read_text())).split(":")[0]
    return st.Page(f"pages/{path.name}", title=title, url_path=path.stem.split("_", 1)[1])


st.set_page_config(page_title="grokscope")  # the layout: see common.sidebar
if (host := refused_host()) is not None:
    st.error(f"grokscope serves this app only under its own address, not as '{host}'")
    st.stop()
navigation = st.navigation([page(path) for path in sorted(PAGES.glob("[0-9]*_*.py"))])
if "started" in st.session_state:
    navigation.run()
else:  # the first page of a session waits for torch (about 2 s, once per server): say so at once
    with st.spinner("Starting grokscope (loading torch, once)…"):
        navigation.run()
    st.session_state.started = True
