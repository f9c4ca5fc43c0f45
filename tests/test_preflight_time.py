"""The pre-flight in wall time (issue 17 item 9): the throughput probe (real, cached in the data dir), the seconds
of a DaMoC run and of fine-tuning every candidate with their ratio, and the small-data warning (issue 19)."""
from __future__ import annotations

import json

import pytest

from damoc.registry.throughput import CACHE_NAME, Throughput, cache_key, cached, throughput


def _config(env, **over):
    from damoc.pipeline.config import load_config

    base = {"dataset.train": env["task"].train_path, "dataset.test": env["task"].test_path,
            "candidates": env["names"], "evaluate.metric": env["task"].metric, "mode": "damoc", "device": "cpu",
            "finetune.proxy_min_steps": 120, "finetune.full.effective_batch": 8, **over}
    return load_config(None, [], base)


def _store(settings, **kw):
    from damoc.registry.throughput import _store as store

    tp = Throughput(**{"device": "cpu", "matmul_flops": 2e10, "train_flops": 1e10, "step_seconds": 0.02,
                       "decode_seconds": 0.005, "key": cache_key("cpu"), "measured_at": 0.0, **kw})
    store(settings, tp)
    return tp


def test_throughput_formula():
    tp = Throughput("cpu", matmul_flops=2e10, train_flops=1e10, step_seconds=0.02, decode_seconds=0.005)
    assert tp.mfu == pytest.approx(0.5)
    # 10 steps of a 1M-parameter model at 1000 tokens a step: 10 x (0.02 + 6e9 / 1e10)
    assert tp.train_seconds(1e6, 1000, 10) == pytest.approx(10 * (0.02 + 0.6))
    # generation: prefill + 8 decode steps per batch of 4, two batches
    g = tp.generate_seconds(1e6, 8, 10, 8, 4)
    assert g == pytest.approx(2 * 0.02 / 3 + 2e6 * 80 / 1e10 + 2 * 8 * 0.005 + 2e6 * 64 / 1e10)


def test_the_probe_measures_this_machine_and_is_cached(settings):
    assert cached(settings, "cpu") is None and throughput(settings, "cpu", probe=False) is None
    tp = throughput(settings, "cpu")                       # a real probe, in a subprocess
    assert tp is not None and tp.matmul_flops > 1e8 and 0 < tp.train_flops <= tp.matmul_flops
    assert tp.step_seconds >= 0 and tp.decode_seconds >= 0 and tp.key == cache_key("cpu")
    data = json.loads((settings.cache_dir / CACHE_NAME).read_text())
    assert cache_key("cpu") in data
    assert throughput(settings, "cpu", probe=False) == tp            # read back, not measured again


def test_wall_time_of_both_arms_and_their_ratio(zoo_env):
    from damoc.pipeline.work import training_work

    s = zoo_env["settings"]
    cfg = _config(zoo_env)
    none = training_work(cfg, 3000, settings=s, probe=False)        # nothing measured yet: says how to measure
    assert none.time is None and "python -m damoc.registry.throughput" in none.time_note
    assert "%" not in none.describe() and "x less" in none.describe()
    _store(s)
    w = training_work(cfg, 3000, settings=s, probe=False)
    t = w.time
    assert t is not None and t.proxy_train_seconds < t.full_train_seconds
    assert t.damoc_seconds == pytest.approx(t.data_seconds + t.proxy_train_seconds + t.eval_seconds)
    assert t.full_seconds == pytest.approx(t.full_train_seconds + t.eval_seconds)
    assert 0 < t.ratio < 1 and t.tokens_per_sample > 8
    text = w.describe()
    assert "DaMoC run ≈" in text and "fine-tuning every candidate ≈" in text and "x less" in text
    assert "%" not in text and not w.small_data                   # no "≈ 50% ... (≈2.0x less)" mix
    # twice the candidates' throughput: half the training seconds
    _store(s, train_flops=2e10, step_seconds=0.01)
    t2 = training_work(cfg, 3000, settings=s, probe=False).time
    assert t2.full_train_seconds == pytest.approx(t.full_train_seconds / 2, rel=0.01)


def test_small_data_warning_before_anything_runs(zoo_env):
    from damoc.pipeline.work import training_work

    s = zoo_env["settings"]
    _store(s)
    w = training_work(_config(zoo_env), 60, settings=s, probe=False)   # 54 samples: the 120-step floor dominates
    assert w.small_data
    assert "so small that the proxies cost close to fine-tuning every candidate" in w.describe()
    assert w.time.ratio >= 0.5


def test_adaptive_proxy_work_is_the_budgets_most(zoo_env):
    """Under the adaptive budget (the default) the plan counts the first round and then each share that stays within
    select.budget x today's recipe, the driver's own cap; without it, one proxy per share."""
    from damoc.pipeline.work import training_work

    s = zoo_env["settings"]

    def work(**over):
        return training_work(_config(zoo_env, **{"finetune.full.epochs": 3, "finetune.proxy_min_steps": 40, **over}),
                             3000, settings=s, probe=False)

    paper = work(**{"select.sizes": [1.0]})
    quarter, half = (work(**{"select.sizes": [f]}).proxy_steps for f in (0.25, 0.5))
    every = work(**{"select.adaptive": False})
    adaptive = work()
    assert quarter < half < paper.proxy_steps < quarter + half + paper.proxy_steps == every.proxy_steps
    assert adaptive.adaptive and "at most" in adaptive.describe() and "at most" not in paper.describe()
    # the rounds the cap allows: the quarter always, then each next share while the total stays within the recipe
    # (here the half fits and the whole share on top does not)
    assert quarter + half <= paper.proxy_steps < quarter + half + paper.proxy_steps
    assert adaptive.proxy_steps == quarter + half
    assert work(**{"select.budget": 0.1}).proxy_steps == quarter          # the first round is always spent
