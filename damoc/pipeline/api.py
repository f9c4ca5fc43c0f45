"""The run API: what the CLI calls, and what `damoc.facade` offers the app. Nothing here imports torch or holds a model: runs happen in a driver process
(started in a new session, so it survives the terminal) and its worker processes; callers read the run directory.

    cfg = load_config("run.yaml", ["filter.ratio=0.2"])
    plan = plan_run(settings, cfg)                  # cells, skipped stages with reasons, pre-flight estimate
    h = start_run(settings, cfg)                    # -> RunHandle(run_id, path)
    for ev in open_run(settings, h.run_id).follow(): ...
    lb = leaderboard(open_run(settings, h.run_id)); lb.to_markdown()
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from damoc.errors import DamocError, UnknownNameError
from damoc.events import RunFinished
from damoc.fsutil import atomic_write_json, read_json
from damoc.pipeline.compare import Comparison, compare_scores
from damoc.pipeline.config import RunConfig, save_config
from damoc.pipeline.config import load_config as _load_config
from damoc.pipeline.leaderboard import Leaderboard, leaderboard_of
from damoc.pipeline.plan import Plan, make_plan
from damoc.pipeline.rundir import DriverLock, RunBusy, RunDir
from damoc.pipeline.rundir import list_runs as _list_run_dirs
from damoc.registry.storage import is_storage_error, storage_error
from damoc.registry.store import RegistryStore
from damoc.settings import Settings

__all__ = ["RunConfig", "Plan", "RunHandle", "RunSummary", "RunOverview", "Standing", "Leaderboard", "Comparison",
           "load_config", "save_config", "plan_run", "start_run", "resume_run", "cancel_run", "list_runs",
           "summarise_run", "run_overview", "run_seconds", "open_run", "leaderboard", "compare_runs", "handoff",
           "wait_run"]


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                base: dict[str, Any] | None = None) -> RunConfig:
    """File (YAML/TOML/JSON, optional) < `base` (dotted keys from CLI flags) < `--set key=value` overrides."""
    return _load_config(path, overrides, base)


def plan_run(settings: Settings, config: RunConfig, *, with_preflight: bool = True,
             assume_downloads: bool = False) -> Plan:
    """The plan of a run; `assume_downloads` (a dry run) plans catalog candidates that are not downloaded yet."""
    return make_plan(settings, config, with_preflight=with_preflight, assume_downloads=assume_downloads)


@dataclass
class DryRun:
    """What `damoc run --dry-run` shows: the dataset's check, the plan (not-downloaded candidates included, with
    their downloads) and the pre-flight. `ok` is False when the dataset has an error (the run would fail on it)."""

    dataset: dict[str, Any]
    plan: Plan
    samples: int

    @property
    def ok(self) -> bool:
        return bool(self.dataset.get("ok", True))

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "dataset": self.dataset, **self.plan.to_dict(), "skipped": self.plan.skipped,
                "downloads": [{"candidate": c.name, "what": c.download, "bytes": c.download_bytes}
                              for c in self.plan.downloads]}


def dry_run(settings: Settings, config: RunConfig) -> DryRun:
    """Read and check the training (and test) data as `damoc data inspect` does, then plan the run as if every
    catalog candidate were downloaded. A file that cannot be read at all raises its DataError (file, line, fix)."""
    from damoc.data import inspect_dataset

    plan = make_plan(settings, config, assume_downloads=True)
    ds = config.dataset
    rep = inspect_dataset(plan.config["dataset"]["train"], format=ds.format)
    if ds.test:
        test = inspect_dataset(plan.config["dataset"]["test"], format=ds.format)
        rep = {**rep, "test": test, "ok": bool(rep.get("ok", True) and test.get("ok", True))}
    return DryRun(rep, plan, int(rep.get("samples") or 0))


@dataclass
class RunHandle:
    run_id: str
    path: Path
    pid: int | None = None
    process: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the driver (only for runs started from this process); returns its exit code."""
        if self.process is None:
            return None
        return self.process.wait(timeout=timeout)


@dataclass
class RunSummary:
    run_id: str
    mode: str
    status: str
    created: float
    candidates: list[str]
    winner: str | None
    seconds: float | None
    label: str = ""
    dataset: str = ""
    problem: str = ""               # why the run's own files cannot be read (status "unreadable")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Signals that end a CLI: deferred while a run directory is created and its driver spawned (see _signals_deferred).
HELD_SIGNALS = tuple(getattr(signal, n) for n in ("SIGHUP", "SIGINT", "SIGTERM") if hasattr(signal, n))


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Defer HELD_SIGNALS from the moment a run directory exists until its driver is spawned and recorded: a
    terminal closed or a Ctrl-C in that window would otherwise leave a run that no driver ever starts ("created"
    for ever). A signal that comes meanwhile is recorded, and raised again once the previous handlers are back, so
    nothing is lost or changed (an ignored SIGHUP stays ignored). Python-level handlers, not a signal mask: a mask
    holds only the calling thread's signals, and the kernel hands a process-directed signal to any thread that does
    not block it. Handlers can only be set from the main thread, so from another thread (the TUI's workers) this
    defers nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum)) for sig in HELD_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(caught):
            signal.raise_signal(sig)


def _spawn_driver(settings: Settings, rd: RunDir, *, resume: bool, wait: float = 5.0) -> subprocess.Popen:
    """Take the run's driver lock (RunBusy when another process holds it) and start the driver holding it: the
    descriptor is inherited, so the lock passes to the driver without a moment in which it is free, and our copy
    is closed once the driver runs."""
    lock = _take_driver_lock(rd, wait=wait)
    assert lock.fd is not None
    logs = rd.path / "logs"
    env = {**os.environ, "DAMOC_HOME": str(settings.home), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "damoc.pipeline.driver", str(rd.path), "--lock-fd", str(lock.fd)]
    cmd += ["--resume"] if resume else []
    try:
        logs.mkdir(exist_ok=True)
        with open(logs / "driver.log", "ab") as fh:
            # a new session: its own process group (cancel = killpg) and no controlling terminal (closing it is
            # harmless)
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=str(rd.path), pass_fds=(lock.fd,))
        try:
            lock.write_pid(proc.pid)
            rd.set_driver_pid(proc.pid)
        except BaseException:
            # not recorded (a full disk): a driver nobody can see or cancel must not run on
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    finally:
        lock.release()
    return proc


def _take_driver_lock(rd: RunDir, *, wait: float = 5.0, poll: float = 0.05) -> DriverLock:
    """The run's driver lock, or RunBusy naming the process that holds it. A live holder that drives the run (or
    another starter about to spawn a driver) is refused at once. Two holders are waited for, up to `wait` s: a
    driver that has recorded the end of its run and is exiting (a resume right after a cancel), and the workers
    of a driver that was just killed, which hold the lock for the second or so until they notice."""
    lock = rd.lock()
    deadline = time.monotonic() + wait
    while not lock.acquire():
        holder = lock.holder()
        exiting = not rd.is_alive() and rd.meta.get("status") not in ("created", "running")
        if (_pid_alive(holder) and not exiting) or time.monotonic() >= deadline:
            alive = _pid_alive(holder)
            raise RunBusy(f"run {rd.run_id} is already being driven by pid {holder}" if alive else
                          f"run {rd.run_id} is still held by the workers of its last driver (pid {holder})",
                          f"follow it with: damoc attach {rd.run_id}" if alive else
                          "wait a few seconds for them to stop, then resume again")
        time.sleep(poll)
    return lock


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) holds nothing
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def _run_disk_estimate(plan: Plan) -> int | None:
    totals = (plan.preflight or {}).get("totals") or {}
    value = totals.get("work_disk_bytes")
    return int(value) if isinstance(value, (int, float)) and value > 0 else None


def start_run(settings: Settings, config: RunConfig, *, detach: bool = True, plan: Plan | None = None) -> RunHandle:
    """Plan, create the run directory (frozen config + plan), start the driver. Returns at once.

    `detach` only tells whether the caller keeps a handle to wait on: the driver always runs in its own session,
    so a run outlives the terminal or app that started it (`damoc attach RUN_ID` follows it). A run that cannot be
    created (a full disk, a read-only folder) leaves no folder behind.
    """
    plan = plan or make_plan(settings, config)
    if plan.downloads:
        raise DamocError("this plan counts candidates that are not downloaded yet (a dry run's plan): "
                         + ", ".join(c.name for c in plan.downloads),
                         "pull them first (damoc registry pull NAME), then start the run")
    if not plan.runnable:
        why = "; ".join(f"{c.name}: {c.error}" for c in plan.candidates)
        raise DamocError(f"no candidate can run ({why})", "fix the candidates above (damoc registry list)")
    rd: RunDir | None = None
    with _signals_deferred():
        try:
            rd = RunDir.create(settings.runs_dir, plan.config, meta={
                "mode": plan.mode, "candidates": [c.name for c in plan.candidates], "label": config.label,
                "dataset": plan.config["dataset"]["train"], "status": "created"})
            atomic_write_json(rd.path / "plan.json", plan.to_dict())
            proc = _spawn_driver(settings, rd, resume=False)
        except OSError as e:
            if rd is not None:
                shutil.rmtree(rd.path, ignore_errors=True)   # nothing half-created is left to resume
            if is_storage_error(e):
                raise storage_error(e, settings.runs_dir, what="create the run in",
                                    needed=_run_disk_estimate(plan)) from None
            raise
    return RunHandle(rd.run_id, rd.path, proc.pid, None if detach else proc)


def open_run(settings: Settings, run_id: str) -> RunDir:
    return RunDir.open(settings.runs_dir, run_id)


def resume_run(settings: Settings, run_id: str, *, detach: bool = True) -> RunHandle:
    """Continue a stopped run: finished cells are kept, failed/cancelled/unfinished ones are run again. One driver
    per run: a run that another driver holds is refused (RunBusy), whoever asked first."""
    rd = open_run(settings, run_id)
    if rd.problem:
        raise DamocError(f"run {rd.run_id} cannot be resumed: {rd.problem}",
                         f"fix or remove {rd.path}; or start a new run with damoc run")
    if not (rd.path / "plan.json").is_file():
        raise DamocError(f"run {rd.run_id} has no plan.json (created by another version?)",
                         "start a new run with damoc run")
    try:
        Plan.from_dict(read_json(rd.path / "plan.json"))
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise DamocError(f"run {rd.run_id}: plan.json is unreadable ({type(e).__name__})",
                         "start a new run with damoc run") from None
    with _signals_deferred():
        try:
            proc = _spawn_driver(settings, rd, resume=True)
        except OSError as e:
            if is_storage_error(e):
                raise storage_error(e, rd.path, what="resume the run in") from None
            raise
    return RunHandle(rd.run_id, rd.path, proc.pid, None if detach else proc)


def cancel_run(settings: Settings, run_id: str) -> None:
    """SIGTERM to the run's process group: workers mark their current cell cancelled, the driver ends the run."""
    rd = open_run(settings, run_id)
    pid = rd.meta.get("pid")
    if not pid or not rd.is_alive():
        raise DamocError(f"run {rd.run_id} is not running ({rd.status()})",
                         f"resume it with: damoc run --resume {rd.run_id}")
    try:
        os.killpg(int(pid), signal.SIGTERM)
    except ProcessLookupError:
        pass
    except PermissionError as e:
        raise DamocError(f"cannot signal run {rd.run_id} (pid {pid}): {e}", "was it started by another user?") from e


def wait_run(settings: Settings, run_id: str, *, timeout: float | None = None, poll: float = 0.25) -> str:
    """Block until the run's driver has exited; returns the final status."""
    rd = open_run(settings, run_id)
    t0 = time.monotonic()
    while rd.is_alive():
        if timeout is not None and time.monotonic() - t0 > timeout:
            raise TimeoutError(f"run {rd.run_id} still running after {timeout:.0f}s")
        time.sleep(poll)
    return rd.status()


def summarise_run(rd: RunDir, *, alive: bool | None = None) -> RunSummary:
    """One run as `damoc runs` lists it (`alive`: the driver's liveness when the caller has just checked it)."""
    m, cfg = rd.meta, rd.config
    problem = rd.problem
    alive = rd.is_alive() if alive is None else alive
    dataset = m.get("dataset") or (cfg.get("dataset") if isinstance(cfg.get("dataset"), dict) else {}).get("train")
    created = m.get("created")
    cands = m.get("candidates") or cfg.get("candidates") or []
    try:
        seconds = rd.seconds()
    except (TypeError, ValueError):
        seconds = None
    return RunSummary(run_id=rd.run_id, mode=str(m.get("mode") or cfg.get("mode") or ""),
                      status="unreadable" if problem else "running" if alive else rd.status(),
                      created=float(created) if isinstance(created, (int, float)) else 0.0,
                      candidates=[str(c) for c in cands] if isinstance(cands, list) else [],
                      winner=m.get("winner") if isinstance(m.get("winner"), str) else None,
                      seconds=seconds, label=str(m.get("label") or cfg.get("label") or ""),
                      dataset=str(dataset or ""), problem=problem)


def list_runs(settings: Settings) -> list[RunSummary]:
    return [summarise_run(rd) for rd in _list_run_dirs(settings.runs_dir)]


@dataclass
class Standing:
    rank: int | None
    name: str
    score: float
    gap: float | None
    too_close: bool
    p_best: float | None = None     # P(best): the chance it is the ground-truth winner (issue 19)
    status: str = ""                # the leaderboard row's status ("stopped": an adaptive run stopped it early)


@dataclass
class RunOverview:
    """A run with its standings so far: what a list of runs shows beside each run (the app's Runs screen)."""

    summary: RunSummary
    ranking: list[Standing]
    reason: str                     # why it ended (failed, cancelled), else the leaderboard's note

    def to_dict(self) -> dict[str, Any]:
        leader = self.ranking[0] if self.ranking else None
        return {**self.summary.to_dict(), "n": len(self.summary.candidates),
                "winner": leader.name if leader else "", "score": leader.score if leader else None,
                "ranking": [asdict(r) for r in self.ranking], "reason": self.reason}


def run_overview(rd: RunDir, *, alive: bool | None = None) -> RunOverview:
    summary = summarise_run(rd, alive=alive)
    ranking: list[Standing] = []
    reason = ""
    try:
        lb = leaderboard_of(rd)
        ranking = [Standing(r.rank, r.candidate, r.score, r.gap, r.too_close, r.p_best, r.status) for r in lb.rows
                   if r.score is not None]
        reason = lb.note
    except (DamocError, OSError, ValueError, KeyError, TypeError):
        pass                                   # a run of another version or half-created: listed without ranking
    if summary.status in ("failed", "cancelled", "interrupted"):
        ends = [e for e in rd.events() if isinstance(e, RunFinished) and e.reason]
        reason = ends[-1].reason if ends else reason
    return RunOverview(summary, ranking, reason)


def leaderboard(run_dir: RunDir) -> Leaderboard:
    return leaderboard_of(run_dir)


def run_seconds(rd: RunDir) -> float:
    """Wall seconds of a run (all sessions, process start-up included); live runs count up to now."""
    return rd.seconds() or 0.0


def compare_runs(settings: Settings, run_a: str, run_b: str) -> Comparison:
    """Rankings of two runs over the same candidates: top-1 agreement, Kendall tau, Spearman rho, time ratio
    (B's wall time / A's: `compare DAMOC_RUN GROUND_TRUTH_RUN` gives the speed-up). The correlations are over the
    leaderboards' rank positions (restricted to the candidates both runs scored)."""
    a, b = open_run(settings, run_a), open_run(settings, run_b)
    la, lb = leaderboard_of(a), leaderboard_of(b)
    # the rankings as the leaderboards present them: by score, equal scores by the answer log-likelihood
    # (a rank is shared only when both are equal), so tau compares exactly what the user sees
    sa = {r["name"]: -float(r["rank"]) for r in la.ranking}
    sb = {r["name"]: -float(r["rank"]) for r in lb.ranking}
    if not sa or not sb:
        empty = a.run_id if not sa else b.run_id
        raise DamocError(f"run {empty} has no scored candidate yet", f"wait for it: damoc attach {empty}")
    return compare_scores(sa, sb, run_a=a.run_id, run_b=b.run_id, seconds_a=run_seconds(a),
                          seconds_b=run_seconds(b), train_seconds_a=la.train_seconds(),
                          train_seconds_b=lb.train_seconds(), order_a=[r["name"] for r in la.ranking],
                          order_b=[r["name"] for r in lb.ranking])


def handoff_for(settings: Settings, rd: RunDir, lb: Leaderboard | None = None) -> dict[str, str]:
    from damoc.pipeline.handoff import Winner, handoff_files

    lb = lb or leaderboard_of(rd)
    if not lb.winner:
        raise DamocError(f"run {rd.run_id} has no winner yet ({lb.status})", f"wait for it: damoc attach {rd.run_id}")
    row = lb.rows[0]
    plan = Plan.from_dict(read_json(rd.path / "plan.json"))
    cfg = plan.config
    variant = cfg.get("variant", "chat")
    cand = next((c for c in plan.candidates if c.name == row.candidate), None)
    model, family, arch, trust = (cand.model_path if cand else None) or "", "", "", False
    try:  # prefer the registry's reference (a hub id) over the local cache folder
        c = RegistryStore(settings).get(row.candidate)
    except UnknownNameError:  # ad-hoc folders are not in the registry: keep the planned path
        pass
    else:
        ref = c.base if variant == "base" else c.chat
        model = ref.id if ref is not None else model
        family, arch = c.family, c.chat_facts.architecture or ""
        trust = c.trust_remote_code          # the user's opt-in for this candidate, never the auto_map fact
    method = row.method if row.method in ("full", "lora") else (cfg.get("ft") if cfg.get("ft") != "both" else "full")
    score = f"{lb.metric} {row.score:.4f}" if row.score is not None else ""
    return handoff_files(Winner(row.candidate, model, method=method or "full", family=family, architecture=arch,
                                trust_remote_code=trust, variant=variant), cfg["dataset"]["train"],
                         run_id=rd.run_id, score=score)


def handoff(settings: Settings, run_id: str) -> dict[str, str]:
    """LLaMA-Factory YAML (+ dataset_info.json) and an ms-swift command for the run's winner: file name -> text."""
    return handoff_for(settings, open_run(settings, run_id))
