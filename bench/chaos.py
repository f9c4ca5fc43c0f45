"""Chaos: kill a real run at random moments and resume it; nothing finished may be redone or lost.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/chaos.py [--kills 20] [--seed 0] [--max-delay 8]

On the `--size test` demo zoo (built once and cached like the test suite's, in ~/.cache/damoc-tests/zoo), in a
scratch DAMOC_HOME: start a DaMoC run (three candidates, two seeds, tiny step counts), then N times wait a random
moment and SIGKILL one of: the driver alone, one worker alone, or both (the driver's whole process group). After a
kill that leaves no driver, resume with `damoc.pipeline.api.resume_run` at once (the one-driver lock makes it wait
for the killed driver's workers); when a run finishes before all kills are spent, the next run starts. At the end
every run is resumed to "finished".

Counted from the run directories, not from the script's own bookkeeping:
- cells redone: a cell whose `done.json` changed after it was first seen, or that has a `stage_started` event after
  its first successful `stage_finished`;
- files lost: a file of a finished cell (seen when the cell was first seen done) that is gone or changed later.
Target: kills >= 20, 0 redone, 0 lost.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

FAST = ["finetune.full.lr=1e-3", "finetune.full.epochs=1", "finetune.full.effective_batch=8",
        "finetune.full.micro_batch=8", "finetune.full.max_length=64", "finetune.proxy_min_steps=3",
        "dataset.max_train=64", "dataset.max_test=12", "filter.ratio=0.25", "prune.calib_samples=8",
        "evaluate.max_new_tokens=6", "compress.enabled=false", "seeds=[0, 1]"]


def _cache() -> Path:
    root = os.environ.get("DAMOC_TEST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "damoc-tests")
    return Path(root)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return False


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(") ", 1)[1].split()[1]) == pid:
            out.append(int(d.name))
    return out


class Ledger:
    """What was seen finished, to check later that it stayed so."""

    def __init__(self) -> None:
        self.done: dict[tuple[str, str], tuple[int, dict[str, tuple[int, int]]]] = {}
        self.redone: set[tuple[str, str]] = set()
        self.lost: set[tuple[str, str]] = set()

    def scan(self, rd) -> None:
        for cell in rd.cells():
            key = (rd.run_id, cell.key)
            if not cell.done:
                if key in self.done:
                    self.redone.add(key)
                continue
            files = {str(p.relative_to(cell.path)): (p.stat().st_size, p.stat().st_mtime_ns)
                     for p in cell.path.rglob("*") if p.is_file()}
            mtime = cell.marker.stat().st_mtime_ns
            if key not in self.done:
                self.done[key] = (mtime, files)
                continue
            first_mtime, first_files = self.done[key]
            if mtime != first_mtime:
                self.redone.add(key)
            for name, sig in first_files.items():
                if files.get(name) != sig:
                    self.lost.add((key[0], f"{key[1]}/{name}"))

    def redone_by_events(self, rd) -> set[tuple[str, str]]:
        from damoc.events import StageFinished, StageStarted

        ok: set[str] = set()
        out = set()
        for e in rd.events():
            if isinstance(e, StageFinished) and e.status == "ok" and e.cell.count("/") == 1:
                ok.add(e.cell)
            elif isinstance(e, StageStarted) and e.cell in ok:
                out.add((rd.run_id, e.cell))
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-delay", type=float, default=8.0, help="seconds; kills land in [0.2, max-delay]")
    ap.add_argument("--home", default=None, help="scratch DAMOC_HOME (default: a temporary folder)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    home = Path(args.home or tempfile.mkdtemp(prefix="damoc-chaos-"))
    os.environ["DAMOC_HOME"] = str(home)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    from damoc.pipeline import api
    from damoc.pipeline.rundir import RunBusy
    from damoc.registry import register_zoo
    from damoc.settings import Settings
    from damoc.zoo import build_zoo, demo_tasks

    s = Settings.load()
    zoo = build_zoo(size="test", out=_cache() / "zoo")
    task = next(t for t in demo_tasks(size="test", out=_cache() / "zoo") if t.name == "laws-qa")
    register_zoo(s, zoo)
    names = [c.name for c in zoo][:3]

    def new_run() -> str:
        cfg = api.load_config(None, FAST, {"dataset.train": task.train_path, "dataset.test": task.test_path,
                                           "candidates": names})
        return api.start_run(s, cfg).run_id

    def resume(run_id: str) -> None:
        while True:
            try:
                api.resume_run(s, run_id)
                stats["resumes"] += 1
                return
            except RunBusy:         # the killed driver's workers still hold the lock: they stop within a second
                time.sleep(0.2)

    ledger = Ledger()
    stats = {"kills": 0, "driver": 0, "worker": 0, "both": 0, "resumes": 0, "runs": 0}
    runs: list[str] = []
    t0 = time.monotonic()
    run_id = new_run()
    runs.append(run_id)
    stats["runs"] += 1
    while stats["kills"] < args.kills:
        rd = api.open_run(s, run_id)
        end = time.monotonic() + rng.uniform(0.2, args.max_delay)
        while time.monotonic() < end and rd.is_alive():
            ledger.scan(rd)
            time.sleep(0.05)
        ledger.scan(rd)
        if not rd.is_alive():
            if rd.status() == "finished":       # finished before the kill: the next run takes the next kills
                run_id = new_run()
                runs.append(run_id)
                stats["runs"] += 1
            else:
                resume(run_id)
            continue
        driver = int(rd.meta.get("pid") or 0)
        workers = [p for p in _children(driver) if _alive(p)] if driver else []
        target = rng.choice(["driver", "worker", "both"] if workers else ["driver", "both"])
        try:
            if target == "driver":
                os.kill(driver, signal.SIGKILL)
            elif target == "worker":
                os.kill(rng.choice(workers), signal.SIGKILL)
            else:
                os.killpg(driver, signal.SIGKILL)
        except ProcessLookupError:
            continue                            # it ended between the look and the kill: not a kill
        stats["kills"] += 1
        stats[target] += 1
        print(f"kill {stats['kills']:>2}: {target:<6} of run {run_id} at {time.monotonic() - t0:6.1f}s",
              file=sys.stderr, flush=True)
        deadline = time.monotonic() + 30
        while _alive(driver) and target != "worker" and time.monotonic() < deadline:
            time.sleep(0.05)
        if target != "worker":
            resume(run_id)
    finished = 0
    for rid in runs:
        rd = api.open_run(s, rid)
        while True:
            while rd.is_alive():
                ledger.scan(rd)
                time.sleep(0.2)
            ledger.scan(rd)
            if rd.status() == "finished":
                finished += 1
                break
            resume(rid)
    redone = set(ledger.redone)
    for rid in runs:
        redone |= ledger.redone_by_events(api.open_run(s, rid))
    out = {"kills": stats["kills"], "killed": {k: stats[k] for k in ("driver", "worker", "both")},
           "resumes": stats["resumes"], "runs": len(runs), "runs_finished": finished,
           "cells_checked": len(ledger.done), "cells_redone": len(redone), "files_lost": len(ledger.lost),
           "redone": sorted(f"{r}:{c}" for r, c in redone), "lost": sorted(f"{r}:{c}" for r, c in ledger.lost),
           "seconds": round(time.monotonic() - t0, 1), "home": str(home)}
    print(json.dumps(out, indent=2))
    ok = out["kills"] >= args.kills and not redone and not ledger.lost and finished == len(runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
