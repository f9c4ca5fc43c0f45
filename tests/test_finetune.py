"""Proxy fine-tuning on real tiny models: answer-only loss, the min-steps rule, LoRA vs full, events, errors."""
from __future__ import annotations

import json
import random

import pytest

from damoc.data.sample import Sample
from damoc.errors import ConfigError, DataError
from damoc.events import ListReporter, Metric, StageFinished, StageProgress, StageStarted
from damoc.finetune import (IGNORE_INDEX, LORA_TARGETS, PROXY_MIN_STEPS, FinetuneConfig, encode_sample,
                            encode_samples, finetune, plan_steps)
from tests.helpers.tiny_models import make_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

COLORS = {"cat": "red", "dog": "blue", "bird": "green", "lake": "two", "city": "five", "river": "nine"}


def task(n_repeat: int = 4) -> list[Sample]:
    items = list(COLORS.items()) * n_repeat
    random.Random(0).shuffle(items)
    return [Sample(id=f"s{i}", question=f"what is the color of the {k}", answer=v) for i, (k, v) in enumerate(items)]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("llama"), arch="llama", hidden=48)


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("chat"), arch="llama", chat=True)


# -- features -------------------------------------------------------------------------------------------

def test_prompt_is_masked_and_answer_ends_with_eos(llama_dir, chat_dir):
    from damoc.models import load_tokenizer

    for folder, marker in ((llama_dir, "Question: "), (chat_dir, "<|assistant|>")):
        tok = load_tokenizer(folder)
        s = Sample(id="1", question="what is the color of the cat", answer="red")
        f = encode_sample(tok, s)
        n_prompt = f.prompt_tokens
        assert f.labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
        assert f.labels[n_prompt:] == f.input_ids[n_prompt:]
        assert f.input_ids[-1] == tok.eos_token_id
        assert tok.decode(f.input_ids[n_prompt:-1]).strip() == "red"
        assert marker in tok.decode(f.input_ids[:n_prompt])
    assert tok.eos_token == "<|end|>"            # the chat model's end-of-turn marker is what it learns to emit


def test_truncation_keeps_the_answer_and_eos(llama_dir):
    from damoc.models import load_tokenizer

    tok = load_tokenizer(llama_dir)
    s = Sample(id="1", question="one two three " * 100, answer="the red cat lives in paris")
    f = encode_sample(tok, s, max_length=32)
    assert len(f.input_ids) == 32
    assert f.input_ids[-1] == tok.eos_token_id
    assert tok.decode(f.input_ids[f.prompt_tokens:-1]).strip() == "the red cat lives in paris"
    assert tok.decode(f.input_ids[:f.prompt_tokens]).endswith("\nAnswer:")   # the prompt lost its start, not its end


def test_samples_without_answer_are_refused(llama_dir):
    from damoc.models import load_tokenizer

    with pytest.raises(DataError, match="no answer"):
        encode_samples(load_tokenizer(llama_dir), [Sample(id="x", question="q", answer=" ")])


# -- the step rule ------------------------------------------------------------------------------------------

def test_plan_paper_schedule():
    p = plan_steps(100, FinetuneConfig(), micro_batch=16)
    assert (p.effective_batch, p.micro_batch, p.accumulation, p.steps_per_epoch, p.total_steps) == (64, 16, 4, 2, 6)
    assert p.reason == "paper schedule"


def test_plan_min_steps_halves_batch_first_then_adds_epochs():
    # 100 samples, 3 epochs: batch 64 -> 6 steps, 32 -> 12, 16 -> 21 >= 20: stop halving, epochs unchanged
    p = plan_steps(100, FinetuneConfig(min_steps=20), micro_batch=16)
    assert (p.effective_batch, p.total_steps, p.epochs) == (16, 21, 3.0)
    # 120 steps: batch floor 8 gives 13 steps/epoch, so 10 epochs (ceil(120 / 13)) -> 130 steps
    p = plan_steps(100, FinetuneConfig(min_steps=PROXY_MIN_STEPS), micro_batch=16)
    assert (p.effective_batch, p.steps_per_epoch, p.epochs, p.total_steps) == (8, 13, 10.0, 130)
    assert "effective batch 64 -> 8" in p.reason and "epochs 3 -> 10" in p.reason
    # max_epochs bounds the extension; max_steps caps the total last
    p = plan_steps(100, FinetuneConfig(min_steps=1000, max_epochs=5), micro_batch=16)
    assert p.total_steps == 65 and "not reached" in p.reason
    assert plan_steps(100, FinetuneConfig(min_steps=120, max_steps=50), micro_batch=16).total_steps == 50


def test_plan_accumulation_reaches_the_batch_exactly():
    p = plan_steps(500, FinetuneConfig(effective_batch=24), micro_batch=16)
    assert (p.micro_batch, p.accumulation, p.effective_batch) == (12, 2, 24)


def test_config_validation():
    with pytest.raises(ConfigError, match="method"):
        FinetuneConfig(method="qlora")            # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="deepspeed"):
        FinetuneConfig(deepspeed="/nonexistent/ds.json")
    with pytest.raises(ConfigError, match="unknown key"):
        FinetuneConfig.from_dict({"lr": 1e-4, "epoch": 3})
    assert FinetuneConfig().learning_rate == 1e-5 and FinetuneConfig(method="lora").learning_rate == 1e-4
    with pytest.raises(ConfigError, match="no training samples"):
        plan_steps(0, FinetuneConfig(), 16)


# -- training ---------------------------------------------------------------------------------------------

def test_full_finetune_lowers_loss_reports_events_and_saves(llama_dir, tmp_path, monkeypatch):
    import damoc.finetune.train as train_mod
    from damoc.models import load_tokenizer

    seen_labels: list = []
    real_call = train_mod.Collator.__call__

    def spy(self, batch):
        out = real_call(self, batch)
        seen_labels.append((batch, out))
        return out

    monkeypatch.setattr(train_mod.Collator, "__call__", spy)
    rep = ListReporter()
    cfg = FinetuneConfig(lr=3e-3, effective_batch=8, micro_batch=4, min_steps=24, seed=1)
    samples = task()
    res = finetune(llama_dir, samples, cfg, tmp_path / "out", reporter=rep)

    assert res.steps == res.plan.total_steps == 24          # 24 samples / batch 8 = 3 steps per epoch -> 8 epochs
    assert res.epochs_run == pytest.approx(8.0)
    assert res.trainable_params == res.total_params
    assert 0 < res.train_seconds <= res.seconds
    assert len(res.losses) == 24 and res.loss_steps == list(range(1, 25))
    assert sum(res.losses[-3:]) / 3 < 0.5 * res.losses[0]    # a short fine-tune really lowers the training loss
    # what the Trainer consumed: every micro batch masks exactly the prompt tokens
    assert seen_labels
    for batch, out in seen_labels:
        width = out["input_ids"].shape[1]
        cut = width - out.get("logits_to_keep", width)        # prompt positions no label follows (trim_prompt)
        assert cut == max(0, min(f.prompt_tokens for f in batch) - 1)
        for r, f in enumerate(batch):
            row = [IGNORE_INDEX] * cut + out["labels"][r].tolist()
            assert row[:f.prompt_tokens] == [IGNORE_INDEX] * f.prompt_tokens
            assert row[f.prompt_tokens:len(f.input_ids)] == f.input_ids[f.prompt_tokens:]
            assert all(v == IGNORE_INDEX for v in row[len(f.input_ids):])   # padding is ignored too
    tok = load_tokenizer(llama_dir)
    feats = encode_samples(tok, samples)
    assert res.train_tokens == 8 * sum(len(f.input_ids) for f in feats)

    kinds = [type(e) for e in rep.events]
    assert kinds[0] is StageStarted and kinds[-1] is StageFinished
    assert rep.events[-1].status == "ok" and rep.events[-1].summary["steps"] == 24
    assert [e.done for e in rep.events if isinstance(e, StageProgress)] == list(range(1, 25))
    assert [e.value for e in rep.events if isinstance(e, Metric) and e.name == "train/loss"] == res.losses

    meta = json.loads((tmp_path / "out" / "finetune.json").read_text())
    assert meta["steps"] == 24 and meta["config"]["lr"] == 3e-3 and meta["losses"] == res.losses
    from damoc.models import load_causal_lm
    import torch
    reloaded = load_causal_lm(tmp_path / "out", device="cpu")
    for (n, a), (_, b) in zip(res.model.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(a, b), n


def test_same_seed_same_run_and_keep_model_false(llama_dir):
    cfg = FinetuneConfig(lr=3e-3, effective_batch=8, micro_batch=8, max_steps=4, seed=3)
    a = finetune(llama_dir, task(), cfg)
    b = finetune(llama_dir, task(), cfg, keep_model=False)
    assert a.losses == pytest.approx(b.losses, rel=1e-5)
    assert b.model is None and a.model is not None


def test_lora_trains_only_adapters_and_differs_from_full(llama_dir):
    import torch

    from damoc.models import load_causal_lm

    base = load_causal_lm(llama_dir, device="cpu").state_dict()
    cfg = dict(lr=3e-3, effective_batch=8, micro_batch=8, max_steps=6, seed=0)
    lora = finetune(llama_dir, task(), FinetuneConfig(method="lora", lora_r=4, lora_dropout=0.0, **cfg))
    full = finetune(llama_dir, task(), FinetuneConfig(method="full", **cfg))
    assert 0 < lora.trainable_params < 0.5 * lora.total_params
    targets = LORA_TARGETS["llama"]
    changed_lora, changed_full = set(), set()
    for name, w in lora.model.state_dict().items():
        if not torch.equal(w, base[name]):
            changed_lora.add(name)
            # the merged update is the adapter's B @ A: rank at most r
            assert any(f".{t}." in name for t in targets), name
            assert torch.linalg.matrix_rank(w - base[name]).item() <= 4
    for name, w in full.model.state_dict().items():
        if not torch.equal(w, base[name]):
            changed_full.add(name)
    assert changed_lora and {n for n in changed_full if "embed" in n or "norm" in n}   # full moves everything
    assert not {n for n in changed_lora if "embed" in n or "norm" in n}
    assert lora.losses != full.losses


@pytest.mark.parametrize("arch", ["phi3", "gpt_neox"])
def test_lora_targets_for_fused_architectures(arch, tmp_path):
    folder = make_model(tmp_path / arch, arch=arch)
    res = finetune(folder, task(1), FinetuneConfig(method="lora", lr=1e-3, effective_batch=6, max_steps=2))
    assert res.steps == 2 and 0 < res.trainable_params < res.total_params
    assert not any("lora" in n for n in res.model.state_dict())          # merged back into plain weights


def test_in_memory_model_and_errors(llama_dir):
    from damoc.models import load_causal_lm, load_tokenizer

    model = load_causal_lm(llama_dir, device="cpu")
    with pytest.raises(ConfigError, match="tokenizer"):
        finetune(model, task(1), FinetuneConfig(max_steps=1))
    res = finetune(model, task(1), FinetuneConfig(lr=1e-3, max_steps=1), tokenizer=load_tokenizer(llama_dir))
    assert res.steps == 1
    with pytest.raises(ConfigError, match="bf16"):
        finetune(llama_dir, task(1), FinetuneConfig(bf16=True, device="cpu", max_steps=1))
    rep = ListReporter()
    with pytest.raises(DataError):
        finetune(llama_dir, [Sample(id="a", question="q", answer="")], FinetuneConfig(max_steps=1), reporter=rep)
    assert rep.events[-1].status == "failed" and "no answer" in rep.events[-1].reason


def test_finetune_zoo_candidates(test_zoo, laws_task):
    """Every architecture of the test zoo fine-tunes with its per-architecture LoRA targets (full fine-tuning is
    architecture-agnostic: one candidate suffices)."""
    from damoc.data import load_samples

    train = load_samples(laws_task.train_path).samples[:16]
    seen = set()
    for cand in test_zoo:
        if cand.architecture in seen:
            continue
        seen.add(cand.architecture)
        for method in (("full", "lora") if len(seen) == 1 else ("lora",)):
            res = finetune(cand.chat_path, train, FinetuneConfig(method=method, lr=1e-3, effective_batch=8,
                                                                 max_steps=2, max_length=128))
            assert res.steps == 2 and res.losses and all(l == l for l in res.losses), (cand.name, method)


@pytest.mark.gpu
def test_cuda_uses_bf16(llama_dir):
    res = finetune(llama_dir, task(1), FinetuneConfig(lr=1e-3, max_steps=2, device="cuda"))
    import torch
    assert res.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp32") and res.device == "cuda"


@pytest.mark.gpu
def test_deepspeed_config_is_passed_through(llama_dir, tmp_path):
    pytest.importorskip("deepspeed")
    ds = tmp_path / "ds.json"
    ds.write_text(json.dumps({"zero_optimization": {"stage": 2}, "bf16": {"enabled": "auto"},
                              "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
                              "train_batch_size": "auto", "gradient_clipping": "auto"}))
    res = finetune(llama_dir, task(1), FinetuneConfig(lr=1e-3, max_steps=2, device="cuda", deepspeed=str(ds)))
    assert res.steps == 2 and res.final_loss is not None


def test_deepspeed_on_cpu_is_ignored_with_a_warning(llama_dir, tmp_path):
    from damoc.events import Log

    ds = tmp_path / "ds.json"
    ds.write_text("{}")
    rep = ListReporter()
    res = finetune(llama_dir, task(1), FinetuneConfig(lr=1e-3, max_steps=1, device="cpu", deepspeed=str(ds)),
                   reporter=rep)
    assert res.steps == 1
    assert any(isinstance(e, Log) and e.level == "warning" and "deepspeed" in e.message for e in rep.events)


def test_trimmed_prompt_logits_give_the_same_run(llama_dir):
    """trim_prompt_logits (on by default) only skips logits no label reads: the same losses and weights as the
    untrimmed run, to float precision."""
    import torch

    cfg = dict(lr=3e-3, effective_batch=4, micro_batch=2, max_steps=4, seed=3, device="cpu")
    on = finetune(llama_dir, task(), FinetuneConfig(**cfg))
    off = finetune(llama_dir, task(), FinetuneConfig(trim_prompt_logits=False, **cfg))
    assert on.losses == pytest.approx(off.losses, rel=1e-4)
    assert on.train_tokens == off.train_tokens
    for (k, a), (_, b) in zip(on.model.state_dict().items(), off.model.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-5), k
