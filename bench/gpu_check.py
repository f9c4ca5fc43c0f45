"""The GPU check: one script that, on a CUDA box, runs the demo's DaMoC arm in bf16 and a synthetic 1.5B pair
(Qwen2.5-1.5B's published shape, random bf16 weights) through importance, prune + merge, full and LoRA proxy
steps and evaluation, printing per stage: seconds, tokens/s, MFU against the GPU's bf16 peak, and peak GPU memory
against the pre-flight estimate. Budget: 8 minutes on one H100/H200.

    python bench/gpu_check.py                      # CUDA: the demo arm + the 1.5B pair
    python bench/gpu_check.py --device cpu --tiny  # the suite's mode: a tiny pair of the same architecture, no demo
    python bench/gpu_check.py --json               # one JSON object on stdout

Dependencies: bench/gpu_check-requirements.txt (torch, transformers, peft, accelerate, safetensors, numpy and
damoc's pure-Python ones; the demo arm needs the few more listed there). Nothing is downloaded.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# dense bf16 peak FLOP/s by device name (vendor datasheets, without sparsity)
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12,
             "RTX 4090": 165e12, "RTX 3090": 71e12}


def peak_flops(device: str) -> tuple[float, str]:
    import torch

    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(0)
        for k, v in BF16_PEAK.items():
            if k in name:
                return v, f"{name} datasheet bf16"
        return measured_matmul(device), f"{name} measured bf16 matmul (not in the datasheet table)"
    return measured_matmul(device), "measured fp32 matmul"


def measured_matmul(device: str, n: int = 4096) -> float:
    import torch

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    n = n if device.startswith("cuda") else 1024
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    best = float("inf")
    for _ in range(5):
        _sync(device)
        t = time.perf_counter()
        torch.matmul(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


class Meter:
    """Peak memory of one stage: GPU bytes reserved by torch's allocator (CUDA), or this process's RSS growth."""

    def __init__(self, device: str) -> None:
        self.device = device

    def __enter__(self) -> "Meter":
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        else:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        import torch

        _sync(self.device)
        self.seconds = time.perf_counter() - self.t0
        if self.device.startswith("cuda"):
            self.peak = int(torch.cuda.max_memory_reserved())
        else:
            self.peak = _status("VmHWM")


def _status(key: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def synthetic(o: argparse.Namespace, work: Path, log: Any) -> list[dict[str, Any]]:
    """The pair through every stage, in this process (one CUDA context), each stage metered."""
    import torch

    from damoc.evaluate.core import evaluate
    from damoc.finetune.config import FinetuneConfig
    from damoc.finetune.train import finetune
    from damoc.prune.api import compute_scores, prune_candidate
    from damoc.prune.checkpoint import CheckpointReader
    from damoc.registry.preflight import PreflightConfig, dims_of_config, stage_estimates
    from tests.helpers.real_size import build_pair, samples, small_spec, spec

    name = "qwen2.5-1.5b"
    s = small_spec(name, max_shard_bytes=200_000) if o.tiny else spec(name)
    t = time.perf_counter()
    chat, base = build_pair(work / name, s)
    log(f"pair {name}{' (tiny)' if o.tiny else ''} ready in {time.perf_counter() - t:.0f}s")
    dev = o.device
    peak, peak_what = peak_flops(dev)
    seq, batch, steps = (64, 2, 2) if o.tiny else (o.seq, o.batch, o.steps)
    cfg = PreflightConfig(seq_len=seq, batch_size=batch, calib_batch_size=8, device=dev)
    reader = CheckpointReader(chat)
    d = dims_of_config(reader.config)
    est = stage_estimates(d, cfg, device=dev, checkpoint_bytes=reader.total_bytes())
    rows: list[dict[str, Any]] = []

    def row(stage: str, m: Meter, estimate: Any, tokens: int = 0, params: int = 0, train: bool = False) -> None:
        tps = tokens / m.seconds if tokens else None
        flops = (6 if train else 2) * params * tokens
        r = {"stage": stage, "seconds": round(m.seconds, 2), "tokens_per_s": tps,
             "mfu": flops / m.seconds / peak if tokens and params else None,
             "peak_bytes": m.peak, "estimate_bytes": estimate.total if estimate is not None else None}
        if estimate is not None and dev.startswith("cuda"):
            r["estimate_bytes"] = estimate.total - estimate.overhead     # reserved memory excludes the context
        r["ratio"] = r["peak_bytes"] / r["estimate_bytes"] if r["estimate_bytes"] else None
        rows.append(r)
        log(f"  {stage:14s} {m.seconds:7.1f}s  " + (f"{tps:9.0f} tok/s  MFU {r['mfu']:.3f}  " if tps else " " * 27)
            + f"peak {m.peak / 1e9:6.2f} GB" + (f"  estimate {r['estimate_bytes'] / 1e9:6.2f} GB  ratio "
                                                  f"{r['ratio']:.2f}" if r["ratio"] else ""))

    texts = [x.prompt + " " + x.answer for x in samples(16, prompt_words=seq, seed=1)]
    with Meter(dev) as m:
        scores, _ = compute_scores(chat, texts, device=dev, batch_size=8, max_length=seq)
    row("calibrate", m, est["calibration"], tokens=len(texts) * seq, params=d.P)
    proxy = work / name / "proxy"
    with Meter(dev) as m:
        res = prune_candidate(chat, base, proxy, scores=scores, device=dev)
    out_bytes = CheckpointReader(proxy).total_bytes()
    pd = dims_of_config(CheckpointReader(proxy).config)
    pest = stage_estimates(pd, cfg, device=dev)
    prune_est = stage_estimates(d, cfg, device="cpu", checkpoint_bytes=reader.total_bytes(),
                                out_bytes=out_bytes)["prune"]
    row("prune", m, prune_est if not dev.startswith("cuda") else None)
    rows[-1]["pruned"] = res.pruned
    train = samples(batch * steps, prompt_words=seq * 2, answer_words=max(4, seq // 8))
    for method, key in (("lora", "lora_ft"), ("full", "full_ft")):
        ft = FinetuneConfig(method=method, micro_batch=batch, effective_batch=batch, max_steps=steps, max_length=seq,
                            device=dev, warmup_ratio=0.0)
        with Meter(dev) as m:
            r = finetune(proxy, train, ft, keep_model=False)
        row(f"finetune-{method}", m, pest[key], tokens=r.train_tokens, params=r.total_params, train=True)
        rows[-1]["train_seconds"] = r.train_seconds
        torch.cuda.empty_cache() if dev.startswith("cuda") else None
    test = samples(o.eval_n if not o.tiny else 4, prompt_words=seq, answer_words=8, seed=2)
    with Meter(dev) as m:
        ev = evaluate(str(proxy), test, metric="squad_f1")
    row("evaluate", m, stage_estimates(pd, PreflightConfig(seq_len=seq + 16, device=dev), device=dev,
                                       eval_batch=min(len(test), 64 if dev.startswith("cuda") else 16))["evaluate"])
    rows[-1]["score"] = ev.score
    for r in rows:
        r["peak_what"] = peak_what
    return rows


def demo_arm(o: argparse.Namespace, log: Any) -> dict[str, Any]:
    """`damoc demo` (the DaMoC arm only) on this device in bf16, in a scratch data dir."""
    with tempfile.TemporaryDirectory(prefix="damoc-gpu-check-") as home:
        env = {**os.environ, "DAMOC_HOME": home, "DAMOC_DEVICE": o.device, "HF_HUB_OFFLINE": "1"}
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "damoc", "demo", "--json", "--no-diagnose", "--set",
                            f"device={o.device}"], capture_output=True, text=True, env=env, cwd=ROOT,
                           timeout=o.demo_timeout)
        secs = time.perf_counter() - t
    if p.returncode != 0:
        log(f"demo arm failed (rc {p.returncode}): {p.stderr[-600:]}")
        return {"ok": False, "seconds": secs, "error": p.stderr[-2000:]}
    res = json.loads(p.stdout)
    log(f"demo DaMoC arm: winner {res.get('damoc_winner')}, {res.get('damoc_seconds', 0):.0f}s end to end, "
        f"{res.get('damoc_train_seconds', 0):.0f}s training ({secs:.0f}s with the zoo build)")
    return {"ok": True, "seconds": secs, "winner": res.get("damoc_winner"), "ranking": res.get("damoc_ranking"),
            "damoc_seconds": res.get("damoc_seconds"), "damoc_train_seconds": res.get("damoc_train_seconds")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="a tiny pair and no demo arm (the suite's CPU mode)")
    ap.add_argument("--no-demo", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--eval-n", type=int, default=64)
    ap.add_argument("--demo-timeout", type=float, default=300)
    ap.add_argument("--work", type=Path, help="where the pair is built (default: a temporary folder)")
    o = ap.parse_args()
    import torch

    if o.tiny and not o.device.startswith("cuda"):
        torch.set_num_threads(1)          # tiny models on a shared CPU: one thread is the faster (tests/conftest.py)
    if o.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (use --device cpu --tiny for the CPU mode)", file=sys.stderr)
        return 2
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if o.json else (lambda m: print(m, flush=True))
    out: dict[str, Any] = {"device": o.device, "torch": torch.__version__,
                           "gpu": torch.cuda.get_device_name(0) if o.device.startswith("cuda") else None}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="damoc-gpu-pair-") as tmp:
        out["synthetic"] = synthetic(o, o.work or Path(tmp), log)
    out["demo"] = None if (o.tiny or o.no_demo) else demo_arm(o, log)
    out["seconds"] = time.perf_counter() - t0
    log(f"total {out['seconds']:.0f}s")
    if o.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
