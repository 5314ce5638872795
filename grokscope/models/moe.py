"""The mixture-of-experts transformer: the canonical transformer (transformer.py) whose every MLP is a mixture
of experts, as in OLMoE and Mixtral. A linear router with a softmax over `n_experts`; each token goes to its
`top_k` most probable experts, with those probabilities renormalised to sum to 1 as weights; each expert is
an MLP d_model → d_mlp → act → d_model.

Names follow HookedTransformer's MoE: `blocks.{l}.mlp.W_gate` (d_model, n_experts) the router,
`blocks.{l}.mlp.experts.{e}.W_in` (d_model, d_mlp) and `.W_out` (d_mlp, d_model). Hooks, per block:
`mlp.hook_router_logits` (batch, pos, n_experts); `mlp.hook_expert_indices` (batch, pos, top_k) the chosen
experts, highest weight first; `mlp.hook_expert_weights` (batch, pos, n_experts) their weights, zero for
experts not chosen (the layout of TransformerLens 4's MoE bridge); each expert's `hook_pre` / `hook_post`
(n_routed, d_mlp) over the tokens routed to it. Editing the indices re-routes a token; editing the weights
re-weights it (an expert at weight 0 is skipped).

Training adds the router's own losses (`extra_loss`) over every position of the rows the loss reads, the
tokens of all MoE layers pooled: load balancing as transformers computes it for OLMoE
(`load_balancing_loss_func`), n_experts · Σ_e f_e · P_e with f_e the number of top-k choices of expert e
per token and P_e the mean router probability for e (uniform routing gives top_k), × `router_aux_coef`;
and the z-loss mean(logsumexp(router logits)²) × `router_z_coef`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens.hook_points import HookPoint

from grokscope.config import ModelConfig
from grokscope.models.base import NeuronLayer
from grokscope.models.common import scaled
from grokscope.models.transformer import MLPBlock, Transformer


class MoEBlock(nn.Module):
    """A block's `mlp`: router and experts. `routing` keeps the last forward's (router logits, indices)
    for the training losses."""

    def __init__(self, cfg: ModelConfig, g: torch.Generator):
        super().__init__()
        self.top_k = cfg.top_k
        self.W_gate = scaled((cfg.d_model, cfg.n_experts), cfg.d_model, g)
        self.experts = nn.ModuleList(MLPBlock(cfg, g) for _ in range(cfg.n_experts))
        self.hook_router_logits, self.hook_expert_indices, self.hook_expert_weights = (
            HookPoint(),
            HookPoint(),
            HookPoint(),
        )
        self.routing: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, pos, d_model) → (batch, pos, d_model)."""
        logits = self.hook_router_logits(x @ self.W_gate)
        probs = logits.softmax(-1)
        indices = self.hook_expert_indices(probs.topk(self.top_k, dim=-1).indices)
        chosen = probs.gather(-1, indices)
        weights = self.hook_expert_weights(
            torch.zeros_like(probs).scatter(-1, indices, chosen / chosen.sum(-1, keepdim=True))
        )
        self.routing = (logits, indices)
        flat, flat_weights = x.reshape(-1, x.shape[-1]), weights.reshape(-1, weights.shape[-1])
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            rows = flat_weights[:, e].nonzero().squeeze(-1)
            if len(rows):
                out = out.index_add(0, rows, expert(flat[rows]) * flat_weights[rows, e, None])
        return out.view_as(x)


class MoETransformer(Transformer):
    """Inputs and outputs as the transformer's. It has no single MLP read through the embeddings, so the
    Fourier analyses (token-indexed maps) and neuron-based ones do not apply; attention's do."""

    kind = "moe"
    token_indexed = False
    mlp_block = MoEBlock
    pathway_units = "the experts each router chose"
    packs = False  # extra_loss reads the routing its last forward kept on the module

    def grid_logits(self, grad_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Logits at `=` for every input: the plain forward (the transformer's fast form reads one MLP)."""
        return self.plain_logits(torch.arange(self.p**2, device=self.embed.W_E.device))

    def extra_loss(self, rows: torch.Tensor) -> torch.Tensor | None:
        cfg, total = self.cfg, None
        routing = [block.mlp.routing for block in self.blocks]
        logits = torch.cat([lg[rows].flatten(0, -2) for lg, _ in routing]).double()  # (layers · tokens, E)
        indices = torch.cat([i[rows].flatten(0, -2) for _, i in routing])  # (layers · tokens, k)
        if cfg.router_aux_coef:
            share = F.one_hot(indices, cfg.n_experts).sum(-2).double().mean(0)  # f_e
            probability = logits.softmax(-1).mean(0)  # P_e
            total = cfg.router_aux_coef * cfg.n_experts * (share * probability).sum()
        if cfg.router_z_coef:
            z = cfg.router_z_coef * logits.logsumexp(-1).square().mean()
            total = z if total is None else total + z
        return total

    def pathway_hooks(self) -> list[str]:
        return [f"blocks.{i}.mlp.hook_expert_weights" for i in range(self.cfg.n_layers)]

    def units_chosen(self, neurons: int) -> int:
        return self.cfg.top_k  # the experts each router chose

    def unit_embeddings(self, embedding: str) -> torch.Tensor:
        """router: the router's weight vector for each expert (a column of W_gate); output: the mean of the
        expert's output map over its neurons (the mean row of W_out). Both in the residual stream."""
        if embedding == "router":
            return torch.stack([block.mlp.W_gate.T for block in self.blocks])
        return torch.stack([torch.stack([e.W_out.mean(0) for e in block.mlp.experts]) for block in self.blocks])

    @staticmethod
    def neuron_layers(cfg: ModelConfig) -> list[NeuronLayer]:
        return []  # each expert sees only the tokens routed to it: no layer of neurons sees every input

    @staticmethod
    def describe(c: ModelConfig) -> str:
        return (
            f"MoE transformer {c.n_layers} layer{'s' if c.n_layers > 1 else ''}, d_model {c.d_model}, "
            f"{c.n_experts} experts × d_mlp {c.d_mlp}, top-{c.top_k}"
        )
