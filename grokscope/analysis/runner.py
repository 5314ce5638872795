"""Computing the analyses of a run over its checkpoints, caching them in the run, reading them back.

Results live in <run>/analysis/<name>@v<version>.npz (numpy arrays, no pickle) with the saved steps
they cover. Per-checkpoint analyses are topped up: only checkpoints saved since are computed. A file
whose version, steps or inputs (key frequencies) no longer match, or that does not load, is recomputed.

Batched forms: the weight analyses read parameter trajectories in blocks of checkpoints and work on
them as stacked tensors; the activation analyses run one fast whole-grid forward per checkpoint
(neuron clustering and restricted/excluded loss share it).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from grokscope.analysis.fourier import Group, group_of, group_or_none
from grokscope.analysis.memorization import activation_scores, memorization_rows, needed_params
from grokscope.analysis.neurons import CLUSTER_THRESHOLD, cluster, frequency_fractions, grid_neurons
from grokscope.analysis.progress import (
    KEY_POWER_FRACTION,
    KEY_RULES,
    key_frequencies_by_neurons,
    key_frequencies_by_power,
    loss_probe,
    phases,
)
from grokscope.analysis.weights import SPECTRA_ARRAYS, spectra, weight_norms
from grokscope.errors import GrokscopeError
from grokscope.models import build_model
from grokscope.store import Run, layout

ANALYSIS_DIR = "analysis"
MEMORIZATION_ARRAYS = ("ipr_a", "ipr_b", "ipr_out", "ipr", "magnitude", "activation")
BLOCK = 128  # checkpoints per block read from the trajectories


@dataclass(frozen=True)
class Spec:
    version: int
    description: str
    needs_group: bool  # Fourier-based: needs a group operation (not poly)
    rows: tuple[str, ...] = ()  # arrays with one row per saved step (besides "steps"); none: not per checkpoint
    meta: dict[str, int] = field(default_factory=dict)  # other arrays → their number of dimensions


ANALYSES: dict[str, Spec] = {
    "spectra": Spec(
        1,
        "Fourier power per component and per frequency of the embedding, unembedding and the neurons' input "
        "and output maps; Gini of the embedding's and the neuron→logit map's per-frequency norms",
        True,
        SPECTRA_ARRAYS,
    ),
    "weight_norms": Spec(1, "sum of squared weights, total and per parameter", False, ("sq_norm",)),
    "neurons": Spec(
        1,
        "each MLP neuron's largest share of activation variance in one frequency and that frequency "
        f"(clustered: share ≥ {CLUSTER_THRESHOLD})",
        True,
        ("frequency", "fraction"),
    ),
    "key_frequencies": Spec(
        2,
        "the key frequencies at the last saved step by three rules, with the rule used and its threshold",
        True,
        meta={
            "step": 0,
            "frequencies": 1,
            "rule": 0,
            "threshold": 0,
            "by_neurons": 1,
            "by_embed": 1,
            "by_logit_map": 1,
            "coordinates": 0,
            "inputs": 0,
        },
    ),
    "progress": Spec(
        1,
        "restricted loss, excluded loss, and excluded loss per key frequency",
        True,
        ("restricted_loss", "excluded_loss", "excluded_loss_per_freq"),
        {"key_frequencies": 1},
    ),
    "memorization": Spec(
        2,
        "per MLP neuron: IPR of the Fourier spectra of its input weights for a, for b, its output weights, "
        "and their mean (low: memorizing); weight magnitude; activation score (clean minus corrupted "
        "contribution to the trained label's logit; NaN without corrupted labels)",
        True,
        MEMORIZATION_ARRAYS,
    ),
    "phases": Spec(
        1,
        "memorization / circuit-formation / clean-up / stable boundaries, as steps",
        False,
        meta={"n_metric_steps": 0, "names": 1, "boundary_steps": 1},
    ),
}
REQUIRES = {"key_frequencies": ("spectra",), "progress": ("key_frequencies",)}


def path_of(run: Run, name: str) -> Path:
    return run.path / ANALYSIS_DIR / f"{name}@v{ANALYSES[name].version}.npz"


def check_names(names: Iterable[str]) -> list[str]:
    names = list(names)
    unknown = [n for n in names if n not in ANALYSES]
    if unknown:
        raise GrokscopeError(f"unknown analysis '{unknown[0]}' (known: {', '.join(ANALYSES)})")
    return names


def applicable(run: Run) -> list[str]:
    """The analyses that apply to this run's task."""
    if group_or_none(run.config.task) is None:
        return [n for n, s in ANALYSES.items() if not s.needs_group]
    return list(ANALYSES)


def analyze(
    run: Run,
    only: Iterable[str] | None = None,
    force: bool = False,
    progress: bool = True,
    report: Callable[[int, int], None] | None = None,
) -> list[str]:
    """Compute what is missing of the named analyses (default: all that apply) up to the last saved
    checkpoint and cache it in the run; returns the names of those (re)computed. progress: a progress
    bar on the terminal; report(done, total): called after each checkpoint of the grid pass (for UIs)."""
    run.refresh()
    if not run.n_checkpoints:
        raise GrokscopeError(f"{run.path}: no checkpoint saved yet")
    if only is None:
        wanted = applicable(run)
    else:
        wanted = check_names(only)
        for name in wanted:
            if ANALYSES[name].needs_group:
                group_of(run.config.task)  # raises the reason it does not apply
    todo, pending = set(wanted), list(wanted)
    while pending:  # and what they need, reused from the cache where current (--force redoes `wanted` only)
        for need in REQUIRES.get(pending.pop(), ()):
            if need not in todo:
                todo.add(need)
                pending.append(need)
    cached = {name: None if force and name in wanted else read_cached(run, name) for name in todo}
    computed = []
    group = group_of(run.config.task) if any(ANALYSES[n].needs_group for n in todo) else None

    tops = {n: top_up_start(run, cached[n]) for n in ("spectra", "weight_norms") if n in todo}
    tops = {n: start for n, start in tops.items() if start < run.n_checkpoints}
    if tops:
        computed += weights_pass(run, group, tops, cached)

    if "key_frequencies" in todo:
        kf = cached["key_frequencies"]
        if not whole_run_current(run, "key_frequencies", kf):
            cached["key_frequencies"] = key_frequencies(run, group, cached["spectra"], cached.get("neurons"))
            write(run, "key_frequencies", cached["key_frequencies"])
            computed.append("key_frequencies")

    grid = {}
    if "neurons" in todo:
        grid["neurons"] = top_up_start(run, cached["neurons"])
    if "progress" in todo:
        keys = cached["key_frequencies"]["frequencies"]
        old = cached["progress"]
        if old is not None and not np.array_equal(old["key_frequencies"], keys):
            cached["progress"] = None
        grid["progress"] = top_up_start(run, cached["progress"])
    grid = {n: start for n, start in grid.items() if start < run.n_checkpoints}
    if grid:
        computed += grid_pass(run, group, grid, cached, progress, report)

    if "memorization" in todo:
        start = top_up_start(run, cached["memorization"])
        if start < run.n_checkpoints:
            cached["memorization"] = memorization_pass(run, group, start, cached["memorization"])
            computed.append("memorization")

    if "phases" in todo and not whole_run_current(run, "phases", cached["phases"]):
        metrics = run.metrics
        bounds = phases(metrics["train_acc"], metrics["test_loss"])
        write(
            run,
            "phases",
            {
                "n_metric_steps": np.int64(run.n_metric_steps),
                "names": np.array(list(bounds)),
                "boundary_steps": np.array([-1 if s is None else s for s in bounds.values()], dtype=np.int64),
            },
        )
        computed.append("phases")
    return computed


def whole_run_current(run: Run, name: str, result: dict | None) -> bool:
    """Whether a cached key_frequencies or phases result still describes the run as it is now."""
    if result is None:
        return False
    if name == "key_frequencies":
        return int(result["step"]) == int(run.steps[-1]) and str(result["inputs"]) == key_inputs()
    return int(result["n_metric_steps"]) == run.n_metric_steps


def missing(run: Run) -> list[str]:
    """The analyses that apply to the run and are not cached up to its last saved checkpoint (what
    `analyze(run)` would compute), without computing anything."""
    run.refresh()
    out = []
    for name in applicable(run):
        result = read_cached(run, name)
        spec = ANALYSES[name]
        current = top_up_start(run, result) == run.n_checkpoints if spec.rows else whole_run_current(run, name, result)
        if result is None or not current:
            out.append(name)
    if "progress" not in out and "key_frequencies" not in out and "progress" in applicable(run):
        keys, progress = read_cached(run, "key_frequencies"), read_cached(run, "progress")
        if not np.array_equal(keys["frequencies"], progress["key_frequencies"]):
            out.append("progress")
    return out


def load(run: Run, name: str) -> dict[str, np.ndarray]:
    """One analysis as arrays indexed by the run's saved steps (computed first if missing or stale).
    Kept in memory on the Run while neither the run's progress nor the file changes (the app asks for
    the same results on every cursor move)."""
    check_names([name])
    run.refresh()
    path = path_of(run, name)
    stamp = (run.n_checkpoints, run.n_metric_steps, path.stat().st_mtime_ns if path.is_file() else None)
    memo = run.memo.get(("analysis", name))
    if memo is not None and memo[0] == stamp:
        return memo[1]
    analyze(run, only=[name], progress=False)
    result = read_cached(run, name)
    run.memo[("analysis", name)] = ((run.n_checkpoints, run.n_metric_steps, path.stat().st_mtime_ns), result)
    return result


def phase_steps(run: Run) -> dict[str, int | None]:
    """Phase boundaries: name → step (None where not reached)."""
    return boundaries(load(run, "phases"))


def boundaries(phases_result: dict[str, np.ndarray]) -> dict[str, int | None]:
    names, steps = phases_result["names"], phases_result["boundary_steps"]
    return {str(n): (None if s < 0 else int(s)) for n, s in zip(names, steps)}


def summary(run: Run) -> dict:
    """The headline of `grokscope analyze --summary`, at the last saved step."""
    group = group_of(run.config.task)
    analyze(run, progress=False)
    kf, spec, neurons, phase = (read_cached(run, n) for n in ("key_frequencies", "spectra", "neurons", "phases"))
    keys = kf["frequencies"]
    power = spec["embed_freq_power"][-1]
    return {
        "key_frequencies": keys.tolist(),
        "key_frequency_rule": str(kf["rule"]),
        "phases": boundaries(phase),
        "key_power_share": float(power[keys].sum() / power[1:].sum()) if power[1:].sum() > 0 else None,
        "clustered_neuron_share": float((neurons["fraction"][-1] >= CLUSTER_THRESHOLD).mean()),
        "step": int(run.steps[-1]),
        "coordinates": group.note,
    }


# --- passes -------------------------------------------------------------------------------------------


def top_up_start(run: Run, result: dict | None) -> int:
    """The first checkpoint row a per-checkpoint result lacks (0 if it must be recomputed)."""
    if result is None:
        return 0
    steps = result["steps"]
    if len(steps) > run.n_checkpoints or not np.array_equal(steps, run.steps[: len(steps)]):
        return 0
    return len(steps)


def append(run: Run, name: str, old: dict | None, start: int, new: dict[str, list], **meta) -> dict:
    """Join rows [start, n_checkpoints) to the first `start` rows of `old`, write and return it."""
    fresh = {k: np.stack([np.asarray(v) for v in rows]) for k, rows in new.items()}
    if start and old is not None:
        fresh = {k: np.concatenate([old[k][:start], v]) for k, v in fresh.items()}
    fresh["steps"] = run.steps.copy()
    fresh.update(meta)
    write(run, name, fresh)
    return fresh


def weights_pass(run: Run, group: Group | None, starts: dict[str, int], cached: dict) -> list[str]:
    """Spectra and/or weight norms from their first missing row (`starts`), on blocks of checkpoints."""
    first = min(starts.values())
    rows: dict[str, dict[str, list]] = {name: {} for name in starts}
    for i in range(first, run.n_checkpoints, BLOCK):
        j = min(i + BLOCK, run.n_checkpoints)
        params = {n: torch.from_numpy(np.array(run.trajectory(n)[i:j])) for n in run.param_names}
        for name, start in starts.items():
            if j <= start:
                continue
            result = spectra(params, run.config, group) if name == "spectra" else weight_norms(params)
            for key, value in result.items():
                rows[name].setdefault(key, []).extend(value[max(start - i, 0) :].numpy())
    for name, start in starts.items():
        cached[name] = append(run, name, cached[name], start, rows[name])
    return list(starts)


def checkpoint_loader(run: Run, model: torch.nn.Module) -> Callable[[int], None]:
    """A function that loads checkpoint row r of the run into `model`, copying each parameter straight into
    the model's own storage (numpy views of it): no new tensors per checkpoint."""
    targets = {n: p.detach().numpy() for n, p in model.named_parameters()}
    trajectories = {n: run.trajectory(n) for n in targets}

    def load_row(r: int) -> None:
        for name, target in targets.items():
            np.copyto(target, trajectories[name][r])

    return load_row


@torch.no_grad()
def grid_pass(
    run: Run, group: Group, starts: dict[str, int], cached: dict, show: bool, report: Callable | None
) -> list[str]:
    """Neuron clustering and/or restricted/excluded loss from their first missing row (`starts`): one
    whole-grid forward per checkpoint, each analysis keeping the rows it lacks."""
    first = min(starts.values())
    model = build_model(run.config).eval()
    probe = None
    if "progress" in starts:
        probe = loss_probe(run.dataset, group, cached["key_frequencies"]["frequencies"])
    rows: dict[str, dict[str, list]] = {name: {} for name in starts}
    load_row = checkpoint_loader(run, model)
    activations = workspace = None
    with tqdm(total=run.n_checkpoints - first, disable=not show, unit="ckpt", desc="grid analyses") as bar:
        for r in range(first, run.n_checkpoints):
            load_row(r)
            acts, readout = grid_neurons(model, group, activations)
            if activations is None:  # buffers for the next checkpoints: no fresh large tensors per step
                activations = acts.new_empty(run.config.task.p**2, acts.shape[-1])
                workspace = acts.new_empty(acts.shape)
            if r >= starts.get("neurons", run.n_checkpoints):
                c = cluster(frequency_fractions(acts, workspace.view(group.n, -1)))
                rows["neurons"].setdefault("frequency", []).append(c["frequency"].numpy().astype(np.int16))
                rows["neurons"].setdefault("fraction", []).append(c["fraction"].numpy())
            if r >= starts.get("progress", run.n_checkpoints):
                for key, value in probe(readout).items():
                    rows["progress"].setdefault(key, []).append(value.numpy())
            bar.update()
            if report is not None:
                report(r + 1 - first, run.n_checkpoints - first)
    for name, start in starts.items():
        meta = {"key_frequencies": cached["key_frequencies"]["frequencies"]} if name == "progress" else {}
        cached[name] = append(run, name, cached[name], start, rows[name], **meta)
    return list(starts)


@torch.no_grad()
def memorization_pass(run: Run, group: Group, start: int, old: dict | None) -> dict:
    """Neuron scores from checkpoint row `start`: the weight scores on blocks of stacked checkpoints, the
    activation score (runs with corrupted labels only) from one whole-grid forward per checkpoint."""
    rows: dict[str, list] = {}
    for i in range(start, run.n_checkpoints, BLOCK):
        j = min(i + BLOCK, run.n_checkpoints)
        params = {n: torch.from_numpy(np.array(run.trajectory(n)[i:j])) for n in needed_params(run.config)}
        for key, value in memorization_rows(params, run.config, group).items():
            rows.setdefault(key, []).extend(value.numpy())
    dataset, n_neurons = run.dataset, len(rows["ipr"][0])
    if not dataset.corrupted.any():
        rows["activation"] = [np.full(n_neurons, np.nan, dtype=np.float32)] * (run.n_checkpoints - start)
        return append(run, "memorization", old, start, rows)
    model = build_model(run.config).eval()
    load_row = checkpoint_loader(run, model)
    buffer = torch.empty(run.config.task.p**2, n_neurons)
    for r in range(start, run.n_checkpoints):
        load_row(r)
        post, _ = model.grid_activations(out=buffer)
        rows.setdefault("activation", []).append(activation_scores(model, dataset, post).numpy())
    return append(run, "memorization", old, start, rows)


def key_frequencies(
    run: Run, group: Group, spec: dict, neurons: dict | None, row: int | None = None, rule: str | None = None
) -> dict:
    """Key frequencies at checkpoint `row` (default: the last) by all three rules; `rule` (default:
    neurons, falling back to embed where no neuron is clustered) decides."""
    row = run.n_checkpoints - 1 if row is None else row
    if neurons is not None and top_up_start(run, neurons) > row:
        frequency, fraction = neurons["frequency"][row], neurons["fraction"][row]
    else:  # one forward at that step instead of waiting for the whole neuron pass
        acts, _ = grid_neurons(run.model(int(run.steps[row])), group)
        c = cluster(frequency_fractions(acts))
        frequency, fraction = c["frequency"].numpy(), c["fraction"].numpy()
    by = {
        "neurons": key_frequencies_by_neurons(frequency, fraction >= CLUSTER_THRESHOLD),
        "embed": key_frequencies_by_power(spec["embed_freq_power"][row]),
        "logit_map": key_frequencies_by_power(spec["neuron_out_freq_power"][row]),
    }
    if rule is None:
        rule = "neurons" if len(by["neurons"]) else "embed"  # no neuron clustered: fall back to W_E power
    elif rule not in KEY_RULES:
        raise GrokscopeError(f"unknown key-frequency rule '{rule}' (known: {', '.join(KEY_RULES)})")
    return {
        "step": np.int64(run.steps[row]),
        "frequencies": by[rule],
        "rule": np.array(rule),
        "threshold": np.float64(CLUSTER_THRESHOLD if rule == "neurons" else KEY_POWER_FRACTION),
        **{f"by_{name}": keys for name, keys in by.items()},
        "coordinates": np.array(group.note),
        "inputs": np.array(key_inputs()),
    }


def key_inputs() -> str:
    """What the key frequencies were computed from: when it changes, they are recomputed."""
    versions = ", ".join(f"{n}@v{ANALYSES[n].version}" for n in ("spectra", "neurons"))
    return f"{versions}; cluster share {CLUSTER_THRESHOLD}; power fraction {KEY_POWER_FRACTION}"


def key_frequencies_at(run: Run, step: int | None = None, rule: str | None = None) -> dict[str, np.ndarray]:
    """Key frequencies at any saved step (default: the last) by a chosen rule (neurons, embed, logit_map;
    default as in the cached `key_frequencies`), with every rule's answer alongside."""
    run.refresh()
    row = run.n_checkpoints - 1 if step is None else run.row(step)
    group = group_of(run.config.task)
    return key_frequencies(run, group, load(run, "spectra"), read_cached(run, "neurons"), row, rule)


# --- the cache files ----------------------------------------------------------------------------------


def read_cached(run: Run, name: str) -> dict[str, np.ndarray] | None:
    """A cached result, or None if there is none or it does not load (then it is recomputed)."""
    path = path_of(run, name)
    if not path.is_file():
        return None
    try:
        result = layout.load_npz(path)
        check_cached(name, result)
    except GrokscopeError as e:
        print(f"grokscope: {e}; recomputing {name}", file=sys.stderr)
        return None
    return result


def check_cached(name: str, result: dict[str, np.ndarray]) -> None:
    """Raise GrokscopeError unless `result` has the arrays of `name` with consistent shapes."""
    spec = ANALYSES[name]
    for key, ndim in spec.meta.items():
        if key not in result or result[key].ndim != ndim:
            raise GrokscopeError(f"{name}: corrupt cache ({key} missing or misshapen)")
    if not spec.rows:
        return
    steps = result.get("steps")
    if steps is None or steps.ndim != 1 or steps.dtype.kind != "i":
        raise GrokscopeError(f"{name}: corrupt cache (no saved steps)")
    for key in (*spec.rows, *(k for k in result if k not in spec.meta)):
        if key not in result or result[key].ndim == 0 or len(result[key]) != len(steps):
            raise GrokscopeError(f"{name}: corrupt cache ({key} missing or not one row per step)")


def write(run: Run, name: str, arrays: dict[str, np.ndarray]) -> None:
    folder = run.path / ANALYSIS_DIR
    folder.mkdir(exist_ok=True)
    for stale in folder.glob(f"{name}@v*.npz"):
        if stale.name != path_of(run, name).name:
            stale.unlink()
    layout.write_npz(path_of(run, name), arrays)
