"""Sparse merging: sparsity exactly as specified, each rule's arithmetic on known tensors, and the merged checkpoint
holding exactly W_chat[k] + Sparse(W_chat[l] - W_base[l]) with norms untouched."""
from __future__ import annotations

import pytest

from tests.helpers.tiny_archs import save_pair, tiny_model

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("shape,sparsity", [((7, 13), 0.2), ((100,), 0.29), ((64, 48), 0.5), ((5,), 0.0),
                                            ((3, 3), 0.99)])
def test_sparsify_zeroes_exactly_floor_of_the_smallest(shape, sparsity):
    from damoc.prune.merge import n_zeroed, sparsify

    g = torch.Generator().manual_seed(0)
    t = torch.randn(shape, generator=g) + 0.01          # no exact zeros to begin with
    out = sparsify(t, sparsity)
    k = n_zeroed(t.numel(), sparsity)
    assert k == int(sparsity * t.numel() + 1e-9)        # 0.29 * 100 is 28.999..., still 29
    assert int((out == 0).sum()) == k
    kept = out != 0
    assert torch.equal(out[kept], t[kept])              # survivors untouched (no rescale by default)
    if 0 < k < t.numel():
        assert t.abs()[~kept].max() <= t.abs()[kept].min()   # the zeroed ones are the smallest magnitudes


def test_sparsify_is_exact_under_ties_and_dare_rescales():
    from damoc.prune.merge import sparsify

    t = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, 2.0, -2.0, 3.0, 1.0, 1.0])
    out = sparsify(t, 0.2)                              # six entries tie at |1|: still exactly two zeroed
    assert int((out == 0).sum()) == 2
    d = sparsify(t, 0.2, rescale="dare")
    assert torch.allclose(d[d != 0], t[d != 0] / 0.8)
    assert sparsify(t.to(torch.bfloat16), 0.2).dtype == torch.float32   # math in fp32


def test_sparsify_rejects_bad_sparsity():
    from damoc.errors import ConfigError
    from damoc.prune.merge import sparsify

    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ConfigError):
            sparsify(torch.ones(4), bad)


def test_rules_arithmetic_on_known_tensors():
    from damoc.prune.merge import MERGE_RULES, MergeContext

    w = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    s = torch.tensor([[0.5, 0.0], [-1.0, 2.0]])
    base_k = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    ctx = MergeContext(sim_pruned=0.9, sim_target=0.6, base_target=base_k)
    bi_l, bi_k = 0.1, 0.4
    beta = bi_l / (bi_l + bi_k)                         # 0.2
    expect = {
        "additive": w + s,
        "additive_scaled": w + beta * s,
        "convex": (1 - beta) * w + beta * (base_k + s),
        "paper": 0.9 * w + 0.6 * s,
        "literal": 0.1 * w + 0.4 * s,
        "drop": w,
    }
    for name, want in expect.items():
        got = MERGE_RULES.get(name).apply(w, s, ctx)
        assert torch.allclose(got, want), name
    assert MERGE_RULES.get("convex").needs_base_target
    assert not MERGE_RULES.get("drop").merges
    assert MERGE_RULES.normalise("shortgpt") == "drop"


def test_merge_targets_and_norm_keys():
    from damoc.prune.merge import is_norm_key, merge_targets

    assert merge_targets([3, 4, 6], 8) == {3: 2, 4: 2, 6: 5}   # chains of pruned layers go to the same kept layer
    assert merge_targets([0, 1], 4) == {0: 2, 1: 2}           # nothing kept before: the next kept layer
    for k in ("input_layernorm.weight", "self_attn.q_norm.weight", "post_attention_layernorm.bias", "ln_1.weight",
              "post_feedforward_layernorm.weight"):
        assert is_norm_key(k), k
    for k in ("self_attn.q_proj.weight", "self_attn.q_proj.bias", "mlp.down_proj.weight",
              "attention.query_key_value.bias", "mlp.dense_h_to_4h.weight"):
        assert not is_norm_key(k), k


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "gpt_neox"])
def test_merged_checkpoint_holds_the_sparse_task_vector(model_type, tmp_path):
    from safetensors.torch import load_file

    from damoc.prune.api import write_pruned
    from damoc.prune.merge import get_rule, sparsify
    from damoc.prune.surgery import ARCHS

    chat_dir, base_dir = save_pair(tmp_path, model_type, layers=6)
    prefix = ARCHS[model_type].layers
    chat = load_file(chat_dir / "model.safetensors")
    base = load_file(base_dir / "model.safetensors")
    scores = [0.2, 0.5, 0.8, 0.9, 0.7, 0.95]
    stats = write_pruned(chat_dir, tmp_path / "out", [3, 4], base_path=base_dir, scores=scores,
                         rule=get_rule("additive"), sparsity=0.2)
    out = load_file(tmp_path / "out" / "model.safetensors")
    assert stats["tensors_merged"] > 0 and stats["norm_tensors_skipped"] > 0
    # old layers 0,1,2,5 become 0,1,2,3; layers 3 and 4 are merged into 2
    for key, value in out.items():
        if not key.startswith(prefix + "."):
            assert torch.equal(value, chat[key])
            continue
        new_idx, rest = key[len(prefix) + 1:].split(".", 1)
        old_idx = [0, 1, 2, 5][int(new_idx)]
        src = chat[f"{prefix}.{old_idx}.{rest}"]
        if old_idx != 2 or "norm" in rest:
            assert torch.equal(value, src), key                 # untouched: other layers and every norm
        else:
            want = src.float()
            for l in (3, 4):
                tau = chat[f"{prefix}.{l}.{rest}"].float() - base[f"{prefix}.{l}.{rest}"].float()
                want = want + sparsify(tau, 0.2)
            assert torch.allclose(value, want, atol=1e-6), key
            assert not torch.equal(value, src)
    n_layer_keys = {k.split(".")[len(prefix.split("."))] for k in out if k.startswith(prefix + ".")}
    assert n_layer_keys == {"0", "1", "2", "3"}


def test_in_memory_prune_model_equals_the_streamed_checkpoint(tmp_path):
    from transformers import AutoModelForCausalLM

    from damoc.prune.api import prune_model, write_pruned
    from damoc.prune.merge import get_rule

    chat_dir, base_dir = save_pair(tmp_path, "llama", layers=6)
    scores = [0.2, 0.5, 0.8, 0.9, 0.7, 0.95]
    write_pruned(chat_dir, tmp_path / "out", [3], base_path=base_dir, scores=scores, rule=get_rule("convex"),
                 sparsity=0.3)
    chat = AutoModelForCausalLM.from_pretrained(chat_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    keep = prune_model(chat, [3], base_model=base, rule="convex", scores=scores, sparsity=0.3)
    assert keep == [0, 1, 2, 4, 5]
    disk = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    for (k1, v1), (k2, v2) in zip(chat.state_dict().items(), disk.state_dict().items()):
        assert k1 == k2 and torch.allclose(v1, v2, atol=1e-6), k1


def test_in_memory_prune_model_asks_for_scores_only_when_the_rule_reads_them(tmp_path):
    from transformers import AutoModelForCausalLM

    from damoc.errors import DamocError
    from damoc.prune.api import prune_model
    from damoc.prune.merge import MERGE_RULES, get_rule

    assert {r for r in MERGE_RULES.names() if not get_rule(r).needs_scores} == {"additive", "drop"}
    chat_dir, base_dir = save_pair(tmp_path, "llama", layers=6)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    with pytest.raises(DamocError, match="needs the layer scores"):
        prune_model(AutoModelForCausalLM.from_pretrained(chat_dir), [3], base_model=base, rule="convex")
    keep = prune_model(AutoModelForCausalLM.from_pretrained(chat_dir), [3], base_model=base, rule="additive")
    assert keep == [0, 1, 2, 4, 5]


def test_merge_refuses_without_base_and_with_mismatched_shapes(tmp_path):
    from damoc.errors import DamocError
    from damoc.prune.api import check_pair, write_pruned
    from damoc.prune.merge import get_rule

    chat_dir, _ = save_pair(tmp_path, "llama", layers=4, with_base=False)
    with pytest.raises(DamocError, match="Base"):
        write_pruned(chat_dir, tmp_path / "o", [2], base_path=None, scores=[0.5] * 4, rule=get_rule("additive"),
                     sparsity=0.2)
    other = tmp_path / "other"
    tiny_model("llama", layers=5).save_pretrained(other)
    assert "5 layers" in check_pair(chat_dir, other)
    qwen = tmp_path / "qwen"
    tiny_model("qwen2", layers=4).save_pretrained(qwen)
    assert "architecture" in check_pair(chat_dir, qwen)
