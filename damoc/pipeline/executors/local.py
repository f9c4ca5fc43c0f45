"""The local executor: worker subprocesses on this machine, in the driver's process group (cancelling the run
reaches them).

Workers at once: one per GPU when GPUs are visible (each with its own `CUDA_VISIBLE_DEVICES`); on CPU the `slots`
the driver placed (as many workers as the cores allow for the threads each uses; 1 = serial).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from damoc.pipeline.executors.base import Executor, JobResult, OnDone, WorkerJob, safe_name

if TYPE_CHECKING:
    from damoc.pipeline.config import ExecutorSection


class LocalExecutor(Executor):
    def __init__(self, run_dir: Path, *, gpus: Sequence[str] = (), slots: int = 1, python: str = sys.executable,
                 env: dict[str, str] | None = None, grace: float = 30.0, poll: float = 0.2,
                 pass_fds: Sequence[int] = ()) -> None:
        self.run_dir = Path(run_dir)
        self.pass_fds = tuple(pass_fds)          # the driver lock: held by every worker too
        self.gpus = list(gpus)
        self.slots = max(1, int(slots))
        self.python = python
        self.env = env
        self.grace, self.poll = grace, poll
        self._running: dict[int, tuple[subprocess.Popen, WorkerJob, float, str | None, str]] = {}
        self._cancelled = False

    @classmethod
    def for_run(cls, run_dir: Path, section: "ExecutorSection", *, gpus: Sequence[str] = (), slots: int = 1,
                pass_fds: Sequence[int] = ()) -> "LocalExecutor":
        return cls(run_dir, gpus=gpus, slots=slots, pass_fds=pass_fds)

    def describe(self) -> dict[str, Any]:
        return {"gpus": self.gpus, "workers_at_once": len(self.gpus) or self.slots}

    def run(self, jobs: Sequence[WorkerJob], on_done: OnDone | None = None) -> list[JobResult]:
        free: list[str | None] = list(self.gpus) or [None] * self.slots
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
                log = logs / f"worker-{safe_name(job.name)}.log"
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
