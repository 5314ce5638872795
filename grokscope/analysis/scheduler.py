"""Running analyses over a run's checkpoints: what is missing is computed, from the cache what is current.

`analyze(run)` walks the registry in order; consecutive analyses of one kind share one pass (see spec.py):
the weight analyses read parameter trajectories in blocks of checkpoints, the forward analyses share one
whole-grid forward per checkpoint into reused buffers. Per-checkpoint results are topped up: only
checkpoints saved since are computed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import sys
from collections.abc import Callable, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from grokscope.analysis.cache import (
    ANALYSIS_DIR,
    OPTIONS,
    THREADS,
    append,
    path_of,
    read_cached,
    top_up_start,
    writable,
    write,
)
from grokscope.analysis.neurons import grid_neurons
from grokscope.analysis.registry import ANALYSES, applicable, check_names, not_applicable
from grokscope.analysis.spec import Analysis, Forward, blocks, checkpoint_loader
from grokscope.errors import GrokscopeError
from grokscope.models import build_model, check_shapes
from grokscope.store import Run, as_run


def analyze(
    run: Run,
    only: Iterable[str] | None = None,
    force: bool = False,
    progress: bool = True,
    report: Callable[[int, int], None] | None = None,
    options: dict[str, dict] | None = None,
) -> list[str]:
    """Compute what is missing of the named analyses (default: all that apply, those computed on request
    only where cached) up to the last saved checkpoint and cache it in the run; returns the names of those
    (re)computed. An analysis named in `only` that does not apply raises GrokscopeError saying why.
    progress: a progress bar on the terminal; report(done, total): called after each checkpoint of the
    forward pass (for UIs); options: analysis name → {option: value} (see Analysis.options)."""
    run.refresh()
    if not run.n_checkpoints:
        raise GrokscopeError(f"{run.path}: no checkpoint saved yet")
    check_shapes(run)
    if only is None:
        wanted = by_default(run)
    else:
        wanted = check_names(only)
        skipped = not_applicable(run)
        for name in wanted:
            if name in skipped:
                raise GrokscopeError(f"{name} does not apply to this run: it {skipped[name]}")
    options = options or {}
    for name in check_names(options):
        if name not in wanted:
            raise GrokscopeError(f"options for {name}, which is not among the analyses to compute (--only {name})")
    todo, pending = set(wanted), list(wanted)
    while pending:  # and what they need, reused from the cache where current (--force redoes `wanted` only)
        for need in ANALYSES[pending.pop()].requires:
            if need not in todo:
                todo.add(need)
                pending.append(need)
    if not writable(run) and (force or todo & set(missing(run))):  # before any work: results could not be kept
        folder = run.path / ANALYSIS_DIR
        raise GrokscopeError(
            f"{folder if folder.exists() else run.path}: not writable, and analyses are cached inside the run: "
            "copy the run to analyse it"
        )
    cached = {name: None if force and name in wanted else read_cached(run, ANALYSES[name]) for name in todo}
    group = run.task.group()
    computed = []
    specs = [spec for name, spec in ANALYSES.items() if name in todo]
    for kind, same in itertools.groupby(specs, key=lambda spec: spec.kind):
        same = list(same)
        if kind == "run":
            for spec in same:
                if not run_current(run, spec, cached[spec.name]):
                    cached[spec.name] = {**spec.compute(run, group, cached), **upstream(spec)}
                    write(run, spec, cached[spec.name])
                    computed.append(spec.name)
            continue
        chosen = {spec.name: options_of(spec, cached[spec.name], options.get(spec.name)) for spec in same}
        starts = {spec.name: start_of(run, spec, cached, chosen[spec.name]) for spec in same}
        starts = {name: start for name, start in starts.items() if start < run.n_checkpoints}
        if not starts:
            continue
        threads = pass_threads(cached, starts)
        starts = {name: start if recorded_threads(cached[name]) == threads else 0 for name, start in starts.items()}
        todo_specs = [ANALYSES[name] for name in starts]
        with cpu_threads(threads, [name for name, start in starts.items() if start]):
            if kind == "weights":
                rows = weights_pass(run, group, todo_specs, starts, progress)
            elif kind == "forward":
                rows = forward_pass(run, group, todo_specs, starts, cached, progress, report)
            else:
                rows = {
                    s.name: checkpoints_pass(run, group, s, starts[s.name], progress, chosen[s.name])
                    for s in todo_specs
                }
        for spec in todo_specs:
            extra = spec.inputs(cached) if spec.inputs else {}
            extra[THREADS] = np.int64(threads)
            if chosen[spec.name] is not None:
                extra[OPTIONS] = options_json(chosen[spec.name])
            cached[spec.name] = append(run, spec, cached[spec.name], starts[spec.name], rows[spec.name], **extra)
            computed.append(spec.name)
    return computed


def by_default(run: Run) -> list[str]:
    """What `analyze(run)` computes: the analyses that apply, those computed on request where a cached
    result of this run loads (one that does not, e.g. copied from another run, waits to be asked for
    again rather than being recomputed with the default options)."""
    return [
        name
        for name in applicable(run)
        if not ANALYSES[name].on_request or read_cached(run, ANALYSES[name], quiet=True) is not None
    ]


def options_of(spec: Analysis, result: dict | None, asked: dict | None):
    """The options an analysis runs with: those asked for, over those it was cached with, over its
    defaults (None where it takes none)."""
    if spec.options is None:
        if asked:
            raise GrokscopeError(f"{spec.name} takes no options")
        return None
    known = [f.name for f in dataclasses.fields(spec.options)]
    chosen = {**(json.loads(str(result[OPTIONS])) if result is not None and OPTIONS in result else {}), **(asked or {})}
    unknown = [key for key in chosen if key not in known]
    if unknown:
        raise GrokscopeError(f"{spec.name} has no option '{unknown[0]}' (options: {', '.join(known)})")
    try:
        return spec.options(**chosen)
    except (TypeError, ValueError) as e:
        raise GrokscopeError(f"{spec.name}: bad options {json.dumps(asked)}: {e}") from None


def options_json(options) -> np.ndarray:
    """Options as stored with a result: a JSON string (sorted keys, so equal options compare equal)."""
    return np.array(json.dumps(dataclasses.asdict(options), sort_keys=True))


def recorded_threads(result: dict | None) -> int | None:
    """The CPU thread count a per-checkpoint result was computed with (None: not recorded, or no result)."""
    return None if result is None or THREADS not in result else int(result[THREADS])


def pass_threads(cached: dict, starts: dict[str, int]) -> int:
    """The CPU thread count for a pass: the one its cached rows were computed with where it tops them up,
    else torch's current one. Float reductions split across threads round differently (an activation's last
    bit, now and then a neuron's frequency), so rows computed with another count would join into a result
    that no single analysis gives."""
    recorded = {recorded_threads(cached[name]) for name, start in starts.items() if start}
    recorded.discard(None)
    return recorded.pop() if len(recorded) == 1 else torch.get_num_threads()


@contextlib.contextmanager
def cpu_threads(n: int, topped_up: list[str]):
    """torch's CPU thread count set to n for the block, then put back; says so where a top-up needs it."""
    before = torch.get_num_threads()
    if n == before:
        yield
        return
    counted = f"{n} CPU thread{'s' if n > 1 else ''}"
    print(
        f"grokscope: topping up {', '.join(topped_up)} with {counted}, as cached (for bit-exact rows)", file=sys.stderr
    )
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def upstream(spec: Analysis) -> dict[str, np.ndarray]:
    """What a whole-run result was computed from: the versions of the analyses it reads, and its settings."""
    if not spec.versions_of and not spec.settings:
        return {}
    versions = ", ".join(f"{name}@v{ANALYSES[name].version}" for name in spec.versions_of)
    return {"inputs": np.array("; ".join(part for part in (versions, spec.settings) if part))}


def run_current(run: Run, spec: Analysis, result: dict | None) -> bool:
    """Whether a cached whole-run result still holds: for the run as it is now, from the same inputs."""
    if result is None or not spec.current(run, result):
        return False
    return all(str(result.get(k)) == str(v) for k, v in upstream(spec).items())


def start_of(run: Run, spec: Analysis, cached: dict, options=None) -> int:
    """The first checkpoint row a per-checkpoint analysis lacks: 0 where what it was computed from changed
    (options: those it is to run with, see options_of)."""
    result = cached[spec.name]
    if result is None or any(cached.get(need) is None for need in spec.requires):
        return 0
    if options is not None and str(result.get(OPTIONS)) != str(options_json(options)):
        return 0
    inputs = {} if spec.inputs is None else spec.inputs(cached)
    if any(not np.array_equal(result.get(k), v) for k, v in inputs.items()):
        return 0
    return top_up_start(run, result)


def missing(run: Run) -> list[str]:
    """The analyses that apply to the run and are not cached up to its last saved checkpoint (what
    `analyze(run)` would compute), without computing anything."""
    run.refresh()
    cached = {name: read_cached(run, ANALYSES[name]) for name in by_default(run)}
    out = []
    for name, result in cached.items():
        spec = ANALYSES[name]
        if spec.kind == "run":
            current = run_current(run, spec, result)
        else:  # against what it needs as cached: recomputing that may leave it as it is
            current = start_of(run, spec, cached, options_of(spec, result, None)) == run.n_checkpoints
        if not current:
            out.append(name)
    return out


def cached_result(run: Run, name: str) -> dict[str, np.ndarray] | None:
    """An analysis as cached (possibly not up to the last checkpoint), or None; computes nothing."""
    return read_cached(run, ANALYSES[check_names([name])[0]])


def load(run: Run, name: str) -> dict[str, np.ndarray]:
    """One analysis as arrays indexed by the run's saved steps (computed first if missing or stale).
    Kept in memory on the Run while neither the run's progress nor the file changes (the app asks for
    the same results on every cursor move); on a pinned run (`Run.pinned`) for good, as the file goes on
    with the run."""
    run = as_run(run)
    check_names([name])
    run.refresh()
    spec = ANALYSES[name]
    path = path_of(run, spec)
    stamp = (run.n_checkpoints, run.n_metric_steps, path.stat().st_mtime_ns if path.is_file() else None)
    memo = run.memo.get(("analysis", name))
    if memo is not None and (memo[0] == stamp or run.pin is not None):
        return memo[1]
    analyze(run, only=[name], progress=False)
    result = read_cached(run, spec)
    run.memo[("analysis", name)] = ((run.n_checkpoints, run.n_metric_steps, path.stat().st_mtime_ns), result)
    return result


# --- the shared passes ---------------------------------------------------------------------------------


def weights_pass(
    run: Run, group, specs: list[Analysis], starts: dict[str, int], show: bool
) -> dict[str, dict[str, list]]:
    """The weight analyses from their first missing row (`starts`), on blocks of checkpoints."""
    first = min(starts.values())
    bar = tqdm(total=run.n_checkpoints - first, disable=not show, unit="ckpt", desc="weight analyses")
    needed: set[str] = set()
    for spec in specs:
        needed |= set(run.param_names if spec.params is None else spec.params(run.config))
    rows: dict[str, dict[str, list]] = {spec.name: {} for spec in specs}
    for i, j, params in blocks(run, first, [n for n in run.param_names if n in needed]):
        for spec in specs:
            start = starts[spec.name]
            if j <= start:
                continue
            for key, value in spec.compute(params, run.config, group).items():
                rows[spec.name].setdefault(key, []).extend(value[max(start - i, 0) : j - i].numpy())
        bar.update(j - max(i, first))
    bar.close()
    return rows


def checkpoints_pass(run: Run, group, spec: Analysis, start: int, show: bool, options=None) -> dict[str, list]:
    """A checkpoints analysis from row `start` (with its options where it takes some), with a progress bar
    it advances itself (done, total)."""
    with tqdm(total=run.n_checkpoints - start, disable=not show, unit="ckpt", desc=spec.name) as bar:

        def advance(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        if options is None:
            return spec.compute(run, group, start, advance)
        return spec.compute(run, group, start, advance, options=options)


@torch.no_grad()
def forward_pass(
    run: Run, group, specs: list[Analysis], starts: dict[str, int], cached: dict, show: bool, report
) -> dict[str, dict[str, list]]:
    """The forward analyses from their first missing row (`starts`): one whole-grid forward per checkpoint,
    each analysis keeping the rows it lacks."""
    first = min(starts.values())
    model = build_model(run.config).eval()
    states = {spec.name: spec.prepare(run, group, cached) for spec in specs}
    rows: dict[str, dict[str, list]] = {spec.name: {} for spec in specs}
    load_row = checkpoint_loader(run, model)
    activations = workspace = None
    with tqdm(total=run.n_checkpoints - first, disable=not show, unit="ckpt", desc="grid analyses") as bar:
        for r in range(first, run.n_checkpoints):
            load_row(r)
            acts, readout = grid_neurons(model, group, activations)
            if activations is None:  # buffers for the next checkpoints: no fresh large tensors per step
                activations = acts.new_empty(run.task.n_inputs, acts.shape[-1])
                workspace = acts.new_empty(acts.shape).view(group.n, -1)
            forward = Forward(acts, readout, workspace)
            for spec in specs:
                if r >= starts[spec.name]:
                    for key, value in spec.compute(states[spec.name], forward).items():
                        rows[spec.name].setdefault(key, []).append(value)
            bar.update()
            if report is not None:
                report(r + 1 - first, run.n_checkpoints - first)
    return rows
