"""Training and analysis started from the app: each a `grokscope` CLI command in its own process (the
same public functions as the command line, never inline in a rerun), its output in a log beside the runs.
The server keeps the list; a job outlives the page that started it."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

LOGS = ".grokscope-jobs"  # inside the runs directory: one log per job
# `python -m grokscope ARGS`, hearing Ctrl-C (Stop) even where the server ignores it, as one started in the
# background of a shell does (its children inherit that)
HEAR_CTRL_C = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv = sys.argv[1:]; runpy.run_module('grokscope', run_name='__main__')"
)


@dataclass
class Job:
    """One CLI command running (or ended) in a process of its own."""

    run: str
    what: str  # train, resume, analyze
    log: Path
    process: subprocess.Popen
    started: float = field(default_factory=time.time)

    @property
    def state(self) -> str:
        code = self.process.poll()
        if code is None:
            return "running"
        return {0: "done", 130: "stopped (resumable)"}.get(code, f"failed (exit {code})")

    def last_line(self) -> str:
        """The last line the command printed (its progress bar or its error), or ''."""
        text = self.log.read_text(errors="replace") if self.log.is_file() else ""
        lines = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]
        return lines[-1].strip() if lines else ""

    def stop(self) -> None:
        """Ctrl-C for the command: training stops at a committed checkpoint and can be resumed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)


@st.cache_resource(show_spinner=False)
def registry() -> dict:
    """The jobs this server started, oldest first, and a lock for starting them."""
    return {"lock": threading.Lock(), "jobs": []}


def jobs() -> list[Job]:
    return list(registry()["jobs"])


def start(runs_dir: Path, run: str, what: str, arguments: list[str]) -> Job:
    """Starts `grokscope <arguments>` for the run (a name inside runs_dir: RUN, or SWEEP/RUN) in its own
    process."""
    logs = runs_dir / LOGS
    logs.mkdir(exist_ok=True)
    log = logs / f"{run.replace('/', '__')}-{what}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    command = [sys.executable, "-c", HEAR_CTRL_C, "grokscope", *arguments]
    shared = registry()
    with shared["lock"], log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        job = Job(run, what, log, process)
        shared["jobs"].append(job)
    return job


def busy(run: str) -> Job | None:
    """The job still running on the run, if any."""
    return next((job for job in jobs() if job.run == run and job.state == "running"), None)


def stopped(run: str) -> bool:
    """Whether this server's last job on the run has ended (the run is not training under it)."""
    mine = [job for job in jobs() if job.run == run]
    return bool(mine) and mine[-1].state != "running"
