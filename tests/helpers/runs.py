"""Whole runs on the test zoo: tiny step counts (`FAST`) so that a run checks orchestration and bookkeeping in
seconds, not ranking quality (that is bench/bench_selection.py's job)."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

FAST = ["finetune.full.lr=1e-3", "finetune.full.epochs=1", "finetune.full.effective_batch=8",
        "finetune.full.micro_batch=8", "finetune.full.max_length=64", "finetune.proxy_min_steps=3",
        "dataset.max_train=64", "dataset.max_test=12", "filter.ratio=0.25", "prune.calib_samples=8",
        "evaluate.max_new_tokens=6",
        # one proxy per candidate (the paper's selection): these runs check orchestration cell by cell; the adaptive
        # budget (the default) has its own runs in tests/test_adaptive.py and tests/test_pipeline_curves.py
        "select.sizes=[1.0]"]


def run_config(env: dict[str, Any], *extra: str, names: list[str] | None = None, mode: str = "damoc") -> Any:
    """A FAST run config of the `zoo_env` fixture's task and candidates, with `--set`-style `extra` overrides."""
    from damoc.pipeline import api

    return api.load_config(None, FAST + list(extra), {
        "dataset.train": env["task"].train_path, "dataset.test": env["task"].test_path,
        "candidates": names or env["names"], "mode": mode})


def wait_run(settings: Any, run_id: str, timeout: float = 600) -> str:
    from damoc.pipeline import api

    return api.wait_run(settings, run_id, timeout=timeout)


def wait_for(pred: Callable[[], bool], timeout: float = 300.0, poll: float = 0.1) -> bool:
    """Poll `pred` (a file marker, a run state) until it holds; TimeoutError after `timeout` seconds."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return True
        time.sleep(poll)
    raise TimeoutError("condition not met")
