"""Executors: where the worker processes of a run go. One registry, `EXECUTORS` (`executor.kind`, `damoc run
--executor`): `local` (this machine: one worker per GPU, or as many CPU workers as the cores allow) and `ray` (a Ray
cluster, or a local Ray instance). Entries are lazy: listing them never imports Ray."""
from __future__ import annotations

from damoc.pipeline.executors.base import Executor, JobResult, WorkerJob, visible_gpus
from damoc.plugins import Registry

EXECUTORS: Registry[type[Executor]] = Registry("executor", Executor)
EXECUTORS.add("local", "damoc.pipeline.executors.local:LocalExecutor",
              description="worker processes on this machine: one per GPU, or as many as the cores allow")
EXECUTORS.add("ray", "damoc.pipeline.executors.ray:RayExecutor",
              description="one Ray task per worker job on a Ray cluster (address) or a local Ray instance; "
                          "needs pip install 'damoc[cluster]'",
              requires="ray", extra_name="cluster")


def unavailable(kind: str) -> str:
    """Why executor `kind` cannot run here ("" when it can): the package it needs is not installed."""
    import importlib.util

    e = EXECUTORS.entry(kind)
    need = e.extra.get("requires")
    try:
        missing = bool(need) and importlib.util.find_spec(need) is None
    except (ImportError, ValueError):      # a broken or blocked install counts as missing
        missing = True
    if missing:
        return (f"executor {e.name!r} needs {need}, which is not installed: "
                f"pip install 'damoc[{e.extra.get('extra_name', need)}]'")
    return ""

__all__ = ["EXECUTORS", "Executor", "JobResult", "WorkerJob", "unavailable", "visible_gpus"]
