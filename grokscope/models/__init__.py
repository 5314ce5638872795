"""Models: one file per architecture behind the `Model` interface (see base.py), and the registry kind → class.

Adding a model family: a file with a `Model` subclass, its kind added to `config.ModelKind`, one line here.
"""

from __future__ import annotations

import torch

from grokscope.config import ModelKind, RunConfig, choices
from grokscope.errors import GrokscopeError
from grokscope.models.base import Model, NeuronLayer
from grokscope.models.deep_mlp import DeepMLP
from grokscope.models.hf_moe import HFMoE
from grokscope.models.mlp import MLP
from grokscope.models.moe import MoETransformer
from grokscope.models.transformer import Transformer
from grokscope.store import Run, as_run
from grokscope.tasks import make_task

MODELS: dict[str, type[Model]] = {
    "transformer": Transformer,
    "mlp": MLP,
    "deep_mlp": DeepMLP,
    "moe": MoETransformer,
    "hf": HFMoE,
}
assert tuple(MODELS) == choices(ModelKind), "the model registry and config.ModelKind must list the same kinds"

__all__ = [
    "MLP",
    "MODELS",
    "DeepMLP",
    "HFMoE",
    "MoETransformer",
    "Model",
    "NeuronLayer",
    "Transformer",
    "build_model",
    "check_shapes",
    "load_model",
]


def build_model(config: RunConfig) -> Model:
    """A freshly initialised model for the run's config, seeded with `model.seed`, every initial parameter
    multiplied by `model.init_scale`. GrokscopeError where the model cannot read the task's inputs, or is
    not built but read (a Hugging Face series: `load_model`)."""
    if MODELS[config.model.kind].imported:
        raise GrokscopeError(
            f"model.kind '{config.model.kind}' is read from its checkpoint directories (grokscope import-hf), not built"
        )
    generator = torch.Generator().manual_seed(config.model.seed)
    model = MODELS[config.model.kind](config.model, make_task(config.task), generator)
    if config.model.init_scale != 1:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(config.model.init_scale)
    return model


def check_shapes(run: Run) -> Model:
    """A fresh model for the run's config, after checking that config.json still describes the stored
    parameters (an edited config, e.g. p changed, would otherwise give wrong numbers or shape errors). A
    Hugging Face series: its first checkpoint, read from the directories its meta.json names."""
    if run.checkpoint_dirs is not None:
        return MODELS[run.config.model.kind].of_run(run)
    model = build_model(run.config)
    expected = {n: list(p.shape) for n, p in model.named_parameters()}
    if expected != run.meta["param_shapes"]:
        wrong = next((n for n in expected if run.meta["param_shapes"].get(n) != expected[n]), None)
        detail = (
            f"{wrong}: stored {run.meta['param_shapes'].get(wrong)}, config gives {expected[wrong]}"
            if wrong
            else "other parameters"
        )
        raise GrokscopeError(f"{run.path}: config.json does not match the stored parameters ({detail}); was it edited?")
    return model


def load_model(run: Run, step: int, device: str = "cpu") -> Model:
    """A ready model (eval mode) with the parameters of a run's saved step (run: a Run or its path)."""
    run = as_run(run)
    model = check_shapes(run)
    if run.checkpoint_dirs is not None:  # an imported series: its weights stay in its checkpoint directories
        model.load_row(run.row(step))
    else:
        model.load_state_dict(run.params(step))
    return model.to(device).eval()
