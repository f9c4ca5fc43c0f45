"""Layer removal on every supported architecture: forward, KV-cache generation, save/load with no missing keys, and
the streamed on-disk path giving the same model as the in-memory one."""
from __future__ import annotations

import pytest

from tests.helpers.tiny_archs import ARCHS, tiny_config, tiny_model, tiny_tokenizer

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("model_type", ARCHS)
def test_dropped_model_runs_generates_and_reloads(model_type, tmp_path):
    from transformers import AutoModelForCausalLM

    from damoc.prune.api import write_pruned
    from damoc.prune.merge import get_rule
    from damoc.prune.surgery import drop_layers

    tok = tiny_tokenizer(tmp_path)
    model = tiny_model(model_type, layers=6)
    src = tmp_path / "src"
    model.save_pretrained(src)
    tok.save_pretrained(src)
    before = model.config.to_dict()

    keep = drop_layers(model, [2, 4])
    assert keep == [0, 1, 3, 5]
    assert model.config.num_hidden_layers == 4
    for field in ("layer_types", "no_rope_layers"):
        if before.get(field) is not None:
            assert getattr(model.config, field) == [before[field][i] for i in keep]
    if before.get("max_window_layers") is not None:          # qwen2/qwen3: layers 0,1 were full, still are
        assert model.config.max_window_layers == sum(1 for i in keep if i < before["max_window_layers"])

    # greedy generation crosses the sliding window (6) of the sliding architectures; cache must not change it
    ids = tok("the quick brown fox jumps", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        g_cache = model.generate(ids, max_new_tokens=10, min_new_tokens=10, do_sample=False, use_cache=True, pad_token_id=1)
        g_plain = model.generate(ids, max_new_tokens=10, min_new_tokens=10, do_sample=False, use_cache=False, pad_token_id=1)
        logits = model(ids).logits
    assert g_cache.shape[1] == ids.shape[1] + 10
    assert torch.equal(g_cache, g_plain)

    # in-memory pruned model: save, reload, same logits, nothing re-initialised
    model.save_pretrained(tmp_path / "mem")
    again, info = AutoModelForCausalLM.from_pretrained(tmp_path / "mem", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    with torch.no_grad():
        assert torch.allclose(again.eval()(ids).logits, logits, atol=1e-5)

    # the streamed checkpoint rewrite (what prune_candidate uses) gives the same model
    write_pruned(src, tmp_path / "disk", [2, 4], base_path=None, scores=[0.0] * 6, rule=get_rule("drop"),
                 sparsity=0.2)
    disk, info = AutoModelForCausalLM.from_pretrained(tmp_path / "disk", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert disk.config.num_hidden_layers == 4
    with torch.no_grad():
        assert torch.allclose(disk.eval()(ids).logits, logits, atol=1e-5)
        g_disk = disk.generate(ids, max_new_tokens=10, min_new_tokens=10, do_sample=False, use_cache=True, pad_token_id=1)
    assert torch.equal(g_disk, g_cache)
    assert (tmp_path / "disk" / "tokenizer.json").is_file()


def test_unsupported_architectures_are_refused_with_the_supported_list(tmp_path):
    from transformers import GPT2Config

    from damoc.prune.surgery import UnsupportedArchitecture, arch_spec, config_updates

    with pytest.raises(UnsupportedArchitecture) as e:
        arch_spec(GPT2Config(n_layer=4))
    assert "gpt2" in str(e.value) and "llama" in e.value.hint
    remote = tiny_config("llama").to_dict() | {"auto_map": {"AutoModelForCausalLM": "x.Y"}}
    with pytest.raises(UnsupportedArchitecture, match="remote code"):
        arch_spec(remote)
    bad = tiny_config("gemma2", layers=6).to_dict()
    bad["layer_types"] = bad["layer_types"][:4]                # inconsistent config: refuse, never guess
    with pytest.raises(UnsupportedArchitecture, match="layer_types"):
        config_updates(bad, [0, 1, 2])


def test_drop_layers_guards(tmp_path):
    from damoc.errors import DamocError
    from damoc.prune.surgery import drop_layers

    model = tiny_model("llama", layers=3)
    with pytest.raises(DamocError, match="every"):
        drop_layers(model, [0, 1, 2])
    with pytest.raises(DamocError, match="out of range"):
        drop_layers(model, [3])
    assert model.config.num_hidden_layers == 3                 # nothing changed on refusal
