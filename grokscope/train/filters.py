"""Grokfast gradient filters (Lee et al. 2024): between backward and the optimizer step, add to each gradient
λ times its slow (low-frequency) part. The filter state is saved beside the optimizer's (`grokfast.*` tensors
in the run's state file), so a resumed run continues the filter exactly."""

from __future__ import annotations

import torch

from grokscope.config import GrokfastConfig


class GradientFilter:
    """A filter's state: named buffers ("<param>.<what>") and the count of gradients seen."""

    def __init__(self, buffers: dict[str, torch.Tensor], lamb: float):
        self.buffers, self.lamb = buffers, lamb
        self.n_seen = 0

    def state(self) -> dict[str, torch.Tensor]:
        """{"grokfast.n_seen": (), "grokfast.<buffer>": tensor} on the CPU; on a CPU run the tensors are the live
        buffers (no copy of w gradients per commit): write them before the next step."""
        flat = {f"grokfast.{key}": b.detach().cpu().contiguous() for key, b in self.buffers.items()}
        return {"grokfast.n_seen": torch.tensor(self.n_seen), **flat}

    def load_state(self, flat: dict[str, torch.Tensor]) -> None:
        """Inverse of state(); ValueError if a tensor is missing or misshapen."""
        wanted = {"grokfast.n_seen", *(f"grokfast.{key}" for key in self.buffers)}
        if set(flat) != wanted:
            raise ValueError(f"holds {len(flat)} Grokfast tensors, expected {len(wanted)}")
        for key, buffer in self.buffers.items():
            value = flat[f"grokfast.{key}"]
            if value.shape != buffer.shape or value.dtype != buffer.dtype:
                raise ValueError(
                    f"Grokfast {key} is {value.dtype} {tuple(value.shape)}, expected {buffer.dtype} {tuple(buffer.shape)}"
                )
            buffer.copy_(value)
        self.n_seen = int(flat["grokfast.n_seen"])


class GrokfastEMA(GradientFilter):
    """μ ← αμ + (1−α)g per parameter (μ starts at the first g), then g ← g + λμ."""

    def __init__(self, params: dict[str, torch.Tensor], alpha: float, lamb: float):
        super().__init__({f"{name}.ema": torch.zeros_like(p) for name, p in params.items()}, lamb)
        self.alpha = alpha

    def apply_(self, grads: dict[str, torch.Tensor]) -> None:
        """Filter the gradients (parameter name → its .grad) in place."""
        for name, g in grads.items():
            mu = self.buffers[f"{name}.ema"]
            if self.n_seen:
                mu.mul_(self.alpha).add_(g, alpha=1 - self.alpha)
            else:
                mu.copy_(g)
            g.add_(mu, alpha=self.lamb)
        self.n_seen += 1


class GrokfastMA(GradientFilter):
    """Once the last w gradients are held (the current one included), g ← g + λ·mean(them); before that, g
    is left as it is. Per parameter the window is a ring buffer (w, *shape), slot n_seen mod w the newest,
    and its sum is kept in float64 (add the newest, subtract the one it replaces): one pass over the
    parameters per step instead of w, with a rounding error far below float32 precision however long the run."""

    def __init__(self, params: dict[str, torch.Tensor], window: int, lamb: float):
        buffers = {}
        for name, p in params.items():
            buffers[f"{name}.window"] = p.new_zeros((window, *p.shape))
            buffers[f"{name}.sum"] = p.new_zeros(p.shape, dtype=torch.float64)
        super().__init__(buffers, lamb)
        self.window = window

    def apply_(self, grads: dict[str, torch.Tensor]) -> None:
        """Filter the gradients (parameter name → its .grad) in place."""
        slot = self.n_seen % self.window
        self.n_seen += 1
        for name, g in grads.items():
            held, total = self.buffers[f"{name}.window"], self.buffers[f"{name}.sum"]
            total.add_(g).sub_(held[slot])  # held[slot]: the gradient w steps back (zero while filling)
            held[slot] = g
            if self.n_seen >= self.window:
                g.add_((total / self.window).to(g.dtype), alpha=self.lamb)


def make_filter(params: dict[str, torch.Tensor], cfg: GrokfastConfig) -> GradientFilter | None:
    """The run's Grokfast filter, or None when grokfast.kind is off."""
    if cfg.kind == "ema":
        return GrokfastEMA(params, cfg.ema_alpha, cfg.ema_lamb)
    if cfg.kind == "ma":
        return GrokfastMA(params, cfg.ma_window, cfg.ma_lamb)
    return None
