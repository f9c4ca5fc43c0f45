"""Every registered method of every method registry, run on the test zoo (mergekit's `run_and_check_merge` habit).

The cases are read from the registries at collection time, so a new filter, compressor, merge rule, metric, backend
or fine-tune method is tested by being registered. Budgets are tiny; the checks are the contract each registry's
callers rely on, not the quality of the method (its own test module checks that).
"""
from __future__ import annotations

import json

import pytest

from damoc.backends import BACKENDS
from damoc.compress import COMPRESSORS
from damoc.data import Sample, load_samples
from damoc.evaluate import METRICS
from damoc.filters import FILTERS
from damoc.finetune import FINETUNE_METHODS
from damoc.prune.merge import MERGE_RULES

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST_PARAMS = {"less": {"epochs": 1, "proj_dim": 128, "max_length": 96}, "dq": {"bins": 4},
               "alpagasus": {"max_new_tokens": 6}, "mods": {"max_new_tokens": 6}}
"""Smaller than the defaults, for speed only; a method missing here runs with its defaults."""


@pytest.fixture(scope="module")
def smallest(test_zoo):
    return min(test_zoo, key=lambda c: c.parameters)


@pytest.fixture(scope="module")
def pair(test_zoo):
    """The smallest zoo candidate that has a Base (sparse merging needs W_pre)."""
    return min((c for c in test_zoo if c.base_path), key=lambda c: c.parameters)


@pytest.fixture(scope="module")
def laws(laws_task):
    return load_samples(laws_task.train_path).samples[:16], load_samples(laws_task.test_path).samples[:4]


@pytest.mark.parametrize("method", FILTERS.names())
def test_every_filter(method, laws, smallest):
    from damoc.filters import select

    pool, target = laws
    sel = select(pool, method, count=4, seed=1, scorer=smallest.chat_path, target=target,
                 params=FAST_PARAMS.get(method))
    assert sel.method == method and sel.kept == 4 and sel.dropped == len(pool) - 4
    assert len(set(sel.ids)) == 4 and set(sel.ids) <= {s.id for s in pool}
    assert set(sel.scores) == {s.id for s in pool} and all(sel.reasons.values())
    assert [s.id for s in sel.subset(pool)] == [s.id for s in pool if s.id in set(sel.ids)]


@pytest.mark.parametrize("name", COMPRESSORS.names())
def test_every_compressor(name, laws, smallest):
    from damoc.compress import CompressConfig, compress_dataset

    pool = laws[0][:4]
    res = compress_dataset(pool, CompressConfig(compressor=name, rate=0.5, model=smallest.chat_path, use_cache=False))
    assert res.stats["compressor"] == name and res.stats["samples"] == len(pool)
    assert 0.0 < res.stats["keep_rate"] <= 1.0
    assert [s.id for s in res.samples] == [s.id for s in pool]
    for s in res.samples:
        assert s.extra["compression"]["status"] in ("direct", "fell_back") and s.extra["original"]


@pytest.mark.parametrize("name", MERGE_RULES.names())
def test_every_merge_rule(name, pair, tmp_path):
    from damoc.prune import prune_candidate

    mid = pair.layers // 2
    scores = [0.5] * pair.layers
    scores[mid] = 0.99                            # one layer above the threshold: no calibration pass needed
    r = prune_candidate(pair.chat_path, pair.base_path, tmp_path / name, rule=name, scores=scores, device="cpu")
    assert r.pruned == [mid] and r.layers_after == pair.layers - 1 and r.rule == name
    assert r.merge_rule == (None if not MERGE_RULES.get(name).merges else name)
    assert json.loads((tmp_path / name / "config.json").read_text())["num_hidden_layers"] == pair.layers - 1


@pytest.mark.parametrize("name", METRICS.names())
def test_every_metric(name, laws, smallest):
    from damoc.evaluate import evaluate

    items = [Sample(id=s.id, question=s.question, answer=s.answer,
                    choices=[s.answer, laws[1][(k + 1) % len(laws[1])].answer])
             for k, s in enumerate(laws[1])]
    res = evaluate(smallest.chat_path, items, metric=name, secondary=(), max_new_tokens=8, backend="transformers")
    assert res.metric == name and res.n == len(items) and res.score == res.score       # a number, not NaN


@pytest.mark.parametrize("name", BACKENDS.names())
def test_every_backend(name, smallest):
    from damoc.backends import get_backend
    from damoc.models import format_prompt

    if name == "vllm":
        pytest.importorskip("vllm")
        if not __import__("torch").cuda.is_available():
            pytest.skip("vllm needs a CUDA GPU")
    be = get_backend(smallest.chat_path, name=name)
    try:
        prompt = format_prompt(be.tokenizer, "Where does Maran Laklen work?")
        (text,) = be.generate([prompt], max_new_tokens=4)
        (ll, n), = be.loglikelihood([prompt], [" in a town"])
        assert isinstance(text, str) and n > 0 and ll < 0
    finally:
        be.close()


@pytest.mark.parametrize("name", FINETUNE_METHODS.names())
def test_every_finetune_method(name, laws, smallest, tmp_path):
    from damoc.finetune import FinetuneConfig, finetune

    cfg = FinetuneConfig(method=name, max_steps=2, effective_batch=4, micro_batch=4, max_length=64, device="cpu")
    res = finetune(smallest.chat_path, laws[0][:8], cfg, tmp_path / name, keep_model=False)
    assert res.method == name and res.steps == 2 and res.final_loss is not None
    assert 0 < res.trainable_params <= res.total_params
    assert (tmp_path / name / "config.json").is_file() and not (tmp_path / name / "adapter_config.json").exists()
