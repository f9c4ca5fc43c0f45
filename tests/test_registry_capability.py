"""Capabilities computed from config.json and safetensors headers (no weights loaded)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from damoc.registry.capability import (UnreadableModel, compare_checkpoints, facts_from_folder,
                                       read_safetensors_header, weight_index)
from tests.helpers.fakes import write_model


def test_header_gives_names_shapes_and_parameter_count(tmp_path):
    write_model(tmp_path / "m", layers=3, hidden=16, inter=32, vocab=64)
    h = read_safetensors_header(tmp_path / "m" / "model.safetensors")
    assert h["model.layers.1.mlp.up_proj.weight"] == ("F32", (32, 16))
    facts = facts_from_folder(tmp_path / "m")
    expected = 2 * 64 * 16 + 16 + 3 * (4 * 16 * 16 + 3 * 32 * 16 + 2 * 16)
    assert facts.parameters == expected
    assert (facts.architecture, facts.layers, facts.hidden_size, facts.vocab_size) == ("llama", 3, 16, 64)
    assert facts.dtype == "float32" and facts.origin == "files"
    assert facts.size_bytes >= expected * 4


def test_sharded_checkpoint_is_read_through_its_index(tmp_path):
    write_model(tmp_path / "one", layers=4)
    write_model(tmp_path / "many", layers=4, shards=3)
    assert len(weight_index(tmp_path / "many").files) == 3
    assert facts_from_folder(tmp_path / "many").parameters == facts_from_folder(tmp_path / "one").parameters


def test_chat_template_licence_and_remote_code_are_read(tmp_path):
    write_model(tmp_path / "c", chat=True, license="apache-2.0", config_extra={"auto_map": {"AutoModel": "x.Y"}})
    write_model(tmp_path / "b")
    fc, fb = facts_from_folder(tmp_path / "c"), facts_from_folder(tmp_path / "b")
    assert fc.chat_template and not fb.chat_template
    assert fc.license == "apache-2.0" and fb.license is None
    assert fc.trust_remote_code and not fb.trust_remote_code


def test_matching_pair_supports_sparse_merging(tmp_path):
    write_model(tmp_path / "chat", chat=True, seed=1)
    write_model(tmp_path / "base", seed=2)
    cap = compare_checkpoints(tmp_path / "chat", tmp_path / "base")
    assert cap.merge_supported and cap.state == "supported" and cap.merge_reason == ""
    assert cap.detail["layer_tensors"] == 2 * 9


def test_layer_shape_mismatch_names_the_tensor_and_shapes(tmp_path):
    write_model(tmp_path / "chat", chat=True)
    write_model(tmp_path / "base", reshape={"model.layers.1.mlp.up_proj.weight": (24, 16)})
    cap = compare_checkpoints(tmp_path / "chat", tmp_path / "base")
    assert not cap.merge_supported and cap.state == "base_incompatible"
    assert "model.layers.1.mlp.up_proj.weight: Chat [32, 16] vs Base [24, 16]" in cap.merge_reason
    assert cap.merge_reason.startswith("pruning skipped: Base incompatible")
    assert cap.detail["chat_shape"] == [32, 16] and cap.detail["base_shape"] == [24, 16]


def test_layer_count_and_family_mismatch(tmp_path):
    write_model(tmp_path / "chat", layers=2)
    write_model(tmp_path / "deeper", layers=3)
    write_model(tmp_path / "qwen", arch="qwen2")
    assert "Chat has 2 layers, Base has 3" in compare_checkpoints(tmp_path / "chat", tmp_path / "deeper").merge_reason
    r = compare_checkpoints(tmp_path / "chat", tmp_path / "qwen").merge_reason
    assert "Chat is llama, Base is qwen2" in r and "different families" in r


def test_missing_layer_tensor_in_base(tmp_path):
    write_model(tmp_path / "chat")
    write_model(tmp_path / "base", drop=("model.layers.0.self_attn.k_proj.weight",))
    cap = compare_checkpoints(tmp_path / "chat", tmp_path / "base")
    assert not cap.merge_supported
    assert "model.layers.0.self_attn.k_proj.weight missing from Base" in cap.merge_reason


def test_embedding_difference_is_a_note_not_a_blocker(tmp_path):
    # a chat model with added tokens: the merge touches decoder layers only
    write_model(tmp_path / "chat", reshape={"model.embed_tokens.weight": (72, 16), "lm_head.weight": (72, 16)})
    write_model(tmp_path / "base")
    cap = compare_checkpoints(tmp_path / "chat", tmp_path / "base")
    assert cap.merge_supported
    assert any("model.embed_tokens.weight differs" in n for n in cap.notes)


def test_truncated_safetensors_is_reported_with_the_file(tmp_path):
    write_model(tmp_path / "chat")
    write_model(tmp_path / "base")
    f = tmp_path / "base" / "model.safetensors"
    f.write_bytes(f.read_bytes()[:20])
    with pytest.raises(UnreadableModel) as e:
        read_safetensors_header(f)
    assert str(f) in e.value.message and "unreadable safetensors" in e.value.message
    cap = compare_checkpoints(tmp_path / "chat", tmp_path / "base")
    assert cap.state == "unreadable" and not cap.merge_supported and "model.safetensors" in cap.merge_reason


def test_garbage_file_named_safetensors(tmp_path):
    p = tmp_path / "x.safetensors"
    p.write_bytes(b"\xff" * 64)
    with pytest.raises(UnreadableModel, match="does not fit"):
        read_safetensors_header(p)


def test_missing_shard_is_an_incomplete_download(tmp_path):
    write_model(tmp_path / "chat", shards=2)
    write_model(tmp_path / "base", shards=2)
    (tmp_path / "base" / "model-00002-of-00002.safetensors").unlink()
    wi = weight_index(tmp_path / "base")
    assert wi.missing == ["model-00002-of-00002.safetensors"]
    cap = compare_checkpoints(tmp_path / "chat", tmp_path / "base")
    assert not cap.merge_supported and "Base weights incomplete" in cap.merge_reason


def test_folder_without_config(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnreadableModel, match="no config.json"):
        facts_from_folder(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(UnreadableModel, match="not valid JSON"):
        facts_from_folder(tmp_path / "bad")


def test_bin_checkpoints_compare_by_config(tmp_path):
    for name, inter in (("chat", 32), ("base", 32), ("other", 48)):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 16,
                                                   "intermediate_size": inter}))
        (d / "pytorch_model.bin").write_bytes(b"x")
    ok = compare_checkpoints(tmp_path / "chat", tmp_path / "base")
    assert ok.merge_supported and "not checked" in ok.notes[0]
    bad = compare_checkpoints(tmp_path / "chat", tmp_path / "other")
    assert not bad.merge_supported and "intermediate_size" in bad.merge_reason


def test_real_transformers_checkpoints(tmp_path):
    """Capability on checkpoints written by transformers itself agrees with the real state dicts."""
    torch = pytest.importorskip("torch")
    from transformers import LlamaConfig, LlamaForCausalLM

    def build(path: Path, seed: int, **over) -> dict:
        torch.manual_seed(seed)
        kw = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=96) | over
        cfg = LlamaConfig(**kw)
        m = LlamaForCausalLM(cfg)
        m.save_pretrained(path)
        return {k: tuple(v.shape) for k, v in m.state_dict().items()}

    sc = build(tmp_path / "chat", 0)
    sb = build(tmp_path / "base", 1)
    build(tmp_path / "wide", 2, intermediate_size=80)
    assert sc == sb
    assert compare_checkpoints(tmp_path / "chat", tmp_path / "base").merge_supported
    cap = compare_checkpoints(tmp_path / "chat", tmp_path / "wide")
    assert not cap.merge_supported and "down_proj.weight: Chat [32, 64] vs Base [32, 80]" in cap.merge_reason
    f = facts_from_folder(tmp_path / "chat")
    n_real = sum(v.numel() for k, v in LlamaForCausalLM.from_pretrained(tmp_path / "chat").state_dict().items())
    assert f.parameters == n_real   # tied or not, the header count is the saved tensors' count
