"""Headline results read from the cached analyses: phase boundaries, key frequencies at any step, the summary."""

from __future__ import annotations

import numpy as np

from grokscope.analysis.neurons import CLUSTER_THRESHOLD
from grokscope.analysis.progress import KEY_RULES, key_frequencies
from grokscope.analysis.registry import not_applicable
from grokscope.analysis.scheduler import analyze, cached_result, load
from grokscope.errors import GrokscopeError
from grokscope.store import Run, as_run
from grokscope.store.layout import EVALUATED


def phase_steps(run: Run) -> dict[str, int | None]:
    """Phase boundaries: name → step (None where not reached)."""
    return boundaries(load(run, "phases"))


def boundaries(phases_result: dict[str, np.ndarray]) -> dict[str, int | None]:
    names, steps = phases_result["names"], phases_result["boundary_steps"]
    return {str(n): (None if s < 0 else int(s)) for n, s in zip(names, steps)}


def fourier_group(run: Run):
    """The run's Group; GrokscopeError saying why the Fourier analyses do not apply where they do not."""
    reason = not_applicable(run).get("spectra")
    if reason is not None:
        raise GrokscopeError(f"the Fourier analyses do not apply to {run.name}: each {reason}")
    return run.task.group()


def key_frequencies_at(run: Run, step: int | None = None, rule: str | None = None) -> dict[str, np.ndarray]:
    """Key frequencies at any saved step (default: the last) by a chosen rule (ablation, neurons, embed,
    logit_map; default as in the cached `key_frequencies`), with every rule's answer alongside."""
    run.refresh()
    row = run.n_checkpoints - 1 if step is None else run.row(step)
    group = fourier_group(run)
    return key_frequencies(run, group, load(run, "spectra"), cached_result(run, "neurons"), row, rule)


def summary(run: Run) -> dict:
    """The headline of `grokscope analyze --summary`, at the last saved step: the phases (None where they do
    not apply: an imported series) and the step; where the Fourier analyses apply (None elsewhere), the key
    frequencies and their rule, every rule's set with its restricted loss beside the test cross-entropy,
    the test loss and accuracy with each key frequency removed (ablation_inputs: on "test", or on "all
    inputs" where the run has no split; the keys keep the test_ names), and shares."""
    run = as_run(run)
    analyze(run, progress=False)
    phases = cached_result(run, "phases")
    out = {
        "phases": None if phases is None else boundaries(phases),
        "phase_rule": None if phases is None else str(phases["rule"]),
        "phases_not_applicable": not_applicable(run).get("phases"),
        "step": int(run.steps[-1]),
    }
    try:
        group = fourier_group(run)
    except GrokscopeError as e:
        return {
            **out,
            "key_frequencies": None,
            "key_frequency_rule": None,
            "key_frequency_rules": None,
            "ablation_inputs": None,
            "test_loss": None,
            "removing_each": None,
            "key_power_share": None,
            "clustered_neuron_share": None,
            "coordinates": None,
            "not_applicable": str(e),
        }
    kf, spec, neurons = (cached_result(run, n) for n in ("key_frequencies", "spectra", "neurons"))
    keys = kf["frequencies"]
    power = spec["embed_freq_power"][-1]
    return {
        **out,
        "key_frequencies": keys.tolist(),
        "key_frequency_rule": str(kf["rule"]),
        "key_frequency_rules": {
            rule: {"frequencies": kf[f"by_{rule}"].tolist(), "restricted_loss": float(kf[f"restricted_loss_by_{rule}"])}
            for rule in KEY_RULES
        },
        "ablation_inputs": EVALUATED["test" if run.has_split else "all"],
        "test_loss": float(kf["test_loss"]),
        "removing_each": {
            int(k): {
                "test_loss": float(kf["ablated_test_loss"][k - 1]),
                "test_acc": float(kf["ablated_test_acc"][k - 1]),
            }
            for k in keys
        },
        "key_power_share": float(power[keys].sum() / power[1:].sum()) if power[1:].sum() > 0 else None,
        "clustered_neuron_share": float((neurons["fraction"][-1] >= CLUSTER_THRESHOLD).mean()),
        "coordinates": group.note,
        "not_applicable": None,
    }
