"""A worker process: serves the cells of one or more candidates (or the shared data cells) of a run.

    python -m damoc.pipeline.worker RUN_DIR --data                          # the shared data cells
    python -m damoc.pipeline.worker RUN_DIR --candidates NAME[,NAME...]     # the cells of these candidates
    python -m damoc.pipeline.worker RUN_DIR --data --candidates ...         # both, data first (a CPU pool)

Importing transformers costs ~7 s per process, so one worker serves every cell of its candidates in order. It
reads the frozen `plan.json`, skips cells whose `done.json` exists (resume), writes events to the run's
`events.jsonl` and artifacts to each cell folder, with the completion marker written last. A cell that raises is
marked failed with its reason and the worker goes on with the next candidate. SIGTERM (cancel) stops the current
cell cleanly: it is marked cancelled and the worker exits 130. If the driver that started the worker dies, the
worker cancels itself rather than run on as an orphan.

With `--claim TOKEN` several workers share one candidate list (the local executor's CPU slots): each takes the
next candidate nobody of its round has claimed (an O_EXCL file under `claims/TOKEN/`), so the cores stay busy until
the last candidate, and transformers is imported once per worker, not per candidate. `--threads N` sets torch's
threads for the candidate cells (the shared data cells run alone and take every core). `--storage-token T` (a fleet
executor) first checks this node sees the run directory: `storage.json` holds T, and it can write there.

Each finished cell records where it ran in its `done.json` (and its `stage_finished` event): `node` (the host, or
the one a fleet executor names), `ray_node` on Ray, `gpu` (the CUDA devices it saw; null on CPU) and `job`.

Exit codes: 0 all served (some candidates may have failed), 3 a shared data stage failed, 4 this node cannot see
or write the run directory (the message names the node and what to do), 130 cancelled.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from damoc.data.sample import Sample
from damoc.errors import Cancelled, DamocError
from damoc.events import Event, Log, StageTracker
from damoc.fsutil import read_json
from damoc.pipeline.cells import CELL_KINDS, CellContext, CellSpec, Role
from damoc.pipeline.cells.samples import TRAIN_FILE, read_samples_jsonl
from damoc.pipeline.cells.scoring import scored_event, subset_of
from damoc.pipeline.plan import CandidatePlan, Plan
from damoc.pipeline.rundir import DATA_CANDIDATE, Cell, RunDir
from damoc.settings import Settings

EXIT_DATA_FAILED = 3
EXIT_NO_STORAGE = 4
EXIT_CANCELLED = 130
STORAGE_FAILED = "storage check failed: "     # the line a fleet executor passes on to the driver
STORAGE_HINT = ("put the runs folder (DAMOC_HOME) on storage that every node mounts at the same path (NFS, or a "
                "synced mount; docs/run.md, Clusters), or run with --executor local")


class CellReporter:
    """Stamps run id, candidate and cell on the events a stage module emits, then appends them to the run log.

    A module's own tracker names its cell `_data/<stage>` (it does not know the run); it becomes
    `<candidate>/<cell>/<stage>` so a fine-tune cell's `finetune` and `evaluate` sub-stages stay distinct.
    """

    def __init__(self, rd: RunDir, candidate: str, cell_key: str) -> None:
        self.rd, self.candidate, self.cell_key = rd, candidate, cell_key

    def emit(self, event: Event) -> None:
        changes: dict[str, Any] = {"run_id": self.rd.run_id}
        names = {f.name for f in dataclasses.fields(event)}
        if "candidate" in names:
            changes["candidate"] = self.candidate
        if "cell" in names:
            sub = (getattr(event, "cell", "") or "").rsplit("/", 1)[-1] or getattr(event, "stage", "")
            changes["cell"] = f"{self.cell_key}/{sub}" if sub else self.cell_key
        self.rd.emit(dataclasses.replace(event, **changes))


class WorkerCellContext(CellContext):
    """A cell's view of the run, backed by the worker's sample cache (a worker serves many cells)."""

    def __init__(self, worker: "Worker", spec: CellSpec) -> None:
        self.worker, self.spec = worker, spec
        self.out = worker.rd.cell(spec.candidate, spec.stage).path
        self.settings, self.device = worker.settings, worker.device
        self.reporter = CellReporter(worker.rd, spec.candidate, spec.key)

    def _bound(self, role: Role) -> str:
        key = self.spec.input(role)
        if key is None:
            raise DamocError(f"cell {self.spec.key} has no {role.value} input in plan.json",
                             "the run was planned by another version of damoc; start a new run")
        return key

    def samples(self, role: Role, file: str = TRAIN_FILE) -> list[Sample]:
        return self.worker.samples(self._bound(role), file)

    def input_path(self, role: Role) -> Path:
        return self.worker.cell(self._bound(role)).path

    def result(self, role: Role) -> dict[str, Any]:
        key = self.spec.input(role)
        return (self.worker.cell(key).result() or {}) if key else {}

    @property
    def candidate(self) -> CandidatePlan:
        return self.worker.plan.candidate(self.spec.candidate)


class Worker:
    def __init__(self, rd: RunDir, plan: Plan, settings: Settings, *, job: str = "") -> None:
        self.rd, self.plan, self.settings = rd, plan, settings
        cfg = plan.config
        self.device = cfg.get("device") or settings.device or "auto"
        self.threads = int(cfg.get("threads") or settings.threads or 0)
        self.where = placement(self.device, job)
        self._samples: dict[tuple[str, str], list[Sample]] = {}

    def cell(self, key: str) -> Cell:
        cand, _, stage = key.partition("/")
        return self.rd.cell(cand, stage)

    def samples(self, key: str, which: str = TRAIN_FILE) -> list[Sample]:
        if (key, which) not in self._samples:
            self._samples[(key, which)] = read_samples_jsonl(self.cell(key).path / which)
        return self._samples[(key, which)]

    def run_cell(self, spec: CellSpec) -> dict[str, Any]:
        return CELL_KINDS.get(spec.kind)().run(WorkerCellContext(self, spec))

    def serve(self, specs: list[CellSpec]) -> int:
        """Run the pending cells of `specs` in order; returns the exit code."""
        failed_candidates: dict[str, str] = {}
        for spec in specs:
            cell = self.rd.cell(spec.candidate, spec.stage)
            if cell.done:
                continue
            blocker = failed_candidates.get(spec.candidate)
            if blocker is None:
                for need in spec.needs:
                    st = self.cell(need).state
                    if st != "done":
                        blocker = f"needs {need}, which is {st}"
                        break
            tracker = StageTracker(self.rd, spec.stage, run_id=self.rd.run_id, candidate=spec.candidate,
                                   cell=spec.key)
            if blocker is not None:
                cell.mark_failed("skipped", blocker)
                tracker.finish("skipped", blocker)
                continue
            cell.prepare()
            cell.mark_running(kind=spec.kind, **self.where)
            tracker.start()
            try:
                summary = self.run_cell(spec)
            except (Cancelled, KeyboardInterrupt):
                cell.mark_failed("cancelled", "cancelled by the user")
                tracker.finish("cancelled", "cancelled by the user")
                return EXIT_CANCELLED
            except Exception as e:  # failure isolation: one candidate's error never stops the others
                reason = e.message if isinstance(e, DamocError) else f"{type(e).__name__}: {e}"
                hint = e.hint if isinstance(e, DamocError) else None
                (cell.path / "error.log").write_text(traceback.format_exc(), encoding="utf-8")
                cell.mark_failed("failed", reason, hint=hint)
                tracker.finish("failed", reason)
                if spec.candidate == DATA_CANDIDATE:
                    return EXIT_DATA_FAILED
                failed_candidates[spec.candidate] = f"{spec.key} failed"
                continue
            summary["seconds"] = tracker.seconds
            summary.update(self.where)
            cell.mark_done(**summary)
            tracker.finish("ok", **{k: v for k, v in summary.items() if not isinstance(v, (list, dict))})
            if CELL_KINDS.get(spec.kind).scored:
                self.rd.emit(scored_event(self.rd.run_id, spec.candidate, spec.key, summary))
        return 0


# -- process plumbing ---------------------------------------------------------------------------------

SMALL_MODEL_PARAMS = 100_000_000


def auto_threads(plan: Plan, device: str, *, gpu: bool | None = None) -> int:
    """`threads: 0` on CPU with small candidates -> 1 thread; otherwise torch's default (0). `gpu`: whether a GPU
    is visible, when the caller knows (the driver, from `visible_gpus`, never imports torch); else torch is asked.

    Models this small are bound by per-operator dispatch, not arithmetic: extra intra-op threads only add
    synchronisation, and when the cores are shared with other processes they spin against each other. Measured
    here (0.5M-parameter zoo model, 75 optimizer steps, 2 busy cores): 3.6 s with 1 thread, 74-108 s with 2."""
    if device.startswith("cuda"):
        return 0
    sizes = [c.parameters for c in plan.candidates if not c.error]
    if not sizes or any(not p for p in sizes) or max(sizes) >= SMALL_MODEL_PARAMS:
        return 0
    if device == "auto":
        if gpu is None:
            import torch
            gpu = torch.cuda.is_available()
        if gpu:
            return 0
    return 1


def node_name() -> str:
    """The machine this worker runs on: the name a fleet executor gave it, else the host name."""
    return os.environ.get("DAMOC_NODE") or socket.gethostname()


def placement(device: str, job: str = "") -> dict[str, Any]:
    """Where a cell ran, for its done.json: node, the Ray node id on Ray, the GPU(s) it saw (None on CPU), the job."""
    gpu: str | None = None
    if device != "cpu":
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if device.startswith("cuda:"):
            gpu = device.removeprefix("cuda:")
        elif visible and visible != "-1":
            gpu = visible
    out: dict[str, Any] = {"node": node_name(), "gpu": gpu}
    if os.environ.get("DAMOC_RAY_NODE"):
        out["ray_node"] = os.environ["DAMOC_RAY_NODE"]
    if job:
        out["job"] = job
    return out


def check_storage(run_dir: Path, token: str | None) -> str:
    """Why this node cannot work on the run directory ("" when it can): the folder or its plan is missing, it is
    another folder than the driver's (`storage.json` does not hold `token`), or it is read-only."""
    from damoc.pipeline.executors.base import STORAGE_FILE

    node = node_name()
    if not (run_dir / "plan.json").is_file():
        return f"node {node} cannot see the run directory {run_dir} (no plan.json there)"
    if token:
        try:
            seen = json.loads((run_dir / STORAGE_FILE).read_text(encoding="utf-8")).get("token")
        except (OSError, ValueError, AttributeError):
            seen = None
        if seen != token:
            return (f"node {node} sees another folder at {run_dir} than the driver does (its {STORAGE_FILE} is not "
                    f"this run's): the folder is local to each node, not shared")
    probe = run_dir / "logs" / f".probe-{_safe_file(node)}-{os.getpid()}"
    try:
        probe.parent.mkdir(exist_ok=True)
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as e:
        return f"node {node} cannot write to the run directory {run_dir} ({e.strerror or e})"
    return ""


def check_models(plan: Plan, names: list[str]) -> str:
    """Why this node cannot load the served candidates ("" when it can): a model folder missing here."""
    for c in plan.candidates:
        if c.name in names:
            for p in (c.model_path, c.base_path):
                if p and os.path.isabs(p) and not os.path.exists(p):
                    return f"node {node_name()} cannot see the model folder {p} of candidate {c.name}"
    return ""


def _safe_file(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60] or "node"


def claim(rd: RunDir, token: str, candidate: str, job: str) -> bool:
    """Take `candidate` for this worker in the round `token`; False when another worker of the round has it."""
    folder = rd.path / "claims" / _safe_file(token)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(folder / _safe_file(candidate), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        json.dump({"job": job, "pid": os.getpid(), "node": node_name(), "t": time.time()}, fh)
    return True


def _install_signals() -> None:
    fired = threading.Event()

    def on_term(signum: int, frame: Any) -> None:
        # the process group and the driver may both signal us: only the first one interrupts the cell
        if fired.is_set():
            return
        fired.set()
        # KeyboardInterrupt, not an Exception subclass: stage modules report it as "cancelled" and no
        # `except Exception` in a library swallows it
        raise KeyboardInterrupt("cancelled")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)


def _watch_parent(poll: float = 1.0) -> None:
    """Cancel ourselves if the driver dies (SIGKILL, OOM): an orphan would race a later resume."""
    parent = os.getppid()

    def loop() -> None:
        while True:
            time.sleep(poll)
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=loop, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m damoc.pipeline.worker")
    ap.add_argument("run_dir")
    ap.add_argument("--data", action="store_true", help="serve the shared data cells")
    ap.add_argument("--candidates", default="", help="comma-separated candidate names")
    ap.add_argument("--max-subset", type=float, default=None,
                    help="an adaptive round: serve only the proxies trained on shares up to this")
    ap.add_argument("--job", default="", help="the executor's name of this job (recorded with each cell)")
    ap.add_argument("--claim", default=None, help="a round token: take candidates one at a time, shared with the "
                                                  "other workers of the round")
    ap.add_argument("--wait-data", action="store_true", help="with --claim: import now, serve candidates once the "
                                                              "data cells are done (another worker of the round "
                                                              "serves them)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads of the candidate cells (0 = automatic)")
    ap.add_argument("--storage-token", default=None, help="check first that this node sees the run directory")
    args = ap.parse_args(argv)
    _install_signals()
    if os.environ.get("DAMOC_WORKER_NO_PARENT_WATCH") != "1":
        _watch_parent()

    run_dir = Path(args.run_dir)
    names = [n for n in args.candidates.split(",") if n]
    problem = check_storage(run_dir, args.storage_token)
    if problem:
        print(STORAGE_FAILED + problem, file=sys.stderr)
        print("hint: " + STORAGE_HINT, file=sys.stderr)
        return EXIT_NO_STORAGE

    from damoc.models import hf_offline_env
    from damoc.settings import Settings

    settings = Settings.load()
    hf_offline_env(settings)
    rd = RunDir(run_dir)
    plan = Plan.from_dict(read_json(rd.path / "plan.json"))
    problem = check_models(plan, names) if args.storage_token else ""   # model folders: shared storage too
    if problem:
        print(STORAGE_FAILED + problem, file=sys.stderr)
        print("hint: put DAMOC_HOME and the model folders on storage every node mounts at the same path",
              file=sys.stderr)
        return EXIT_NO_STORAGE
    if plan.config.get("device", "auto") != "auto":      # the run's device wins over the user's default
        settings.device = plan.config["device"]
    worker = Worker(rd, plan, settings, job=args.job)

    def specs_of(name: str) -> list[CellSpec]:
        return [c for c in plan.cells_of(name) if args.max_subset is None or subset_of(c) <= args.max_subset]

    try:
        rd.emit(Log(run_id=rd.run_id, level="info", message=_where_text(worker.where, args, names)))
        if args.data:
            # The shared data cells run before any candidate cell, alone on the machine, and their models (the
            # sentence encoder, the scorer) are not the tiny candidates: every core, unless the run fixed a count.
            # Measured on the demo task (GraphCut over 5,000 samples, 2 idle cores): 21.8 s with 1 thread, 14.8 s
            # with 2.
            _use_threads(settings, worker.threads)
            rc = worker.serve(plan.data_cells)
            if rc != 0:
                return rc
        _use_threads(settings, args.threads or worker.threads or auto_threads(plan, worker.device))
        if args.wait_data and args.claim and not _wait_for_data(rd, plan, args.claim):
            return 0                     # the data cells failed or their worker ended: the driver reports it
        if args.claim is None:
            return worker.serve([c for n in names for c in specs_of(n)])
        for name in names:              # largest first (the driver's order): the long ones start early
            if claim(rd, args.claim, name, args.job) and worker.serve(specs_of(name)) == EXIT_CANCELLED:
                return EXIT_CANCELLED
        return 0
    except (Cancelled, KeyboardInterrupt):
        return EXIT_CANCELLED


def _wait_for_data(rd: RunDir, plan: Plan, token: str, poll: float = 0.2) -> bool:
    """Import what the candidate cells need while the round's data job runs (one import less on the critical
    path), then wait for the data cells: True once they are all done, False when one failed or the data job ended
    without finishing them."""
    import transformers  # noqa: F401  (the ~5 s import, overlapped with the data stage)

    from damoc.pipeline.executors.base import DATA_ENDED

    cells = [rd.cell(c.candidate, c.stage) for c in plan.data_cells]
    ended = rd.path / "claims" / _safe_file(token) / DATA_ENDED
    while True:
        states = [c.state for c in cells]
        if all(st == "done" for st in states):
            return True
        if ended.exists() or any(st in ("failed", "cancelled", "skipped") for st in states):
            return all(c.done for c in cells)
        time.sleep(poll)


def _where_text(where: dict[str, Any], args: argparse.Namespace, names: list[str]) -> str:
    cands = ("candidates in turn from " if args.claim else "") + ", ".join(names)
    serves = (["the data cells"] if args.data else []) + ([cands] if names else [])
    on = f"node {where['node']}" + (f", GPU {where['gpu']}" if where.get("gpu") else "")
    return f"worker {args.job or os.getpid()} on {on} serves {' then '.join(serves) or 'nothing'}"


def _use_threads(settings: Settings, threads: int) -> None:
    """Set torch's intra-op threads (0 = every core) and tell the stage modules (they read settings.threads)."""
    from damoc.models import set_threads, usable_cores

    threads = threads or usable_cores()
    settings.threads = threads
    set_threads(threads)


if __name__ == "__main__":
    sys.exit(main())
