"""grokscope: an interpretability workbench for grokking.

run_dir = grokscope.train(grokscope.load_preset("demo"))
run = grokscope.open_run(run_dir)
run.steps, run.params(step), load_model(run, step), run.trajectory("embed.W_E"), run.metrics
grokscope.import_hf(checkpoint_dirs, "checkpoints/olmoe", "samples.jsonl")  # a Hugging Face MoE series as a run

Light to import: torch and the other heavy packages load when a name that needs them is first used.
"""

from grokscope.config import RunConfig
from grokscope.errors import GrokscopeError
from grokscope.presets import PRESETS, load_preset
from grokscope.train import train

LAZY = {
    "Run": "grokscope.store",
    "open_run": "grokscope.store",
    "build_model": "grokscope.models",
    "import_hf": "grokscope.importers.hf",
    "load_model": "grokscope.models",
    "make_dataset": "grokscope.tasks",
    "make_task": "grokscope.tasks",
}

__all__ = [
    "PRESETS",
    "GrokscopeError",
    "Run",
    "RunConfig",
    "build_model",
    "import_hf",
    "load_model",
    "load_preset",
    "make_dataset",
    "make_task",
    "open_run",
    "train",
]


SUBPACKAGES = ("analysis", "cli", "config", "errors", "figures", "importers", "models", "presets", "store", "tasks")


def __getattr__(name: str):
    import importlib

    if name in LAZY:
        return getattr(importlib.import_module(LAZY[name]), name)
    if name in SUBPACKAGES:  # `import grokscope; grokscope.store` as with an eager package
        return importlib.import_module(f"grokscope.{name}")
    raise AttributeError(f"module 'grokscope' has no attribute '{name}'")
