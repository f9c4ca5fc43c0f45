"""Train a pool's candidates in worker processes, one thread each, longest first.

Models this small do not get faster with a second torch thread, but two processes on two cores train two candidates
in the time of one. Workers are spawned (never forked: the parent may already hold OpenMP threads), receive the
shared `PoolData` once through the pool initializer, and send their progress events back through a queue that a
thread of the parent forwards to the caller's reporter, so `damoc zoo build` shows the same live progress as a
serial build.
"""
from __future__ import annotations

import multiprocessing as mp
import threading
from pathlib import Path
from typing import Any

from damoc.events import Reporter

# Worker-process state, set once by `_init` in each spawned worker (never in the parent).
_WORKER: dict[str, Any] = {}


class _QueueReporter:
    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def emit(self, event: Any) -> None:
        self.queue.put(event)


def _init(data: Any, queue: Any) -> None:
    import signal

    import torch

    # Ctrl-C reaches the whole process group; only the parent acts on it (it terminates the pool), so a worker never
    # dies half-way through a send or, worse, swallows the interrupt and takes the next candidate.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    _WORKER.update(data=data, reporter=_QueueReporter(queue) if queue is not None else None)


def _train(spec: Any, rec: Any, folder: str, device: str) -> dict[str, Any]:
    from damoc.zoo.build import train_candidate

    return train_candidate(spec, rec, _WORKER["data"], Path(folder), device, _WORKER["reporter"])


def _cost(spec: Any, vocab: int) -> float:
    """Relative training cost: ~parameters x steps (longest first keeps the last worker from finishing alone)."""
    params = 12 * spec.hidden * spec.hidden * spec.layers + spec.hidden * vocab
    return params * (spec.pretrain_steps + spec.knowledge_steps + spec.sft_steps)


def train_in_processes(rec: Any, data: Any, folder: Path, device: str, reporter: Reporter | None,
                       workers: int) -> list[dict[str, Any]]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue() if reporter is not None else None
    pump = None
    if queue is not None:
        def forward() -> None:
            while (ev := queue.get()) is not None:
                reporter.emit(ev)  # type: ignore[union-attr]
        pump = threading.Thread(target=forward, name="zoo-events", daemon=True)
        pump.start()
    done: dict[str, dict[str, Any]] = {}
    # multiprocessing.Pool rather than concurrent.futures: on Ctrl-C the pool must stop now (Pool.terminate), while
    # ProcessPoolExecutor's shutdown would first train every candidate still queued.
    pool = ctx.Pool(workers, initializer=_init, initargs=(data, queue))
    try:
        jobs = [(spec.name, pool.apply_async(_train, (spec, rec, str(folder), device)))
                for spec in sorted(rec.candidates, key=lambda c: _cost(c, rec.vocab_size), reverse=True)]
        for name, job in jobs:
            done[name] = job.get()              # a failed candidate fails the build, as in a serial build
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
        if queue is not None:
            queue.put(None)
            pump.join(timeout=10)  # type: ignore[union-attr]
    return [done[spec.name] for spec in rec.candidates]    # manifest order = recipe order
