"""Run configuration: nested dataclasses, validation, dotted `--set` overrides and a JSON round-trip.

The JSON form (`config.json` in every run) uses exactly the dotted keys that `--set` accepts,
e.g. `task.p`, `optim.lr`, `checkpoints.n_uniform`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field

from grokscope.errors import GrokscopeError

OPS = {
    "add": "(a + b) mod p",
    "sub": "(a - b) mod p",
    "mul": "(a * b) mod p",
    "div": "(a / b) mod p, b != 0",
    "poly": "(a^2 + a*b + b^2) mod p",
}
PRIME_OPS = {"mul", "div"}  # need a field: every nonzero b must have an inverse
MODEL_KINDS = ("transformer", "mlp")
ACTIVATIONS = ("relu", "gelu", "square")
OPTIMIZERS = ("adamw", "sgd")
LOSSES = ("ce", "ce32", "mse", "stablemax")
TICKET_KINDS = ("", "ticket", "memorization", "random")
GROKFAST_KINDS = ("", "ema", "ma")
# keys added after runs were first saved: a config.json without them means their default, which is what
# those runs did
LATER_KEYS = frozenset(
    {"model.dropout", "model.init_std", "optim.orthograd"}
    | {f"ticket.{k}" for k in ("kind", "source", "step", "keep")}
    | {f"grokfast.{k}" for k in ("kind", "ema_alpha", "ema_lamb", "ma_window", "ma_lamb")}
)


@dataclass
class TaskConfig:
    """Binary operation mod p on the tokens `a b =`; the split and corruption are drawn from `seed`."""

    op: str = "add"
    p: int = 113
    train_frac: float = 0.3
    corrupt_frac: float = 0.0  # ξ: share of training labels replaced by uniformly random labels
    seed: int = 598


@dataclass
class ModelConfig:
    """`transformer`: the canonical grokking transformer (d_model, n_heads, d_head, d_mlp, n_layers).
    `mlp`: one-hot(a)‖one-hot(b) → d_mlp hidden → act → p (bias, d_embed, dropout, init_std apply to it only)."""

    kind: str = "transformer"
    n_layers: int = 1
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512
    act: str = "relu"
    bias: bool = False
    d_embed: int = 0  # mlp only: width of a learned token embedding; 0 feeds the one-hots directly
    dropout: float = 0.0  # mlp only: dropout on the hidden activations while training
    init_std: float = 0.0  # mlp only: N(0, init_std²) for every weight; 0: N(0, 1/fan_in)
    seed: int = 999


@dataclass
class OptimConfig:
    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    momentum: float = 0.0  # sgd only
    warmup_steps: int = 10  # linear warm-up: lr · min(1, (t + 1) / warmup_steps)
    orthograd: bool = False  # ⊥Grad (Prieto et al. 2025): each gradient made orthogonal to its weights first


@dataclass
class GrokfastConfig:
    """Grokfast (Lee et al. 2024): a filter amplifying the slow part of the gradients, between backward and the
    optimizer step. kind "" (off), "ema": μ ← αμ + (1−α)g, g ← g + λμ; "ma": once the last w gradients are
    held, g ← g + λ·mean(them)."""

    kind: str = ""
    ema_alpha: float = 0.98
    ema_lamb: float = 2.0
    ma_window: int = 100
    ma_lamb: float = 5.0


@dataclass
class TrainConfig:
    steps: int = 25_000
    batch_size: int = 0  # 0: full batch
    # ce: cross-entropy in float64; ce32: the same in float32 (where Softmax Collapse stops learning); mse: mean
    # squared error to one-hot targets; stablemax: cross-entropy through StableMax instead of softmax, in float64
    loss: str = "ce"
    seed: int = 0  # minibatch order


@dataclass
class CheckpointConfig:
    """Saved steps: every step up to `dense_until`, `n_log` log-spaced, `n_uniform` evenly spaced (union)."""

    dense_until: int = 100
    n_log: int = 300
    n_uniform: int = 800


@dataclass
class TicketConfig:
    """A grokking ticket (Minegishi et al.): the run starts from its config's initial weights times the mask
    in the run's mask.safetensors, and masked weights are held at zero. `kind` "" means a dense run.
    kind: ticket (magnitude mask at `step` of `source`), memorization (the same at a memorization-phase step),
    random (random mask with the ticket's sparsity per parameter); keep: the fraction of weights kept."""

    kind: str = ""
    source: str = ""
    step: int = -1
    keep: float = 1.0


@dataclass
class RunConfig:
    name: str = "run"
    preset: str = ""
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoints: CheckpointConfig = field(default_factory=CheckpointConfig)
    grokfast: GrokfastConfig = field(default_factory=GrokfastConfig)
    ticket: TicketConfig = field(default_factory=TicketConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        """Build and validate a config; every key must be known and every value of the right type."""
        config = cls()
        for key, value in flatten(data).items():
            set_value(config, key, value)
        validate(config)
        return config

    def with_overrides(self, overrides: dict[str, object]) -> RunConfig:
        """A validated copy with dotted keys replaced, e.g. {"task.p": 59}."""
        config = RunConfig.from_dict(self.to_dict())
        for key, value in overrides.items():
            set_value(config, key, value)
        validate(config)
        return config


def flatten(data: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def known_keys() -> list[str]:
    return list(flatten(RunConfig().to_dict()))


def set_value(config: RunConfig, key: str, value: object) -> None:
    """Set a dotted key, checking it exists and coercing the value to the field's type."""
    *path, leaf = key.split(".")
    target = config
    for part in path:
        if not dataclasses.is_dataclass(target) or not hasattr(target, part):
            raise GrokscopeError(f"unknown config key '{key}' (see `grokscope presets` for the keys)")
        target = getattr(target, part)
    fields = {f.name: f for f in dataclasses.fields(target)} if dataclasses.is_dataclass(target) else {}
    if leaf not in fields or dataclasses.is_dataclass(getattr(target, leaf)):
        raise GrokscopeError(f"unknown config key '{key}' (see `grokscope presets` for the keys)")
    hint = typing.get_type_hints(type(target))[leaf]
    setattr(target, leaf, _coerce(key, value, hint))


def _coerce(key: str, value: object, hint) -> object:
    def bad(kind: str) -> GrokscopeError:
        return GrokscopeError(f"config key '{key}' expects {kind}, got {value!r}")

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


def validate(config: RunConfig) -> None:
    """Raise GrokscopeError naming the first invalid setting."""
    t, m, o, tr, c = config.task, config.model, config.optim, config.train, config.checkpoints

    def check(ok: bool, message: str) -> None:
        if not ok:
            raise GrokscopeError(message)

    check(t.op in OPS, f"task.op must be one of {', '.join(OPS)}; got '{t.op}'")
    check(t.p >= 3, f"task.p must be at least 3; got {t.p}")
    check(t.op not in PRIME_OPS or is_prime(t.p), f"task.op '{t.op}' needs a prime task.p; {t.p} is not prime")
    check(0 < t.train_frac < 1, f"task.train_frac must be in (0, 1); got {t.train_frac}")
    check(0 <= t.corrupt_frac <= 1, f"task.corrupt_frac must be in [0, 1]; got {t.corrupt_frac}")
    check(m.kind in MODEL_KINDS, f"model.kind must be one of {', '.join(MODEL_KINDS)}; got '{m.kind}'")
    check(m.act in ACTIVATIONS, f"model.act must be one of {', '.join(ACTIVATIONS)}; got '{m.act}'")
    for name in ("n_layers", "d_model", "n_heads", "d_head", "d_mlp"):
        check(getattr(m, name) >= 1, f"model.{name} must be at least 1; got {getattr(m, name)}")
    check(m.d_embed >= 0, f"model.d_embed must be >= 0; got {m.d_embed}")
    check(
        m.kind == "mlp" or (not m.bias and m.d_embed == 0 and m.dropout == 0 and m.init_std == 0),
        "model.bias, model.d_embed, model.dropout and model.init_std apply to model.kind 'mlp' only",
    )
    check(m.init_std >= 0, f"model.init_std must be >= 0; got {m.init_std}")
    check(0 <= m.dropout < 1, f"model.dropout must be in [0, 1); got {m.dropout}")
    check(o.name in OPTIMIZERS, f"optim.name must be one of {', '.join(OPTIMIZERS)}; got '{o.name}'")
    check(o.lr > 0, f"optim.lr must be positive; got {o.lr}")
    check(o.weight_decay >= 0, f"optim.weight_decay must be >= 0; got {o.weight_decay}")
    check(all(0 <= b < 1 for b in o.betas), f"optim.betas must be in [0, 1); got {list(o.betas)}")
    check(o.eps > 0, f"optim.eps must be positive; got {o.eps}")
    check(0 <= o.momentum < 1, f"optim.momentum must be in [0, 1); got {o.momentum}")
    check(o.warmup_steps >= 0, f"optim.warmup_steps must be >= 0; got {o.warmup_steps}")
    check(tr.steps >= 1, f"train.steps must be at least 1; got {tr.steps}")
    check(tr.batch_size >= 0, f"train.batch_size must be >= 0 (0 = full batch); got {tr.batch_size}")
    check(tr.loss in LOSSES, f"train.loss must be one of {', '.join(LOSSES)}; got '{tr.loss}'")
    check(c.dense_until >= 0, f"checkpoints.dense_until must be >= 0; got {c.dense_until}")
    check(c.n_log >= 0 and c.n_uniform >= 0, "checkpoints.n_log and checkpoints.n_uniform must be >= 0")
    g = config.grokfast
    check(
        g.kind in GROKFAST_KINDS, f"grokfast.kind must be one of {', '.join(map(repr, GROKFAST_KINDS))}; got '{g.kind}'"
    )
    check(0 <= g.ema_alpha < 1, f"grokfast.ema_alpha must be in [0, 1); got {g.ema_alpha}")
    check(g.ma_window >= 1, f"grokfast.ma_window must be at least 1; got {g.ma_window}")
    check(g.ema_lamb >= 0 and g.ma_lamb >= 0, "grokfast.ema_lamb and grokfast.ma_lamb must be >= 0")
    check(
        g.kind != "ma" or g.ma_window <= tr.steps,
        f"grokfast.ma_window ({g.ma_window}) is longer than train.steps ({tr.steps}): the filter would never act",
    )
    k = config.ticket
    check(k.kind in TICKET_KINDS, f"ticket.kind must be one of {', '.join(map(repr, TICKET_KINDS))}; got '{k.kind}'")
    check(0 < k.keep <= 1, f"ticket.keep (the fraction of weights kept) must be in (0, 1]; got {k.keep}")
    plain = bool(config.name) and "/" not in config.name and config.name not in (".", "..")
    check(plain, f"name must be a plain file name; got '{config.name}'")
