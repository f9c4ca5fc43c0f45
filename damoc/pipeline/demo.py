"""`damoc demo`: DaMoC on the offline demo zoo, and with `--verify` the ground truth it must agree with.

The zoo's models are tiny (0.5-2M parameters) and trained from scratch, so the paper's lr 1e-5 would teach them
nothing in a few hundred steps: the demo uses lr 1e-3 (the zoo spike's fine-tuning rate) and a small effective
batch, the same for both arms (a fixed harness). Everything else is the paper's recipe: GraphCut 10%, token
compression, layer pruning at 0.85 with sparse merging for candidates that ship a Base, 3 epochs, and a proxy
step floor. `--set key=value` overrides any of it.

End-to-end times are measured here, around each run, from the moment the run is started to the moment its driver
has exited: every stage, evaluation and process start-up is inside. The training-only speed-up compares the summed
fine-tuning seconds of the two arms (the paper's measure).
"""
from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from damoc.errors import DamocError
from damoc.events import Reporter
from damoc.settings import Settings

if TYPE_CHECKING:
    from damoc.pipeline.config import RunConfig
    from damoc.zoo.tasks import DemoTask

# The demo harness, per zoo size (dotted keys, applied before the user's --set overrides).
DEMO_BASE: dict[str, dict[str, Any]] = {
    "demo": {
        "finetune.full.lr": 1e-3, "finetune.full.effective_batch": 8, "finetune.full.epochs": 3,
        "finetune.lora.lr": 3e-3, "finetune.lora.effective_batch": 8, "finetune.lora.epochs": 3,
        "finetune.proxy_min_steps": 120,
        "dataset.max_test": 300,
        "label": "demo",
    },
    "test": {
        "finetune.full.lr": 1e-3, "finetune.full.effective_batch": 8, "finetune.full.epochs": 1,
        "finetune.lora.lr": 3e-3, "finetune.lora.effective_batch": 8, "finetune.lora.epochs": 1,
        "finetune.proxy_min_steps": 4,
        "filter.ratio": 0.2, "dataset.max_test": 40, "prune.calib_samples": 16,
        "label": "demo-test",
    },
}

# Ablations run when DaMoC misses the ground-truth winner, to show which stage moved the ranking.
ABLATIONS = ("filter-only", "filter+compress")


def ensure_zoo(settings: Settings, size: str, reporter: Reporter | None = None) -> list[Any]:
    """The zoo of `size`, registered. Building trains models, so it runs in a subprocess (this process never holds
    a model, and the app never forks itself); its events reach `reporter`. A built zoo is only read."""
    import os
    import tempfile

    from damoc.pipeline.rundir import EventTail
    from damoc.zoo import build_zoo, load_manifest

    if load_manifest(size, settings=settings) is None:
        with tempfile.TemporaryDirectory(prefix="damoc-zoo-") as tmp:
            events = Path(tmp) / "events.jsonl"
            cmd = [sys.executable, "-m", "damoc.pipeline.demo", "build-zoo", size]
            cmd += ["--events", str(events)] if reporter is not None else []
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                    env={**os.environ, "DAMOC_HOME": str(settings.home)})
            tail = EventTail(events)
            while True:
                done = proc.poll() is not None
                for e in tail.read() if reporter is not None else []:
                    reporter.emit(e)
                if done:
                    break
                time.sleep(0.2)
        if proc.returncode != 0:
            raise DamocError(f"building the {size} demo zoo failed (exit code {proc.returncode})",
                             f"run it alone to see why: damoc zoo build --size {size}")
    return build_zoo(size, settings=settings, register=True)


def demo_config(settings: Settings, size: str, task: DemoTask, names: list[str], overrides: list[str],
                mode: str = "damoc") -> RunConfig:
    from damoc.pipeline.config import load_config

    base = {**DEMO_BASE.get(size, {}), "dataset.train": task.train_path, "dataset.test": task.test_path,
            "candidates": names, "evaluate.metric": task.metric, "mode": mode}
    return load_config(None, overrides, base)


def _timed_run(settings: Settings, cfg: RunConfig, follow: Callable[[str], str]) -> tuple[str, str, float]:
    from damoc.pipeline import api

    t0 = time.perf_counter()
    h = api.start_run(settings, cfg, detach=True)
    status = follow(h.run_id)
    return h.run_id, status, time.perf_counter() - t0


def run_demo(settings: Settings, *, size: str = "demo", task: str | None = None, overrides: list[str] | None = None,
             verify: bool = False, follow: Callable[[str], str], console: Any = None,
             diagnose: bool = True, candidates: list[str] | None = None) -> dict[str, Any]:
    from damoc.pipeline import api
    from damoc.zoo import demo_tasks

    overrides = list(overrides or [])
    say = (lambda m: console.print(m)) if console is not None else (lambda m: None)
    zoo = ensure_zoo(settings, size)
    tasks = demo_tasks(size, settings=settings)
    if not tasks:
        raise DamocError(f"the {size} zoo has no demo task", "rebuild it: damoc zoo build")
    chosen = tasks[0] if task is None else next((t for t in tasks if t.name == task), None)
    if chosen is None:
        from damoc.errors import UnknownNameError
        raise UnknownNameError("demo task", task or "", [t.name for t in tasks])
    names = [c.name for c in zoo]
    if candidates:
        unknown = [n for n in candidates if n not in names]
        if unknown:
            from damoc.errors import UnknownNameError
            raise UnknownNameError("zoo candidate", unknown[0], names)
        names = list(candidates)
    say(f"[bold]demo[/]: task {chosen.name} ({chosen.description}); {len(names)} candidates: {', '.join(names)}")

    cfg = demo_config(settings, size, chosen, names, overrides)
    dm_id, dm_status, dm_secs = _timed_run(settings, cfg, follow)
    dm_lb = api.leaderboard(api.open_run(settings, dm_id))
    res: dict[str, Any] = {"task": chosen.name, "metric": chosen.metric, "size": size, "candidates": names,
                           "damoc_status": dm_status, "damoc_ranking": dm_lb.ranking, "damoc_winner": dm_lb.winner,
                           "damoc_seconds": dm_secs, "damoc_train_seconds": dm_lb.train_seconds(),
                           "too_close_to_call": dm_lb.too_close_to_call,
                           "p_best": dm_lb.rows[0].p_best if dm_lb.winner else None, "runs": {"damoc": dm_id}}
    if dm_status != "finished":
        raise DamocError(f"the DaMoC run {dm_id} ended {dm_status}", f"see: damoc attach {dm_id}")
    if not verify:
        return res

    say("[bold]verify[/]: ground truth = full fine-tune of every candidate on the whole training set")
    gt_cfg = demo_config(settings, size, chosen, names, overrides, mode="ground-truth")
    gt_id, gt_status, gt_secs = _timed_run(settings, gt_cfg, follow)
    if gt_status != "finished":
        raise DamocError(f"the ground-truth run {gt_id} ended {gt_status}", f"see: damoc attach {gt_id}")
    gt_lb = api.leaderboard(api.open_run(settings, gt_id))
    cmp = api.compare_runs(settings, dm_id, gt_id)
    res.update({"ground_truth_ranking": gt_lb.ranking, "ground_truth_winner": gt_lb.winner,
                "ground_truth_seconds": gt_secs, "ground_truth_train_seconds": gt_lb.train_seconds(),
                "top1_agree": cmp.top1_agree, "kendall_tau": cmp.kendall_tau, "spearman_rho": cmp.spearman_rho,
                "speedup": gt_secs / dm_secs if dm_secs > 0 else None,
                "train_speedup": (gt_lb.train_seconds() / dm_lb.train_seconds()
                                  if dm_lb.train_seconds() > 0 else None),
                # the compute ratio wall time follows on large models (6·N·D, FinetuneResult.train_flops)
                "train_flops_ratio": (gt_lb.train_flops() / dm_lb.train_flops() if dm_lb.train_flops() > 0 else None)})
    res["runs"]["ground_truth"] = gt_id
    if not cmp.top1_agree and diagnose:
        res["diagnosis"] = _diagnose(settings, size, chosen, names, overrides, gt_id, dm_lb, follow, say)
    return res


def _diagnose(settings: Settings, size: str, task: Any, names: list[str], overrides: list[str], gt_id: str,
              dm_lb: Any, follow: Callable[[str], str], say: Callable[[str], None]) -> dict[str, Any]:
    """DaMoC missed: re-run the proxy with stages switched off to find the stage that moved the ranking."""
    from damoc.pipeline import api
    from damoc.pipeline.recipes import recipe_overrides

    say("[yellow]DaMoC missed the ground-truth winner[/]: running ablations to find the stage that moved the ranking")
    out: dict[str, Any] = {"full_recipe": {"winner": dm_lb.winner}}
    for name in ABLATIONS:
        cfg = demo_config(settings, size, task, names, recipe_overrides(name) + overrides)
        rid, status, secs = _timed_run(settings, cfg, follow)
        if status != "finished":
            out[name] = {"run_id": rid, "status": status}
            continue
        c = api.compare_runs(settings, rid, gt_id)
        out[name] = {"run_id": rid, "winner": c.top1_a, "top1_agree": c.top1_agree, "kendall_tau": c.kendall_tau,
                     "seconds": secs}
    verdict = []
    fo, fc = out.get("filter-only", {}), out.get("filter+compress", {})
    if fo.get("top1_agree") is False:
        verdict.append("filtering (GraphCut subset + short proxy training) already moves the winner")
    elif fc.get("top1_agree") is False:
        verdict.append("token compression moves the winner (filtering alone agrees)")
    elif fc.get("top1_agree"):
        verdict.append("pruning (layer removal / merge) moves the winner (filtering + compression agree)")
    out["verdict"] = "; ".join(verdict) or "inconclusive"
    return out


def print_summary(res: dict[str, Any], console: Any) -> None:
    con = console
    dm = " > ".join(r["name"] for r in res["damoc_ranking"])
    con.print(f"DaMoC ({res['task']}): {dm}  [{res['damoc_seconds']:.0f}s end to end, "
              f"{res['damoc_train_seconds']:.0f}s training]")
    if "ground_truth_ranking" not in res:
        con.print(f"winner: [bold]{res['damoc_winner']}[/]" +
                  ("  (too close to call: see the ≈ rows)" if res.get("too_close_to_call") else ""))
        con.print("check it against the full fine-tunes: damoc demo --verify")
        return
    gt = " > ".join(r["name"] for r in res["ground_truth_ranking"])
    con.print(f"ground truth: {gt}  [{res['ground_truth_seconds']:.0f}s end to end, "
              f"{res['ground_truth_train_seconds']:.0f}s training]")
    tau = res.get("kendall_tau")
    verdict = "[green]picked the ground-truth winner[/]" if res["top1_agree"] else "[red]missed the winner[/]"
    con.print(f"DaMoC {verdict} ({res['damoc_winner']} vs {res['ground_truth_winner']}); Kendall tau "
              f"{'n/a' if tau is None else f'{tau:.2f}'}; speed-up {res['speedup']:.1f}x end to end, "
              f"{res['train_speedup']:.1f}x training only"
              + (f" ({res['train_flops_ratio']:.1f}x less training compute)" if res.get("train_flops_ratio") else ""))
    if "diagnosis" in res:
        con.print(f"why: {res['diagnosis']['verdict']}")
        for k in ABLATIONS:
            d = res["diagnosis"].get(k) or {}
            if "winner" in d:
                con.print(f"  {k}: winner {d['winner']}, top-1 {'agrees' if d['top1_agree'] else 'differs'}, "
                          f"tau {d['kendall_tau'] if d['kendall_tau'] is None else round(d['kendall_tau'], 2)}")


def _build_main(size: str, events: str | None = None) -> int:
    from damoc.console import ConsoleReporter
    from damoc.events import JsonlWriter
    from damoc.zoo import build_zoo

    settings = Settings.load()      # threads left to the build: one process per core, one thread each (zoo.build)
    if events:                      # a parent follows the build through this file (the app's progress bar)
        build_zoo(size, settings=settings, reporter=JsonlWriter(Path(events)), register=True)
        return 0
    with ConsoleReporter() as rep:
        build_zoo(size, settings=settings, reporter=rep, register=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) in (3, 5) and sys.argv[1] == "build-zoo" and (len(sys.argv) == 3 or sys.argv[3] == "--events"):
        sys.exit(_build_main(sys.argv[2], sys.argv[4] if len(sys.argv) == 5 else None))
    print("usage: python -m damoc.pipeline.demo build-zoo SIZE [--events FILE]", file=sys.stderr)
    sys.exit(2)
