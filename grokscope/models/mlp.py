"""The MLP of the memorization papers: one-hot(a)‖one-hot(b) → d_mlp hidden → act → p.

Parameters: `embed.W_E` (p, d_embed) when d_embed > 0 (shared by a and b), `mlp.W_in` (d_in, d_mlp)
with d_in = 2p (rows 0..p-1 read a, rows p..2p-1 read b) or 2·d_embed, `mlp.W_out` (d_mlp, p), and
`mlp.b_in`, `mlp.b_out` when bias is on. Hooks: `hook_embed`, `mlp.hook_pre`, `mlp.hook_post`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens.hook_points import HookPoint

from grokscope.config import ModelConfig
from grokscope.models.base import Model, NeuronLayer
from grokscope.models.common import Readout, activation, normal_param, read_out, scaled
from grokscope.tasks import Dataset, ModularTask, one_hots


def weight(shape: tuple[int, ...], fan: int, std: float, g: torch.Generator) -> nn.Parameter:
    """N(0, std²) when std > 0, else N(0, 1/fan)."""
    return normal_param(shape, std, g) if std else scaled(shape, fan, g)


class Embed(nn.Module):
    def __init__(self, p: int, d_embed: int, std: float, g: torch.Generator):
        super().__init__()
        self.W_E = weight((p, d_embed), 1, std, g)


class Hidden(nn.Module):
    def __init__(self, d_in: int, d_mlp: int, p: int, bias: bool, std: float, g: torch.Generator):
        super().__init__()
        self.W_in = weight((d_in, d_mlp), d_in, std, g)
        self.W_out = weight((d_mlp, p), d_mlp, std, g)
        self.b_in = nn.Parameter(torch.zeros(d_mlp)) if bias else None
        self.b_out = nn.Parameter(torch.zeros(p)) if bias else None
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()


class MLP(Model):
    kind = "mlp"
    reads = "pairs"
    token_indexed = True

    def __init__(self, cfg: ModelConfig, task: ModularTask, generator: torch.Generator):
        super().__init__(cfg, task)
        p = self.p = task.p
        self.embed = Embed(p, cfg.d_embed, cfg.init_std, generator) if cfg.d_embed else None
        self.mlp = Hidden(2 * (cfg.d_embed or p), cfg.d_mlp, p, cfg.bias, cfg.init_std, generator)
        self.act = activation(cfg.act)
        self.hook_embed = HookPoint()
        self.setup()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: concatenated one-hots (batch, 2p) → logits (batch, p). Dropout (cfg.dropout) in training mode
        only; the grid forms are evaluation forms."""
        p, mlp = self.p, self.mlp
        if self.embed is not None:
            x = self.hook_embed(torch.cat([x[:, :p] @ self.embed.W_E, x[:, p:] @ self.embed.W_E], dim=1))
        pre = x @ mlp.W_in
        if mlp.b_in is not None:
            pre = pre + mlp.b_in
        post = mlp.hook_post(self.act(mlp.hook_pre(pre)))
        logits = F.dropout(post, self.cfg.dropout, self.training) @ mlp.W_out
        return logits if mlp.b_out is None else logits + mlp.b_out

    def task_inputs(self, task: ModularTask, dataset: Dataset) -> torch.Tensor:
        return self.grid_inputs(torch.arange(self.p**2))

    def grid_inputs(self, rows) -> torch.Tensor:
        """The plain forward's inputs for grid rows: one-hot(a)‖one-hot(b) (n, 2p)."""
        return one_hots(rows, self.p)

    def neuron_logit_map(self) -> torch.Tensor:
        return self.mlp.W_out

    def token_inputs(self) -> list[torch.Tensor]:
        """The shared W_E (p, d_embed), else W_in's rows reading a and its rows reading b, (p, d_mlp) each."""
        if self.embed is not None:
            return [self.embed.W_E.data]
        return [self.mlp.W_in.data[: self.p], self.mlp.W_in.data[self.p :]]

    @staticmethod
    def token_maps(params: dict[str, torch.Tensor], cfg: ModelConfig, group) -> dict[str, torch.Tensor]:
        """As Transformer.token_maps: embed (B, n, d) the learned W_E, or without one the input weights reading
        a; unembed (B, d_mlp, n) W_out; neuron_in (B, n, d_mlp) each neuron's input weight on each token a;
        neuron_out W_out."""
        t = torch.as_tensor(group.tokens)
        W_in, W_out = params["mlp.W_in"], params["mlp.W_out"][:, :, t]
        if cfg.d_embed:
            embed = params["embed.W_E"][:, t]
            neuron_in = embed @ W_in[:, : cfg.d_embed]
        else:
            embed = neuron_in = W_in[:, : group.p][:, t]
        return {"embed": embed, "unembed": W_out, "neuron_in": neuron_in, "neuron_out": W_out}

    @staticmethod
    def neuron_maps(params: dict[str, torch.Tensor], cfg: ModelConfig, group):
        """Per neuron, vectors over the group's coordinates (params with any leading axes): U, V its input
        weights for a and for b (through W_E when the model embeds), W its output weights; each (..., d_mlp, n)."""
        tokens_ = torch.as_tensor(group.tokens)
        W_in = params["mlp.W_in"]
        half = W_in.shape[-2] // 2
        W_a, W_b = W_in[..., :half, :], W_in[..., half:, :]
        if cfg.d_embed:
            W_a, W_b = params["embed.W_E"] @ W_a, params["embed.W_E"] @ W_b
        U = W_a[..., tokens_, :].transpose(-1, -2)
        V = W_b[..., tokens_, :].transpose(-1, -2)
        return U, V, params["mlp.W_out"][..., :, tokens_]

    @staticmethod
    def fourier_params(cfg: ModelConfig) -> list[str]:
        """The parameters token_maps, neuron_maps and the neuron weight magnitudes read."""
        return ["embed.W_E", "mlp.W_in", "mlp.W_out"] if cfg.d_embed else ["mlp.W_in", "mlp.W_out"]

    def all_logits(self, inputs: torch.Tensor, grad_rows: torch.Tensor | None = None) -> torch.Tensor:
        return self.grid_logits(grad_rows)

    def plain_logits(self, rows: torch.Tensor) -> torch.Tensor:
        return self(one_hots(rows, self.p).to(self.mlp.W_in))

    @staticmethod
    def neuron_layers(cfg: ModelConfig) -> list[NeuronLayer]:
        return [NeuronLayer("mlp.W_in", "mlp.W_out", "mlp.b_in" if cfg.bias else None, "mlp.hook_pre", "mlp.hook_post")]

    @staticmethod
    def describe(c: ModelConfig) -> str:
        embed = f", embedding {c.d_embed}" if c.d_embed else ""
        return f"one-hot MLP {c.d_mlp} {c.act}{embed}"

    def grid_logits(self, grad_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for every input, row a * p + b: (p², p), equal to the plain forward's to float32 precision
        (grad_rows: see read_out)."""
        mlp = self.mlp
        logits = read_out(self.grid_pre(), None, mlp.W_out, self.act, grad_rows=grad_rows)
        return logits if mlp.b_out is None else logits + mlp.b_out

    @torch.no_grad()
    def grid_activations(self, out: torch.Tensor | None = None) -> tuple[torch.Tensor, Readout]:
        """Hidden activations for every input (p², d_mlp), and the logits as a Readout (post @ W_out + b_out).
        out: a (p², d_mlp) buffer to write the activations into."""
        post = activation(self.cfg.act, inplace=True)(self.grid_pre(out))
        return post, Readout([(post, self.mlp.W_out)], self.mlp.b_out)

    def grid_pre(self, out: torch.Tensor | None = None) -> torch.Tensor:
        """Pre-activations for every input: (p², d_mlp), into `out` if given.
        pre(a, b) = A[a] + B[b] (+ b_in) as a broadcast sum over the p×p grid: no one-hot products."""
        p, (W_a, W_b) = self.p, self.token_tables()
        pre = torch.add(W_a[:, None], W_b[None, :], out=None if out is None else out.view(p, p, -1))
        return pre.reshape(p * p, -1)

    def token_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """What each value of a and of b adds to the pre-activations: (p, d_mlp) each, b_in in b's."""
        mlp = self.mlp
        W_a, W_b = mlp.W_in[: len(mlp.W_in) // 2], mlp.W_in[len(mlp.W_in) // 2 :]
        if self.embed is not None:
            W_a, W_b = self.embed.W_E @ W_a, self.embed.W_E @ W_b  # (p, d_mlp)
        return W_a, W_b if mlp.b_in is None else W_b + mlp.b_in

    def rows_logits(self, inputs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The fast form for those rows only (no dropout: these are measurements)."""
        W_a, W_b = self.token_tables()
        logits = self.act(W_a[rows // self.p] + W_b[rows % self.p]) @ self.mlp.W_out
        return logits if self.mlp.b_out is None else logits + self.mlp.b_out
