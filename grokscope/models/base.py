"""The Model interface: a transformer-lens `HookedRootModule` with HookedTransformer names, plus what the rest
of grokscope needs to know about an architecture without asking for its kind.

Every model has two forms of the same maths:
- `forward(inputs)`: the plain, hooked form (`run_with_cache`, hooks, TransformerLens habits);
- `all_logits(inputs)`: the logits of every input of the task at the output position, (n_inputs, n_classes);
  models with a fast form (the p × p grid of a modular task: `grid_logits`) compute it without the plain
  forward and fire no hooks, the others run the plain forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from transformer_lens import HookedRootModule

from grokscope.config import ModelConfig
from grokscope.errors import GrokscopeError
from grokscope.tasks import Dataset, Task


@dataclass(frozen=True)
class NeuronLayer:
    """One layer of neurons: its parameter names and hooks. W_in (d_in, d_mlp) reads the neurons' inputs,
    W_out (d_mlp, d_out) their outputs (None where the next layer's W_in does), b_in their biases (or None)."""

    W_in: str
    W_out: str | None
    b_in: str | None
    hook_pre: str
    hook_post: str


class Model(HookedRootModule):
    """Subclasses set `kind` (a ModelKind), `reads` (the task input form they take: tokens, pairs, vectors),
    `has_attention` and `token_indexed`, and implement task_inputs, neuron_layers and describe."""

    kind: ClassVar[str]
    reads: ClassVar[str]
    has_attention: ClassVar[bool] = False
    # models of a modular task with token-indexed maps (`token_maps`, `neuron_maps`, `fourier_params`), grid
    # inputs (`grid_inputs`) and whole-grid activations (`grid_activations`): what the Fourier analyses and the
    # activation score read
    token_indexed: ClassVar[bool] = False
    # where local complexity and adversarial attacks perturb the model: its inputs where they are vectors
    # (None), else the output of this hook (the transformer: token + position embeddings)
    perturbed: ClassVar[str | None] = None
    # the norm of adversarial perturbations there: ℓ∞ on continuous inputs, ℓ2 in a token model's space
    attack_norm: ClassVar[str] = "l2"
    # read from checkpoints trained elsewhere (`of_run(run)` and `load_row(row)`: the run's checkpoint_dirs),
    # never built or trained here
    imported: ClassVar[bool] = False
    # what a pathway runs through, in words (see pathway_hooks)
    pathway_units: ClassVar[str] = "each layer's most active neurons (grokscope's dense analogue)"
    # whether runs of it can train packed (grokscope.train.pack): all_logits and the loss read no module state
    packs: ClassVar[bool] = True

    def __init__(self, cfg: ModelConfig, task: Task):
        super().__init__()
        if self.reads not in task.offers:
            raise GrokscopeError(
                f"model.kind '{cfg.kind}' reads {self.reads}; task.kind '{task.kind}' offers {', '.join(task.offers)}"
            )
        self.cfg = cfg

    def task_inputs(self, task: Task, dataset: Dataset) -> torch.Tensor:
        """The plain forward's inputs for every input of the task, in the task's order: (n_inputs, ...)."""
        raise NotImplementedError

    def output_logits(self, out: torch.Tensor) -> torch.Tensor:
        """The plain forward's output → the logits the loss reads: (batch, n_classes)."""
        return out

    def token_inputs(self) -> list[torch.Tensor]:
        """The parameter rows each input token selects, as views of the parameters' data to edit in place
        (the frequency ablation), each (vocabulary, width) indexed by token."""
        raise GrokscopeError(f"frequency ablation needs token inputs; this run's model is a {self.describe(self.cfg)}")

    def at_output(self, value: torch.Tensor) -> torch.Tensor:
        """A hook's value in the plain forward → its value where the logits are read: (batch, ...)."""
        return value

    def all_logits(self, inputs: torch.Tensor, grad_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of every input (`inputs` from task_inputs): (n_inputs, n_classes). grad_rows: the rows the
        caller's loss reads (a fast form may differentiate only those)."""
        return self.output_logits(self(inputs))

    def rows_logits(self, inputs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Logits of the inputs `rows` only (len(rows), n_classes), with a graph: a step that reads the
        training inputs alone (train.eval_every)."""
        return self.output_logits(self(inputs[rows]))

    def extra_loss(self, rows: torch.Tensor) -> torch.Tensor | None:
        """The model's own training loss terms from its last forward, over the inputs `rows` the task loss
        reads (the MoE transformer: its routers' load-balancing and z-losses), or None."""
        return None

    def pathway_hooks(self) -> list[str]:
        """The hooks whose values are each input's weight on every unit a pathway passes through, one per
        layer, first to last: here each neuron layer's post-activations (grokscope's dense analogue of
        pathways); the MoE transformer's: its routers' expert weights."""
        return [layer.hook_post for layer in self.neuron_layers(self.cfg)]

    def units_values(self, inputs: torch.Tensor, reduce) -> list[torch.Tensor]:
        """The pathway hooks' values: [(n, n_units)] or [(n, pos, n_units)] per layer, as `reduce` maps a
        hook's value (batch, pos, units) or (batch, units) (the output position, the mean over positions, or
        every position)."""
        names = self.pathway_hooks()
        _, cache = self.run_with_cache(inputs, names_filter=lambda name: name in names)
        return [reduce(cache[name]) for name in names]

    def units_chosen(self, neurons: int) -> int:
        """How many units per layer a pathway holds: `neurons` (the k most active) for dense layers."""
        return neurons

    def unit_embeddings(self, embedding: str) -> torch.Tensor | None:
        """Each layer's experts as vectors of one space, for pathway consistency: (L, n_experts, d_model), or
        None for models without experts."""
        return None

    @staticmethod
    def neuron_layers(cfg: ModelConfig) -> list[NeuronLayer]:
        """The layers with neurons, first to last (from the config alone: batched analyses have no model).
        hook_pre: the pre-activation hooks, where local complexity counts sign changes."""
        raise NotImplementedError

    @staticmethod
    def describe(cfg: ModelConfig) -> str:
        """One line for run tables (from the config alone: tables need no model)."""
        raise NotImplementedError

    def neuron_logit_map(self) -> torch.Tensor:
        """The direct map from the first neuron layer's activations to the logits: (d_mlp, n_classes)."""
        raise NotImplementedError
