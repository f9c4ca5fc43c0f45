"""GraphCut (and K-Center greedy) at scale: time and peak memory on random 384-d unit vectors.

    python bench/bench_graphcut.py                      # n = 10k, 100k, 1M, budget 10%
    python bench/bench_graphcut.py --sizes 10000,100000 --kcenter --json

Each run is a fresh subprocess, so "peak" is that process's max RSS (embeddings included: 384 float32 per row,
1.5 GB at 1M). Random vectors are the hard case for GraphCut: the exact greedy soon reaches the regime where every
gain sits in a narrow band (see damoc/filters/greedy.py), so `auto` switches to the stochastic greedy there; the
objective f(S) of every run is printed next to a random subset's, and at 10k next to the exact greedy's.
Target (issue 5): GraphCut at n = 100k under 60 s and 2 GiB on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def child(n: int, ratio: float, method: str, optimizer: str, seed: int) -> dict:
    import numpy as np

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    E = np.empty((n, 384), dtype=np.float32)
    for s in range(0, n, 65536):                  # float32 chunks: no 3 GB float64 temporary at 1M
        block = rng.standard_normal((min(65536, n - s), 384), dtype=np.float32)
        E[s:s + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    gen = time.perf_counter() - t0
    budget = int(round(ratio * n))
    from damoc.filters.greedy import graphcut_greedy, graphcut_value, kcenter_greedy

    t1 = time.perf_counter()
    if method == "graphcut":
        res = graphcut_greedy(E, budget, 0.4, optimizer=optimizer, seed=seed)
    else:
        res = kcenter_greedy(E, budget, seed=seed)
    secs = time.perf_counter() - t1
    out = {"n": n, "budget": budget, "method": method, "optimizer": optimizer if method == "graphcut" else "exact",
           "seconds": round(secs, 2), "data_seconds": round(gen, 2),
           "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "stats": {k: v for k, v in res.stats.items() if k != "optimizer"}}
    if method == "graphcut":
        out["f"] = round(graphcut_value(E, res.order, 0.4), 1)
        out["f_random"] = round(graphcut_value(E, rng.choice(n, budget, replace=False), 0.4), 1)
    return out


def run(n: int, ratio: float, method: str, optimizer: str, seed: int) -> dict:
    p = subprocess.run([sys.executable, __file__, "--child", str(n), str(ratio), method, optimizer, str(seed)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        return {"n": n, "method": method, "optimizer": optimizer, "error": p.stderr.strip().splitlines()[-1:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        n, ratio, method, optimizer, seed = sys.argv[2:7]
        print(json.dumps(child(int(n), float(ratio), method, optimizer, int(seed))))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--ratio", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--kcenter", action="store_true", help="also time KCenterGreedy (n <= 100k)")
    ap.add_argument("--no-exact", action="store_true", help="skip the exact-greedy reference at 10k")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        plan = [("graphcut", "auto")]
        if n <= 10_000 and not args.no_exact:
            plan.append(("graphcut", "exact"))
        if args.kcenter and n <= 100_000:
            plan.append(("kcentergreedy", "exact"))
        for method, opt in plan:
            r = run(n, args.ratio, method, opt, args.seed)
            rows.append(r)
            if not args.json:
                if "error" in r:
                    print(f"{n:>9,} {method:<14} {opt:<6} FAILED {r['error']}", flush=True)
                    continue
                st = r["stats"]
                mix = (f"exact {st.get('exact_picks', r['budget'])} + stochastic {st.get('stochastic_picks', 0)}"
                       if method == "graphcut" else f"{st.get('refreshes')} refreshes")
                f = f"  f={r['f']:.4g} (random {r['f_random']:.4g})" if "f" in r else ""
                print(f"{n:>9,} {method:<14} {opt:<6} budget {r['budget']:>7,}  {r['seconds']:>7.1f} s  "
                      f"peak {r['peak_mib']:>7.0f} MiB  [{mix}]{f}", flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        ok = [r for r in rows if r.get("n") == 100_000 and r.get("method") == "graphcut" and "error" not in r]
        if ok:
            r = ok[0]
            good = r["seconds"] < 60 and r["peak_mib"] < 2048
            print(f"target GraphCut n=100k: {r['seconds']:.1f} s, {r['peak_mib']:.0f} MiB -> "
                  f"{'met' if good else 'NOT met'} (< 60 s, < 2048 MiB)")


if __name__ == "__main__":
    main()
