"""Real-size candidates on CPU: each stage's measured peak memory next to the pre-flight estimate, and the proxy
fine-tune's throughput (tokens/s, model FLOPs utilisation).

    nice -n 5 .venv/bin/python bench/real_scale.py [--json] [--pairs qwen2.5-0.5b,llama-3.2-1b]
                                                   [--seq 256 --batch 2 --steps 3]

For each synthetic pair (tests/helpers/real_size.py: the published shapes of Qwen2.5-0.5B and Llama-3.2-1B, random
bf16 weights in safetensors shards, Base = Chat - a structured task vector; built once under the data dir's cache),
every stage runs in a fresh process and reports its own peak RSS (ru_maxrss, the process alone): calibration
scores, prune + sparse merge (streamed from the shards), a few full and LoRA optimizer steps on the pruned proxy,
evaluation of the proxy. The estimate is `damoc.registry.preflight.stage_estimates` for the same model and settings.
The proxy's MFU is tokens/s x 6·P against this machine's measured fp32 matmul rate (a 2048² matmul, same threads).

Settings: the product's defaults except where 24 GiB shared by four processes do not allow them: sequences of
`--seq` tokens at micro batch `--batch` (the default 512 x 16 on CPU needs 5 GB of fp32 logits alone at a 152k
vocabulary), and no full fine-tune of the 1B pair (16 bytes per parameter of AdamW in fp32: ~16 GB for its pruned
proxy); the estimate is printed for it, not measured.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAIRS = ("qwen2.5-0.5b", "llama-3.2-1b")
MEASURE_LIMIT = 12 << 30          # a stage whose estimate exceeds this is not run on this shared box


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def matmul_flops(n: int = 2048, repeat: int = 5, dtype: str = "float32", device: str = "cpu") -> float:
    """This machine's dense matmul rate (FLOP/s), best of `repeat`."""
    import torch

    dt = getattr(torch, dtype)
    a = torch.randn(n, n, dtype=dt, device=device)
    b = torch.randn(n, n, dtype=dt, device=device)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeat):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        torch.matmul(a, b)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


# -- one stage, in this (child) process ------------------------------------------------------------------------------

def run_stage(stage: str, a: dict[str, Any]) -> dict[str, Any]:
    from tests.helpers.real_size import samples

    out: dict[str, Any] = {"stage": stage}
    t0 = time.perf_counter()
    if stage == "calibrate":
        from damoc.prune.api import compute_scores

        texts = [s.prompt + " " + s.answer for s in samples(a["calib_n"], prompt_words=a["seq"], seed=1)]
        scores, calib = compute_scores(a["chat"], texts, device="cpu", batch_size=a["calib_batch"],
                                       max_length=a["seq"])
        out.update(scores=scores, dtype=calib.get("dtype"))
    elif stage == "prune":
        from damoc.prune.api import prune_candidate

        res = prune_candidate(a["chat"], a["base"], a["out"], scores=a["scores"], device="cpu")
        out.update(pruned=res.pruned, layers_after=res.layers_after, merge=res.merge_stats,
                   skip=res.skip_reason)
    elif stage in ("finetune-full", "finetune-lora"):
        from damoc.finetune.config import FinetuneConfig
        from damoc.finetune.train import finetune

        method = stage.split("-", 1)[1]
        cfg = FinetuneConfig(method=method, micro_batch=a["batch"], effective_batch=a["batch"],
                             max_steps=a["steps"], max_length=a["seq"], device="cpu", warmup_ratio=0.0,
                             **a.get("ft_extra", {}))
        train = samples(a["batch"] * a["steps"], prompt_words=a["prompt_words"], answer_words=a["answer_words"])
        res = finetune(a["model"], train, cfg, keep_model=False)
        out["matmul_flops"] = matmul_flops()          # the same moment's rate: MFU is not skewed by a load change
        out.update(tokens=res.train_tokens, train_seconds=res.train_seconds, steps=res.steps,
                   tokens_per_s=res.train_tokens / max(res.train_seconds, 1e-9), total_params=res.total_params,
                   loss=res.final_loss)
    elif stage == "loglik":          # answer log-likelihood scoring (multiple-choice metrics), LM head trimmed or not
        import damoc.backends.hf as hf
        from damoc.backends import get_backend
        from damoc.evaluate.core import build_prompts

        if not a["trim"]:
            hf.takes_logits_to_keep = lambda model: False
        test = samples(a["eval_n"], prompt_words=a["prompt_words"], answer_words=a["answer_words"], seed=2)
        b = get_backend(a["model"], device="cpu")
        t1 = time.perf_counter()
        ll = b.loglikelihood(build_prompts(b.tokenizer, test), [" " + t.answer for t in test], batch_size=a["eval_n"])
        out.update(score_seconds=time.perf_counter() - t1, loglik=[x for x, _ in ll])
    elif stage == "evaluate":
        from damoc.evaluate.core import evaluate

        test = samples(a["eval_n"], prompt_words=a["prompt_words"], answer_words=a["answer_words"], seed=2)
        res = evaluate(a["model"], test, metric="squad_f1")
        out.update(score=res.score, max_new_tokens=res.details.get("max_new_tokens"))
    else:
        raise SystemExit(f"unknown stage {stage}")
    out.update(seconds=time.perf_counter() - t0, peak_bytes=_rss())
    return out


def child(stage: str, args: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    p = subprocess.run([sys.executable, __file__, "--stage", stage, "--args", json.dumps(args)],
                       capture_output=True, text=True, timeout=timeout, env=env)
    if p.returncode != 0:
        raise SystemExit(f"stage {stage} failed (rc {p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# -- the pairs ---------------------------------------------------------------------------------------------------------

def measure_pair(name: str, root: Path, o: argparse.Namespace, log: Any) -> dict[str, Any]:
    from damoc.prune.checkpoint import CheckpointReader
    from damoc.registry.preflight import PreflightConfig, dims_of_config, stage_estimates
    from tests.helpers.real_size import build_pair, parameters, spec

    t = time.perf_counter()
    chat, base = build_pair(root / name, spec(name))
    log(f"{name}: pair ready ({parameters(root / name) / 1e9:.2f}B parameters, {time.perf_counter() - t:.0f}s)")
    reader = CheckpointReader(chat)
    cfg = reader.config
    ckpt_bytes = reader.total_bytes()
    train_len, answer_len, eval_len, eval_scored = _lengths(chat, o)
    pcfg = PreflightConfig(seq_len=train_len, batch_size=o.batch, calib_batch_size=o.calib_batch, device="cpu",
                           answer_tokens=answer_len)
    ecfg = PreflightConfig(seq_len=eval_len, device="cpu", answer_tokens=eval_scored)
    log(f"  train sequences {train_len} tokens ({answer_len} with a label), evaluation {eval_len} "
        f"({eval_scored} scored)")
    proxy_dir = root / name / "proxy"
    common = dict(seq=o.seq, batch=o.batch, steps=o.steps, prompt_words=o.prompt_words,
                  answer_words=o.answer_words)
    stages: list[dict[str, Any]] = []

    def record(stage: str, est: Any, res: dict[str, Any] | None, note: str = "") -> None:
        row = {"stage": stage, "estimate_bytes": est.total, "estimate": est.to_dict()}
        if res is not None:
            row.update(peak_bytes=res["peak_bytes"], seconds=round(res["seconds"], 1),
                       ratio=res["peak_bytes"] / est.total)
            for k in ("tokens_per_s", "tokens", "train_seconds", "steps", "pruned", "layers_after", "dtype"):
                if k in res:
                    row[k] = res[k]
            stages.append(row)
            log(f"  {stage:14s} peak {res['peak_bytes'] / 1e9:6.2f} GB  estimate {est.total / 1e9:6.2f} GB  "
                f"ratio {row['ratio']:.2f}  ({res['seconds']:.0f}s)")
        else:
            row["note"] = note
            skipped.append(row)
            log(f"  {stage:14s} not measured: {note}; estimate {est.total / 1e9:.2f} GB")

    skipped: list[dict[str, Any]] = []
    d = dims_of_config(cfg)
    est = stage_estimates(d, PreflightConfig(seq_len=o.seq, calib_batch_size=o.calib_batch, device="cpu"),
                          device="cpu", checkpoint_bytes=ckpt_bytes)
    res = child("calibrate", dict(common, chat=str(chat), calib_n=o.calib_batch * 2, calib_batch=o.calib_batch))
    record("calibrate", est["calibration"], res)
    res = child("prune", dict(common, chat=str(chat), base=str(base), out=str(proxy_dir), scores=res["scores"]))
    out_bytes = CheckpointReader(proxy_dir).total_bytes()          # the layers the scores removed, not the cap
    record("prune", stage_estimates(d, PreflightConfig(device="cpu"), device="cpu", checkpoint_bytes=ckpt_bytes,
                                    out_bytes=out_bytes)["prune"], res)
    kept = res["layers_after"]
    pd = dims_of_config(CheckpointReader(proxy_dir).config)
    pest = stage_estimates(pd, pcfg, device="cpu")
    proxy: dict[str, Any] = {}
    for method, key in (("full", "full_ft"), ("lora", "lora_ft")):
        stage = f"finetune-{method}"
        if pest[key].total > MEASURE_LIMIT:
            record(stage, pest[key], None, f"estimate over the {MEASURE_LIMIT >> 30} GiB a process may use here")
            continue
        res = child(stage, dict(common, model=str(proxy_dir)))
        record(stage, pest[key], res)
        proxy[method] = res
    res = child("evaluate", dict(common, model=str(proxy_dir), eval_n=o.eval_n))
    record("evaluate", stage_estimates(pd, ecfg, device="cpu", eval_batch=min(16, o.eval_n))["evaluate"], res)
    return {"name": name, "parameters": d.P, "proxy_parameters": pd.P, "layers": d.L, "layers_after": kept,
            "stages": stages, "not_measured": skipped, "proxy_runs": proxy}


def _lengths(chat: Path, o: argparse.Namespace) -> tuple[int, int, int, int]:
    """The training batches' width, the positions the LM head runs on (trim_prompt_logits), the evaluation's longest
    prompt + answer, and the positions its log-likelihood pass runs the LM head on (one batch: from the shortest
    prompt's last token on), as the product tokenises them: the estimate gets the lengths the stages really see."""
    from damoc.backends.base import prompt_ids
    from damoc.evaluate.core import build_prompts
    from damoc.finetune.data import encode_samples
    from damoc.models import load_tokenizer
    from tests.helpers.real_size import samples

    tok = load_tokenizer(chat)
    feats = encode_samples(tok, samples(o.batch * o.steps, prompt_words=o.prompt_words,
                                        answer_words=o.answer_words), max_length=o.seq)
    width, kept = 0, 0
    for i in range(0, len(feats), o.batch):
        batch = feats[i:i + o.batch]
        w = max(len(f.input_ids) for f in batch)
        width, kept = max(width, w), max(kept, w - max(0, min(f.prompt_tokens for f in batch) - 1))
    test = samples(o.eval_n, prompt_words=o.prompt_words, answer_words=o.answer_words, seed=2)
    pairs = [(len(prompt_ids(tok, p)), len(tok(" " + t.answer, add_special_tokens=False)["input_ids"]))
             for p, t in zip(build_prompts(tok, test), test)]
    ev = max(c + a for c, a in pairs)
    return width, kept, ev, ev - min(c for c, _ in pairs) + 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--pairs", default=",".join(PAIRS))
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--calib-batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--prompt-words", type=int, default=300, help="longer than --seq: the prompt is cut to fit")
    ap.add_argument("--answer-words", type=int, default=24)
    ap.add_argument("--eval-n", type=int, default=8)
    ap.add_argument("--before", action="store_true",
                    help="also run the proxy with item 3's changes switched off (prompt logits in training and in "
                         "log-likelihood scoring)")
    ap.add_argument("--stage")
    ap.add_argument("--args")
    o = ap.parse_args()
    if o.stage:
        print(json.dumps(run_stage(o.stage, json.loads(o.args))))
        return
    from damoc.settings import Settings

    home = Settings.load().home
    root = home / "bench" / "real-size"
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if o.json else (lambda m: print(m, flush=True))
    pairs = [measure_pair(n, root, o, log) for n in o.pairs.split(",") if n]
    import torch

    first = pairs[0]
    runs = first["proxy_runs"]
    method = "full" if "full" in runs else "lora"
    run = runs[method]

    def mfu(r: dict[str, Any]) -> float:
        return r["tokens_per_s"] * 6 * r["total_params"] / r["matmul_flops"]

    proxy = {"pair": first["name"], "method": method, "tokens_per_s": run["tokens_per_s"], "mfu": mfu(run),
             "parameters": run["total_params"], "matmul_flops": run["matmul_flops"],
             "threads": torch.get_num_threads(), "seq": o.seq, "batch": o.batch}
    if o.before:    # item 3's change switched off: the prompt's logits computed as before
        common = dict(seq=o.seq, batch=o.batch, steps=o.steps, prompt_words=o.prompt_words,
                      answer_words=o.answer_words, ft_extra={"trim_prompt_logits": False})
        b = child(f"finetune-{method}", dict(common, model=str(root / first["name"] / "proxy")))
        proxy["before"] = {"change": "trim_prompt_logits off", "tokens_per_s": b["tokens_per_s"], "mfu": mfu(b),
                           "peak_bytes": b["peak_bytes"], "matmul_flops": b["matmul_flops"]}
        log(f"  before (trim_prompt_logits off): {b['tokens_per_s']:.1f} tokens/s, MFU {mfu(b):.3f}, "
            f"peak {b['peak_bytes'] / 1e9:.2f} GB")
        ll = {}
        for trim in (False, True):
            ll[trim] = child("loglik", dict(common, model=str(root / first["name"] / "proxy"), eval_n=o.eval_n,
                                            trim=trim))
            log(f"  answer log-likelihood of {o.eval_n} items, LM head {'trimmed' if trim else 'on every position'}: "
                f"{ll[trim]['score_seconds']:.1f}s, peak {ll[trim]['peak_bytes'] / 1e9:.2f} GB")
        same = max(abs(x - y) for x, y in zip(ll[False]["loglik"], ll[True]["loglik"]))
        proxy["loglik"] = {"items": o.eval_n, "max_abs_diff": same,
                           **{("trimmed" if t else "untrimmed"): {"seconds": r["score_seconds"],
                                                                  "peak_bytes": r["peak_bytes"]}
                              for t, r in ll.items()}}
    out = {"pairs": pairs, "proxy": proxy, "load": os.getloadavg()}
    (home / "bench").mkdir(parents=True, exist_ok=True)
    (home / "bench" / "real-scale.json").write_text(json.dumps(out, indent=1))
    if o.json:
        print(json.dumps(out))
    else:
        print(f"proxy ({first['name']}, {method}): {run['tokens_per_s']:.1f} tokens/s, MFU {mfu(run):.3f} against "
              f"{run['matmul_flops'] / 1e9:.0f} GFLOP/s fp32 matmul; load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
