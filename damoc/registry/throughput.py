"""This machine's training and inference speed, measured once by a short probe and cached in the data dir: what
the pre-flight turns into wall time (`seconds` of a DaMoC run and of fine-tuning every candidate).

The probe (a few seconds, in a subprocess so the caller never imports torch) times:

  * a dense matmul in the training dtype: F, FLOP/s;
  * optimizer steps (forward with labels, backward, clip, AdamW) of two random decoder models, ~1M and ~10M
    parameters, at T tokens per step: fitted as  t_step = c_step + 6·P·T / R_train  (c_step: the fixed cost of a
    step that dominates tiny models; R_train: the FLOP rate training reaches, R_train / F = MFU);
  * greedy decoding of the small model: t_token = c_decode + 2·P·b / R_train per generated token of a batch b.

The cache key is the device, torch version and usable cores: a different machine probes again.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from damoc.settings import Settings

PROBE_TIMEOUT_S = 120
CACHE_NAME = "throughput.json"
PROBE_MODELS = ((128, 2, 2048), (256, 4, 4096))      # (hidden, layers, vocabulary): ~0.7M and ~4M parameters
PROBE_BATCH, PROBE_SEQ = 8, 64


@dataclass(frozen=True)
class Throughput:
    device: str
    matmul_flops: float           # F
    train_flops: float            # R_train: the FLOP rate training reaches (6·P·T per step)
    step_seconds: float           # c_step: fixed cost of one optimizer step (micro batches included)
    decode_seconds: float         # c_decode: fixed cost of one generated token (a batch's decode step)
    key: str = ""
    measured_at: float = 0.0

    @property
    def mfu(self) -> float:
        return self.train_flops / self.matmul_flops if self.matmul_flops else 0.0

    def train_seconds(self, parameters: float, tokens_per_step: float, steps: int, micro_steps: int = 1) -> float:
        """Optimizer steps of a model of `parameters` at `tokens_per_step` tokens each."""
        return steps * (self.step_seconds * max(1, micro_steps) ** 0.5
                        + 6.0 * parameters * tokens_per_step / self.train_flops)

    def forward_seconds(self, parameters: float, tokens: float, batches: int) -> float:
        """Teacher-forced forward passes (scoring, compression, calibration) over `tokens` in `batches`."""
        return batches * self.step_seconds / 3 + 2.0 * parameters * tokens / self.train_flops

    def generate_seconds(self, parameters: float, samples: int, prompt_tokens: float, new_tokens: int,
                         batch: int) -> float:
        """Greedy generation: a prefill of each prompt, then `new_tokens` decode steps per batch."""
        batches = max(1, -(-samples // max(1, batch)))
        return (self.forward_seconds(parameters, samples * prompt_tokens, batches)
                + batches * new_tokens * self.decode_seconds
                + 2.0 * parameters * samples * new_tokens / self.train_flops)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mfu": self.mfu}


def cache_key(device: str) -> str:
    try:
        from importlib.metadata import version
        tv = version("torch")
    except Exception:
        tv = "?"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return f"{device}|torch {tv}|{cores} cores|{platform.machine()}|{platform.node()}"


def cached(settings: Settings, device: str) -> Throughput | None:
    path = Path(settings.cache_dir) / CACHE_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    entry = data.get(cache_key(device)) if isinstance(data, dict) else None
    if not isinstance(entry, dict):
        return None
    entry.pop("mfu", None)
    try:
        return Throughput(**entry)
    except TypeError:
        return None


def _store(settings: Settings, tp: Throughput) -> None:
    from damoc.fsutil import atomic_write_json

    path = Path(settings.cache_dir) / CACHE_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data = data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        data = {}
    data[tp.key] = tp.to_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, data)


def throughput(settings: Settings, device: str = "cpu", *, probe: bool = True,
               timeout: float = PROBE_TIMEOUT_S) -> Throughput | None:
    """The cached figures for `device`, probing (in a subprocess) when there are none and `probe`; None when the
    probe could not run (the pre-flight then gives no wall time, and says why)."""
    dev = "cuda" if device.startswith("cuda") else "cpu"
    tp = cached(settings, dev)
    if tp is not None or not probe:
        return tp
    try:
        p = subprocess.run([sys.executable, "-m", "damoc.registry.throughput", dev, "--no-store"],
                           capture_output=True, text=True,
                           timeout=timeout, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return None
    try:
        entry = json.loads(p.stdout.strip().splitlines()[-1])
        entry.pop("mfu", None)
        tp = Throughput(**entry)
    except (ValueError, IndexError, TypeError):
        return None
    _store(settings, tp)
    return tp


# -- the probe (runs in its own process) ----------------------------------------------------------------------------

def _matmul_flops(torch: Any, dev: str, dtype: Any, n: int = 1024, repeat: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype, device=dev), torch.randn(n, n, dtype=dtype, device=dev)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeat):
        _sync(torch, dev)
        t = time.perf_counter()
        torch.matmul(a, b)
        _sync(torch, dev)
        best = min(best, time.perf_counter() - t)
    return 2.0 * n ** 3 / best


def _sync(torch: Any, dev: str) -> None:
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def _model(torch: Any, hidden: int, layers: int, vocab: int, dev: str) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                      num_key_value_heads=4, intermediate_size=hidden * 3, max_position_embeddings=512,
                      tie_word_embeddings=True)
    return LlamaForCausalLM(cfg).to(dev)


def _step_time(torch: Any, model: Any, dev: str, steps: int = 5) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, model.config.vocab_size, (PROBE_BATCH, PROBE_SEQ), device=dev)
    model.train()
    times = []
    for i in range(steps + 1):
        _sync(torch, dev)
        t = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(torch, dev)
        if i:
            times.append(time.perf_counter() - t)
    return min(times)          # best of: other processes' load only ever adds time


def _decode_time(torch: Any, model: Any, dev: str, tokens: int = 16, repeat: int = 2) -> float:
    model.eval()
    ids = torch.randint(0, model.config.vocab_size, (PROBE_BATCH, 16), device=dev)
    mask = torch.ones_like(ids)
    best = float("inf")
    with torch.inference_mode():
        model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=2, do_sample=False, pad_token_id=0)
        for _ in range(repeat):
            _sync(torch, dev)
            t = time.perf_counter()
            model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=tokens, min_new_tokens=tokens,
                           do_sample=False, pad_token_id=0)
            _sync(torch, dev)
            best = min(best, (time.perf_counter() - t) / tokens)
    return best


def probe(device: str = "cpu") -> Throughput:
    """Measure this machine (imports torch: call it through `throughput`, which runs it in a subprocess)."""
    import torch

    dev = "cuda" if device.startswith("cuda") and torch.cuda.is_available() else "cpu"
    if dev == "cpu":
        # one intra-op thread, as a run's CPU workers get on a small box (each takes its share of the cores); on a
        # loaded 2-core machine two spinning threads measured several times slower than one (tests/conftest.py)
        torch.set_num_threads(1)
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    F = _matmul_flops(torch, dev, dtype)
    points = []
    small = None
    for hidden, layers, vocab in PROBE_MODELS:
        m = _model(torch, hidden, layers, vocab, dev)
        if dev == "cuda":
            m = m.to(torch.bfloat16)
        P = sum(p.numel() for p in m.parameters())
        points.append((6.0 * P * PROBE_BATCH * PROBE_SEQ, _step_time(torch, m, dev), P))
        if small is None:
            small = (m, P)
        else:
            del m
    (w1, t1, _), (w2, t2, _) = points
    rate = (w2 - w1) / (t2 - t1) if t2 > t1 else w2 / t2
    rate = min(rate, F)
    c_step = max(0.0, t1 - w1 / rate)
    m, P = small
    per_token = _decode_time(torch, m, dev)
    c_decode = max(0.0, per_token - 2.0 * P * PROBE_BATCH / rate)
    return Throughput(device=dev, matmul_flops=F, train_flops=rate, step_seconds=c_step, decode_seconds=c_decode,
                      key=cache_key(dev), measured_at=time.time())


if __name__ == "__main__":
    # `python -m damoc.registry.throughput [cpu|cuda] [--no-store]`: measure, cache in the data dir, print
    tp = probe(sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "cpu")
    if "--no-store" not in sys.argv:
        _store(Settings.load(), tp)
    print(json.dumps(tp.to_dict()))
