"""Evidence for layer pruning and sparse merging on the demo zoo (issue 7).

Part A, perplexity. For every zoo pair with a Base: Eq. 3 scores, the layers pruned at the threshold (k/N), and the
held-out perplexity of the unpruned Chat, of plain dropping, of every merge rule, and of LaCo at the same depth.
Two held-out perplexities:
  * raw    - the acceptance check's: the test records' fields joined as plain text, every token scored;
  * answer - the fine-tuning objective: answer (+EOS) tokens given the chat-framed prompt.

Part B (--finetune), ranking. Every candidate is proxy fine-tuned (`damoc.finetune`, the proxy recipe: a training
subset with PROXY_MIN_STEPS optimizer steps) unpruned, dropped and dropped+merged, then evaluated on the task's test
set. Does dropped+merged keep the unpruned proxies' candidate order (Kendall tau) better than dropped alone?
Candidates without a Base stay unpruned in every variant, as in a real run.

    HF_HUB_OFFLINE=1 python bench/bench_prune.py --size demo [--finetune] [--threads 1]

Writes JSON to <damoc home>/bench/prune-<size>.json (resumable: finished cells are reused) and prints the tables.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

RULES = ["drop", "additive", "additive_scaled", "convex", "paper", "literal"]


def raw_texts(test_path: str, n: int = 40) -> list[str]:
    texts = []
    with open(test_path) as f:
        for line in f:
            r = json.loads(line)
            texts.append(" ".join(str(r.get(k, "")) for k in
                                  ("instruction", "input", "question", "context", "output", "answer")))
            if len(texts) >= n:
                break
    return texts


def _load(path: str) -> tuple[Any, Any]:
    from damoc.models import load_causal_lm, load_tokenizer

    return load_causal_lm(path, device="cpu"), load_tokenizer(path)


def raw_ppl(model: Any, tok: Any, texts: list[str]) -> float:
    """The acceptance check's perplexity: plain text, every token scored."""
    import torch

    nll = n = 0.0
    with torch.no_grad():
        for t in texts:
            ids = tok(t, return_tensors="pt", truncation=True, max_length=256)["input_ids"]
            if ids.shape[1] < 2:
                continue
            out = model(ids, labels=ids)
            nll += out.loss.item() * (ids.shape[1] - 1)
            n += ids.shape[1] - 1
    return math.exp(nll / n)


def chat_eval(model: Any, tok: Any, samples: list[Any], ref: Any = None) -> dict[str, float]:
    """Answer perplexity (answer + EOS given the chat-framed prompt: the proxy fine-tune's objective) and, against
    the unpruned Chat `ref`, the mean KL(ref || model) and top-1 agreement over every position of those
    sequences (how faithfully the pruned model keeps the Chat's behaviour)."""
    import torch
    import torch.nn.functional as F

    from damoc.finetune.data import IGNORE_INDEX, encode_sample

    nll = n = kl = agree = positions = 0.0
    with torch.no_grad():
        for s in samples:
            f = encode_sample(tok, s, max_length=256)
            ids = torch.tensor([f.input_ids])
            logits = model(ids).logits[0, :-1].float()
            tgt = torch.tensor(f.labels[1:])
            keep = tgt != IGNORE_INDEX
            nll += float(F.cross_entropy(logits[keep], tgt[keep], reduction="sum"))
            n += int(keep.sum())
            if ref is not None:
                ref_logits = ref(ids).logits[0, :-1].float()
                lp, lq = F.log_softmax(ref_logits, -1), F.log_softmax(logits, -1)
                kl += float((lp.exp() * (lp - lq)).sum())
                agree += float((ref_logits.argmax(-1) == logits.argmax(-1)).sum())
                positions += logits.shape[0]
    out = {"answer": math.exp(nll / n)}
    if ref is not None:
        out.update(kl=kl / positions, agree=agree / positions)
    return out


def evaluate_variant(path: str, ref: Any, texts: list[str], samples: list[Any]) -> dict[str, float]:
    model, tok = _load(path)
    return {"raw": raw_ppl(model, tok, texts), **chat_eval(model, tok, samples, ref)}


def kendall(a: list[float], b: list[float]) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


class Store:
    """Results JSON, saved after every cell so an interrupted bench resumes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}

    def get(self, *keys: str) -> Any:
        d = self.data
        for k in keys:
            if not isinstance(d, dict) or k not in d:
                return None
            d = d[k]
        return d

    def put(self, value: Any, *keys: str) -> None:
        d = self.data
        for k in keys[:-1]:
            d = d.setdefault(k, {})
        d[keys[-1]] = value
        from damoc.fsutil import atomic_write_json

        atomic_write_json(self.path, self.data)


def part_a(args: argparse.Namespace, zoo: list[Any], tasks: list[Any], store: Store, work: Path) -> None:
    from damoc.data import load_samples
    from damoc.models import load_causal_lm, load_tokenizer
    from damoc.prune import choose_layers, get_rule, texts_from_samples
    from damoc.prune.api import compute_scores, write_pruned
    from damoc.prune.laco import laco_prune

    task = tasks[0]
    texts = raw_texts(task.test_path)
    test = load_samples(task.test_path).samples
    test = random.Random(0).sample(test, min(args.answer_items, len(test)))
    train = load_samples(task.train_path).samples
    for c in zoo:
        if not c.base_path:
            continue
        key = f"{c.name}|{args.calib}|{args.threshold}"
        row = store.get("ppl", key) or {}
        t0 = time.time()
        if "scores" not in row:
            calib = texts_from_samples(train, load_tokenizer(c.chat_path), n=64) if args.calib == "data" else None
            scores, info = compute_scores(c.chat_path, calib, device="cpu")
            row.update(scores=scores, calibration=info, layers=c.layers)
            row["pruned"] = choose_layers(scores, args.threshold)
        ref, _ = _load(c.chat_path)
        if "chat" not in row:
            row["chat"] = evaluate_variant(c.chat_path, ref, texts, test)
        if row["pruned"]:
            for r in RULES:
                if r in row:
                    continue
                out = work / f"{c.name}-{r}"
                write_pruned(c.chat_path, out, row["pruned"], base_path=c.base_path, scores=row["scores"],
                             rule=get_rule(r), sparsity=args.sparsity)
                row[r] = evaluate_variant(str(out), ref, texts, test)
            if "laco" not in row:
                model, tok = load_causal_lm(c.chat_path, device="cpu"), load_tokenizer(c.chat_path)
                res = laco_prune(model, tok, texts_from_samples(train, tok, n=8), max_remove=len(row["pruned"]))
                out = work / f"{c.name}-laco"
                model.save_pretrained(out)
                tok.save_pretrained(out)
                row["laco"] = {**evaluate_variant(str(out), ref, texts, test), "removed": res.removed}
        row["seconds"] = row.get("seconds", 0) + time.time() - t0
        store.put(row, "ppl", key)
        print(f"  {c.name}: pruned {row['pruned']} of {c.layers}", file=sys.stderr, flush=True)


def print_part_a(args: argparse.Namespace, zoo: list[Any], store: Store) -> None:
    cols = ["chat"] + RULES + ["laco"]
    titles = {"raw": "raw perplexity (lower is better)", "answer": "answer perplexity (lower is better)",
              "kl": "KL(unpruned Chat || pruned) per token (lower is better)"}
    for metric in ("raw", "answer", "kl"):
        print(f"\n### held-out {titles[metric]} (threshold {args.threshold}, calibration {args.calib}, "
              f"sparsity {args.sparsity})\n")
        print("| pair | k/N | pruned | " + " | ".join("unpruned" if c == "chat" else c for c in cols) + " |")
        print("|---|---|---|" + "---|" * len(cols))
        wins = {r: 0 for r in RULES[1:] + ["laco"]}
        gain = {r: [] for r in wins}
        pairs = 0
        for c in zoo:
            row = store.get("ppl", f"{c.name}|{args.calib}|{args.threshold}")
            if not row:
                continue
            k = len(row["pruned"])
            laco_short = "laco" in row and len(row["laco"].get("removed", [])) != k
            cells = [f"{row[col][metric]:.{4 if metric == 'kl' else 2}f}" if col in row else "-" for col in cols]
            if laco_short:   # LaCo's search accepted fewer collapses than k: not the same depth, not compared
                cells[-1] += f" (removed {len(row['laco'].get('removed', []))})"
            print(f"| {c.name} | {k}/{row['layers']} | {row['pruned']} | " + " | ".join(cells) + " |")
            if k:
                pairs += 1
                for r in wins:
                    if r == "laco" and laco_short:
                        continue
                    wins[r] += row[r][metric] <= row["drop"][metric]
                    gain[r].append(math.log(max(row[r][metric], 1e-12) / max(row["drop"][metric], 1e-12)))
        if pairs:
            print(f"\nvs plain dropping over {pairs} pruned pairs (wins = value <= drop's; mean log-ratio < 0 "
                  "is better):")
            for r in wins:
                m = len(gain[r])
                if m:
                    print(f"  {r:<16} wins {wins[r]}/{m}   mean log(x/drop) {sum(gain[r]) / m:+.4f}")


def part_b(args: argparse.Namespace, zoo: list[Any], tasks: list[Any], store: Store, work: Path,
           seed: int) -> None:
    from damoc.data import load_samples
    from damoc.evaluate import evaluate
    from damoc.finetune import PROXY_MIN_STEPS, FinetuneConfig, finetune
    from damoc.prune import get_rule
    from damoc.prune.api import write_pruned

    task = tasks[0]
    train = load_samples(task.train_path).samples
    test = load_samples(task.test_path).samples
    subset = random.Random(seed).sample(train, max(1, int(len(train) * args.proxy_fraction)))
    # the demo run's proxy recipe (damoc/pipeline/demo.py): lr 1e-3, batch 8, 3 epochs, >= 120 steps
    cfg = FinetuneConfig(method="full", lr=args.lr, epochs=3, effective_batch=8, min_steps=PROXY_MIN_STEPS,
                         seed=seed, device="cpu")
    variants = ["unpruned", "drop", *args.rule.split(",")]
    for c in zoo:
        row = store.get("ppl", f"{c.name}|{args.calib}|{args.threshold}") if c.base_path else None
        pruned = row["pruned"] if row else []
        for v in variants:
            key = f"{c.name}|{v}|{args.threshold}|{seed}"
            if store.get("ft", key):
                continue
            path = c.chat_path
            if v != "unpruned" and pruned:
                path = str(work / f"{c.name}-{v}")
                if not (Path(path) / "config.json").is_file():
                    write_pruned(c.chat_path, path, pruned, base_path=c.base_path, scores=row["scores"],
                                 rule=get_rule(v), sparsity=args.sparsity)
            elif v != "unpruned" and store.get("ft", f"{c.name}|unpruned|{args.threshold}|{seed}"):
                store.put(store.get("ft", f"{c.name}|unpruned|{args.threshold}|{seed}"), "ft", key)
                continue   # nothing pruned (no Base or no layer): identical to the unpruned proxy
            t0 = time.time()
            res = finetune(path, subset, cfg, keep_model=True)
            ev = evaluate(res, test, metric=task.metric, backend="transformers")
            store.put({"score": ev.score, "stderr": ev.stderr, "loglik": ev.secondary.get("answer_loglik"),
                       "steps": res.steps, "seconds": time.time() - t0, "pruned": pruned if v != "unpruned" else []},
                      "ft", key)
            print(f"  seed {seed} {c.name} {v}: {task.metric} {ev.score:.2f} +- {ev.stderr:.2f} ({time.time() - t0:.0f}s)",
                  file=sys.stderr, flush=True)


def print_part_b(args: argparse.Namespace, zoo: list[Any], tasks: list[Any], store: Store) -> None:
    variants = ["unpruned", "drop", *args.rule.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]

    def cells(c: Any, seed: int) -> list[Any] | None:
        got = [store.get("ft", f"{c.name}|{v}|{args.threshold}|{seed}") for v in variants]
        return got if all(got) else None

    for seed in seeds:
        rows = [(c, cl) for c in zoo if (cl := cells(c, seed))]
        if not rows:
            continue
        print(f"\n### proxy fine-tune on {tasks[0].name} ({tasks[0].metric}), {args.proxy_fraction:.0%} of train, "
              f"seed {seed}\n")
        print("| candidate | Base | pruned | " + " | ".join(variants) + " |")
        print("|---|---|---|" + "---|" * len(variants))
        for c, cl in rows:
            print(f"| {c.name} | {'yes' if c.base_path else 'no'} | {cl[1]['pruned']} | "
                  + " | ".join(f"{x['score']:.2f} +- {x['stderr']:.2f}" for x in cl) + " |")
    # summary over seeds: how far each variant's proxy lands from the unpruned proxy, and the candidate order
    print(f"\n### proxies vs the unpruned proxy, seeds {seeds}\n")
    print("| variant | mean abs(score - unpruned), pruned candidates | Kendall tau, all candidates (per seed) "
          "| tau of seed-mean scores |")
    print("|---|---|---|---|")
    for j, v in enumerate(variants[1:], 1):
        dev, taus, mean_ref, mean_v = [], [], {}, {}
        for seed in seeds:
            rows = [(c, cl) for c in zoo if (cl := cells(c, seed))]
            if len(rows) < 3:
                continue
            taus.append(kendall([cl[0]["score"] for _, cl in rows], [cl[j]["score"] for _, cl in rows]))
            for c, cl in rows:
                mean_ref.setdefault(c.name, []).append(cl[0]["score"])
                mean_v.setdefault(c.name, []).append(cl[j]["score"])
                if cl[j]["pruned"]:
                    dev.append(abs(cl[j]["score"] - cl[0]["score"]))
        if not taus:
            continue
        names = sorted(mean_ref)
        tau_mean = kendall([sum(mean_ref[n]) / len(mean_ref[n]) for n in names],
                           [sum(mean_v[n]) / len(mean_v[n]) for n in names])
        print(f"| {v} | {sum(dev) / len(dev):.2f} (n={len(dev)}) | {', '.join(f'{t:+.2f}' for t in taus)} "
              f"| {tau_mean:+.2f} |")


def pool_from_folder(folder: Path) -> list[Any]:
    """Candidates of an already built pool (e.g. one built by an earlier version of the zoo recipe)."""
    from types import SimpleNamespace

    manifest = json.loads((folder / "manifest.json").read_text())
    return [SimpleNamespace(name=c["name"], architecture=c["architecture"], layers=c["layers"],
                            chat_path=str(folder / c["chat"]),
                            base_path=str(folder / c["base"]) if c.get("base") else None)
            for c in manifest["candidates"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="demo", choices=["test", "demo"])
    ap.add_argument("--threshold", type=float, default=0.85)
    ap.add_argument("--sparsity", type=float, default=0.2)
    ap.add_argument("--calib", default="self", choices=["self", "data"],
                    help="calibration: self-generated (the CLI default) or 64 training samples (the pipeline's)")
    ap.add_argument("--answer-items", type=int, default=300, help="test items for the answer perplexity")
    ap.add_argument("--finetune", action="store_true", help="also run part B (proxy fine-tunes)")
    ap.add_argument("--rule", default="additive", help="merge rule(s), comma-separated, compared with dropping in "
                    "part B")
    ap.add_argument("--proxy-fraction", type=float, default=0.2, help="training subset of each proxy")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seeds", default="0", help="proxy seeds for part B, comma-separated (subset and training)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core box)")
    ap.add_argument("--out", default=None, help="results JSON (default <home>/bench/prune-<size>.json)")
    ap.add_argument("--zoo-out", default=None, help="where the zoo is built/cached (default: the settings' zoo dir)")
    ap.add_argument("--pool", default=None, help="a built pool folder (with manifest.json) to use as is")
    ap.add_argument("--print-only", action="store_true")
    args = ap.parse_args()

    import torch

    from damoc.settings import Settings
    from damoc.zoo import build_zoo, demo_tasks

    torch.set_num_threads(args.threads)
    settings = Settings.load()
    zoo = pool_from_folder(Path(args.pool)) if args.pool else build_zoo(size=args.size, out=args.zoo_out,
                                                                         settings=settings)
    tasks = demo_tasks(size=args.size, out=args.zoo_out, settings=settings)
    out = Path(args.out) if args.out else settings.home / "bench" / f"prune-{args.size}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    store = Store(out)
    work = settings.cache_dir / "bench-prune" / args.size
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if not args.print_only:
        part_a(args, zoo, tasks, store, work)
    print_part_a(args, zoo, store)
    if args.finetune:
        if not args.print_only:
            for seed in (int(x) for x in args.seeds.split(",")):
                part_b(args, zoo, tasks, store, work, seed)
        print_part_b(args, zoo, tasks, store)
    print(f"\n(results in {out}; {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
