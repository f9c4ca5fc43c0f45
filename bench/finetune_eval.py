"""Benchmark of the fine-tune / evaluation / backend layer on the demo zoo (not a test; figures for the docs).

    HF_HUB_OFFLINE=1 python bench/finetune_eval.py [--size test|demo] [--candidate NAME] [--json OUT]

Measures, on one zoo candidate and the first demo task:
  A. backend: greedy generation of 64 test prompts batched (32) vs one by one; identical outputs?
  B. fine-tune: full and LoRA, same data and steps, with the transformers Trainer (damoc.finetune) and with a
     plain PyTorch loop on the same features, to size the Trainer's overhead;
  C. evaluation: the task's metric + answer_loglik on up to 200 test items;
  D. PubMedQA (../shared/data, if present): bertscore_rouge cost on 100 reference pairs, and a zero-shot evaluate on
     20 items (generation of long answers dominates).
Prints one JSON object (and writes it with --json). Run it alone: it measures wall time on a shared box.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def hand_loop(model_path: str, features, micro: int, accum: int, steps: int, lr: float, method: str) -> float:
    """The same optimisation as the Trainer run (AdamW, accumulation, grad clip, linear warmup/decay), written out."""
    import torch

    from damoc.finetune import Collator, LORA_TARGETS
    from damoc.models import load_causal_lm, load_tokenizer

    tok = load_tokenizer(model_path)
    model = load_causal_lm(model_path, device="cpu", train=True)
    if method == "lora":
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, task_type="CAUSAL_LM",
                                                 target_modules=LORA_TARGETS.get(model.config.model_type,
                                                                                 "all-linear")))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warm = max(1, int(0.1 * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / (steps - warm))))
    coll = Collator(tok.pad_token_id)
    rng = random.Random(0)
    order: list[int] = []
    t0 = time.perf_counter()
    for _ in range(steps):
        batches = []
        for _ in range(accum):
            if len(order) < micro:
                order += rng.sample(range(len(features)), len(features))
            batches.append(coll([features[i] for i in order[:micro]]))
            order = order[micro:]
        n_tok = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
        for b in batches:                   # token-weighted loss across the accumulated micro batches
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1]
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                                     b["labels"][:, 1:].reshape(-1), ignore_index=-100,
                                                     reduction="sum") / n_tok
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="test", choices=["test", "demo"])
    ap.add_argument("--zoo-dir", default=None, help="zoo folder (default: the tests' cache for test, settings for demo)")
    ap.add_argument("--candidate", default=None)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

    import torch

    torch.set_num_threads(args.threads)
    from damoc.backends import get_backend
    from damoc.data import load_samples
    from damoc.evaluate import evaluate
    from damoc.finetune import FinetuneConfig, encode_samples, finetune
    from damoc.models import format_prompt, load_tokenizer
    from damoc.zoo import build_zoo, demo_tasks

    zoo_dir = args.zoo_dir or (str(Path(os.path.expanduser("~/.cache/damoc-tests/zoo"))) if args.size == "test"
                               else None)
    zoo = build_zoo(size=args.size, out=zoo_dir)
    tasks = demo_tasks(size=args.size, out=zoo_dir)
    cand = next((c for c in zoo if c.name == args.candidate), zoo[0])
    task = tasks[0]
    train = load_samples(task.train_path).samples
    test = load_samples(task.test_path).samples
    out: dict = {"candidate": cand.name, "architecture": cand.architecture, "parameters": cand.parameters,
                 "task": task.name, "metric": task.metric, "threads": args.threads,
                 "load_average_start": os.getloadavg()[0]}

    # A. backend
    be = get_backend(cand.chat_path, device="cpu")
    prompts = [format_prompt(be.tokenizer, s.prompt) for s in test[:64]]
    t = time.perf_counter()
    batched = be.generate(prompts, max_new_tokens=16, stop=["\n"], batch_size=32)
    tb = time.perf_counter() - t
    t = time.perf_counter()
    single = [be.generate([p], max_new_tokens=16, stop=["\n"])[0] for p in prompts]
    ts = time.perf_counter() - t
    be.close()
    out["generate"] = {"prompts": len(prompts), "batched_s": round(tb, 2), "one_by_one_s": round(ts, 2),
                       "speedup": round(ts / tb, 2), "identical": sum(a == b for a, b in zip(batched, single))}

    # B. fine-tune: Trainer vs hand loop, full and LoRA
    sub = train[:256]
    tok = load_tokenizer(cand.chat_path)
    feats = encode_samples(tok, sub, max_length=256)
    ft_out = {}
    for method in ("full", "lora"):
        cfg = FinetuneConfig(method=method, lr=1e-3, effective_batch=16, micro_batch=16, max_steps=args.steps,
                             max_length=256, device="cpu")
        res = finetune(cand.chat_path, sub, cfg, keep_model=False)
        hand = hand_loop(cand.chat_path, feats, 16, 1, args.steps, 1e-3, method)
        ft_out[method] = {"steps": res.steps, "call_seconds": round(res.seconds, 2),
                          "train_seconds": round(res.train_seconds, 2),
                          "s_per_step": round(res.train_seconds / res.steps, 3),
                          "tokens_per_s": round(res.train_tokens / res.train_seconds),
                          "first_loss": round(res.losses[0], 3), "final_loss": round(res.final_loss, 3),
                          "trainable_params": res.trainable_params, "hand_loop_seconds": round(hand, 2),
                          "trainer_overhead_pct": round(100 * (res.train_seconds - hand) / hand, 1)}
    out["finetune"] = ft_out

    # C. evaluation on the demo task
    items = test[:200]
    r = evaluate(cand.chat_path, items, metric=task.metric, backend="transformers")
    r2 = evaluate(cand.chat_path, items, metric="answer_loglik", secondary=(), backend="transformers")
    out["evaluate"] = {"n": r.n, "metric": r.metric, "score": round(r.score, 2), "stderr": round(r.stderr, 2),
                       "seconds_with_loglik": round(r.seconds, 2), "answer_loglik_only_s": round(r2.seconds, 2),
                       "items_per_s": round(r.n / r.seconds, 1)}

    # D. PubMedQA metric cost
    pm = ROOT.parent / "shared" / "data" / "pubmedqa" / "test.jsonl"
    if pm.is_file():
        from damoc.encoders import default_encoder_path
        from damoc.evaluate.metrics import bertscore_f1, rouge_l

        ps = load_samples(pm).samples
        refs = [[s.answer] for s in ps[:100]]
        cands = [s.answer for s in ps[100:200]]
        t = time.perf_counter()
        bertscore_f1(cands, refs, encoder=default_encoder_path())
        tb = time.perf_counter() - t
        t = time.perf_counter()
        bertscore_f1(cands, refs, encoder=default_encoder_path())
        tb2 = time.perf_counter() - t
        t = time.perf_counter()
        rouge_l(cands, refs)
        tr = time.perf_counter() - t
        r = evaluate(cand.chat_path, ps[:20], backend="transformers")
        out["pubmedqa"] = {"bertscore_100_pairs_first_s": round(tb, 2), "bertscore_100_pairs_warm_s": round(tb2, 2),
                           "rouge_l_100_pairs_s": round(tr, 3), "zero_shot_metric": r.metric,
                           "zero_shot_score_20": round(r.score, 2), "zero_shot_eval_20_s": round(r.seconds, 2),
                           "max_new_tokens": r.details["max_new_tokens"]}
    out["load_average_end"] = os.getloadavg()[0]
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
