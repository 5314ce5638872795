"""Run configuration: typed dataclasses validated on construction, dotted `--set` overrides, a JSON round-trip.

The JSON form (`config.json` in every run) uses exactly the dotted keys that `--set` accepts, e.g. `task.p`,
`optim.lr`, `checkpoints.n_uniform`, plus `schema_version`. The vocabularies (task kinds, operations, model
kinds, activations, optimizers, losses, ...) are the `Literal` types below and nowhere else: the registries
of tasks, models and losses are checked against them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Literal

from grokscope.errors import GrokscopeError

SCHEMA_VERSION = 2  # 1: runs written before task.kind existed (every key a later v1 release added is defaulted)
TaskKind = Literal["modular", "digits", "text"]
Op = Literal["add", "sub", "mul", "div", "poly"]  # (a+b), (a−b), (a·b), (a/b, b ≠ 0), (a² + ab + b²) mod p
Pixels = Literal["standard", "unit"]  # digits: per-pixel z-scores, or pixel / 16 in [0, 1] (MNIST's ToTensor)
ModelKind = Literal["transformer", "mlp", "deep_mlp", "moe", "hf"]
Activation = Literal["relu", "gelu", "square"]
OptimizerName = Literal["adamw", "sgd"]
LossName = Literal["ce", "ce32", "mse", "stablemax"]
TicketKind = Literal["", "ticket", "memorization", "random"]
GrokfastKind = Literal["", "ema", "ma"]

PRIME_OPS = {"mul", "div"}  # need a field: every nonzero b must have an inverse


def choices(literal) -> tuple[str, ...]:
    """The values of a Literal vocabulary, in order."""
    return typing.get_args(literal)


MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a 64-bit integer
MAX_P = 1024  # every step evaluates all p² inputs, p logits each: p³ numbers (8.6 GB in float64 at 1,024)
MAX_STEPS = 10_000_000  # the trainer keeps 11 float64 metrics per step (880 MB at 10 million)
MAX_LR = 1e6  # far past divergence for every optimizer here (runs that diverge on purpose included), inside float32


def check_seed(key: str, seed: int) -> None:
    check(0 <= seed <= MAX_SEED, f"{key} must be in [0, 2**63 - 1]; got {seed}")


def check(ok: bool, message: str) -> None:
    if not ok:
        raise GrokscopeError(message)


def check_choice(key: str, value: str, literal) -> None:
    options = choices(literal)
    check(value in options, f"{key} must be one of {', '.join(map(repr, options))}; got {value!r}")


@dataclass
class TaskConfig:
    """kind `modular`: the binary operation `op` mod p on the tokens `a b =`. kind `digits`: the 8 × 8
        handwritten digits scikit-learn ships (1,797 images, 10 classes), pixels standardised with the training
        split's mean and standard deviation (`pixels` standard) or scaled to [0, 1] (`pixels` unit, as MNIST's
    usual loading gives). Both: `train_frac` of the inputs for training (or exactly `n_train`
        when it is set), a share `corrupt_frac` of the training labels replaced by random ones, all drawn from
        `seed`. `op` and `p` apply to modular tasks only, `pixels` to digits only. kind `text`: token sequences
    read from files by `grokscope import-hf` (the run stores them): `n_train` training and `n_test` held-out
    samples of `seq_len` tokens each over a vocabulary of `vocab` tokens; these three keys apply to it only."""

    kind: TaskKind = "modular"
    op: Op = "add"
    p: int = 113
    train_frac: float = 0.3
    n_train: int = 0  # > 0: exactly this many training inputs (train_frac is then not used)
    corrupt_frac: float = 0.0  # ξ: share of training labels replaced by uniformly random labels
    pixels: Pixels = "standard"
    seq_len: int = 0  # text only: tokens per sample
    n_test: int = 0  # text only: held-out samples
    vocab: int = 0  # text only: the tokenizer's vocabulary size
    seed: int = 598

    def __post_init__(self):
        check_choice("task.kind", self.kind, TaskKind)
        check_choice("task.op", self.op, Op)
        check_choice("task.pixels", self.pixels, Pixels)
        check(3 <= self.p <= MAX_P, f"task.p must be in [3, {MAX_P}]; got {self.p}")
        check(
            self.op not in PRIME_OPS or is_prime(self.p),
            f"task.op '{self.op}' needs a prime task.p; {self.p} is not prime",
        )
        check(0 < self.train_frac < 1, f"task.train_frac must be in (0, 1); got {self.train_frac}")
        check(self.n_train >= 0, f"task.n_train must be >= 0 (0: use task.train_frac); got {self.n_train}")
        check(0 <= self.corrupt_frac <= 1, f"task.corrupt_frac must be in [0, 1]; got {self.corrupt_frac}")
        check_seed("task.seed", self.seed)
        if self.kind != "modular":
            default = TaskConfig()
            check(
                (self.op, self.p) == (default.op, default.p),
                f"task.op and task.p apply to task.kind 'modular' only, not '{self.kind}': leave them at "
                f"{default.op} and {default.p} (--set task.op={default.op} --set task.p={default.p}), or start "
                f"from --preset {self.kind}",
            )
        check(
            self.kind == "digits" or self.pixels == "standard",
            f"task.pixels applies to task.kind 'digits' only, not '{self.kind}'",
        )
        text = (self.seq_len, self.n_test, self.vocab)
        if self.kind == "text":
            check(
                self.n_train >= 2 and self.seq_len >= 2 and self.n_test >= 0 and self.vocab >= 1,
                "task.kind 'text' needs n_train ≥ 2, seq_len ≥ 2, n_test ≥ 0 and vocab ≥ 1",
            )
        else:
            check(
                text == (0, 0, 0), f"task.seq_len, n_test and vocab apply to task.kind 'text' only, not '{self.kind}'"
            )


@dataclass
class ModelConfig:
    """`transformer`: the canonical grokking transformer (d_model, n_heads, d_head, d_mlp, n_layers).
    `mlp`: one-hot(a)‖one-hot(b) → d_mlp hidden → act → p (d_embed, dropout, init_std apply to it only).
    `deep_mlp`: a vector input → n_layers hidden layers of width d_mlp with act → the classes.
    `moe`: the transformer with each MLP a mixture of n_experts experts of width d_mlp, top_k per token.
    `hf`: a series of Hugging Face MoE checkpoints (`grokscope import-hf`): the weights stay in the checkpoint
    directories the run's meta.json names; n_layers, d_model, n_heads, d_head, d_mlp (an expert's width),
    n_experts and top_k are theirs (from their config.json), the other keys do not apply.
    bias: biases on every layer (transformer: HookedTransformer's b_Q, b_K, b_V, b_O, b_in, b_out, b_U; mlp, deep_mlp).
    init_scale: every initial parameter (weights and biases) multiplied by it (Omnigrok's α: large values make MNIST-like tasks grok)."""

    kind: ModelKind = "transformer"
    n_layers: int = 1
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512
    act: Activation = "relu"
    bias: bool = False
    d_embed: int = 0  # mlp only: width of a learned token embedding; 0 feeds the one-hots directly
    dropout: float = 0.0  # mlp only: dropout on the hidden activations while training
    init_std: float = 0.0  # mlp only: N(0, init_std²) for every weight; 0: N(0, 1/fan_in)
    init_scale: float = 1.0
    n_experts: int = 8  # moe only: experts per layer, each an MLP of width d_mlp
    top_k: int = 2  # moe only: experts chosen per token
    router_aux_coef: float = 0.01  # moe only: weight of the load-balancing loss (OLMoE's 0.01)
    router_z_coef: float = 0.0  # moe only: weight of the router z-loss (OLMoE's 0.001; off by default)
    seed: int = 999

    def __post_init__(self):
        check_choice("model.kind", self.kind, ModelKind)
        check_choice("model.act", self.act, Activation)
        for name in ("n_layers", "d_model", "n_heads", "d_head", "d_mlp"):
            check(getattr(self, name) >= 1, f"model.{name} must be at least 1; got {getattr(self, name)}")
        check(self.d_embed >= 0, f"model.d_embed must be >= 0; got {self.d_embed}")
        check(
            self.kind == "mlp" or (self.d_embed == 0 and self.dropout == 0 and self.init_std == 0),
            "model.d_embed, model.dropout and model.init_std apply to model.kind 'mlp' only",
        )
        check(
            self.kind not in ("moe", "hf") or not self.bias,
            "model.bias applies to model.kind 'transformer', 'mlp' and 'deep_mlp' only",
        )
        moe = {k: getattr(self, k) for k in ("n_experts", "top_k", "router_aux_coef", "router_z_coef")}
        check(
            self.kind in ("moe", "hf") or moe == {k: getattr(ModelConfig, k) for k in moe},
            "model.n_experts, model.top_k, model.router_aux_coef and model.router_z_coef apply to model.kind 'moe' only",
        )
        check(
            1 <= self.top_k <= self.n_experts,
            f"model.top_k must be in [1, model.n_experts = {self.n_experts}]; got {self.top_k}",
        )
        for name in ("router_aux_coef", "router_z_coef"):
            value = getattr(self, name)
            check(math.isfinite(value) and value >= 0, f"model.{name} must be a finite number >= 0; got {value}")
        check(self.init_std >= 0, f"model.init_std must be >= 0; got {self.init_std}")
        check(self.init_scale > 0, f"model.init_scale must be positive; got {self.init_scale}")
        check_seed("model.seed", self.seed)
        check(0 <= self.dropout < 1, f"model.dropout must be in [0, 1); got {self.dropout}")


@dataclass
class OptimConfig:
    name: OptimizerName = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    momentum: float = 0.0  # sgd only
    warmup_steps: int = 10  # linear warm-up: lr · min(1, (t + 1) / warmup_steps)
    orthograd: bool = False  # ⊥Grad (Prieto et al. 2025): each gradient made orthogonal to its weights first

    def __post_init__(self):
        check_choice("optim.name", self.name, OptimizerName)
        check(0 < self.lr <= MAX_LR, f"optim.lr must be in (0, {MAX_LR:,.0f}]; got {self.lr}")
        check(self.weight_decay >= 0, f"optim.weight_decay must be >= 0; got {self.weight_decay}")
        check(all(0 <= b < 1 for b in self.betas), f"optim.betas must be in [0, 1); got {list(self.betas)}")
        check(self.eps > 0, f"optim.eps must be positive; got {self.eps}")
        check(0 <= self.momentum < 1, f"optim.momentum must be in [0, 1); got {self.momentum}")
        check(self.warmup_steps >= 0, f"optim.warmup_steps must be >= 0; got {self.warmup_steps}")


@dataclass
class GrokfastConfig:
    """Grokfast (Lee et al. 2024): a filter amplifying the slow part of the gradients, between backward and the
    optimizer step. kind "" (off), "ema": μ ← αμ + (1−α)g, g ← g + λμ; "ma": once the last w gradients are
    held, g ← g + λ·mean(them)."""

    kind: GrokfastKind = ""
    ema_alpha: float = 0.98
    ema_lamb: float = 2.0
    ma_window: int = 100
    ma_lamb: float = 5.0

    def __post_init__(self):
        check_choice("grokfast.kind", self.kind, GrokfastKind)
        check(0 <= self.ema_alpha < 1, f"grokfast.ema_alpha must be in [0, 1); got {self.ema_alpha}")
        check(self.ma_window >= 1, f"grokfast.ma_window must be at least 1; got {self.ma_window}")
        check(self.ema_lamb >= 0 and self.ma_lamb >= 0, "grokfast.ema_lamb and grokfast.ma_lamb must be >= 0")


@dataclass
class TrainConfig:
    steps: int = 25_000
    batch_size: int = 0  # 0: full batch
    # ce: cross-entropy in float64; ce32: the same in float32 (where Softmax Collapse stops learning); mse: mean
    # squared error to one-hot targets; stablemax: cross-entropy through StableMax instead of softmax, in float64
    loss: LossName = "ce"
    seed: int = 0  # minibatch order
    # the test metrics (and everything else read from all inputs' logits) every this many steps, at every
    # saved step and at the last; between them the step reads the training inputs only (test columns NaN)
    eval_every: int = 1

    def __post_init__(self):
        check(1 <= self.steps <= MAX_STEPS, f"train.steps must be in [1, {MAX_STEPS:,}]; got {self.steps}")
        check(self.eval_every >= 1, f"train.eval_every must be >= 1 (1: every step); got {self.eval_every}")
        check(
            self.eval_every == 1 or self.batch_size == 0,
            "train.eval_every > 1 needs full batches (train.batch_size 0): the training metrics are then the "
            "step's own",
        )
        check(self.batch_size >= 0, f"train.batch_size must be >= 0 (0 = full batch); got {self.batch_size}")
        check_seed("train.seed", self.seed)
        check_choice("train.loss", self.loss, LossName)

    def evaluates(self, step: int, saved: set[int]) -> bool:
        """Whether a step reads every input (the test metrics): every eval_every steps and at each saved step
        (the last step is always saved)."""
        return step % self.eval_every == 0 or step in saved


@dataclass
class CheckpointConfig:
    """Saved steps: every step up to `dense_until`, `n_log` log-spaced, `n_uniform` evenly spaced (union)."""

    dense_until: int = 100
    n_log: int = 300
    n_uniform: int = 800

    def __post_init__(self):
        check(self.dense_until >= 0, f"checkpoints.dense_until must be >= 0; got {self.dense_until}")
        check(self.n_log >= 0 and self.n_uniform >= 0, "checkpoints.n_log and checkpoints.n_uniform must be >= 0")


@dataclass
class TicketConfig:
    """A grokking ticket (Minegishi et al.): the run starts from its config's initial weights times the mask
    in the run's mask.safetensors, and masked weights are held at zero. `kind` "" means a dense run.
    kind: ticket (magnitude mask at `step` of `source`), memorization (the same at a memorization-phase step),
    random (random mask with the ticket's sparsity per parameter); keep: the fraction of weights kept."""

    kind: TicketKind = ""
    source: str = ""
    step: int = -1
    keep: float = 1.0

    def __post_init__(self):
        check_choice("ticket.kind", self.kind, TicketKind)
        check(0 < self.keep <= 1, f"ticket.keep (the fraction of weights kept) must be in (0, 1]; got {self.keep}")


@dataclass
class RunConfig:
    name: str = "run"
    preset: str = ""
    schema_version: int = SCHEMA_VERSION
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoints: CheckpointConfig = field(default_factory=CheckpointConfig)
    grokfast: GrokfastConfig = field(default_factory=GrokfastConfig)
    ticket: TicketConfig = field(default_factory=TicketConfig)

    def __post_init__(self):
        plain = bool(self.name) and "/" not in self.name and self.name not in (".", "..")
        check(plain, f"name must be a plain file name; got '{self.name}'")
        check(
            self.schema_version == SCHEMA_VERSION,
            f"schema_version {self.schema_version} is not this release's ({SCHEMA_VERSION})",
        )
        check(
            (self.task.kind == "text") == (self.model.kind == "hf"),
            "task.kind 'text' and model.kind 'hf' go together: they describe a Hugging Face series that "
            "`grokscope import-hf` reads (grokscope does not train them)",
        )
        g = self.grokfast
        check(
            g.kind != "ma" or g.ma_window <= self.train.steps,
            f"grokfast.ma_window ({g.ma_window}) is longer than train.steps ({self.train.steps}): the filter would "
            "never act",
        )
        check(
            self.train.eval_every == 1 or self.model.kind != "moe",
            "train.eval_every > 1 does not apply to model.kind 'moe': its routers' losses read every input's forward",
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict, complete: bool = False) -> RunConfig:
        """Build and validate a config from (nested or dotted) keys; every key must be known and every value of
        the right type, missing ones take their default. complete: every key must be present (a run's own
        config.json, after `upgrade`)."""
        flat = {key: coerce(key, value) for key, value in flatten(data).items()}
        if complete:
            missing = set(known_keys()) - set(flat)
            check(not missing, f"missing keys {', '.join(sorted(missing))}")
        return build(cls, flat, "")

    def with_overrides(self, overrides: dict[str, object]) -> RunConfig:
        """A validated copy with dotted keys replaced, e.g. {"task.p": 59}."""
        return RunConfig.from_dict({**flatten(self.to_dict()), **overrides})


V2_LATER = {
    "task.pixels": "standard",
    "task.seq_len": 0,
    "task.n_test": 0,
    "task.vocab": 0,
    "model.n_experts": 8,
    "model.top_k": 2,
    "model.router_aux_coef": 0.01,
    "model.router_z_coef": 0.0,
    "train.eval_every": 1,
}  # keys added within schema 2, at what runs written before them did


def upgrade(data: dict) -> dict:
    """A run's config.json as this release writes it: a schema-1 file (no schema_version) gets the keys added
    since, at the defaults that describe what those runs did (task.kind modular; the v1 releases' later keys:
    model.dropout, model.init_std, optim.orthograd, ticket.*, grokfast.*); a schema-2 file written before a
    later key existed gets it at the default that describes it (task.pixels standard)."""
    flat = flatten(data)
    version = flat.pop("schema_version", 1)
    check(
        not isinstance(version, bool) and version in (1, SCHEMA_VERSION),
        f"schema_version {version!r} is not one this release reads (1, 2)",
    )
    if version == 1:
        v1_later = {"model.dropout", "model.init_std", "optim.orthograd"}
        v1_later |= {k for k in known_keys() if k.startswith(("ticket.", "grokfast."))}
        added = {"task.kind", "task.n_train", "model.init_scale", *v1_later}
        defaults = flatten(RunConfig().to_dict())
        flat = {**{k: defaults[k] for k in added}, **flat}
    flat = {**V2_LATER, **flat}
    return {**flat, "schema_version": SCHEMA_VERSION}


def flatten(data: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def build(cls, flat: dict[str, object], prefix: str):
    """The dataclass `cls` from the dotted keys under `prefix`; nested dataclasses built first."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            kwargs[f.name] = build(hint, flat, f"{prefix}{f.name}.")
        elif f"{prefix}{f.name}" in flat:
            kwargs[f.name] = flat[f"{prefix}{f.name}"]
    return cls(**kwargs)


@functools.cache
def field_hints() -> dict[str, object]:
    """Every dotted key → its type hint."""

    def walk(cls, prefix: str) -> dict[str, object]:
        out = {}
        for name, hint in typing.get_type_hints(cls).items():
            out.update(walk(hint, f"{prefix}{name}.") if dataclasses.is_dataclass(hint) else {f"{prefix}{name}": hint})
        return out

    return walk(RunConfig, "")


def known_keys() -> list[str]:
    return list(field_hints())


def coerce(key: str, value: object) -> object:
    """A value for a dotted key, checked against the key's type (Literal choices included)."""
    hint = field_hints().get(key)
    if hint is None:
        raise GrokscopeError(f"unknown config key '{key}' (see `grokscope presets` for the keys)")

    def bad(kind: str) -> GrokscopeError:
        return GrokscopeError(f"config key '{key}' expects {kind}, got {value!r}")

    if typing.get_origin(hint) is Literal:
        if isinstance(value, str):
            return value  # its choices are checked on construction, with the other rules of its section
        raise bad("a string")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise bad("true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad("an integer")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise bad("a finite number")
    if hint is str:
        if isinstance(value, str):
            return value
        raise bad("a string")
    if typing.get_origin(hint) is tuple:
        n = len(typing.get_args(hint))
        numbers = isinstance(value, (list, tuple)) and len(value) == n
        if numbers and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
            return tuple(float(v) for v in value)
        raise bad(f"a list of {n} numbers")
    raise TypeError(f"unsupported config type {hint}")


def parse_override(text: str) -> tuple[str, object]:
    """`key=value` → (key, value); the value is read as JSON when it parses, else as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise GrokscopeError(f"--set expects key=value, got '{text}'")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))
