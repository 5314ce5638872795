"""The run store: the contract between training and everything downstream (see files.py for the layout)."""

from grokscope.store.reader import Run, open_run
from grokscope.store.writer import RunWriter

__all__ = ["Run", "RunWriter", "open_run"]
