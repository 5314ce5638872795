"""grokscope: an interpretability workbench for grokking.

run_dir = grokscope.train(grokscope.load_preset("demo"))
run = grokscope.open_run(run_dir)
run.steps, run.params(step), run.model(step), run.trajectory("embed.W_E"), run.metrics
"""

from grokscope.config import RunConfig
from grokscope.errors import GrokscopeError
from grokscope.models import build_model
from grokscope.presets import PRESETS, load_preset
from grokscope.store import Run, open_run
from grokscope.tasks import make_dataset
from grokscope.train import train

__all__ = [
    "PRESETS",
    "GrokscopeError",
    "Run",
    "RunConfig",
    "build_model",
    "load_preset",
    "make_dataset",
    "open_run",
    "train",
]
