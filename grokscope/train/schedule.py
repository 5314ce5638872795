"""Which steps get a checkpoint: dense early (where most changes happen), log-spaced, then uniform."""

from __future__ import annotations

import numpy as np

from grokscope.config import CheckpointConfig


def checkpoint_steps(steps: int, cfg: CheckpointConfig) -> np.ndarray:
    """Sorted unique int64 steps in [0, steps]: every step up to `dense_until`, `n_log` log-spaced from
    there to the end, `n_uniform` evenly spaced over the run; always 0 and the last step."""
    parts = [np.arange(min(cfg.dense_until, steps) + 1), [0, steps]]
    if cfg.n_log:
        parts.append(np.geomspace(max(cfg.dense_until, 1), steps, cfg.n_log))
    if cfg.n_uniform:
        parts.append(np.linspace(0, steps, cfg.n_uniform))
    return np.unique(np.round(np.concatenate(parts)).astype(np.int64))
