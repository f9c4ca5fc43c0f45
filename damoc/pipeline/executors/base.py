"""What every executor shares: the job a worker process serves, its result, the executor interface, GPU discovery.

The driver hands an executor a list of `WorkerJob`s (each: serve the data cells, or the cells of some candidates)
and gets back one `JobResult` per job. A job needs only the run directory: the worker reads the frozen plan, writes
into cell folders and appends to the run's events.jsonl, so an executor decides only where and when a worker runs.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from damoc.pipeline.config import ExecutorSection


STORAGE_FILE = "storage.json"      # the token a worker checks to know it sees *this* run directory
DATA_ENDED = ".data-ended"         # claims/<token>/: the round's data job has exited (written by the driver)


@dataclass
class WorkerJob:
    name: str                               # "data", "pool", "slot-1", or the candidate it serves
    candidates: list[str] = field(default_factory=list)
    data: bool = False                      # serve the shared data cells first (then the candidates, if any)
    max_subset: float | None = None         # an adaptive round: only the proxies on shares up to this
    claim: str | None = None                # jobs of one round sharing a candidate list take one candidate at a time
    wait_data: bool = False                 # start now (imports), serve candidates once the round's data job is done
    threads: int = 0                        # torch threads for the candidate cells (0 = the worker decides)
    cpus: float = 1.0                       # CPUs a fleet executor asks for (the local one counts slots)
    memory: int = 0                         # the pre-flight peak of its candidates, bytes (0 = unknown)
    storage_token: str | None = None        # the worker first checks it sees this run directory (fleet executors)

    def argv(self, run_dir: Path, python: str = sys.executable) -> list[str]:
        cmd = [python, "-m", "damoc.pipeline.worker", str(run_dir), "--job", self.name]
        cmd += ["--data"] if self.data else []
        cmd += ["--max-subset", repr(self.max_subset)] if self.max_subset is not None else []
        cmd += ["--claim", self.claim] if self.claim else []
        cmd += ["--wait-data"] if self.wait_data else []
        cmd += ["--threads", str(self.threads)] if self.threads else []
        cmd += ["--storage-token", self.storage_token] if self.storage_token else []
        return cmd + (["--candidates", ",".join(self.candidates)] if self.candidates else [])


@dataclass
class JobResult:
    job: WorkerJob
    returncode: int
    seconds: float
    device: str | None = None               # the GPU(s) it ran on
    log: str = ""                           # its log file
    node: str | None = None                 # the machine it ran on (fleet executors)
    message: str = ""                       # why it failed, when the worker could say (e.g. the storage check)


OnDone = Callable[[JobResult], None]


class Executor(ABC):
    """Where worker processes run. `run` blocks until every job has ended (or the executor was cancelled) and
    calls `on_done` as each one ends; `cancel` may be called from a signal handler while `run` is blocked."""

    @classmethod
    @abstractmethod
    def for_run(cls, run_dir: Path, section: "ExecutorSection", *, gpus: Sequence[str] = (),
                slots: int = 1, pass_fds: Sequence[int] = ()) -> "Executor":
        """The executor of one run's driver: `section` is the run config's `executor`, `gpus` the GPUs the driver
        sees, `slots` the workers at once the driver placed on a CPU machine, `pass_fds` the driver lock."""

    @abstractmethod
    def run(self, jobs: Sequence[WorkerJob], on_done: OnDone | None = None) -> list[JobResult]: ...

    @abstractmethod
    def cancel(self) -> None: ...

    def close(self) -> None:
        """Release what the executor started (a local Ray instance); the run is over."""

    def describe(self) -> dict[str, Any]:
        """What the run log says about where the workers run."""
        return {}


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


def safe_name(name: str) -> str:
    """A job or candidate name as a file name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80] or "job"
