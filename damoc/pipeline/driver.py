"""The driver: one light process per run (never imports torch, never holds a model).

    python -m damoc.pipeline.driver RUN_DIR [--resume]

Started by `api.start_run` in a new session (it survives the terminal closing), it runs the shared data cells, then
the candidate cells, in worker processes through the executor of `executor.kind` (`EXECUTORS`), recovers from a
worker that dies (the cell it was running is marked failed, the candidates it had not reached are served by a new
worker), writes the leaderboard and the hand-off files, and appends `run_started` / `run_finished` to the event log.
SIGTERM (cancel) is passed to the workers; their current cells are marked cancelled and `damoc run --resume`
continues from there.

Placement (`Placement.of`): the data cells run first, alone, on every core. Then the candidates, largest first: on
a CPU machine as many workers at once as the cores allow for the threads each uses (`executor.workers`; they share
one candidate list, each taking the next candidate), or one worker for everything when only one fits (it also
serves the data cells: one import of transformers per run); one worker per candidate per GPU; on Ray one task per
candidate with the resources it needs.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from damoc.events import RunFinished, RunStarted, StageTracker
from damoc.fsutil import atomic_write_text, read_json
from damoc.pipeline.cells import FinetuneCell
from damoc.pipeline.cells.scoring import subset_of
from damoc.pipeline.config import ExecutorSection, LeaderboardSection, SelectSection
from damoc.pipeline.executors import EXECUTORS, JobResult, WorkerJob, visible_gpus
from damoc.pipeline.executors.base import DATA_ENDED
from damoc.pipeline.plan import Plan
from damoc.pipeline.rundir import DATA_CANDIDATE, DriverLock, RunDir
from damoc.pipeline.worker import EXIT_CANCELLED, EXIT_DATA_FAILED, EXIT_NO_STORAGE, STORAGE_FAILED, STORAGE_HINT, \
    auto_threads

RETRY_STATES = ("pending", "running")
EXIT_BUSY = 75          # another driver holds the run (EX_TEMPFAIL): nothing was touched


@dataclass(frozen=True)
class Placement:
    """How the candidate workers of a run are laid out (the data cells always run first, alone, every core)."""

    pool: str               # all: one worker serves data + every candidate | slots: `slots` workers share the
                            # candidate list | candidate: one worker (Ray task) per candidate
    slots: int              # workers at once on a CPU machine
    threads: int            # torch threads of a candidate worker (0 = torch's default)
    order: list[str]        # candidates, largest first

    @classmethod
    def of(cls, plan: Plan, section: ExecutorSection, gpus: list[str], *, settings_threads: int = 0,
           cores: int = 1) -> "Placement":
        cfg = plan.config
        device = str(cfg.get("device", "auto"))
        threads = int(cfg.get("threads") or settings_threads or 0) or auto_threads(plan, device, gpu=bool(gpus))
        runnable = plan.runnable
        order = [c.name for c in sorted(runnable, key=lambda c: -(c.parameters or 0))]   # stable: plan order ties
        if section.workers:
            slots = section.workers
        else:
            slots = max(1, cores // threads) if threads else 1
            slots = min(slots, _memory_slots(plan))
        slots = max(1, min(slots, len(order) or 1))
        if section.pool != "auto":
            pool = section.pool
        elif section.kind != "local" or gpus:
            pool = "candidate"
        else:
            pool = "slots" if slots > 1 else "all"
        if pool == "all":
            slots = 1
        return cls(pool, slots, threads, order)


def _memory_slots(plan: Plan) -> int:
    """Workers whose pre-flight peaks (the largest first) fit the memory the pre-flight saw free."""
    pf = plan.preflight or {}
    free = (pf.get("totals") or {}).get("memory_available_bytes")
    peaks = sorted((_peak(c) for c in pf.get("candidates") or []), reverse=True)
    if not free or not peaks:
        return 1 << 16
    n, used = 0, 0
    for p in peaks:
        if used + p > free:
            break
        n, used = n + 1, used + p
    return max(1, n)


def _peak(pf_candidate: dict[str, Any]) -> int:
    mem = pf_candidate.get("memory") or {}
    return max((int((m or {}).get("total") or 0) for m in mem.values()), default=0)


class Driver:
    def __init__(self, rd: RunDir, *, resumed: bool = False, lock_fd: int | None = None) -> None:
        self.rd = rd
        self.lock_fd = lock_fd
        self.plan = Plan.from_dict(read_json(rd.path / "plan.json"))
        self.cfg = self.plan.config
        self.resumed = resumed
        self.cancelled = False
        self.stop_reason = ""           # a job said the run cannot go on (a node without the run directory)
        self.section = ExecutorSection.model_validate(self.cfg.get("executor") or {})
        self.gpus = visible_gpus(self.section.gpus, str(self.cfg.get("device", "auto")))
        from damoc.models import usable_cores
        from damoc.settings import Settings

        self.placement = Placement.of(self.plan, self.section, self.gpus, settings_threads=Settings.load().threads,
                                      cores=usable_cores())
        self.pool = self.placement.pool
        # the workers inherit the driver lock: a resume cannot start while a worker of this driver still runs
        self.executor = EXECUTORS.get(self.section.kind).for_run(
            rd.path, self.section, gpus=self.gpus, slots=self.placement.slots,
            pass_fds=(lock_fd,) if lock_fd is not None else ())

    # -- signals ------------------------------------------------------------------------------------
    def install_signals(self) -> None:
        def on_term(signum: int, frame: Any) -> None:
            if not self.cancelled:
                self.cancelled = True
                self.executor.cancel()

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)     # a closed terminal must not stop a run

    # -- helpers ------------------------------------------------------------------------------------
    def _cells(self, candidate: str) -> list[Any]:
        return [self.rd.cell(c.candidate, c.stage) for c in self.plan.cells_of(candidate)]

    @property
    def halted(self) -> bool:
        return self.cancelled or bool(self.stop_reason)

    def _on_job_done(self, res: JobResult) -> None:
        """A worker that died (not a clean exit, not a cancel) leaves its current cell 'running': mark it failed.
        A worker that cannot see the run directory (a node without the shared storage) stops the run."""
        if res.job.data and res.job.claim:        # the workers waiting for this round's data cells stop waiting
            ended = self.rd.path / "claims" / res.job.claim / DATA_ENDED
            ended.parent.mkdir(parents=True, exist_ok=True)
            ended.touch()
        if res.returncode == EXIT_NO_STORAGE and not self.stop_reason:
            line = next((ln for ln in res.message.splitlines() if ln.startswith(STORAGE_FAILED)), "")
            self.stop_reason = (line.removeprefix(STORAGE_FAILED) or
                                f"node {res.node or '?'} cannot see the run directory {self.rd.path}")
            self.stop_reason += f"; {STORAGE_HINT}"
            self.executor.cancel()
            return
        if res.returncode in (0, EXIT_CANCELLED, EXIT_DATA_FAILED) or self.halted:
            return
        names = ([DATA_CANDIDATE] if res.job.data else []) + list(res.job.candidates)
        for name in names:
            for cell in self._cells(name):
                owner = (read_json(cell.running_marker) if cell.state == "running" else None) or {}
                if cell.state == "running" and owner.get("job", res.job.name) == res.job.name:
                    where = f" on node {res.node}" if res.node else ""
                    why = (res.message.strip().splitlines() or [""])[-1] if res.message else ""
                    reason = (f"worker process died{where} (exit code {res.returncode}"
                              f"{': ' + why if why else ''}); see "
                              f"{Path(res.log).relative_to(self.rd.path) if _inside(res.log, self.rd.path) else 'logs/'}")
                    cell.mark_failed("failed", reason)
                    StageTracker(self.rd, cell.stage, run_id=self.rd.run_id, candidate=name,
                                 cell=cell.key).finish("failed", reason)

    def _jobs(self, names: list[str], max_subset: float | None = None) -> list[WorkerJob]:
        """The candidate jobs of one round, largest candidates first."""
        if not names:
            return []
        p = self.placement
        names = sorted(names, key=lambda n: p.order.index(n) if n in p.order else len(p.order))
        mem = {c.get("name"): _peak(c) for c in (self.plan.preflight or {}).get("candidates") or []}
        cpus = float(max(1, p.threads))
        if p.pool == "candidate":
            return [WorkerJob(n, [n], max_subset=max_subset, threads=p.threads, cpus=cpus, memory=mem.get(n, 0))
                    for n in names]
        if p.pool == "slots":
            import secrets
            token = secrets.token_hex(4)        # a new round: candidates a dead worker had claimed are free again
            return [WorkerJob(f"slot-{i + 1}", names, max_subset=max_subset, claim=token, threads=p.threads,
                              cpus=cpus) for i in range(min(p.slots, len(names)))]
        return [WorkerJob("pool", names, max_subset=max_subset, threads=p.threads, cpus=cpus)]

    def _run_jobs(self, jobs: list[WorkerJob]) -> None:
        self.executor.run(jobs, on_done=self._on_job_done)
        for token in {j.claim for j in jobs if j.claim}:
            shutil.rmtree(self.rd.path / "claims" / token, ignore_errors=True)

    # -- the run ------------------------------------------------------------------------------------
    def run(self) -> int:
        t0 = time.monotonic()
        rd = self.rd
        rd.set_driver_pid(os.getpid())
        rd.update_meta(status="running")
        rd.emit(RunStarted(run_id=rd.run_id, mode=self.plan.mode, candidates=[c.name for c in self.plan.candidates],
                           config=self.cfg, pid=os.getpid(), resumed=self.resumed))
        for key, why in rd.unusable_markers():   # a garbage done.json: the cell is redone, and the log says why
            rd.emit(_log(rd.run_id, f"{key}: {why}; the cell counts as not done and runs again"))
        status, reason = "ok", ""
        try:
            rd.emit(_log(rd.run_id, self._where(), level="info"))
            status, reason = self._serve()
        except Exception as e:  # the run log must always end with run_finished, or attach would wait forever
            from damoc.errors import DamocError

            what = (f"{e.message} ({e.hint})" if e.hint else e.message) if isinstance(e, DamocError) else \
                f"driver error: {type(e).__name__}: {e}"
            status, reason = "failed", what
            (rd.path / "logs").mkdir(exist_ok=True)
            (rd.path / "logs" / "driver-error.log").write_text(traceback.format_exc(), encoding="utf-8")
        finally:
            self.executor.close()
        seconds = float(rd.meta.get("seconds") or 0.0) + (time.monotonic() - t0)
        winner = None
        if status != "cancelled":
            winner = self._finish_outputs()
            if status == "ok" and winner is None:
                status, reason = "failed", reason or "no candidate produced a score"
        rd.update_meta(status={"ok": "finished"}.get(status, status), winner=winner, seconds=seconds,
                       finished=time.time())
        rd.emit(RunFinished(run_id=rd.run_id, status=status, reason=reason, seconds=seconds))  # type: ignore[arg-type]
        # the pid goes last: a reader that sees no driver must also see run_finished (else it reads 'interrupted')
        rd.update_meta(pid=None)
        return {"ok": 0, "cancelled": EXIT_CANCELLED}.get(status, 1)

    def _serve(self) -> tuple[str, str]:
        rd = self.rd
        data_cells = [rd.cell(c.candidate, c.stage) for c in self.plan.data_cells]
        names = [c.name for c in self.plan.runnable]
        # first round: everything not done (resume retries failed cells); later rounds: only the candidates a dead
        # worker never reached
        todo = [n for n in names if any(not c.done for c in self._cells(n))]
        select = SelectSection.model_validate(self.cfg.get("select") or {})
        rounds = select.adaptive and self.plan.mode == "damoc" and len(select.sizes) > 1
        todo = [n for n in self.placement.order if n in todo]
        if any(not c.done for c in data_cells):
            first = select.sizes[0] if rounds else None
            if self.pool == "all":
                # one process for the data and every candidate: transformers is imported once (~7 s) per run
                self._run_jobs([WorkerJob("pool", todo, data=True, max_subset=first, threads=self.placement.threads)])
            elif self.pool == "slots" and todo:
                # the first slot serves the data cells, then takes candidates; the others import meanwhile and
                # take candidates once the data cells are done: no process of its own for the data cells
                jobs = self._jobs(todo, first)
                jobs[0].data = True
                for j in jobs[1:]:
                    j.wait_data = True
                self._run_jobs(jobs)
            else:
                self._run_jobs([WorkerJob("data", data=True)])
            if self.stop_reason:
                return "failed", self.stop_reason
            if self.cancelled:
                return "cancelled", "cancelled by the user"
            bad = next((c for c in data_cells if not c.done), None)
            if bad is not None:
                why = (bad.failure() or {}).get("reason") or f"{bad.key} did not finish"
                return "failed", f"{bad.key} failed: {why}"
            if self.pool in ("all", "slots"):
                todo = [n for n in names if any(c.state in RETRY_STATES for c in self._cells(n))]
        if rounds:
            status = self._serve_rounds(names, select)
        else:
            self._serve_cells(names, todo)
            status = ("ok", "")
        if self.stop_reason:
            return "failed", self.stop_reason
        if self.cancelled:
            return "cancelled", "cancelled by the user"
        return status

    def _serve_cells(self, names: list[str], todo: list[str], max_subset: float | None = None) -> None:
        """Run the pending cells of `todo` (up to `max_subset`); retry the candidates a dead worker never reached."""
        def pending(n: str) -> bool:
            return any(c.state in RETRY_STATES for c, spec in zip(self._cells(n), self.plan.cells_of(n))
                       if max_subset is None or subset_of(spec) <= max_subset)

        for _ in range(len(names) + 1):
            if not todo or self.halted:
                break
            self._run_jobs(self._jobs(todo, max_subset))
            todo = [n for n in names if pending(n)]

    def _serve_rounds(self, names: list[str], select: SelectSection) -> tuple[str, str]:
        """select.adaptive: one round per proxy share; after each, stop the hopeless candidates, or the run."""
        from damoc.pipeline import adaptive
        from damoc.pipeline.leaderboard import leaderboard_of

        rules = LeaderboardSection.model_validate(self.cfg.get("leaderboard") or {})
        n_train = self._proxy_samples()
        cost = lambda who, share: adaptive.round_cost(self.plan, who, share, n_train)  # noqa: E731
        cap = int(select.budget * cost(names, select.sizes[-1]))
        alive = list(names)
        for i, share in enumerate(select.sizes):
            self._serve_cells(alive, [n for n in alive if any(not c.done for c in self._cells(n))], share)
            if self.halted:
                return "cancelled", "cancelled by the user"
            if i == len(select.sizes) - 1:
                break
            nxt = select.sizes[i + 1]
            d = adaptive.decide(leaderboard_of(self.rd, run_status="running"), alive, share=share, select=select,
                                rules=rules, spent=self._steps_spent(), next_cost=lambda who: cost(who, nxt),
                                cap=cap)
            for name, why in d.stop.items():
                self._stop(name, share, why, adaptive.STOP)
            alive = [n for n in alive if n not in d.stop]
            if d.done:
                for name in alive:
                    self._stop(name, share, d.done, adaptive.DECIDED)
                self.rd.emit(_log(self.rd.run_id, d.done, level="info"))
                break
        return "ok", ""

    def _proxy_samples(self) -> int:
        """Training samples the proxies draw their shares from (the last shared data cell's output)."""
        last = self.rd.cell(DATA_CANDIDATE, self.plan.data_cells[-1].stage).result() or {}
        return int(last.get("n_out") or last.get("n_train") or 0)

    def _steps_spent(self) -> int:
        return sum(int((self.rd.cell(c.candidate, c.stage).result() or {}).get("steps") or 0)
                   for c in self.plan.cells if c.kind == FinetuneCell.name)

    def _stop(self, name: str, share: float, why: str, outcome: str) -> None:
        """Mark a candidate's proxies beyond `share` as skipped by the adaptive budget: `outcome` is STOP (the
        candidate is out: its row reads `stopped`) or DECIDED (the run needs no larger proxy)."""
        for spec in self.plan.cells_of(name):
            cell = self.rd.cell(spec.candidate, spec.stage)
            if subset_of(spec) > share and not cell.done:
                cell.mark_failed("skipped", why, adaptive=outcome)
                StageTracker(self.rd, spec.stage, run_id=self.rd.run_id, candidate=name,
                             cell=spec.key).finish("skipped", why)

    def _finish_outputs(self) -> str | None:
        """leaderboard.{json,csv,md} and, for a DaMoC run with a winner, the hand-off files."""
        from damoc.pipeline.leaderboard import leaderboard_of

        lb = leaderboard_of(self.rd, run_status="finished")
        atomic_write_text(self.rd.path / "leaderboard.json", lb.to_json())
        atomic_write_text(self.rd.path / "leaderboard.csv", lb.to_csv())
        atomic_write_text(self.rd.path / "leaderboard.md", lb.to_markdown())
        if lb.winner and self.plan.mode in ("damoc", "ground-truth"):
            try:
                from damoc.pipeline.api import handoff_for
                from damoc.settings import Settings
                for name, text in handoff_for(Settings.load(), self.rd, lb).items():
                    atomic_write_text(self.rd.path / "handoff" / name, text)
            except Exception as e:  # a hand-off is a convenience; never fail a finished run for it
                self.rd.emit(_log(self.rd.run_id, f"hand-off files not written: {e}"))
        return lb.winner


    def _where(self) -> str:
        p = self.placement
        facts = {"pool": p.pool, **({"workers_at_once": p.slots} if p.pool == "slots" else {}),
                 "threads": p.threads or "torch default", **self.executor.describe()}
        return f"executor {self.section.kind}: " + ", ".join(f"{k} {v}" for k, v in facts.items())


def _inside(path: str, root: Path) -> bool:
    try:
        return bool(path) and Path(path).resolve().is_relative_to(root.resolve())
    except OSError:
        return False


def _log(run_id: str, message: str, level: str = "warning") -> Any:
    from damoc.events import Log
    return Log(run_id=run_id, level=level, message=message)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m damoc.pipeline.driver")
    ap.add_argument("run_dir")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--lock-fd", type=int, default=None, help="the run's driver lock, taken by the parent")
    args = ap.parse_args(argv)
    rd = RunDir(Path(args.run_dir))
    lock = DriverLock(rd.path / "driver.lock")
    if args.lock_fd is not None:
        lock.adopt(args.lock_fd)
    elif not lock.acquire():
        print(f"run {rd.run_id} is already being driven by pid {lock.holder()}; nothing done", file=sys.stderr)
        return EXIT_BUSY
    lock.write_pid(os.getpid())
    try:
        driver = Driver(rd, resumed=args.resume, lock_fd=lock.fd)
    except Exception as e:  # e.g. executor.kind ray where Ray is not installed: the log must still say why
        from pydantic import ValidationError

        why = "; ".join(str(x.get("msg")) for x in e.errors()) if isinstance(e, ValidationError) else str(e)
        rd.update_meta(status="failed", finished=time.time())
        rd.emit(RunFinished(run_id=rd.run_id, status="failed", reason=f"cannot start the run: {why}", seconds=0.0))
        rd.update_meta(pid=None)
        print(f"cannot start the run: {why}", file=sys.stderr)
        return 1
    driver.install_signals()
    return driver.run()


if __name__ == "__main__":
    sys.exit(main())
