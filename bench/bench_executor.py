"""Executor benchmark: the demo's DaMoC arm (and the test zoo's ground truth) through each placement.

    nice -n 5 python bench/bench_executor.py                       # every arm, demo zoo, notes-qa, cold caches
    python bench/bench_executor.py --arms serial,parallel --gt     # + the test zoo's ground truth, serial vs parallel
    python bench/bench_executor.py --out /tmp/executor.json
    python bench/bench_executor.py --size test --task laws-qa --arms per-candidate,ray-local,ray-cluster \
        --set dataset.max_train=400                                # Ray's overhead against the same placement

Arms (each a real `damoc` run: driver + worker subprocesses; timed from start to the driver's exit):
  serial           executor.workers=1: one worker serves the data cells and every candidate (before issue 20)
  parallel         the default placement: data cells alone on every core, then as many one-thread workers as the
                   cores allow, sharing the candidate list largest first
  per-candidate    executor.pool=candidate: the same number of workers at once, one process per candidate (the
                   placement the Ray executor has)
  ray-local        executor.kind=ray, a local Ray instance started by the run (one task per candidate)
  ray-cluster      executor.kind=ray on Ray's two-node test cluster on this machine (ray.cluster_utils, one CPU
                   per node)

and prints wall time, the stage seconds, whether every arm ranks the candidates identically (same scores too),
Ray's start-up (ray.init in the driver, from the run log) and its per-task overhead (a no-op task's round trip on
an instance, and the ray arm's wall time over the per-candidate arm's, per task). Runs go to a scratch DAMOC_HOME
(`--home`, default <user data dir>/bench/executor-home) that links the demo zoo of the user data dir, so clearing
the embedding cache between arms (`--warm` keeps it) touches nobody else's files.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ARMS = {
    "serial": ["executor.workers=1"],
    "parallel": [],
    "per-candidate": ["executor.pool=candidate"],
    "ray-local": ["executor.kind=ray"],
    "ray-cluster": ["executor.kind=ray"],      # + the cluster's address
}


def _home(args: argparse.Namespace) -> Path:
    """A scratch home whose zoo is the user's (built once, read only here)."""
    import platformdirs

    user = Path(os.environ.get("DAMOC_HOME") or platformdirs.user_data_dir("damoc", appauthor=False))
    home = Path(args.home) if args.home else user / "bench" / "executor-home"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "zoo").exists() and (user / "zoo").is_dir():
        (home / "zoo").symlink_to(user / "zoo")
    os.environ["DAMOC_HOME"] = str(home)
    return home


def _run(settings: Any, cfg: Any, *, cold: bool) -> dict[str, Any]:
    from damoc.pipeline import api

    if cold:
        shutil.rmtree(settings.cache_dir, ignore_errors=True)
    t0 = time.perf_counter()
    h = api.start_run(settings, cfg)
    status = api.wait_run(settings, h.run_id)
    wall = time.perf_counter() - t0
    rd = api.open_run(settings, h.run_id)
    lb = api.leaderboard(rd)
    startup = None
    for e in rd.events():
        m = re.search(r"startup_seconds ([0-9.]+)", getattr(e, "message", "") or "")
        if m:
            startup = float(m.group(1))
    nodes = sorted({str((c.result() or {}).get("ray_node") or (c.result() or {}).get("node"))[:8]
                    for c in rd.cells() if c.done})
    return {"run_id": h.run_id, "status": status, "wall": wall, "shared": lb.shared_times,
            "train_seconds": lb.train_seconds(), "ranking": [(r.candidate, r.score) for r in lb.rows],
            "ray_startup": startup, "nodes": nodes, "tasks": len(lb.rows) + 1}


def _noop_roundtrip(n: int = 20) -> dict[str, float]:
    """Ray's own cost: ray.init of a local instance, and a no-op task's round trip (mean of n, after one warm-up)."""
    import ray

    t0 = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    init = time.perf_counter() - t0
    f = ray.remote(lambda: 0)
    ray.get(f.remote())
    t1 = time.perf_counter()
    for _ in range(n):
        ray.get(f.remote())
    rt = (time.perf_counter() - t1) / n
    ray.shutdown()
    return {"init_seconds": init, "task_roundtrip_seconds": rt}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="notes-qa")
    ap.add_argument("--size", default="demo")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--gt", action="store_true", help="also the test zoo's ground truth, serial vs parallel")
    ap.add_argument("--warm", action="store_true", help="keep the embedding / compression caches between arms")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="a run-config override for every arm (e.g. dataset.max_train=400)")
    ap.add_argument("--home", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    _home(args)

    from damoc.pipeline.demo import demo_config, ensure_zoo
    from damoc.settings import Settings
    from damoc.zoo import demo_tasks

    settings = Settings.load()
    load = os.getloadavg()
    out: dict[str, Any] = {"task": args.task, "size": args.size, "cores": os.cpu_count(), "load_before": load,
                           "arms": {}}
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)

    def arm_runs(size: str, task_name: str, mode: str, arms: list[str]) -> dict[str, Any]:
        zoo = ensure_zoo(settings, size)
        task = next(t for t in demo_tasks(size, settings=settings) if t.name == task_name)
        names = [c.name for c in zoo]
        res: dict[str, Any] = {}
        for arm in arms:
            extra = list(ARMS[arm]) + list(args.sets)
            cluster = None
            if arm == "ray-cluster":
                from ray.cluster_utils import Cluster
                t0 = time.perf_counter()
                cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
                cluster.add_node(num_cpus=1)
                cluster.wait_for_nodes()
                res.setdefault("_cluster_start_seconds", time.perf_counter() - t0)
                extra.append(f"executor.address={cluster.address}")
            try:
                cfg = demo_config(settings, size, task, names, extra, mode=mode)
                r = _run(settings, cfg, cold=not args.warm)
            finally:
                if cluster is not None:
                    cluster.shutdown()
            res[arm] = r
            print(f"{size}/{task_name} {mode} {arm:14s} {r['status']:9s} wall {r['wall']:7.1f}s  shared "
                  + ", ".join(f"{k} {v:.1f}" for k, v in r["shared"].items())
                  + f"  train {r['train_seconds']:.1f}s"
                  + (f"  ray start-up {r['ray_startup']:.1f}s" if r["ray_startup"] is not None else "")
                  + f"  nodes {','.join(r['nodes'])}  load {os.getloadavg()[0]:.2f}", flush=True)
        return res

    arms = [a for a in args.arms.split(",") if a]
    res = arm_runs(args.size, args.task, "damoc", arms)
    out["arms"] = res
    if any(a.startswith("ray") for a in arms):
        out["ray_noop"] = _noop_roundtrip()
    if args.gt:
        out["ground_truth"] = arm_runs("test", args.task, "ground-truth", ["serial", "parallel"])

    def summary(res: dict[str, Any], label: str) -> None:
        runs = {k: v for k, v in res.items() if not k.startswith("_")}
        if not runs:
            return
        ref = runs.get("serial")
        rankings = {k: v["ranking"] for k, v in runs.items()}
        same = len({json.dumps(r) for r in rankings.values()}) == 1
        print(f"\n{label}: ranking identical across arms: {same}")
        for k, v in runs.items():
            sp = f"  {ref['wall'] / v['wall']:.2f}x vs serial" if ref else ""
            print(f"  {k:14s} {v['wall']:7.1f}s{sp}")
        pc, rl = runs.get("per-candidate"), runs.get("ray-local")
        if pc and rl:
            over = rl["wall"] - pc["wall"]
            print(f"  ray-local vs per-candidate (same placement): {rl['wall'] / pc['wall']:.2f}x; "
                  f"{over:.1f}s more, {over / rl['tasks']:.2f}s per task including ray.init "
                  f"{rl['ray_startup'] or 0:.1f}s")
        if "_cluster_start_seconds" in res:
            print(f"  two-node test cluster start: {res['_cluster_start_seconds']:.1f}s (not in the arm's wall)")
        res["_identical"] = same

    summary(out["arms"], f"{args.size}/{args.task} DaMoC arm")
    if "ray_noop" in out:
        print(f"  ray local instance: init {out['ray_noop']['init_seconds']:.2f}s, no-op task round trip "
              f"{1000 * out['ray_noop']['task_roundtrip_seconds']:.1f} ms")
    if "ground_truth" in out:
        summary(out["ground_truth"], f"test/{args.task} ground truth")
    out["load_after"] = os.getloadavg()
    print(f"load average after: {out['load_after'][0]:.2f}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
