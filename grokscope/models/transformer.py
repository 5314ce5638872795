"""The canonical grokking transformer (Nanda et al. 2023): no LayerNorm, learned positional embedding,
untied embed/unembed, logits read at the last position. Names follow HookedTransformer:
`embed.W_E` (d_vocab, d_model), `pos_embed.W_pos` (n_ctx, d_model), `blocks.{l}.attn.W_Q/W_K/W_V`
(n_heads, d_model, d_head), `blocks.{l}.attn.W_O` (n_heads, d_head, d_model), `blocks.{l}.mlp.W_in`
(d_model, d_mlp), `blocks.{l}.mlp.W_out` (d_mlp, d_model), `unembed.W_U` (d_model, d_vocab_out).
With `model.bias` (the progress-measures paper's own model has them), HookedTransformer's biases, zero at
initialisation: `attn.b_Q/b_K/b_V` (n_heads, d_head), `attn.b_O` (d_model), `mlp.b_in` (d_mlp),
`mlp.b_out` (d_model), `unembed.b_U` (d_vocab_out).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from transformer_lens.hook_points import HookPoint

from grokscope.config import ModelConfig
from grokscope.models.base import Model, NeuronLayer
from grokscope.models.common import Readout, Workspace, activation, padded_width, read_out, scaled
from grokscope.tasks import Dataset, ModularTask, tokens

N_CTX = 3  # `a b =`
# values of a per block of grid_forward: a block's (a, b, d_mlp + p) intermediates (~4.6 MB at p = 113,
# d_mlp = 512) stay in a 2-core machine's cache (2-core AMD EPYC: 17-19 ms for the canonical forward in
# blocks of 16 to 24, 27 ms unblocked)
GRID_BLOCK = 16


class GridTerms(NamedTuple):
    """See Transformer.grid_terms."""

    weights_a: torch.Tensor
    ov_a: torch.Tensor
    fixed: torch.Tensor
    weights_b: torch.Tensor
    ov_b: torch.Tensor
    bias: torch.Tensor | None


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, g: torch.Generator):
        super().__init__()
        H, d, e = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q = scaled((H, d, e), d, g)
        self.W_K = scaled((H, d, e), d, g)
        self.W_V = scaled((H, d, e), d, g)
        self.W_O = scaled((H, e, d), d, g)
        self.b_Q, self.b_K, self.b_V = (bias((H, e), cfg.bias) for _ in range(3))
        self.b_O = bias((d,), cfg.bias)
        self.scale = 1 / math.sqrt(e)
        self.register_buffer("causal", torch.tril(torch.ones(N_CTX, N_CTX, dtype=torch.bool)), persistent=False)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        self.hook_attn_scores, self.hook_pattern, self.hook_z = HookPoint(), HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, pos, d_model) → (batch, pos, d_model)."""
        q = self.hook_q(plus(torch.einsum("bpd,hde->bphe", x, self.W_Q), self.b_Q))
        k = self.hook_k(plus(torch.einsum("bpd,hde->bphe", x, self.W_K), self.b_K))
        v = self.hook_v(plus(torch.einsum("bpd,hde->bphe", x, self.W_V), self.b_V))
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) * self.scale
        scores = self.hook_attn_scores(scores.masked_fill(~self.causal, float("-inf")))
        pattern = self.hook_pattern(scores.softmax(-1))
        z = self.hook_z(torch.einsum("bhqk,bkhe->bqhe", pattern, v))
        return plus(torch.einsum("bqhe,hed->bqd", z, self.W_O), self.b_O)


def bias(shape: tuple[int, ...], on: bool) -> nn.Parameter | None:
    """A bias, zero at initialisation as HookedTransformer's, or None (`model.bias` off)."""
    return nn.Parameter(torch.zeros(shape)) if on else None


def plus(x: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    return x if b is None else x + b


class MLPBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, g: torch.Generator):
        super().__init__()
        self.W_in = scaled((cfg.d_model, cfg.d_mlp), cfg.d_model, g)
        self.W_out = scaled((cfg.d_mlp, cfg.d_model), cfg.d_model, g)
        self.b_in, self.b_out = bias((cfg.d_mlp,), cfg.bias), bias((cfg.d_model,), cfg.bias)
        self.act = activation(cfg.act)
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        post = self.hook_post(self.act(self.hook_pre(plus(x @ self.W_in, self.b_in))))
        return plus(post @ self.W_out, self.b_out)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, g: torch.Generator, mlp: type[nn.Module]):
        super().__init__()
        self.attn = Attention(cfg, g)
        self.mlp = mlp(cfg, g)
        self.hook_resid_pre, self.hook_attn_out = HookPoint(), HookPoint()
        self.hook_resid_mid, self.hook_mlp_out, self.hook_resid_post = HookPoint(), HookPoint(), HookPoint()

    def forward(self, resid: torch.Tensor) -> torch.Tensor:
        resid = self.hook_resid_pre(resid)
        resid = self.hook_resid_mid(resid + self.hook_attn_out(self.attn(resid)))
        return self.hook_resid_post(resid + self.hook_mlp_out(self.mlp(resid)))


class Embed(nn.Module):
    def __init__(self, d_vocab: int, d_model: int, g: torch.Generator):
        super().__init__()
        self.W_E = scaled((d_vocab, d_model), d_model, g)


class PosEmbed(nn.Module):
    def __init__(self, d_model: int, g: torch.Generator):
        super().__init__()
        self.W_pos = scaled((N_CTX, d_model), d_model, g)


class Unembed(nn.Module):
    def __init__(self, d_model: int, d_vocab_out: int, g: torch.Generator, on: bool):
        super().__init__()
        self.W_U = scaled((d_model, d_vocab_out), d_vocab_out, g)
        self.b_U = bias((d_vocab_out,), on)


class Transformer(Model):
    """Inputs `a b =` as tokens (batch, 3) with `=` = p; d_vocab = p + 1, d_vocab_out = p."""

    kind = "transformer"
    reads = "tokens"
    has_attention = True
    token_indexed = True
    perturbed = "blocks.0.hook_resid_pre"
    mlp_block: type[nn.Module] = MLPBlock  # what each block's `mlp` is (the MoE transformer swaps it)

    def __init__(self, cfg: ModelConfig, task: ModularTask, generator: torch.Generator):
        super().__init__(cfg, task)
        p = self.p = task.p
        self.embed = Embed(p + 1, cfg.d_model, generator)
        self.pos_embed = PosEmbed(cfg.d_model, generator)
        self.blocks = nn.ModuleList(Block(cfg, generator, self.mlp_block) for _ in range(cfg.n_layers))
        self.unembed = Unembed(cfg.d_model, p, generator, cfg.bias)
        self.hook_embed, self.hook_pos_embed = HookPoint(), HookPoint()
        self.workspace = Workspace()  # the training step's whole-grid buffers (grid_forward)
        self.setup()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: int (batch, 3) → logits (batch, 3, p) at every position."""
        # the lookup as a one-hot product: the same values, and a gradient summed in a fixed order (the
        # backward of W_E[tokens] adds repeated rows in whatever order threads reach them, so runs that
        # train through this forward would not repeat bit for bit), and fast on GPUs (ARCHITECTURE §5)
        W_E = self.embed.W_E
        resid = self.hook_embed(torch.nn.functional.one_hot(tokens, W_E.shape[0]).to(W_E.dtype) @ W_E)
        resid = resid + self.hook_pos_embed(self.pos_embed.W_pos)
        for block in self.blocks:
            resid = block(resid)
        return plus(resid @ self.unembed.W_U, self.unembed.b_U)

    def task_inputs(self, task: ModularTask, dataset: Dataset) -> torch.Tensor:
        return self.grid_inputs(torch.arange(self.p**2))

    def grid_inputs(self, rows) -> torch.Tensor:
        """The plain forward's inputs for grid rows: tokens `a b =` (n, 3)."""
        return tokens(rows, self.p)

    def neuron_logit_map(self) -> torch.Tensor:
        return self.blocks[0].mlp.W_out @ self.unembed.W_U

    def token_inputs(self) -> list[torch.Tensor]:
        """W_E (d_vocab, d_model)."""
        return [self.embed.W_E.data]

    @staticmethod
    def token_maps(params: dict[str, torch.Tensor], cfg: ModelConfig, group) -> dict[str, torch.Tensor]:
        """The token-indexed maps the spectra read, rows/columns in the group's coordinate order, for params
        stacked over B checkpoints: embed (B, n, d) W_E without `=`; unembed (B, d, n) W_U; neuron_in
        (B, n, d_mlp) W_E·W_in (block 0); neuron_out (B, d_mlp, n) W_out·W_U."""
        t = torch.as_tensor(group.tokens)
        embed, unembed = params["embed.W_E"][:, t], params["unembed.W_U"][:, :, t]
        W_in, W_out = params["blocks.0.mlp.W_in"], params["blocks.0.mlp.W_out"]
        return {"embed": embed, "unembed": unembed, "neuron_in": embed @ W_in, "neuron_out": W_out @ unembed}

    @staticmethod
    def neuron_maps(params: dict[str, torch.Tensor], cfg: ModelConfig, group):
        """Per block-0 neuron, vectors over the group's coordinates (params with any leading axes): U = V its
        input direction read through W_E, W its output read through W_U; each (..., d_mlp, n)."""
        tokens_ = torch.as_tensor(group.tokens)
        W_a = params["embed.W_E"][..., : group.p, :] @ params["blocks.0.mlp.W_in"]
        W = params["blocks.0.mlp.W_out"] @ params["unembed.W_U"]
        U = W_a[..., tokens_, :].transpose(-1, -2)
        return U, U, W[..., :, tokens_]

    @staticmethod
    def fourier_params(cfg: ModelConfig) -> list[str]:
        """The parameters token_maps, neuron_maps and the neuron weight magnitudes read."""
        return ["embed.W_E", "blocks.0.mlp.W_in", "blocks.0.mlp.W_out", "unembed.W_U"]

    def output_logits(self, out: torch.Tensor) -> torch.Tensor:
        return out[:, -1]

    def at_output(self, value: torch.Tensor) -> torch.Tensor:
        return value[:, -1]

    def all_logits(self, inputs: torch.Tensor, grad_rows: torch.Tensor | None = None) -> torch.Tensor:
        return self.grid_logits(grad_rows)

    @staticmethod
    def neuron_layers(cfg: ModelConfig) -> list[NeuronLayer]:
        return [
            NeuronLayer(
                f"blocks.{i}.mlp.W_in",
                f"blocks.{i}.mlp.W_out",
                f"blocks.{i}.mlp.b_in" if cfg.bias else None,
                f"blocks.{i}.mlp.hook_pre",
                f"blocks.{i}.mlp.hook_post",
            )
            for i in range(cfg.n_layers)
        ]

    @staticmethod
    def describe(c: ModelConfig) -> str:
        return f"transformer {c.n_layers} layer{'s' if c.n_layers > 1 else ''}, d_model {c.d_model}, {c.n_heads} heads, d_mlp {c.d_mlp}"

    def plain_logits(self, rows: torch.Tensor) -> torch.Tensor:
        """The plain forward's logits at `=` for grid rows: (len(rows), p)."""
        return self(tokens(rows, self.p).to(self.embed.W_E.device))[:, -1]

    def grid_logits(self, grad_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Logits at `=` for every input, row a * p + b: (p², p). Equal to the plain forward's to float32
        precision; fires no hooks. For n_layers > 1 it is the plain forward. grad_rows: see read_out. Without
        a graph, or with grad_rows, the values come from grid_forward (so training and every later
        measurement of a checkpoint agree to the bit; a packed run's metrics came from rows_logits, equal to
        float32 rounding); with a graph over all rows, from read_out's products."""
        if len(self.blocks) != 1:
            return self.plain_logits(torch.arange(self.p**2, device=self.embed.W_E.device))
        mlp, W_U = self.blocks[0].mlp, self.unembed.W_U
        M = mlp.W_out @ W_U
        terms, computed = self.grid_terms(), None
        if grad_rows is not None or not torch.is_grad_enabled():
            detached = GridTerms(*(None if t is None else t.detach() for t in terms))
            computed = self.grid_forward(M.detach(), detached, "training" if torch.is_grad_enabled() else "measured")
        if torch.is_grad_enabled():
            x = self.grid_resid(terms)
            logits = read_out(
                x, mlp.W_in, M, mlp.act, W_skip=W_U, grad_rows=grad_rows, b_in=mlp.b_in, computed=computed
            )
        else:
            logits = computed[0]
        constant = self.logit_bias()
        return logits if constant is None else logits + constant

    def rows_logits(self, inputs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """1 layer: the fast form's products for those rows only (resid_mid from grid_resid)."""
        if len(self.blocks) != 1:
            return super().rows_logits(inputs, rows)
        mlp, W_U = self.blocks[0].mlp, self.unembed.W_U
        logits = read_out(self.grid_resid()[rows], mlp.W_in, mlp.W_out @ W_U, mlp.act, W_skip=W_U, b_in=mlp.b_in)
        constant = self.logit_bias()
        return logits if constant is None else logits + constant

    def logit_bias(self) -> torch.Tensor | None:
        """What the biases after the MLP add to every input's logits, 1-layer model: b_out @ W_U + b_U (p,),
        or None without biases."""
        mlp, unembed = self.blocks[0].mlp, self.unembed
        if mlp.b_out is None:
            return None
        return mlp.b_out @ unembed.W_U + unembed.b_U

    @torch.no_grad()
    def grid_activations(self, out: torch.Tensor | None = None) -> tuple[torch.Tensor, Readout]:
        """Block 0's MLP activations at `=` for every input (p², d_mlp), and the logits at `=` as a Readout
        (post @ W_out·W_U + resid_mid @ W_U, unformed); the fast form for 1 layer, hooks on the plain
        forward otherwise. out: a (p², d_mlp) buffer to write the activations into (a pass over many
        checkpoints reuses one instead of paging in a fresh one each time)."""
        if len(self.blocks) != 1:
            logits, cache = self.run_with_cache(
                tokens(torch.arange(self.p**2), self.p).to(self.embed.W_E.device),
                names_filter="blocks.0.mlp.hook_post",
            )
            return cache["blocks.0.mlp.hook_post"][:, -1], Readout([(logits[:, -1], None)])
        mlp, W_U = self.blocks[0].mlp, self.unembed.W_U
        resid = self.grid_resid()
        pre = torch.mm(resid, mlp.W_in, out=out)
        if mlp.b_in is not None:
            pre += mlp.b_in
        post = activation(self.cfg.act, inplace=True)(pre)
        return post, Readout([(post, mlp.W_out @ W_U), (resid, W_U)], self.logit_bias())

    def position_inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token + position embeddings at the three positions: a (p, d), b (p, d), `=` (d,)."""
        p, W_E, W_pos = self.p, self.embed.W_E, self.pos_embed.W_pos
        return W_E[:p] + W_pos[0], W_E[:p] + W_pos[1], W_E[p] + W_pos[2]

    def grid_pattern(self) -> torch.Tensor:
        """Block 0's attention pattern at `=` for every input, 1-layer model: (3, a, b, H), the attention to
        a, b and `=` itself, from per-token scores (the query at `=` is the same for every input)."""
        p, attn = self.p, self.blocks[0].attn
        x_a, x_b, x_eq = self.position_inputs()
        q = plus(torch.einsum("d,hde->he", x_eq, attn.W_Q), attn.b_Q)
        keys = [plus(torch.einsum("td,hde->the", x, attn.W_K), attn.b_K) for x in (x_a, x_b, x_eq[None])]
        scores = [torch.einsum("the,he->th", k, q) * attn.scale for k in keys]  # (p, H), (p, H), (1, H)
        H = q.shape[0]
        return torch.stack(
            [
                scores[0][:, None].expand(p, p, H),
                scores[1][None, :].expand(p, p, H),
                scores[2][None].expand(p, p, H),
            ]
        ).softmax(0)

    def values(self, x: torch.Tensor) -> torch.Tensor:
        """Block 0's values of token vectors x (t, d) through W_O, per head: (t, H, d)."""
        attn = self.blocks[0].attn
        if attn.b_V is None:
            return torch.einsum("td,hde,hef->thf", x, attn.W_V, attn.W_O)
        return torch.einsum("the,hef->thf", torch.einsum("td,hde->the", x, attn.W_V) + attn.b_V, attn.W_O)

    def grid_resid(self, terms: GridTerms | None = None) -> torch.Tensor:
        """The residual stream at `=` after attention (resid_mid) for every input, 1-layer model: (p², d_model),
        from grid_terms (computed here unless given): products over the p² inputs with an inner dimension
        of 2H + 1 and H in place of d_model."""
        weights_a, ov_a, fixed, weights_b, ov_b, bias = self.grid_terms() if terms is None else terms
        out = torch.bmm(weights_a, torch.cat([ov_a, fixed.expand(self.p, -1, -1)], dim=1))  # (a, b, d)
        # the b-side term batched over b, (b, a, d), added in (a, b) order in place
        out = out.add_(torch.bmm(weights_b, ov_b).transpose(0, 1))
        return plus(out.view(self.p**2, -1), bias)

    def grid_terms(self) -> GridTerms:
        """resid_mid per input from per-token vectors.

        Only the `=` position feeds the logits, its query is the same for every input, and attention's
        keys and values depend on one token each. So per token (not per input) compute the attention
        scores and the values mapped through W_O; per input only the 3-way softmax per head and a
        head-weighted sum of those vectors remain. resid_mid at input (a, b) is
        weights_a[a, b] @ [ov_a[a]; fixed] + weights_b[b, a] @ ov_b[b] + bias, with weights_a (a, b, 2H + 1)
        the attention to a and to `=` per head and 1 (for x_eq), ov_a (a, H, d) a's values through W_O,
        fixed (H + 1, d) `=`'s and x_eq, weights_b (b, a, H) the attention to b, ov_b (b, H, d), bias b_O or
        None. Any linear map of resid_mid (W_in, W_U) can be taken of these vectors first: p·(2H + 1) + H + 1
        rows of products instead of p²."""
        p, attn = self.p, self.blocks[0].attn
        x_a, x_b, x_eq = self.position_inputs()
        pattern = self.grid_pattern()
        ov_a, ov_b, ov_eq = [self.values(x) for x in (x_a, x_b, x_eq[None])]
        weights_a = torch.cat([pattern[0], pattern[2], pattern.new_ones(p, p, 1)], dim=-1)
        fixed = torch.cat([ov_eq[0], x_eq[None]])
        return GridTerms(weights_a, ov_a, fixed, pattern[1].transpose(0, 1).contiguous(), ov_b, attn.b_O)

    @torch.no_grad()
    def grid_forward(self, M: torch.Tensor, terms: GridTerms, buffer: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The training step's forward over every input without a graph, 1-layer model (see read_out's
        `computed`): the logits at `=` less logit_bias (p², p), and block 0's MLP activations (ReLU: its
        output, else its pre-activations) (p², d_mlp), in the model's workspace. resid_mid @ [W_in | W_U] from
        grid_terms' vectors, then the activation and the read-out through M (d_mlp, p) = W_out @ W_U, a
        block of values of a at a time: each block's intermediates stay in cache, and the (p², d_mlp)
        activations are written once. W_U and M are padded with zero columns to padded_width. buffer: the
        workspace buffer the activations go to (a measurement's is not the one a pending backward reads)."""
        p, mlp, W_U = self.p, self.blocks[0].mlp, self.unembed.W_U
        d_mlp, width = mlp.W_in.shape[1], padded_width(p)
        W = torch.cat([mlp.W_in, W_U, W_U.new_zeros(W_U.shape[0], width - p)], dim=1)
        weights_a, ov_a, fixed, weights_b, ov_b, bias = terms
        # as (rows, d) @ W products (a 3-D @ 2-D matmul of the einsum outputs would run batched)
        ov_a, ov_b = [(ov.reshape(-1, ov.shape[-1]) @ W).view(p, -1, W.shape[1]) for ov in (ov_a, ov_b)]
        V_a = torch.cat([ov_a, (fixed @ W).expand(p, -1, -1)], dim=1)
        bias = None if bias is None else bias @ W
        if mlp.b_in is not None:  # b_in joins the bias of the W_in columns
            bias = torch.cat([mlp.b_in, W_U.new_zeros(width)]) + (0 if bias is None else bias)
        M = torch.nn.functional.pad(M, (0, width - p))
        n, block = d_mlp + width, GRID_BLOCK
        mapped = self.workspace.get(buffer, (p, p, n), W)  # (a, b, n): the activations, then the skip path
        logits = W.new_empty(p, p, width)  # the caller's to keep: never a workspace buffer
        b_side = self.workspace.get("b_side", (p * block * n,), W)
        for i in range(0, p, block):
            j = min(i + block, p)
            rows = torch.bmm(weights_a[i:j], V_a[i:j], out=mapped[i:j])  # (a-block, b, n)
            rows.add_(
                torch.bmm(weights_b[:, i:j], ov_b, out=b_side[: p * (j - i) * n].view(p, j - i, n)).transpose(0, 1)
            )
            rows = rows.view(-1, n)
            if bias is not None:
                rows += bias
            pre = rows[:, :d_mlp]
            post = pre.relu_() if mlp.act is torch.nn.functional.relu else mlp.act(pre)
            out = torch.mm(post, M, out=logits[i:j].view(-1, width))
            out += rows[:, d_mlp:]
        return logits.view(p * p, width)[:, :p], mapped.view(p * p, n)[:, :d_mlp]
