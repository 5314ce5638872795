"""The run store: the contract between training (or an importer) and everything downstream (see layout.py for
the files). It imports nothing above it: no models, no analysis, no training."""

from grokscope.store.reader import Run, as_run, open_run

__all__ = ["Run", "as_run", "open_run"]
