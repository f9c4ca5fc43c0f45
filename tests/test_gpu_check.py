"""bench/gpu_check.py: its CPU mode (a tiny pair of Qwen2.5-1.5B's architecture through every stage) runs here;
the CUDA run (the demo arm in bf16 + the real-size 1.5B pair, ~8 minutes) only where a GPU is and it is asked for."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["calibrate", "prune", "finetune-lora", "finetune-full", "evaluate"]


def _run(*args: str, timeout: int) -> dict:
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--json", *args], capture_output=True,
                       text=True, cwd=ROOT, timeout=timeout,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_cpu_tiny_mode_runs_every_stage():
    out = _run("--device", "cpu", "--tiny", timeout=600)
    rows = out["synthetic"]
    assert [r["stage"] for r in rows] == STAGES
    for r in rows:
        assert r["seconds"] >= 0 and r["peak_bytes"] > 0 and r["estimate_bytes"] > 0
    train = [r for r in rows if r["stage"].startswith("finetune")]
    assert all(r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1 for r in train)
    assert rows[1]["pruned"]                       # the merge really removed layers
    assert out["demo"] is None                     # --tiny has no demo arm


@pytest.mark.skipif(not os.environ.get("DAMOC_GPU_CHECK"), reason="the CUDA run takes ~8 minutes: DAMOC_GPU_CHECK=1")
def test_cuda_check_within_budget():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    out = _run(timeout=600)
    assert out["seconds"] < 480 and out["demo"]["ok"]
    assert all(0.8 <= r["ratio"] <= 1.2 for r in out["synthetic"] if r["ratio"] is not None)
