"""Runs to and from other tools: importers write run directories that every command opens; export writes
one checkpoint in another tool's format."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from grokscope.errors import GrokscopeError
from grokscope.store import layout


def check_out(out: Path, force: bool) -> None:
    """Refuse, before any work, an `out` that holds something and was not asked to be replaced."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise GrokscopeError(f"{out} already exists: --force replaces it (force=True in Python)")


@contextlib.contextmanager
def laid_out(out: Path, force: bool) -> Iterator[Path]:
    """A directory to build an imported run in, renamed to `out` when the block ends: the run exists whole
    or not at all. A run already at `out` (force) is replaced only then; on failure it comes back untouched."""
    from grokscope.train.loop import move_aside

    building = out.with_name(f".{out.name}.importing")
    shutil.rmtree(building, ignore_errors=True)
    old = move_aside(out, force)
    try:
        yield building
        building.rename(out)
        layout.fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old)
