"""Executors: where worker processes run.

The driver hands an executor a list of `WorkerJob`s (each: serve the data cells, or the cells of some candidates)
and gets back one `JobResult` per job. `LocalExecutor` runs worker subprocesses on this machine: one at a time on
CPU (two torch processes on the same cores slow each other 2-3x), one per GPU at a time when several GPUs are
visible, each with its own `CUDA_VISIBLE_DEVICES`. A fleet executor (Ray, see docs/run.md) implements the same two
methods; workers only need the run directory (shared storage) and write nothing else.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass
class WorkerJob:
    name: str                               # "data", "pool", or the candidate it serves
    candidates: list[str] = field(default_factory=list)
    data: bool = False                      # serve the shared data cells first (then the candidates, if any)
    max_subset: float | None = None         # an adaptive round: only the proxies on shares up to this

    def argv(self, run_dir: Path, python: str = sys.executable) -> list[str]:
        cmd = [python, "-m", "damoc.pipeline.worker", str(run_dir)]
        cmd += ["--data"] if self.data else []
        cmd += ["--max-subset", repr(self.max_subset)] if self.max_subset is not None else []
        return cmd + (["--candidates", ",".join(self.candidates)] if self.candidates else [])


@dataclass
class JobResult:
    job: WorkerJob
    returncode: int
    seconds: float
    device: str | None = None
    log: str = ""


class Executor(Protocol):
    def run(self, jobs: Sequence[WorkerJob], on_done: Callable[[JobResult], None] | None = None
            ) -> list[JobResult]: ...

    def cancel(self) -> None: ...


def visible_gpus(spec: str = "auto", device: str = "auto") -> list[str]:
    """GPU ids to place workers on, found without importing torch (the driver stays light). A device pinned to
    one GPU (`cuda:1`) or to the CPU means no placement: workers run one at a time on that device."""
    if device == "cpu" or device.startswith("cuda:") or spec == "none":
        return []
    if spec not in ("", "auto"):
        return [g.strip() for g in spec.split(",") if g.strip()]
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip().isdigit()] if out.returncode == 0 else []


class LocalExecutor:
    """Worker subprocesses on this machine, in the driver's process group (so cancelling the run reaches them)."""

    def __init__(self, run_dir: Path, *, gpus: Sequence[str] = (), python: str = sys.executable,
                 env: dict[str, str] | None = None, grace: float = 30.0, poll: float = 0.2,
                 pass_fds: Sequence[int] = ()) -> None:
        self.run_dir = Path(run_dir)
        self.pass_fds = tuple(pass_fds)          # the driver lock: held by every worker too
        self.gpus = list(gpus)
        self.python = python
        self.env = env
        self.grace, self.poll = grace, poll
        self._running: dict[int, tuple[subprocess.Popen, WorkerJob, float, str | None, str]] = {}
        self._cancelled = False

    def run(self, jobs: Sequence[WorkerJob], on_done: Callable[[JobResult], None] | None = None
            ) -> list[JobResult]:
        slots: list[str | None] = list(self.gpus) or [None]
        free = list(slots)
        queue = list(jobs)
        results: list[JobResult] = []
        logs = self.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        while (queue or self._running) and not (self._cancelled and not self._running):
            while queue and free and not self._cancelled:
                job, dev = queue.pop(0), free.pop(0)
                env = {**os.environ, **(self.env or {}), "PYTHONUNBUFFERED": "1"}
                if dev is not None:
                    env["CUDA_VISIBLE_DEVICES"] = dev
                log = logs / f"worker-{_safe(job.name)}.log"
                with open(log, "ab") as fh:
                    proc = subprocess.Popen(job.argv(self.run_dir, self.python), env=env, stdin=subprocess.DEVNULL,
                                            stdout=fh, stderr=subprocess.STDOUT, pass_fds=self.pass_fds)
                self._running[proc.pid] = (proc, job, time.monotonic(), dev, str(log))
            for pid, (proc, job, t0, dev, log) in list(self._running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                del self._running[pid]
                free.append(dev)
                res = JobResult(job, rc, time.monotonic() - t0, dev, log)
                results.append(res)
                if on_done:
                    on_done(res)
            time.sleep(self.poll)
        return results

    def cancel(self) -> None:
        """SIGTERM every running worker (they mark their cell cancelled), SIGKILL after `grace` seconds."""
        self._cancelled = True
        for proc, *_ in list(self._running.values()):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for proc, *_ in list(self._running.values()):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80] or "job"
