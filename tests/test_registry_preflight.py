"""Pre-flight estimates: the documented formula term by term, skipped stages and why, config parsing."""
from __future__ import annotations

import pytest

from damoc.errors import ConfigError, UnknownNameError
from damoc.registry import PreflightConfig, preflight
from damoc.registry.capability import facts_from_folder
from tests.helpers.fakes import write_cached


CFG = {"seq_len": 8, "batch_size": 2, "calib_batch_size": 2, "lora_rank": 4, "device": "cpu", "finetune": "both"}


def test_memory_formula_term_by_term(settings, hf_cache):
    snap = write_cached(hf_cache, "Qwen/Qwen2.5-0.5B-Instruct", arch="qwen2", chat=True, layers=2, hidden=16,
                        inter=32, vocab=64, heads=2)
    write_cached(hf_cache, "Qwen/Qwen2.5-0.5B", arch="qwen2", layers=2, hidden=16, inter=32, vocab=64, heads=2)
    P = facts_from_folder(snap).parameters
    pf = preflight(settings, ["Qwen2.5-0.5B"], CFG)
    assert pf.device == "cpu" and pf.bytes_per_weight == 4
    c = pf.candidates[0]
    L, s, b, h, a, kv, V, I, w = 2, 8, 2, 16, 2, 2, 64, 32, 4
    hd = h // a
    acts = L * b * s * (20 * h + 6 * I + 4 * kv * hd) * w
    full = c.full_ft
    largest = max(V * h, h * I)
    assert (full.weights, full.gradients, full.optimizer) == (P * w, P * w, P * 8 + largest * 4)   # fp32 on CPU
    assert full.activations == acts and full.logits == b * s * V * 12
    assert full.overhead == 500_000_000 and full.total == P * 16 + largest * 4 + acts + b * s * V * 12 + 500_000_000
    T = L * 4 * ((16 + 16) * 4 + (16 + 32) * 2 + (32 + 16))     # q,k,v,o + gate,up + down at rank 4
    lora = c.lora_ft
    assert lora.trainable_parameters == T
    assert (lora.weights, lora.gradients, lora.optimizer) == (P * w + T * 4, T * 4, T * 12)
    dropout = int(L * b * s * (6 * h + I) * w * 1.25)            # peft's dropout copies of each adapted input
    assert lora.activations == acts + dropout
    assert lora.total < full.total
    calib = c.calibration
    assert calib.activations == 2 * s * (2 * I + 7 * h) * w and calib.loading == c.download_bytes + \
        facts_from_folder(snap).size_bytes
    assert calib.gradients == 0 and calib.optimizer == 0
    assert c.download_bytes == 0 and c.local
    assert [(st.stage, st.status) for st in c.stages] == [("calibrate", "run"), ("prune", "run"), ("finetune", "run"),
                                                          ("evaluate", "run")]
    assert pf.peak_memory_bytes == max(calib.total, full.total, lora.total)


def test_bf16_on_cuda_keeps_fp32_master_weights_and_autocast_copies(settings, hf_cache):
    write_cached(hf_cache, "Qwen/Qwen2.5-0.5B-Instruct", arch="qwen2", chat=True)
    pf = preflight(settings, ["Qwen2.5-0.5B"], dict(CFG, device="cuda"))
    full = pf.candidates[0].full_ft
    P = full.trainable_parameters
    # fp32 master weights + bf16 autocast copies, fp32 gradients, AdamW moments and its foreach temporaries
    assert pf.bytes_per_weight == 2 and full.weights == P * 6 and full.optimizer == P * (8 + 4)
    assert full.overhead == 1_000_000_000


def test_gradient_checkpointing_shrinks_activations(settings, hf_cache):
    write_cached(hf_cache, "Qwen/Qwen2.5-0.5B-Instruct", arch="qwen2", chat=True, layers=4)
    plain = preflight(settings, ["Qwen2.5-0.5B"], CFG).candidates[0].full_ft.activations
    ckpt = preflight(settings, ["Qwen2.5-0.5B"], dict(CFG, gradient_checkpointing=True)).candidates[0].full_ft
    assert ckpt.activations < plain


def test_stages_skipped_and_why(settings, hf_cache):
    write_cached(hf_cache, "mistralai/Ministral-8B-Instruct-2410", arch="mistral", chat=True)
    write_cached(hf_cache, "Qwen/Qwen2.5-0.5B-Instruct", arch="qwen2", chat=True)       # Base not downloaded
    pf = preflight(settings, ["Ministral-8B-Instruct-2410", "Qwen2.5-0.5B", "Llama-3.1-8B"], CFG)
    mini, qwen, llama = pf.candidates
    assert {s.stage: s.status for s in mini.stages} == {"calibrate": "skip", "prune": "skip", "finetune": "run",
                                                       "evaluate": "run"}
    assert all("no Base (W_pre)" in s.reason for s in mini.skipped)
    assert [s.stage for s in qwen.skipped] == ["calibrate", "prune"]
    assert "--base-only" in qwen.skipped[0].reason
    assert qwen.download_bytes > 0 and qwen.download_estimated       # the Base, estimated from the catalog
    assert llama.stages[0].stage == "download" and llama.stages[0].status == "blocked"
    assert "damoc registry pull Llama-3.1-8B" in llama.stages[0].reason
    assert llama.download_bytes == int(8.03e9 * 2) * 2 and not llama.local      # Chat + Base, bf16 from the catalog
    assert any("gated" in n for n in llama.notes)
    assert pf.total_download_bytes == sum(c.download_bytes for c in pf.candidates)
    # the 8B's full fine-tune on CPU: 16 bytes per parameter at least
    assert llama.full_ft.total > 16 * 8.03e9
    nop = preflight(settings, ["Qwen2.5-0.5B"], dict(CFG, prune=False)).candidates[0]
    assert nop.download_bytes == 0                   # without pruning the Base is not needed
    assert all("disabled" in s.reason for s in nop.skipped)


def test_memory_warning_when_it_cannot_fit(settings, hf_cache):
    pf = preflight(settings, ["Llama-3.1-8B"], {"device": "cpu", "finetune": "full", "seq_len": 4096,
                                                "batch_size": 64})
    assert pf.memory_available_bytes is not None                # /proc/meminfo on Linux
    assert any(w.startswith("Llama-3.1-8B: needs up to") and "of RAM" in w for w in pf.warnings)


def test_config_aliases_nesting_and_errors():
    cfg = PreflightConfig.from_dict({"max_length": 256, "per_device_train_batch_size": "3",
                                     "finetune": {"mode": "full", "lora_r": 16}, "prune": {"enabled": False},
                                     "unrelated": {"x": 1}})
    assert (cfg.seq_len, cfg.batch_size, cfg.finetune, cfg.lora_rank, cfg.prune) == (256, 3, "full", 16, False)
    with pytest.raises(ConfigError, match="seq_len"):
        PreflightConfig.from_dict({"seq_len": 0})
    with pytest.raises(ConfigError, match="not one of lora, full, both"):
        PreflightConfig.from_dict({"finetune": "qlora"})


def test_unknown_candidate(settings):
    with pytest.raises(UnknownNameError):
        preflight(settings, ["no-such-model"], {})


def test_to_dict_is_json(settings, hf_cache):
    import json

    d = preflight(settings, ["Phi-3-small-8k-instruct"], CFG).to_dict()
    json.dumps(d)
    assert d["candidates"][0]["skipped"][0]["stage"] == "download"
    assert set(d["totals"]) >= {"download_bytes", "peak_memory_bytes", "work_disk_bytes"}
