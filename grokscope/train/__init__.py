"""Training: the loop, optimizers, losses, gradient filters and the checkpoint schedule.

Light to import (no torch until a run is trained): `train` loads the loop on its first call.
"""

from pathlib import Path

RUNS_DIR = Path("checkpoints")


def train(*args, **kwargs) -> Path:
    """Train a run; see `grokscope.train.loop.train` for the arguments."""
    from grokscope.train.loop import train as train_run

    return train_run(*args, **kwargs)


__all__ = ["RUNS_DIR", "train"]
