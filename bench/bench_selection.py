"""Selection benchmark: DaMoC's selectors vs ground truth (grid search) vs the zero-shot baseline, full and LoRA.

    python bench/bench_selection.py                      # demo zoo: notes-qa + PubMedQA (../shared/data), full + lora
    python bench/bench_selection.py --tasks notes-qa,laws-qa,profiles --ft full,lora --arms paper,curves,ats
    python bench/bench_selection.py --tasks notes-qa --ft full --out bench/results/selection.json

For each task and fine-tuning method it runs, over the same candidates and the same harness:
  * each selector arm (`--arms`), timed end to end (process start-up, data stages, pruning, training, evaluation):
    `paper` (today's recipe: one proxy on the filtered set, ranked by its score), `curves` (proxies on nested
    shares of the filtered set, ranked by the damoc curve predictor's forecast), `adaptive` (the same with the
    adaptive budget: hopeless candidates stop at the smallest share), `random` (today's recipe with a random sample
    in place of GraphCut's pick and no compression: what the data-level stages do), `ats` (AtS's own recipe as a peer:
    nested random subsets of the unfiltered data, no compression or pruning, the `ats` predictor),
  * the ground truth: a full-data fine-tune of every candidate with the same hyper-parameters; kept in the data dir
    keyed by task, recipe and zoo (`<home>/bench/ground-truth/`), so a re-measurement only pays for the arms,
  * the zero-shot baseline (once per task: it does not fine-tune),
and reports wall-time ratios (end to end and training only), top-1 agreement, Kendall tau and the pick's P(best)
against the ground truth, and the calibration of P(best) over every cell. The proxy is also re-run with stages switched off (filter only, filter + compression) to show which stage
moves the ranking (by default always; `--ablations on-miss` only when DaMoC misses the winner). Every timed run
starts cold: the embedding and compression caches an earlier run left are removed first (`--warm` keeps them).

Runs are real `damoc` runs (driver + worker subprocesses) under the current DAMOC_HOME; nothing is written to the
checkout unless --out points there.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def _follow_quiet(settings: Any, run_id: str) -> str:
    from damoc.pipeline import api
    return api.wait_run(settings, run_id)


def _follow_live(settings: Any, run_id: str) -> str:
    from damoc.cli.run import _follow
    return _follow(settings, run_id)


def _task_inputs(settings: Any, name: str, size: str) -> tuple[str, str, str]:
    """(train, test, metric) of a demo task or of a ../shared/data task."""
    if name == "pubmedqa":
        d = SHARED / "pubmedqa"
        if not d.is_dir():
            raise SystemExit(f"{d} not found: PubMedQA needs ../shared/data")
        return str(d / "train.jsonl"), str(d / "test.jsonl"), "bertscore_rouge"
    from damoc.zoo import demo_tasks
    for t in demo_tasks(size, settings=settings):
        if t.name == name:
            return t.train_path, t.test_path, t.metric
    raise SystemExit(f"unknown task {name!r}")


# per-task harness on top of the demo's (dotted keys)
TASK_EXTRA: dict[str, dict[str, Any]] = {
    # PubMedQA answers are long: cap the generation and the evaluated items, the same in every arm
    "pubmedqa": {"dataset.max_test": 100, "evaluate.max_new_tokens": 48, "finetune.full.max_length": 384,
                 "finetune.lora.max_length": 384},
}


def _config(settings: Any, size: str, train: str, test: str, metric: str, names: list[str], mode: str, ft: str,
            task: str, overrides: list[str]) -> Any:
    from damoc.pipeline.config import load_config
    from damoc.pipeline.demo import DEMO_BASE

    base = {**DEMO_BASE[size], **TASK_EXTRA.get(task, {}), "dataset.train": train, "dataset.test": test,
            "evaluate.metric": metric, "candidates": names, "mode": mode, "ft": ft, "label": f"bench-{task}"}
    return load_config(None, overrides, base)


# the selector arms: `--set` overrides of the damoc mode
ARMS: dict[str, list[str]] = {
    "paper": ["select.sizes=[1.0]", "select.predictor=final", "select.adaptive=false"],   # = --recipe paper
    "curves": ["select.sizes=[0.25,0.5,1.0]", "select.predictor=damoc", "select.adaptive=false"],
    "adaptive": ["select.sizes=[0.25,0.5,1.0]", "select.predictor=damoc", "select.adaptive=true"],  # the default
    # AtS (Lin et al. 2024) as a peer: nested random subsets of the whole training set, as much data as the
    # filtered set at the largest, no compression or pruning, its own predictor
    # today's recipe with the filter's GraphCut pick replaced by a uniform random sample of the same size and no
    # compression (pruning and merging stay): isolates what the data-level stages do to the ranking
    "random": ["filter.method=random", "compress.enabled=false", "select.sizes=[1.0]", "select.predictor=final",
               "select.adaptive=false"],
    "random-compress": ["filter.method=random", "select.sizes=[1.0]", "select.predictor=final",
                        "select.adaptive=false"],      # the same, compression kept
    "ats": ["filter.enabled=false", "compress.enabled=false", "prune.enabled=false",
            "select.sizes=[0.025,0.05,0.1]", "select.predictor=ats", "select.adaptive=false"],
}


def _ground_truth(settings: Any, cfg: Any, follow: Any, cold: bool) -> dict[str, Any]:
    """The ground-truth run of this exact config, reused from the data dir when an earlier run finished."""
    from damoc.fsutil import atomic_write_json, read_json, stable_hash
    from damoc.pipeline import api

    # where a run executes and what it is called do not change its result
    key = stable_hash({k: v for k, v in cfg.to_dict().items() if k not in ("label", "executor")})
    path = settings.home / "bench" / "ground-truth" / f"{key}.json"
    kept = read_json(path)
    if kept and (settings.runs_dir / kept["run_id"]).is_dir():
        if api.open_run(settings, kept["run_id"]).status() == "finished":
            return {**kept, "reused": True}
    gt = _run(settings, cfg, follow, cold=cold)
    if gt["status"] == "finished":
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, gt)
    return gt


def _run(settings: Any, cfg: Any, follow: Any, *, cold: bool = True) -> dict[str, Any]:
    from damoc.pipeline import api

    if cold:   # every timed run starts without the embedding / compression caches an earlier run left
        import shutil
        shutil.rmtree(settings.cache_dir, ignore_errors=True)
    t0 = time.perf_counter()
    h = api.start_run(settings, cfg, detach=True)
    status = follow(settings, h.run_id)
    secs = time.perf_counter() - t0
    lb = api.leaderboard(api.open_run(settings, h.run_id))
    stage: dict[str, float] = dict(lb.shared_times)
    for r in lb.rows:
        for k, v in r.times.items():
            stage[k] = stage.get(k, 0.0) + v
    return {"run_id": h.run_id, "status": status, "seconds": secs, "train_seconds": lb.train_seconds(),
            "train_flops": lb.train_flops(),
            "stage_seconds": stage, "ranking": lb.ranking, "winner": lb.winner,
            "too_close_to_call": lb.too_close_to_call, "p_best": lb.rows[0].p_best if lb.winner else None,
            "rows": [{"name": r.candidate, "score": r.score, "measured": r.measured, "stderr": r.stderr,
                      "p_best": r.p_best, "layers": r.layers, "merge": r.merge, "steps": r.steps, "status": r.status,
                      "reason": r.reason} for r in lb.rows]}


def _agreement(settings: Any, a: dict[str, Any], gt: dict[str, Any]) -> dict[str, Any]:
    from damoc.pipeline import api
    c = api.compare_runs(settings, a["run_id"], gt["run_id"])
    return {"top1_agree": c.top1_agree, "kendall_tau": c.kendall_tau, "spearman_rho": c.spearman_rho,
            "winner": c.top1_a, "ground_truth_winner": c.top1_b}


def zero_shot_round0(settings: Any, zs: dict[str, Any], gt: dict[str, Any]) -> dict[str, Any]:
    """What the adaptive budget's own rule (damoc.pipeline.adaptive.decide, default select / leaderboard settings)
    would decide if the zero-shot evaluation were its round 0: who it stops, whether it would end the run there,
    and whether the ground-truth winner survives. Measures the selection issue's 'zero-shot as round 0' idea
    without a run of its own (the zero-shot run's P(best) is the leaderboard's)."""
    from damoc.pipeline import adaptive, api
    from damoc.pipeline.config import LeaderboardSection, SelectSection

    lb = api.leaderboard(api.open_run(settings, zs["run_id"]))
    alive = [r.candidate for r in lb.rows if r.score is not None]
    select = SelectSection(adaptive=True)
    d = adaptive.decide(lb, alive, share=0.0, select=select, rules=LeaderboardSection(), spent=0,
                        next_cost=lambda who: 0, cap=1)
    winner = gt["winner"]
    row = next((r for r in lb.rows if r.candidate == winner), None)
    return {"stops": sorted(d.stop), "decides": d.done, "zero_shot_leader": lb.rows[0].candidate if lb.rows else None,
            "winner": winner, "winner_p_best": None if row is None else row.p_best,
            # a round 0 that only stops candidates (never ends the run) still loses the winner when this is true
            "winner_below_p_drop": row is not None and row.p_best is not None and row.p_best < select.p_drop,
            "winner_survives": winner not in d.stop and (not d.done or lb.rows[0].candidate == winner)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="notes-qa,pubmedqa", help="demo task names and/or pubmedqa")
    ap.add_argument("--ft", default="full,lora", help="full, lora or both, comma-separated")
    ap.add_argument("--size", default="demo", choices=["demo", "test"])
    ap.add_argument("--candidates", default="", help="subset of the zoo (default: all)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra config override (all runs)")
    ap.add_argument("--arms", default="paper", help=f"selector arms, comma-separated: {', '.join(ARMS)}")
    ap.add_argument("--ablations", choices=["always", "on-miss", "never"], default="always",
                    help="re-run the proxy as filter-only and filter+compress to see which stage moves the ranking")
    ap.add_argument("--warm", action="store_true", help="keep caches between runs (default: every run is cold)")
    ap.add_argument("--quiet", action="store_true", help="no live progress")
    ap.add_argument("--out", default="", help="write the JSON report here")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from damoc.pipeline.demo import ensure_zoo
    from damoc.pipeline.recipes import recipe_overrides
    from damoc.settings import Settings

    settings = Settings.load()
    follow = _follow_quiet if args.quiet else _follow_live
    zoo = ensure_zoo(settings, args.size)
    names = [n for n in args.candidates.split(",") if n] or [c.name for c in zoo]
    report: dict[str, Any] = {"size": args.size, "candidates": names, "tasks": {}, "started": time.time()}
    for task in [t for t in args.tasks.split(",") if t]:
        train, test, metric = _task_inputs(settings, task, args.size)
        entry: dict[str, Any] = {"metric": metric}
        mk = lambda mode, ft, extra=(): _config(settings, args.size, train, test, metric, names, mode, ft, task,  # noqa: E731
                                               list(extra) + args.sets)
        zs = _run(settings, mk("zero-shot", "full"), follow, cold=not args.warm)
        entry["zero_shot"] = zs
        for ft in [f for f in args.ft.split(",") if f]:
            gt = _ground_truth(settings, mk("ground-truth", ft), follow, cold=not args.warm)
            res: dict[str, Any] = {"ground_truth": gt, "zero_shot_vs_gt": _agreement(settings, zs, gt), "arms": {},
                                   "zero_shot_round0": zero_shot_round0(settings, zs, gt)}
            print(f"  zero-shot as round 0: {res['zero_shot_round0']}", file=sys.stderr)
            for arm in [a for a in args.arms.split(",") if a]:
                dm = _run(settings, mk("damoc", ft, ARMS[arm]), follow, cold=not args.warm)
                res["arms"][arm] = {"run": dm, "speedup": gt["seconds"] / dm["seconds"],
                                    "train_speedup": (gt["train_seconds"] / dm["train_seconds"]
                                                      if dm["train_seconds"] else None),
                                    "train_flops_ratio": (gt["train_flops"] / dm["train_flops"]
                                                          if dm["train_flops"] else None),
                                    "vs_gt": _agreement(settings, dm, gt)}
                _print_line(task, ft, arm, res["arms"][arm], res["zero_shot_vs_gt"])
            paper = res["arms"].get("paper")
            if paper and (args.ablations == "always" or
                          (args.ablations == "on-miss" and not paper["vs_gt"]["top1_agree"])):
                abl = {}
                for name in ("filter-only", "filter+compress"):
                    run = _run(settings, mk("damoc", ft, recipe_overrides(name) + ARMS["paper"]), follow,
                               cold=not args.warm)
                    abl[name] = {**_agreement(settings, run, gt), "run_id": run["run_id"], "seconds": run["seconds"]}
                    print(f"    ablation {name}: winner {abl[name]['winner']}, top-1 "
                          f"{'yes' if abl[name]['top1_agree'] else 'no'}, tau {_tau(abl[name]['kendall_tau'])}",
                          file=sys.stderr)
                res["ablations"] = abl
            entry[ft] = res
        report["tasks"][task] = entry
    report["calibration"] = _calibration(report)
    print(f"calibration: {report['calibration']}", file=sys.stderr)
    report["finished"] = time.time()
    text = json.dumps(report, indent=2, default=str)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


def _tau(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.2f}"


def _print_line(task: str, ft: str, arm: str, r: dict[str, Any], z: dict[str, Any]) -> None:
    d, run = r["vs_gt"], r["run"]
    ts, fr, pb = r["train_speedup"], r.get("train_flops_ratio"), run.get("p_best")
    print(f"[{task} / {ft} / {arm}] speed-up {r['speedup']:.1f}x end to end, "
          f"{'n/a' if ts is None else f'{ts:.1f}x'} training "
          f"({'n/a' if not fr else f'{fr:.1f}x'} less training compute); "
          f"top-1 {'yes' if d['top1_agree'] else 'NO'} ({d['winner']} vs {d['ground_truth_winner']}), "
          f"tau {_tau(d['kendall_tau'])}, P(best) of the pick {'n/a' if pb is None else f'{pb:.2f}'}; "
          f"zero-shot top-1 {'yes' if z['top1_agree'] else 'no'} ({z['winner']}), tau {_tau(z['kendall_tau'])}",
          file=sys.stderr)


def _calibration(report: dict[str, Any]) -> dict[str, Any]:
    """Over every (task, method, arm): when the pick's P(best) >= 0.9, how often it is the ground-truth winner."""
    sure = [a["vs_gt"]["top1_agree"] for t in report["tasks"].values() for ft in ("full", "lora", "both")
            if ft in t for a in t[ft]["arms"].values() if (a["run"].get("p_best") or 0.0) >= 0.9]
    return {"picks_at_p_0.9": len(sure), "right": sum(sure), "rate": (sum(sure) / len(sure)) if sure else None}


if __name__ == "__main__":
    sys.exit(main())
