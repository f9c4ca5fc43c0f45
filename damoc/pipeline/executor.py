"""Kept for importers of the single-module version: the executors live in `damoc.pipeline.executors`."""
from damoc.pipeline.executors import EXECUTORS, Executor, JobResult, WorkerJob, visible_gpus
from damoc.pipeline.executors.local import LocalExecutor

__all__ = ["EXECUTORS", "Executor", "JobResult", "LocalExecutor", "WorkerJob", "visible_gpus"]
