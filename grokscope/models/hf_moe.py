"""A series of Hugging Face MoE causal LMs (OLMoE, Mixtral) behind the Model interface, for the analyses that
read routing (pathways): the weights stay in the checkpoint directories the run's meta.json names
(`grokscope import-hf` writes it) and are read with `transformers`, one checkpoint at a time.

Routing is recomputed from the router logits that `transformers` returns (`output_router_logits`), as its
routers compute it: softmax over the experts in float32, the top `num_experts_per_tok`, renormalised where
the architecture does (Mixtral always; OLMoE where `norm_topk_prob`, which the published OLMoE leaves off).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from grokscope.config import ModelConfig
from grokscope.errors import GrokscopeError
from grokscope.models.base import Model, NeuronLayer

if TYPE_CHECKING:
    from grokscope.store import Run
    from grokscope.tasks import Dataset, Task

ARCHITECTURES = ("olmoe", "mixtral")  # transformers' model_type of the MoE causal LMs read
DTYPES = ("float32", "bfloat16")  # what the weights are read as (bfloat16 halves the memory of a large model)
TOKENS = 16_384  # tokens per forward: bounds the logits, router logits and activations held at once


def load_checkpoint(directory: str | Path, dtype: str = "float32"):
    """The causal LM saved in `directory` (`save_pretrained`), its weights as `dtype`, in eval mode;
    GrokscopeError where it cannot be read or is not an architecture grokscope reads."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    if dtype not in DTYPES:
        raise GrokscopeError(f"the weights are read as {' or '.join(DTYPES)}; got {dtype!r}")
    logging.disable_progress_bar()  # one bar per checkpoint read would bury grokscope's own
    directory = Path(directory)
    if not directory.is_dir():
        raise GrokscopeError(f"{directory}: no such checkpoint directory (moved or deleted?)")
    read_architecture(directory)
    try:
        model = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True, dtype=getattr(torch, dtype))
    except (OSError, ValueError) as e:
        raise GrokscopeError(f"{directory}: its weights cannot be read ({str(e).splitlines()[0]})") from None
    return model.eval()


class HFMoE(Model):
    """One checkpoint of the series (`hf`, a transformers causal LM), loaded by `load_row`. Inputs: int64
    token ids (n, seq_len); `forward` gives the logits (n, seq_len, vocab)."""

    kind = "hf"
    reads = "token_ids"
    imported = True
    pathway_units = "the experts each router chose (a Hugging Face checkpoint)"

    def __init__(self, cfg: ModelConfig, task: Task, checkpoints: list[str], dtype: str = "float32"):
        super().__init__(cfg, task)
        self.checkpoints, self.dtype = checkpoints, dtype
        self.hf, self.row = load_checkpoint(checkpoints[0], dtype), 0
        self.on_load: Callable[[int], None] | None = None  # called with each row read after the first
        self.setup()

    @classmethod
    def of_run(cls, run: Run) -> HFMoE:
        """The run's series (its checkpoint_dirs, one per saved step, read as meta.json's "hf" "dtype"), at
        its first checkpoint or the last one read: one per Run (its memo), so that a checkpoint is read once
        however many readers take turns with it."""
        if "hf model" not in run.memo:
            checkpoints = run.checkpoint_dirs
            if not isinstance(checkpoints, list) or len(checkpoints) != len(run._scheduled):
                raise GrokscopeError(f"{run.path}: meta.json does not name one checkpoint directory per saved step")
            dtype = run.meta.get("hf", {}).get("dtype", "float32")
            run.memo["hf model"] = cls(run.config.model, run.task, checkpoints, dtype)
        return run.memo["hf model"]

    def load_row(self, row: int) -> None:
        """Read checkpoint row `row`'s weights (a new transformers model: shapes and layouts are its own)."""
        if row != self.row:
            self.hf, self.row = load_checkpoint(self.checkpoints[row], self.dtype), row
            if self.on_load is not None:
                self.on_load(row)

    def task_inputs(self, task: Task, dataset: Dataset) -> torch.Tensor:
        return torch.from_numpy(np.asarray(dataset.inputs))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=inputs).logits

    def at_output(self, value: torch.Tensor) -> torch.Tensor:
        return value[:, -1]  # the last token's position

    def pathway_hooks(self) -> list[str]:
        """Named as the TransformerLens 4 bridge names them (the values come from transformers' router logits)."""
        return [f"blocks.{i}.mlp.hook_expert_weights" for i in range(self.hf.config.num_hidden_layers)]

    @torch.no_grad()
    def units_values(self, inputs: torch.Tensor, reduce) -> list[torch.Tensor]:
        """Per layer, each token's routing weight on every expert, zero outside its top-k: reduce of (n, seq_len,
        n_experts)."""
        config = self.hf.config
        k, normalise = config.num_experts_per_tok, getattr(config, "norm_topk_prob", True)
        layers: list[list[torch.Tensor]] = [[] for _ in range(config.num_hidden_layers)]
        for batch in inputs.split(max(1, TOKENS // inputs.shape[1])):
            logits = self.hf(input_ids=batch, output_router_logits=True).router_logits
            for l, lg in enumerate(logits):
                probs = lg.float().softmax(-1)
                top, ids = probs.topk(k, -1)
                if normalise:
                    top = top / top.sum(-1, keepdim=True)
                weights = torch.zeros_like(probs).scatter_(-1, ids, top)
                layers[l].append(reduce(weights.view(*batch.shape, -1)))
        return [torch.cat(values) for values in layers]

    def units_chosen(self, neurons: int) -> int:
        return self.hf.config.num_experts_per_tok

    def unit_embeddings(self, embedding: str) -> torch.Tensor:
        """router: each expert's router weight vector; output: the mean of its output map (down_proj) over its
        neurons. Both in the residual stream: (L, n_experts, hidden)."""
        mlps = [layer.mlp for layer in self.hf.model.layers]
        if embedding == "router":
            return torch.stack([mlp.gate.weight.detach() for mlp in mlps])
        return torch.stack([mlp.experts.down_proj.detach().mean(-1) for mlp in mlps])

    @torch.no_grad()
    def language_metrics(self, inputs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Each sample's causal LM loss (mean cross-entropy of every next token) and top-1 accuracy over the
        same positions: float64 (n,), (n,)."""
        losses, hits = [], []
        for batch in inputs.split(max(1, TOKENS // inputs.shape[1])):
            logits = self.hf(input_ids=batch).logits[:, :-1].double()
            target = batch[:, 1:]
            losses.append(torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none").mean(1))
            hits.append((logits.argmax(-1) == target).double().mean(1))
        return torch.cat(losses).numpy(), torch.cat(hits).numpy()

    @staticmethod
    def neuron_layers(cfg: ModelConfig) -> list[NeuronLayer]:
        return []  # each expert sees only the tokens routed to it

    @staticmethod
    def describe(c: ModelConfig) -> str:
        return (
            f"Hugging Face MoE {c.n_layers} layer{'s' if c.n_layers > 1 else ''}, d_model {c.d_model}, "
            f"{c.n_experts} experts × d_mlp {c.d_mlp}, top-{c.top_k}"
        )


def architecture(config) -> dict[str, int | str]:
    """What a series' checkpoints must share (from a transformers config), as the ModelConfig keys that
    describe it and the model type."""
    heads = config.num_attention_heads
    return {
        "model_type": config.model_type,
        "n_layers": config.num_hidden_layers,
        "d_model": config.hidden_size,
        "n_heads": heads,
        "d_head": getattr(config, "head_dim", None) or config.hidden_size // heads,
        "d_mlp": config.intermediate_size,
        "n_experts": config.num_experts,
        "top_k": config.num_experts_per_tok,
        "vocab": config.vocab_size,
    }


def read_architecture(directory: Path) -> dict[str, int | str]:
    """A checkpoint directory's architecture (its config.json only: no weights read)."""
    from transformers import AutoConfig

    if not (directory / "config.json").is_file():
        raise GrokscopeError(f"{directory}: not a Hugging Face checkpoint (no config.json)")
    try:
        config = AutoConfig.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError) as e:
        raise GrokscopeError(f"{directory}: not a Hugging Face checkpoint ({str(e).splitlines()[0]})") from None
    if config.model_type not in ARCHITECTURES:
        raise GrokscopeError(
            f"{directory}: model_type '{config.model_type}' is not an MoE architecture grokscope reads "
            f"({', '.join(ARCHITECTURES)})"
        )
    return architecture(config)
