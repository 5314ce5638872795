"""Training a sweep's runs: one after another, in a pool of local processes, or as Ray tasks; each alone or
several packed into one process (grokscope.train.pack).

Every run is an ordinary run directory inside the sweep's (store/sweep.py), trained by `grokscope.train` (or
a pack), so a run is crash-safe and resumable wherever it ran, and the same sweep again skips complete runs
and resumes the rest.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Callable
from multiprocessing import get_context
from pathlib import Path

from grokscope.config import RunConfig
from grokscope.errors import GrokscopeError
from grokscope.store import layout
from grokscope.store.sweep import MANIFEST, is_sweep, manifest
from grokscope.store.writer import writing
from grokscope.sweep.spec import load_spec

EXECUTORS = ("local", "ray")
RAY_MISSING = "the ray executor needs Ray: pip install 'grokscope[sweep]'"


def sweep(
    spec: str | Path,
    out: str | Path,
    jobs: int = 1,
    executor: str = "local",
    address: str | None = None,
    pack: int = 1,
    say: Callable[[str], None] = print,
    **train_options,
) -> list[Path]:
    """Train every run of the spec into `out` (created; a directory holding another sweep is refused),
    skipping complete runs and resuming interrupted ones; returns the run directories in the spec's order. The
    sweep holds `out`'s lock (store.writer.writing) while it runs, each run its own.

    executor "local": `jobs` runs at a time (separate processes beyond one, each with cores / jobs torch
    threads). "ray": one Ray task per run (or pack), one core and one torch thread each, on the cluster at
    `address` (ray.init's: "auto", "ray://host:port"), on the instance this process is already connected to
    (then no `address`), or on a local Ray instance with this machine's cores; `out` must be a path every node
    sees. pack: up to this many runs that can share a pack (grokscope.train.pack.pack_key: seeds, corruption,
    operation, loss, optim.* and grokfast.* may differ) train together in one process, the others alone; a run
    started in a pack resumes in it. train_options: passed to `grokscope.train` (device, commit_every_s,
    progress: each run's bar, or with other processes one bar for all in a terminal).
    """
    if executor not in EXECUTORS:
        raise GrokscopeError(f"unknown executor '{executor}' (use {' or '.join(EXECUTORS)})")
    if jobs < 1:
        raise GrokscopeError(f"--jobs must be >= 1; got {jobs}")
    if pack < 1:
        raise GrokscopeError(f"--pack must be >= 1; got {pack}")
    if executor == "local" and address is not None:
        raise GrokscopeError("--address is for --executor ray")
    if executor == "ray" and jobs != 1:
        raise GrokscopeError("--jobs is for --executor local: Ray runs as many runs at once as it has cores")
    if executor == "ray":  # before anything is written
        try:
            import ray
        except ImportError:
            raise GrokscopeError(RAY_MISSING) from None
        if address is not None and ray.is_initialized():
            raise GrokscopeError(
                f"this process is already connected to Ray, so address {address} would not be used: leave it out "
                "to use that instance, or call ray.shutdown() first"
            )
    runs, out = load_spec(spec), Path(out).resolve()  # absolute: Ray tasks run in another directory
    if "device" in train_options:  # before anything is written or started
        from grokscope.train.loop import check_device

        check_device(train_options["device"])
    keys = list(dict.fromkeys(key for run in runs for key in run.overrides))
    written = manifest({run.name: run.config for run in runs}, keys)
    if not is_sweep(out) and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GrokscopeError(f"{out} exists and is not this sweep's directory: give another --out")
    with writing(out):  # one sweep in a directory at a time (each run's own lock guards it from other writers)
        if is_sweep(out):
            found = layout.read_json(out / MANIFEST)
            if found.get("runs") != written["runs"]:
                raise GrokscopeError(f"{out} holds another sweep (its {MANIFEST} differs): give another --out")
            if found != written:  # made before the manifest kept the spec's keys
                layout.write_json(out / MANIFEST, written)
        else:
            out.mkdir(parents=True, exist_ok=True)
            layout.write_json(out / MANIFEST, written)
        todo = []
        for run in runs:
            where = out / run.name
            if (where / layout.COMPLETE).is_file():
                say(f"{run.name}: complete")
            else:
                todo.append((run.config, where))
        todo = jobs_for(todo, pack)
        if executor == "local" and (jobs == 1 or len(todo) <= 1):
            for job in todo:  # each run's own progress bar
                say(f"{job.name}: {'resuming' if job.resume else 'training'}{job.together}")
                job.train(train_options)
        elif todo:  # in other processes: one bar for all (nothing to do starts no Ray)
            bar = SweepBar(todo, say, show=train_options.get("progress", True) and sys.stderr.isatty())
            try:
                if executor == "ray":
                    on_ray(todo, address, bar, {**train_options, "progress": False})
                else:
                    in_pool(todo, jobs, bar, {**train_options, "progress": False})
            finally:
                bar.close()
    return [out / run.name for run in runs]


def jobs_for(todo: list[tuple[RunConfig, Path]], pack: int) -> list[Job]:
    """The runs to train (config, directory) as jobs: a run started in a pack with the rest of that pack (its
    meta names it) that stopped at the same step (a pack commits its runs one after another: one stopped between
    two of them resumes as two packs), or alone where they can no longer share one (a pack made before a rule
    that would refuse it); another started run alone; new runs that can share a pack (grokscope.train.pack) in
    packs of up to `pack` in the spec's order, the others alone."""
    from grokscope.train.pack import pack_key, packable

    jobs, started_packs, new_packs = [], {}, {}
    for config, where in todo:
        if layout.is_run(where):
            members = layout.read_json(where / layout.META).get("pack")
            if members:
                step = layout.read_json(where / layout.PROGRESS)["step"]
                started_packs.setdefault((tuple(members), step), []).append((config, where))
            else:
                jobs.append(Job([(config, where)], resume=True))
        elif pack > 1 and packable(config) is None:
            new_packs.setdefault(pack_key(config), []).append((config, where))
        else:
            jobs.append(Job([(config, where)], resume=False))
    for runs in started_packs.values():
        if all(packable(config) is None for config, _ in runs) and len({pack_key(c) for c, _ in runs}) == 1:
            jobs.append(Job(runs, resume=True, packed=True))
        else:
            jobs += [Job([run], resume=True) for run in runs]
    for runs in new_packs.values():
        jobs += [Job(runs[i : i + pack], resume=False) for i in range(0, len(runs), pack)]
    return jobs


class Job:
    """Runs of a sweep to train in one process: one run (`grokscope.train`), or a pack (grokscope.train.pack;
    several runs, or what remains of a pack a run was started in). Configs as dicts and directories as strings, to
    cross process boundaries."""

    def __init__(self, runs: list[tuple[RunConfig, Path]], resume: bool, packed: bool = False):
        self.configs = [config.to_dict() for config, _ in runs]
        self.wheres = [str(where) for _, where in runs]
        self.resume, self.packed = resume, packed or len(runs) > 1
        self.name = ", ".join(Path(where).name for where in self.wheres)
        self.together = f" (one pack of {len(runs)})" if self.packed else ""

    def train(self, options: dict) -> Job:
        """Train the runs (GrokscopeError names them); returns the job, for the executors that hear of jobs as
        they end."""
        from grokscope.train import train

        try:
            if self.packed:
                from grokscope.train.pack import train_pack

                train_pack([RunConfig.from_dict(c) for c in self.configs], self.wheres, **options)
            elif self.resume:
                train(out=self.wheres[0], resume=True, **options)
            else:
                train(RunConfig.from_dict(self.configs[0]), self.wheres[0], **options)
        except GrokscopeError as e:
            raise GrokscopeError(f"{self.name}: {e}") from None
        return self

    def done(self) -> str:
        return f"{self.name}: {'resumed' if self.resume else 'trained'}{self.together}"


POLL_S = 2.0  # how often a sweep's bar re-reads its runs' progress
PR_SET_PDEATHSIG = 1  # Linux prctl: the signal a process gets when its parent ends


class SweepBar:
    """One progress bar over every step of the jobs' runs, for the executors whose runs train in other
    processes: each run's last durable step, read from its run directory (the store: nothing else crosses
    from the workers) at each `refresh`; `say` writes above it."""

    def __init__(self, todo: list[Job], say: Callable[[str], None], show: bool):
        from tqdm.auto import tqdm

        self.say, self.wheres, self.n_ended = say, [Path(where) for job in todo for where in job.wheres], 0
        total = sum(config["train"]["steps"] for job in todo for config in job.configs)
        self.bar = tqdm(total=total, unit="step", desc="sweep", disable=not show, dynamic_ncols=True, leave=False)
        self.refresh()

    def refresh(self) -> None:
        if not self.bar.disable:
            self.bar.update(sum(durable_step(where) for where in self.wheres) - self.bar.n)

    def tell(self, message: str) -> None:
        self.refresh()
        with self.bar.external_write_mode():
            self.say(message)

    def ended(self, job: Job) -> None:
        self.n_ended += len(job.wheres)
        self.bar.set_postfix_str(f"{self.n_ended} of {len(self.wheres)} runs done", refresh=False)
        self.tell(job.done())

    def close(self) -> None:
        self.bar.close()


def durable_step(where: Path) -> int:
    """A run's last durable step (0 before its first commit, or before it is laid out)."""
    try:
        return layout.read_json(where / layout.PROGRESS).get("step") or 0
    except GrokscopeError:
        return 0


def in_pool(todo: list[Job], jobs: int, bar: SweepBar, options: dict) -> None:
    """`jobs` spawned processes; Ctrl-C or a failed run ends the sweep at once: queued runs never start,
    running ones stop where they are (crash-safe: the same sweep again resumes them)."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    pool = get_context("spawn").Pool(min(jobs, len(todo)), initializer=pool_worker, initargs=(threads,))
    try:
        ended = pool.imap_unordered(functools.partial(Job.train, options=options), todo)
        while True:
            try:
                job = ended.next(timeout=POLL_S)  # a run's error is raised here as soon as it fails
            except multiprocessing.TimeoutError:
                bar.refresh()
                continue
            except StopIteration:
                break
            bar.ended(job)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def pool_worker(threads: int) -> None:
    """A worker process of `--jobs`: `threads` torch threads; Ctrl-C is its parent's to act on (it ends the
    workers), not each worker's (one would go on to its next queued run). tqdm's lock is a thread lock: its
    default, a multiprocessing lock, would be left behind by a worker ended mid-run, and Python warns of the
    leaked semaphore at exit. On Linux a parent killed outright (kill -9) takes its workers with it: they would
    otherwise train their runs on unseen, holding them."""
    import threading

    import torch
    from tqdm.auto import tqdm

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform == "linux":
        import ctypes

        parent = os.getppid()
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # it died before the request was made
            os._exit(1)
    torch.set_num_threads(threads)
    tqdm.set_lock(threading.RLock())


def on_ray(todo: list[Job], address: str | None, bar: SweepBar, options: dict) -> None:
    """One Ray task per job (num_cpus=1, and a GPU with --device cuda; no retries: the same sweep again resumes a
    run from its own last commit). Ctrl-C or a failed run cancels the others, which stop where they are. A Ray instance
    started here (no `address`, none running in this process) is shut down at the end."""
    import ray

    started = not ray.is_initialized()
    if started and address is not None:
        check_reachable(address)
    if started:
        try:
            quiet = {"log_to_driver": False, "logging_level": logging.ERROR}  # the sweep says what happens
            if address is None:
                ray.init(num_cpus=os.cpu_count(), include_dashboard=False, **quiet)
            else:
                ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise GrokscopeError(
                f"cannot start or reach Ray ({address or 'local'}): {str(e).splitlines()[0]}"
            ) from None
    pending = {}
    try:
        cores = int(ray.cluster_resources().get("CPU", 0))
        unit = "job" if any(job.packed for job in todo) else "run"  # a job: a run or a pack
        bar.tell(f"Ray: {len(todo)} {unit}s on {cores} cores, one {unit} per core")
        gpus = 1 if str(options.get("device", "cpu")).startswith("cuda") else 0  # Ray hides GPUs from tasks without
        task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(train_on_ray)
        pending = {task.remote(job, options): job for job in todo}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            if not ready:
                bar.refresh()
                continue
            job = pending.pop(ready[0])
            try:
                ray.get(ready[0])
            except ray.exceptions.RayTaskError as e:  # the run's own error, as the local executors raise it
                raise (e.cause if isinstance(e.cause, GrokscopeError) else e) from None
            except ray.exceptions.RayError as e:  # the worker or its node died, Ray's memory monitor, ...
                raise GrokscopeError(f"{job.name}: Ray: {str(e).strip().splitlines()[0]}") from None
            bar.ended(job)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A cluster given as HOST:PORT (or ray://HOST:PORT) answers a TCP connection within timeout_s, else
    GrokscopeError: Ray itself retries an unreachable address for minutes. "auto" and other forms are left
    to Ray."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise GrokscopeError(f"cannot reach Ray at {address} ({e.strerror or e})") from None


def train_on_ray(job: Job, options: dict) -> None:
    """A Ray task: one run or pack with one torch thread (Ray gives it one core)."""
    import torch

    torch.set_num_threads(1)
    job.train(options)
