"""Ground truth on the demo zoo: does the paper's phenomenon show? (not a test; prints figures for the docs)

    HF_HUB_OFFLINE=1 python bench/ground_truth.py [--size demo] [--task laws-qa] [--epochs 3] [--json OUT]

For every Chat candidate of the zoo: a zero-shot evaluation on the task's test split, then a real full fine-tune on
the *whole* train split (damoc.finetune) and the same evaluation again (damoc.evaluate). Prints both rankings with
scores and standard errors, Kendall tau between them, the gap between the best two after fine-tuning (with the
standard error of that gap, paired over the same test items), a majority-answer baseline, and the wall times of
training and evaluation. The issue's bar: the zero-shot winner is not the fine-tuned winner, tau < 0.5, and the best
two after fine-tuning are separated by more than two standard errors.

Run it alone on the machine: it measures wall time.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def majority_baseline(train, test) -> tuple[float, float]:
    """F1 of always answering the most common train answer for the question's attribute (laws-qa)."""
    from damoc.evaluate import mean_stderr, squad_scores

    by_attr: dict[str, Counter] = {}
    for s in train:
        by_attr.setdefault(s.extra.get("attribute", ""), Counter())[s.answer] += 1
    scores = []
    for s in test:
        guess = by_attr.get(s.extra.get("attribute", ""), Counter([""])).most_common(1)[0][0]
        scores.append(100.0 * squad_scores(guess, s.references)[0])
    return mean_stderr(scores)


def paired_gap(a: list[float], b: list[float]) -> tuple[float, float]:
    """Mean of a - b over the same items and its standard error."""
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    m = sum(d) / n
    var = sum((x - m) ** 2 for x in d) / max(1, n - 1)
    return m, math.sqrt(var / n)


def kendall_tau(xs: list[float], ys: list[float]) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(xs, ys).statistic)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="demo", choices=["test", "demo"])
    ap.add_argument("--task", default="laws-qa")
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--lr", type=float, default=1e-3, help="full fine-tune learning rate (tiny models need ~1e-3)")
    ap.add_argument("--batch", type=int, default=16, help="effective batch (samples per optimizer step)")
    ap.add_argument("--candidates", default="", help="comma-separated subset of candidate names")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("DAMOC_THREADS", "0") or 0),
                    help="torch threads (0 = torch default); use 1 on a busy shared machine")
    ap.add_argument("--out", default=None, help="zoo folder (default: the data dir's)")
    ap.add_argument("--json", dest="json_out", default=None, help="also write the results here")
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch

    from damoc.data import load_samples
    from damoc.evaluate import evaluate
    from damoc.finetune import FinetuneConfig, finetune
    from damoc.settings import Settings
    from damoc.zoo import build_zoo, demo_tasks

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = Settings.load()
    t_all = time.perf_counter()
    t0 = time.perf_counter()
    zoo = build_zoo(size=args.size, out=args.out, settings=settings)
    build_s = time.perf_counter() - t0
    task = next((t for t in demo_tasks(size=args.size, out=args.out, settings=settings) if t.name == args.task), None)
    if task is None:
        sys.exit(f"unknown task {args.task!r}")
    train = load_samples(task.train_path).samples
    test = load_samples(task.test_path).samples
    if args.candidates:
        keep = set(args.candidates.split(","))
        zoo = [c for c in zoo if c.name in keep]
    print(f"zoo {args.size}: {len(zoo)} candidates (ready in {build_s:.1f}s); task {task.name} ({task.metric}): "
          f"{len(train)} train / {len(test)} test", file=sys.stderr)

    cfg = FinetuneConfig(method="full", lr=args.lr, epochs=args.epochs, effective_batch=args.batch,
                         micro_batch=args.batch, seed=0)
    rows = []
    for c in zoo:
        t0 = time.perf_counter()
        zs = evaluate(c.chat_path, test, metric=task.metric, settings=settings)
        zs_s = time.perf_counter() - t0
        ft = finetune(c.chat_path, train, cfg, keep_model=True, settings=settings)
        t0 = time.perf_counter()
        after = evaluate(ft, test, metric=task.metric, settings=settings)
        ev_s = time.perf_counter() - t0
        row = {
            "name": c.name, "architecture": c.architecture, "parameters": c.parameters, "layers": c.layers,
            "has_base": c.base_path is not None,
            "zero_shot": zs.score, "zero_shot_stderr": zs.stderr,
            "zero_shot_loglik": zs.secondary.get("answer_loglik", (None, None))[0],
            "finetuned": after.score, "finetuned_stderr": after.stderr,
            "finetuned_loglik": after.secondary.get("answer_loglik", (None, None))[0],
            "finetuned_loglik_stderr": after.secondary.get("answer_loglik", (None, None))[1],
            "train_seconds": ft.train_seconds, "finetune_seconds": ft.seconds, "steps": ft.steps,
            "zero_shot_eval_seconds": zs_s, "eval_seconds": ev_s,
            "_zs_items": zs.per_item, "_ft_items": after.per_item,
        }
        # split by whether the answer follows a tail-family law (rare in the train split: Base knowledge)
        for key, items in (("zero_shot", zs.per_item), ("finetuned", after.per_item)):
            for flag in (False, True):
                v = [x for x, s in zip(items, test) if bool(s.extra.get("tail")) == flag]
                if v:
                    row[f"{key}_{'tail' if flag else 'head'}"] = sum(v) / len(v)
        rows.append(row)
        print(f"{c.name:16s} zero-shot {zs.score:6.2f} ± {zs.stderr:4.2f}   fine-tuned {after.score:6.2f} ± "
              f"{after.stderr:4.2f}   train {ft.train_seconds:6.1f}s  eval {zs_s + ev_s:5.1f}s", file=sys.stderr,
              flush=True)
        del ft

    by_zs = sorted(rows, key=lambda r: -r["zero_shot"])
    by_ft = sorted(rows, key=lambda r: -r["finetuned"])
    tau = kendall_tau([r["zero_shot"] for r in rows], [r["finetuned"] for r in rows]) if len(rows) > 1 else None
    gap = gap_se = None
    if len(by_ft) > 1:
        gap, gap_se = paired_gap(by_ft[0]["_ft_items"], by_ft[1]["_ft_items"])
    base = majority_baseline(train, test) if task.metric == "squad_f1" else None
    total_train = sum(r["train_seconds"] for r in rows)
    total_eval = sum(r["zero_shot_eval_seconds"] + r["eval_seconds"] for r in rows)
    summary = {
        "size": args.size, "task": task.name, "metric": task.metric, "train_size": len(train),
        "test_size": len(test), "epochs": args.epochs, "lr": args.lr, "batch": args.batch,
        "zero_shot_ranking": [r["name"] for r in by_zs], "finetuned_ranking": [r["name"] for r in by_ft],
        "kendall_tau": tau, "zero_shot_winner_differs": by_zs[0]["name"] != by_ft[0]["name"],
        "top2_gap": gap, "top2_gap_stderr": gap_se,
        "top2_separated": bool(gap is not None and gap_se and gap > 2 * gap_se),
        "majority_baseline": base, "train_seconds": total_train, "eval_seconds": total_eval,
        "total_seconds": time.perf_counter() - t_all,
        "candidates": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
    }

    print(f"\n{task.name} ({task.metric}), {len(train)} train / {len(test)} test, full fine-tune {args.epochs:g} "
          f"epochs, lr {args.lr:g}, batch {args.batch}")
    if base:
        print(f"majority-answer baseline: {base[0]:.2f} ± {base[1]:.2f}")
    print(f"{'candidate':16s} {'arch':9s} {'params':>7s} {'zero-shot':>15s} {'fine-tuned':>15s} "
          f"{'ft loglik':>9s} {'train s':>8s}")
    for r in by_ft:
        ll = r["finetuned_loglik"]
        print(f"{r['name']:16s} {r['architecture']:9s} {r['parameters'] / 1e6:6.2f}M "
              f"{r['zero_shot']:8.2f} ± {r['zero_shot_stderr']:4.2f} {r['finetuned']:8.2f} ± "
              f"{r['finetuned_stderr']:4.2f} {ll if ll is not None else float('nan'):9.3f} "
              f"{r['train_seconds']:8.1f}")
    print("zero-shot ranking:  " + " > ".join(summary["zero_shot_ranking"]))
    print("fine-tuned ranking: " + " > ".join(summary["finetuned_ranking"]))
    if tau is not None:
        print(f"Kendall tau = {tau:.2f}; zero-shot winner {'differs from' if summary['zero_shot_winner_differs'] else 'is'}"
              f" the fine-tuned winner")
    if gap is not None:
        print(f"best two after fine-tuning: gap {gap:.2f} ± {gap_se:.2f} (paired SE) -> "
              f"{'separated' if summary['top2_separated'] else 'NOT separated'} at 2 SE")
    print(f"time: training {total_train:.0f}s, evaluation {total_eval:.0f}s, total {summary['total_seconds']:.0f}s")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
