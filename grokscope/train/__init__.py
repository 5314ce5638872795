"""Training: the loop, optimizers, losses and the checkpoint schedule."""

from grokscope.train.loop import RUNS_DIR, train
from grokscope.train.schedule import checkpoint_steps

__all__ = ["RUNS_DIR", "checkpoint_steps", "train"]
