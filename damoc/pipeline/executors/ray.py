"""The Ray executor: one Ray task per worker job, on a local Ray instance or an existing cluster.

    executor: {kind: ray, address: ""}        # "" = start a local Ray instance for this run
    executor: {kind: ray, address: auto}      # join the cluster this machine belongs to (`ray start` ran here)
    executor: {kind: ray, address: "ray://head:10001"}

Each task runs the same worker as the local executor (`python -m damoc.pipeline.worker RUN_DIR ...`) as a
subprocess of the Ray worker process, against the run directory, which must be on storage every node sees. A
subprocess rather than the worker's code in the task: torch and the models never load into Ray's long-lived worker
processes (their memory and thread settings die with the job), and the worker keeps its own cancel semantics
(SIGTERM: the current cell is marked cancelled). The task asks for what its job needs: on a cluster with GPUs,
`num_gpus` sized from the registry's pre-flight memory estimate (`executor.gpu_memory_gb`), else `num_cpus` = the
job's torch threads (and `memory` = the estimate). A task lost with its node is retried (`executor.max_retries`);
the retried worker skips the cells that have a `done.json`, so nothing finished is redone. Cancel = `ray.cancel`
(the task passes SIGTERM on to its worker and waits for it).
"""
from __future__ import annotations

import math
import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from damoc.errors import DamocError
from damoc.fsutil import atomic_write_json
from damoc.pipeline.executors.base import STORAGE_FILE, Executor, JobResult, OnDone, WorkerJob, safe_name

if TYPE_CHECKING:
    from damoc.pipeline.config import ExecutorSection

EXIT_CANCELLED = 130                   # the worker's (damoc.pipeline.worker.EXIT_CANCELLED; not imported: light)
# the environment a task passes on to its worker: damoc's settings and the offline switches of the hub libraries
PASS_ENV = ("HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "TOKENIZERS_PARALLELISM")
LOG_TAIL = 4000


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise DamocError("executor 'ray' needs Ray, which is not installed",
                         "pip install 'damoc[cluster]' (on every node), or run with --executor local") from None
    return ray


def gpus_for(need_bytes: int, gpu_bytes: float) -> float:
    """GPUs a job asks for: 1 when the GPU's memory is unknown; else its pre-flight peak over one GPU's memory (90%
    usable), in quarters below one GPU (several small candidates share a GPU), whole GPUs above."""
    if gpu_bytes <= 0 or need_bytes <= 0:
        return 1.0
    share = need_bytes / (0.9 * gpu_bytes)
    return math.ceil(share * 4) / 4 if share <= 1 else float(math.ceil(share))


def serve_job(run_dir: str, job: dict[str, Any], env: dict[str, str], grace: float) -> dict[str, Any]:
    """The body of a Ray task (runs on a node): the worker as a subprocess, its exit code and where it ran."""
    import signal
    import socket
    import subprocess
    import sys
    import tempfile

    import ray

    ctx = ray.get_runtime_context()
    node_id = ctx.get_node_id()
    host = socket.gethostname()
    gpus = [str(g) for g in ray.get_gpu_ids()]
    wj = WorkerJob(**job)
    logs = Path(run_dir) / "logs"
    try:
        fh = open(logs / f"worker-{safe_name(wj.name)}.log", "ab")
    except OSError:                      # the run directory is not here: the worker's check says so, in this log
        fh = tempfile.NamedTemporaryFile(prefix=f"damoc-{safe_name(wj.name)}-", suffix=".log", delete=False)
    child_env = {k: v for k, v in os.environ.items() if k != "DAMOC_WORKER_NO_PARENT_WATCH"}
    child_env.update(env)
    # DAMOC_NODE: a name the node was given (`DAMOC_NODE=gpu-2 ray start ...`), else its host name
    child_env.update({"PYTHONUNBUFFERED": "1", "DAMOC_NODE": os.environ.get("DAMOC_NODE") or host,
                      "DAMOC_RAY_NODE": node_id})
    if gpus:
        child_env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    with fh:
        proc = subprocess.Popen(wj.argv(Path(run_dir), sys.executable), env=child_env, stdin=subprocess.DEVNULL,
                                stdout=fh, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait()
        except BaseException:            # ray.cancel (KeyboardInterrupt in the task): the worker cancels its cell
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
    tail = ""
    if rc != 0:
        try:
            tail = Path(fh.name).read_text(encoding="utf-8", errors="replace")[-LOG_TAIL:]
        except OSError:
            pass
    return {"rc": rc, "node": child_env["DAMOC_NODE"], "ray_node": node_id, "gpus": gpus, "log": fh.name, "tail": tail}


class RayExecutor(Executor):
    def __init__(self, run_dir: Path, *, address: str = "", max_retries: int = 3, gpu_memory_gb: float = 0.0,
                 grace: float = 30.0, poll: float = 0.5, num_cpus: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.address = address
        self.max_retries = max_retries
        self.gpu_bytes = gpu_memory_gb * 1e9
        self.grace, self.poll = grace, poll
        self.num_cpus = num_cpus              # of a local instance (None = Ray's count)
        self._ray: Any = None
        self._started_here = False
        self._token: str | None = None
        self._cancelled = False
        self.startup_seconds = 0.0

    @classmethod
    def for_run(cls, run_dir: Path, section: "ExecutorSection", *, gpus: Sequence[str] = (), slots: int = 1,
                pass_fds: Sequence[int] = ()) -> "RayExecutor":
        # pass_fds: the driver lock cannot travel to other nodes; the driver holds it for the run's life
        return cls(run_dir, address=section.address, max_retries=section.max_retries,
                   gpu_memory_gb=section.gpu_memory_gb)

    # -- the connection -----------------------------------------------------------------------------
    def connect(self) -> Any:
        if self._ray is not None:
            return self._ray
        import signal
        import threading

        ray = import_ray()
        t0 = time.monotonic()
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        # ray.init replaces SIGTERM's handler with sys.exit: the driver's own (cancel = ray.cancel, cells marked
        # cancelled) must stay
        main = threading.current_thread() is threading.main_thread()
        saved = signal.getsignal(signal.SIGTERM) if main else None
        try:
            if ray.is_initialized():
                pass
            elif self.address:
                ray.init(address=self.address, **kw)
            else:
                from damoc.models import usable_cores
                ray.init(num_cpus=self.num_cpus or usable_cores(), **kw)
                self._started_here = True
        except Exception as e:  # ConnectionError, RuntimeError, ...: Ray's own classes vary by version
            where = f"the Ray cluster at {self.address!r}" if self.address else "a local Ray instance"
            raise DamocError(f"cannot start or join {where}: {type(e).__name__}: {e}",
                             "start the cluster first (ray start --head on the head node, ray start --address "
                             "HEAD:6379 on the others), then pass --ray-address auto; or leave it empty for a "
                             "local instance") from None
        finally:
            if saved is not None:
                signal.signal(signal.SIGTERM, saved)
        self.startup_seconds = time.monotonic() - t0
        self._ray = ray
        return ray

    def describe(self) -> dict[str, Any]:
        ray = self.connect()
        res = ray.cluster_resources()
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        return {"address": self.address or "local instance", "nodes": len(nodes),
                "cpus": res.get("CPU", 0), "gpus": res.get("GPU", 0),
                "startup_seconds": round(self.startup_seconds, 2)}

    def storage_token(self) -> str:
        """Written once into the run directory; every task's worker checks it reads the same token."""
        if self._token is None:
            import socket
            self._token = secrets.token_hex(8)
            atomic_write_json(self.run_dir / STORAGE_FILE, {"token": self._token, "written_by": socket.gethostname(),
                                                            "t": time.time()})
        return self._token

    def _options(self, job: WorkerJob, cluster_gpus: float) -> dict[str, Any]:
        opts: dict[str, Any] = {"max_retries": self.max_retries, "retry_exceptions": False,
                                "name": f"damoc:{self.run_dir.name}:{job.name}"}
        if cluster_gpus > 0:
            opts["num_gpus"] = min(gpus_for(job.memory, self.gpu_bytes), cluster_gpus)
            opts["num_cpus"] = 1
        else:
            opts["num_cpus"] = max(1.0, job.cpus)
        return opts

    # -- the jobs -------------------------------------------------------------------------------------
    def run(self, jobs: Sequence[WorkerJob], on_done: OnDone | None = None) -> list[JobResult]:
        if self._cancelled or not jobs:
            return []
        ray = self.connect()
        from dataclasses import asdict

        env = {k: v for k, v in os.environ.items() if k.startswith("DAMOC_") or k in PASS_ENV}
        for own in ("DAMOC_WORKER_NO_PARENT_WATCH", "DAMOC_NODE", "DAMOC_RAY_NODE"):    # each node's own
            env.pop(own, None)
        cluster_gpus = float(ray.cluster_resources().get("GPU", 0) or 0)
        task = ray.remote(serve_job)
        token = self.storage_token()
        pending: dict[Any, tuple[WorkerJob, float]] = {}
        for job in jobs:
            job.storage_token = token
            body = asdict(job)
            ref = task.options(**self._options(job, cluster_gpus)).remote(str(self.run_dir), body, env, self.grace)
            pending[ref] = (job, time.monotonic())
        results: list[JobResult] = []
        cancel_sent: float | None = None
        while pending:
            if self._cancelled and cancel_sent is None:
                cancel_sent = time.monotonic()
                for ref in pending:
                    self._quiet(ray.cancel, ref)
            if cancel_sent is not None and time.monotonic() - cancel_sent > self.grace + 5:
                for ref in pending:
                    self._quiet(ray.cancel, ref, force=True)
                for job, t0 in pending.values():
                    results.append(JobResult(job, EXIT_CANCELLED, time.monotonic() - t0))
                break
            try:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=self.poll)
            except Exception:
                if not self._cancelled:
                    raise
                # a local instance shares the driver's process group: the cancel's SIGTERM stopped it, and the
                # workers (same group) with it; they mark their cells cancelled themselves
                for job, t0 in pending.values():
                    results.append(JobResult(job, EXIT_CANCELLED, time.monotonic() - t0, message="cancelled"))
                break
            for ref in ready:
                job, t0 = pending.pop(ref)
                res = self._result(ray, ref, job, t0)
                results.append(res)
                if on_done:
                    on_done(res)
        return results

    def _result(self, ray: Any, ref: Any, job: WorkerJob, t0: float) -> JobResult:
        seconds = time.monotonic() - t0
        try:
            out = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            return JobResult(job, EXIT_CANCELLED, seconds, message="cancelled")
        except ray.exceptions.RayError as e:    # retries exhausted (node lost every time), worker crashed, ...
            code = EXIT_CANCELLED if self._cancelled else 1
            return JobResult(job, code, seconds, message=f"ray task failed: {type(e).__name__}: {e}"[:2000])
        node = f"{out['node']} (ray node {str(out['ray_node'])[:8]})"
        return JobResult(job, int(out["rc"]), seconds, device=",".join(out["gpus"]) or None, log=out["log"],
                         node=node, message=str(out.get("tail") or ""))

    @staticmethod
    def _quiet(fn: Any, *args: Any, **kw: Any) -> None:
        try:
            fn(*args, **kw)
        except Exception:
            pass

    def cancel(self) -> None:
        """From the driver's signal handler: `run` cancels its tasks (ray.cancel) at its next poll."""
        self._cancelled = True

    def close(self) -> None:
        if self._ray is not None:
            self._quiet(self._ray.shutdown)
            self._ray = None
