"""Token compression on PubMedQA train with the demo zoo's smallest model as compressor (issue 6).

For each compressor (damoc and the two baselines) and target rate: the achieved keep-rate (compressor tokens) against
the target, the share of samples passing the BERTScore gate (raw MiniLM F1 against the paper-equivalent threshold;
the baselines are gated here only to measure it), the BERTScore distribution, and throughput in tokens per second
of the token-compression phase.

    HF_HUB_OFFLINE=1 python bench/bench_compress.py [--n 500] [--rates 0.5] [--compressors damoc,llmlingua,...]
    HF_HUB_OFFLINE=1 python bench/bench_compress.py --calibrate    # re-measure MiniLM's BERTScore baseline per layer

Writes JSON to <damoc home>/bench/compress.json and prints a table. Needs ../shared/data (the project itself does not).
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def calibrate(n_pairs: int = 2000) -> dict[int, float]:
    """Mean raw BERTScore F1 of random unrelated sentence pairs per MiniLM layer: bert-score's baseline recipe
    (Zhang et al. 2020 use Common Crawl sentences; offline, we draw from the four bundled datasets)."""
    import bert_score

    from damoc.encoders import default_encoder_path

    rng = random.Random(0)
    sents: list[str] = []
    for d in ("alpaca", "squad", "pubmedqa", "billsum"):
        for line in open(SHARED / d / "train.jsonl"):
            r = json.loads(line)
            text = " ".join(str(r.get(k) or "") for k in ("instruction", "input", "output"))
            sents += [s for s in re.split(r"(?<=[.!?])\s+", text) if 5 <= len(s.split()) <= 60]
    rng.shuffle(sents)
    a, b = sents[:n_pairs], sents[n_pairs:2 * n_pairs]
    out = {}
    for layer in range(7):
        sc = bert_score.BERTScorer(model_type=default_encoder_path(), num_layers=layer, device="cpu")
        out[layer] = round(float(sc.score(a, b, batch_size=128)[2].mean()), 6)
        print(f"layer {layer}: baseline F1 {out[layer]}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED / "pubmedqa" / "train.jsonl"))
    ap.add_argument("--n", type=int, default=500, help="samples (PubMedQA train has 500)")
    ap.add_argument("--rates", default="0.5")
    ap.add_argument("--compressors", default="damoc,llmlingua,longllmlingua")
    ap.add_argument("--model", default=None, help="compressor model (default: the test zoo's smallest)")
    ap.add_argument("--rewriter", default=None, help="rewriter for damoc (default: none; failures fall back)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--calibrate", action="store_true")
    args = ap.parse_args()

    from damoc.settings import Settings

    settings = Settings.load()
    if args.calibrate:
        res = calibrate()
        print(json.dumps(res))
        return 0
    if not Path(args.data).is_file():
        print(f"no data at {args.data} (needs ../shared/data)", file=sys.stderr)
        return 1
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    from damoc.compress import CompressConfig, compress_dataset
    from damoc.data import load_samples

    model = args.model
    if model is None:
        from damoc.zoo import build_zoo
        cands = build_zoo(size="test", settings=settings)
        small = min(cands, key=lambda c: c.parameters)
        model = small.chat_path
        print(f"compressor: {small.name} ({small.architecture}, {small.parameters:,} parameters)", flush=True)
    samples = load_samples(args.data).samples[: args.n]
    rows = []
    for comp in args.compressors.split(","):
        for rate in (float(r) for r in args.rates.split(",")):
            t0 = time.perf_counter()
            res = compress_dataset(samples, CompressConfig(rate=rate, compressor=comp, model=model, gate=True,
                                                           rewriter=args.rewriter if comp == "damoc" else None,
                                                           use_cache=False), settings=settings)
            st = res.stats
            n = st["samples"]
            row = {"compressor": comp, "rate": rate, "samples": n, "keep_rate": st["keep_rate"],
                   "keep_rate_compressed": st["keep_rate_compressed"], "by_field": st["keep_rate_by_field_compressed"],
                   "pass_share": round(st["passed_direct"] / n, 4),
                   "rewritten": [st[k] for k in st if k.startswith("rewritten_round_")],
                   "fell_back": st["fell_back"], "bertscore": st["bertscore"], "threshold": st["gate"]["threshold"],
                   "tokens_original": st["tokens_original"], "tokens_per_second": st["tokens_per_second"],
                   "seconds": st["seconds"], "wall": round(time.perf_counter() - t0, 1)}
            rows.append(row)
            print(f"{comp:<14} target {rate:.2f}  compressed {row['keep_rate_compressed']:.3f}  "
                  f"final {row['keep_rate']:.3f}  pass {row['pass_share']:.1%}  "
                  f"F1 mean {st['bertscore'].get('mean', float('nan')):.3f} p10 {st['bertscore'].get('p10', 0):.3f}  "
                  f"{row['tokens_per_second']:.0f} tok/s  ({row['wall']}s)", flush=True)
    out = settings.home / "bench" / "compress.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"data": args.data, "model": model, "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
