"""LaCo baseline: the paper's RDSC merge and the official code's telescoping reading, on a tiny model."""
from __future__ import annotations

import pytest

from tests.helpers.tiny_archs import tiny_config, tiny_model, tiny_tokenizer

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = ["the quick brown fox jumps over the lazy dog.", "question: where does ana live? answer: in bree."]


def _layer_params(model, i):
    return {k: v.detach().clone() for k, v in model.model.layers[i].named_parameters()}


@pytest.mark.parametrize("reading", ["paper", "code"])
def test_laco_collapses_with_the_chosen_reading(reading, tmp_path):
    from transformers import AutoModelForCausalLM

    from damoc.prune.laco import laco_prune

    model, tok = tiny_model("qwen2", layers=8), tiny_tokenizer(tmp_path)
    orig = [_layer_params(model, i) for i in range(8)]
    # threshold -1 accepts every collapse: the search is then deterministic (top down, C=3, at most 2 removed)
    res = laco_prune(model, tok, TEXTS, merge_layers=3, threshold=-1.0, max_remove=2, reading=reading)
    assert res.removed == [5, 6] and res.collapsed_into == {4: [5, 6]}
    assert res.trials[0]["accepted"] and -1.0 <= res.trials[0]["similarity"] <= 1.0
    assert model.config.num_hidden_layers == 6
    assert model.config.layer_types == [orig_t for i, orig_t in enumerate(tiny_layer_types(8)) if i not in (5, 6)]
    merged = _layer_params(model, 4)
    for name, value in merged.items():
        if "norm" in name:
            assert torch.equal(value, orig[4][name]), name                     # norms untouched
        elif reading == "paper":
            want = orig[4][name] + (orig[5][name] - orig[4][name]) + (orig[6][name] - orig[4][name])
            assert torch.allclose(value, want, atol=1e-6), name
        else:
            assert torch.equal(value, orig[6][name]), name                      # telescoped to the last layer
    assert torch.equal(_layer_params(model, 5)["self_attn.q_proj.weight"], orig[7]["self_attn.q_proj.weight"])
    ids = tok("the quick brown fox", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a = model.generate(ids, max_new_tokens=8, min_new_tokens=8, do_sample=False, use_cache=True, pad_token_id=1)
        b = model.generate(ids, max_new_tokens=8, min_new_tokens=8, do_sample=False, use_cache=False, pad_token_id=1)
    assert torch.equal(a, b)
    model.save_pretrained(tmp_path / "laco")
    _, info = AutoModelForCausalLM.from_pretrained(tmp_path / "laco", output_loading_info=True)
    assert not info["missing_keys"]


def test_laco_rejected_collapses_are_rolled_back(tmp_path):
    from damoc.prune.laco import laco_prune

    model, tok = tiny_model("llama", layers=6), tiny_tokenizer(tmp_path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = laco_prune(model, tok, TEXTS, threshold=1.01)                         # nothing can pass
    assert res.removed == [] and res.trials and not any(t["accepted"] for t in res.trials)
    assert model.config.num_hidden_layers == 6
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def tiny_layer_types(n):
    return tiny_config("qwen2", layers=n).layer_types


def test_laco_chained_collapses_are_recorded_on_the_surviving_layer(tmp_path):
    from damoc.prune.laco import laco_prune

    model, tok = tiny_model("llama", layers=8), tiny_tokenizer(tmp_path)
    res = laco_prune(model, tok, TEXTS, merge_layers=2, threshold=-1.0, max_remove=2)
    assert [t["layer"] for t in res.trials] == [5, 4]          # 6 into 5, then (5 holding 6) into 4
    assert res.removed == [5, 6] and res.collapsed_into == {4: [5, 6]}
    assert model.config.num_hidden_layers == 6
