"""The one-checkpoint form of the per-checkpoint measures, from a model through its plain hooked forward.

Independent of the batched pass's fast whole-grid form, so the two check each other (tests/test_analysis).
"""

from __future__ import annotations

import numpy as np
import torch

from grokscope.analysis.fourier import group_of
from grokscope.analysis.neurons import cluster, frequency_fractions, plain_neurons
from grokscope.analysis.progress import loss_probe
from grokscope.analysis.spec import fourier_reason
from grokscope.analysis.weights import spectra, weight_norms
from grokscope.config import RunConfig
from grokscope.errors import GrokscopeError
from grokscope.tasks import Dataset


@torch.no_grad()
def measure_model(
    model: torch.nn.Module, config: RunConfig, dataset: Dataset, keys: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Spectra, weight norms, neuron clustering (frequency, fraction per neuron) and, given key
    frequencies, restricted/excluded loss, for one model: name → array (no checkpoint axis)."""
    reason = fourier_reason(config)
    if reason is not None:
        raise GrokscopeError(f"the per-checkpoint Fourier measures do not apply to this run: each {reason}")
    group = group_of(config.task)
    params = {n: p.detach()[None] for n, p in model.named_parameters()}
    out = {**spectra(params, config, group), **weight_norms(params)}
    out = {k: v[0] for k, v in out.items()}
    acts, readout = plain_neurons(model, group)
    c = cluster(frequency_fractions(acts))
    out["frequency"], out["fraction"] = c["frequency"], c["fraction"]
    if keys is not None:
        out.update(loss_probe(dataset, group, keys)(readout))
    return {k: v.numpy() for k, v in out.items()}
