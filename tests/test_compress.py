"""Token compression: budget, iterative scoring, question conditioning, edge cases, the gate and the rewrite loop.

Two real models are used. `known_lm` is a one-layer Llama whose weights are set by hand so its predictions are
known: a bigram table makes some words certain after others ("in" -> "order" -> "to"), and a uniform attention head
turns the context into a bag of words that raises the probability of words already seen ("echo"). The demo zoo's
smallest model (a byte-level BPE LM) covers real tokenisation, non-ASCII text and rewriting.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from damoc.compress import COMPRESSORS, CompressConfig, compress_dataset
from damoc.data import Sample
from damoc.errors import ConfigError

CONTENT = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
           "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()
FILLER = {"in": "order", "order": "to", "the": "study", "results": "of", "as": "well"}


def build_known_lm(out: Path) -> Path:
    """A Llama with hand-set weights: logits = bigram(current token) + echo(bag of context words)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["[PAD]", "[BOS]", "[EOS]", "[UNK]"]
    words = CONTENT + ["in", "order", "to", "the", "study", "results", "of", "as", "well"]
    vocab = {w: i for i, w in enumerate(specials + words)}
    V = len(vocab) + len(vocab) % 2
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece(prefix="##")
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="[BOS]", eos_token="[EOS]", pad_token="[PAD]",
                                  unk_token="[UNK]")
    H = 2 * V
    cfg = LlamaConfig(vocab_size=V, hidden_size=H, intermediate_size=4, num_hidden_layers=1, num_attention_heads=1,
                      num_key_value_heads=1, head_dim=H, max_position_embeddings=1024, rms_norm_eps=1e-6,
                      tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    m = LlamaForCausalLM(cfg)
    s = math.sqrt(H)
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        m.model.embed_tokens.weight[:V, :V] = torch.eye(V) * s        # first half: the current token
        layer = m.model.layers[0]
        layer.input_layernorm.weight.fill_(1.0)
        layer.post_attention_layernorm.weight.fill_(1.0)
        layer.self_attn.v_proj.weight[V:, :V] = torch.eye(V)           # q = k = 0: uniform attention, so the
        layer.self_attn.o_proj.weight[V:, V:] = torch.eye(V)           # second half = bag of the context's words
        m.model.norm.weight.fill_(1.0)
        for a, b in FILLER.items():
            m.lm_head.weight[vocab[b], vocab[a]] = 10.0 / s            # bigram: b is near-certain after a
        for w in words:
            m.lm_head.weight[vocab[w], V + vocab[w]] = 10.0 / s        # echo: a word in context gets likelier
        m.lm_head.weight[0, :] = -50.0 / s                             # never predict padding
    out.mkdir(parents=True, exist_ok=True)
    m.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def known_lm(tmp_path_factory) -> str:
    return str(build_known_lm(tmp_path_factory.mktemp("known-lm")))


def _cfg(model: str, **kw) -> CompressConfig:
    kw.setdefault("use_cache", False)
    kw.setdefault("device", "cpu")
    return CompressConfig(model=model, **kw)


# -- budget and scoring ---------------------------------------------------------------------------------------

def test_budget_rules():
    from damoc.compress.budget import dynamic_ratios, field_ratios, quantile_threshold, select_to_budget

    keep = select_to_budget([5.0, 1.0, 4.0, 0.5, 3.0, 2.0], [1] * 6, 3.0)
    assert keep == [True, False, True, False, True, False]
    # multi-token units: the best units until the target, never far past it
    keep = select_to_budget([9.0, 8.0, 7.0, 1.0], [5, 4, 1, 1], 6.0)
    assert keep == [True, False, True, False]
    assert select_to_budget([0.1, 0.2], [1, 1], 1.0, forced=[True, False]) == [True, False]
    assert quantile_threshold([4.0, 3.0, 2.0, 1.0], 0.5) == 3.0
    assert quantile_threshold([4.0, 3.0], 1.0) == -math.inf
    assert dynamic_ratios(0.5, 3, 0.3) == pytest.approx([0.8, 0.5, 0.2])
    # a protected field keeps everything; the others pay for it so the sample still lands on the rate
    r = field_ratios({"instruction": 10, "answer": 30}, 0.5, {}, {"instruction"})
    assert r["instruction"] == 1.0 and r["answer"] == pytest.approx((20 - 10) / 30)


def test_scorer_batches_like_single_requests(known_lm):
    from damoc.compress.token_loss import Request, TokenScorer

    sc = TokenScorer.load(known_lm, device="cpu")
    ids = lambda t: sc.tokenizer(t, add_special_tokens=False)["input_ids"]   # noqa: E731
    reqs = [Request(sc.start_ids + ids("kilo lima"), ids("alpha kilo bravo")),
            Request(sc.start_ids, ids("alpha in order to bravo the study")),
            Request([], ids("charlie delta"))]
    batched = sc.score(reqs)
    for r, b in zip(reqs, batched):
        single = sc.score([r])[0]
        assert single.shape == (len(r.targets),)
        assert (abs(single - b) < 1e-4)[~(single != single)].all()
    assert math.isnan(batched[2][0])                      # nothing predicts a first token without a start token
    loss = dict(zip("alpha in order to bravo the study".split(), batched[1]))
    assert loss["order"] < 0.1 and loss["to"] < 0.1 and loss["study"] < 0.1      # the bigram continuations
    assert loss["bravo"] > 2.5 and loss["in"] > 2.5


# -- what compression keeps -----------------------------------------------------------------------------------

def test_removes_low_information_tokens_and_keeps_the_budget(known_lm):
    # 11 words: 7 nothing predicts, 4 that are near-certain after the word before them
    context = "alpha in order to bravo the study charlie results of delta"
    s = Sample(id="s1", question="golf hotel", context=context, answer="india juliet kilo lima")
    res = compress_dataset([s], _cfg(known_lm, gate=False, rates={"context": 7 / 11}))
    out = res.samples[0]
    # exactly the budget, and exactly the low-information words are gone
    assert out.context == "alpha in bravo the charlie results delta"
    assert res.stats["keep_rate_by_field"]["context"] == pytest.approx(7 / 11, abs=1e-4)
    assert out.extra["original"]["context"] == context
    assert out.extra["compression"]["status"] == "direct"
    assert res.stats["passed_direct"] == 1 and res.stats["samples"] == 1


@pytest.mark.parametrize("rate", [0.3, 0.5, 0.7])
def test_budget_is_met_over_many_windows(known_lm, rate):
    import random

    rng = random.Random(1)
    text = " ".join(rng.choice(CONTENT + list(FILLER)) for _ in range(900))    # longer than the model: 1024
    s = [Sample(id=f"s{i}", question="alpha bravo", context=text, answer="charlie " * 5 + "delta") for i in range(2)]
    res = compress_dataset(s, _cfg(known_lm, rate=rate, gate=False, window=64))
    assert res.stats["keep_rate"] == pytest.approx(rate, abs=0.02)
    assert res.stats["keep_rate_by_field"]["context"] == pytest.approx(rate, abs=0.02)
    assert all(set(x.context.split()) <= set(text.split()) for x in res.samples)


def test_question_conditioning_changes_which_answer_tokens_survive(known_lm):
    answer = "alpha kilo bravo lima charlie mike delta"
    q1 = Sample(id="a", question="kilo lima mike", answer=answer)
    q2 = Sample(id="b", question="papa quebec romeo", answer=answer)
    cfg = _cfg(known_lm, gate=False, rates={"question": 1.0, "answer": 3 / 7})
    a1, a2 = (r.answer.split() for r in compress_dataset([q1, q2], cfg).samples)
    assert a1 != a2
    # Eq. 2: words the question already states are predictable given it, so they go first
    assert not {"kilo", "lima", "mike"} & set(a1)
    assert set(a2) & {"kilo", "lima", "mike"}
    # the contrastive score keeps exactly the words the question makes likelier
    c1 = compress_dataset([q1], _cfg(known_lm, gate=False, contrastive=True,
                                     rates={"question": 1.0, "answer": 3 / 7})).samples[0].answer.split()
    assert set(c1) == {"kilo", "lima", "mike"}


def test_edge_fields_empty_one_token_and_non_ascii(small_zoo):
    texts = {
        "empty": Sample(id="e", question="", context="", answer="yes"),
        "one": Sample(id="o", question="Why?", answer="No"),
        "cjk": Sample(id="c", question="这个研究的主要结论是什么？", answer="结果表明治疗组的死亡率明显降低，差异有统计学意义。"),
        "accents": Sample(id="a", question="Qu'est-ce que la café-au-lait macule signifie à l'examen?",
                          answer="Une tache café-au-lait isolée est fréquente et généralement bénigne chez l'enfant."),
        "emoji": Sample(id="m", question="Is 🙂 a smiley face in the chat log?", answer="Yes 🙂 means a smile 👍 here."),
    }
    res = compress_dataset(list(texts.values()), _cfg(small_zoo.chat_path, gate=False))
    by_id = {s.id: s for s in res.samples}
    assert by_id["e"].question == "" and by_id["e"].context == "" and by_id["e"].answer == "yes"
    assert by_id["o"].question == "Why?" and by_id["o"].answer == "No"        # one word cannot shrink
    for sid in ("c", "a", "m"):
        out, orig = by_id[sid], texts[{"c": "cjk", "a": "accents", "m": "emoji"}[sid]]
        for f in ("question", "answer"):
            comp, src = getattr(out, f), getattr(orig, f)
            assert comp and "\ufffd" not in comp and len(comp) < len(src)
            # word-level deletion: what is left is made of the source's own words (CJK: its characters), in order
            pieces = comp.split() if sid != "c" else list(comp)
            pos = 0
            for p in pieces:
                pos = src.find(p, pos)
                assert pos >= 0, (p, src)
                pos += len(p)
    json.dumps([s.to_record() for s in res.samples], ensure_ascii=False)   # serialisable as written


def test_token_granularity_and_force_keep(small_zoo):
    s = Sample(id="n", question="What was the rate in 1995 and in 1997 among the 1099 women screened?",
               answer="The adherence rose from 61% to 71% after the first year of the telephone counseling program.")
    res = compress_dataset([s], _cfg(small_zoo.chat_path, gate=False, force_keep=r"\d"))
    for num in ("1995", "1997", "1099"):
        assert num in res.samples[0].question
    for num in ("61%", "71%"):
        assert num in res.samples[0].answer
    tok = compress_dataset([s], _cfg(small_zoo.chat_path, gate=False, granularity="token"))
    assert tok.stats["keep_rate"] == pytest.approx(0.5, abs=0.1)


def test_baselines_are_selectable(known_lm):
    assert {"damoc", "llmlingua", "longllmlingua"} <= set(COMPRESSORS.names())
    ctx = "alpha in order to bravo.\ncharlie the study delta.\nkilo results of lima.\necho as well foxtrot."
    s = Sample(id="x", question="kilo lima", context=ctx, answer="kilo golf lima hotel")
    long_ = compress_dataset([s], _cfg(known_lm, compressor="longllmlingua")).samples[0]
    assert long_.question == "kilo lima"                          # LongLLMLingua never compresses the question
    assert long_.extra["compression"]["bertscore"] is None        # baselines are not gated by default
    assert set(long_.context.split()) <= set(ctx.split())
    lingua = compress_dataset([s], _cfg(known_lm, compressor="LLMLingua"))
    assert lingua.stats["compressor"] == "llmlingua" and 0 < lingua.stats["keep_rate"] < 1
    with pytest.raises(Exception, match="unknown compressor"):
        compress_dataset([s], _cfg(known_lm, compressor="nope"))


def test_longllmlingua_coarse_stage_keeps_the_question_document(known_lm, monkeypatch):
    from damoc.compress import baselines

    monkeypatch.setattr(baselines, "COARSE_EXTRA_TOKENS", 0)      # no slack: the coarse stage must choose
    ctx = ("alpha bravo charlie delta\necho foxtrot golf hotel\nkilo india lima juliet\n"
           "november oscar papa quebec\nromeo sierra tango uniform")
    s = Sample(id="x", question="kilo lima", context=ctx, answer="victor whiskey")
    out = compress_dataset([s], _cfg(known_lm, compressor="longllmlingua", rate=0.3)).samples[0]
    kept = set(out.context.split())
    # the document that echoes the question ranks first (lowest question loss) and survives the coarse cut
    assert kept & {"kilo", "india", "lima", "juliet"}
    lines = [set(ln.split()) for ln in ctx.split("\n")]
    assert sum(1 for ln in lines if not ln & kept) >= 2        # whole documents were dropped


def test_config_errors_are_clear(known_lm, tmp_path):
    s = [Sample(id="x", question="alpha", answer="bravo")]
    for bad in (dict(rate=0), dict(rate=1.5), dict(rates={"title": 0.5}), dict(granularity="char"),
                dict(force_keep="(")):
        with pytest.raises(ConfigError) as e:
            compress_dataset(s, _cfg(known_lm, **bad))
        assert e.value.hint
    with pytest.raises(ConfigError, match="no compressor model"):
        compress_dataset(s, CompressConfig())
    with pytest.raises(ConfigError, match="no config.json"):
        compress_dataset(s, _cfg(str(tmp_path)))


def test_results_are_cached_by_content_and_settings(known_lm, settings):
    s = [Sample(id="x", question="alpha bravo charlie delta", answer="echo foxtrot golf hotel")]
    first = compress_dataset(s, _cfg(known_lm, gate=False, use_cache=True), settings=settings)
    again = compress_dataset(s, _cfg(known_lm, gate=False, use_cache=True), settings=settings)
    assert not first.stats["cached"] and again.stats["cached"]
    assert [x.to_record() for x in again.samples] == [x.to_record() for x in first.samples]
    assert any((settings.cache_dir / "compress").iterdir())
    other = compress_dataset(s, _cfg(known_lm, gate=False, use_cache=True, rate=0.7), settings=settings)
    assert not other.stats["cached"]
    changed = [Sample(id="x", question="alpha bravo charlie delta", answer="echo foxtrot golf india")]
    assert not compress_dataset(changed, _cfg(known_lm, gate=False, use_cache=True), settings=settings).stats["cached"]


# -- the gate and the rewrite loop ----------------------------------------------------------------------------

def test_gate_scores_and_paper_equivalent_threshold(settings):
    from damoc.compress.gate import BertScoreGate, PAPER_RESCALED

    g = BertScoreGate(settings=settings)
    assert g.describe()["rescaled"] is False
    # paper's 0.9 on roberta-large, mapped through MiniLM's baseline
    assert g.threshold() == pytest.approx(0.135371 + PAPER_RESCALED * (1 - 0.135371))
    assert 0.45 < g.threshold() < 0.55
    orig = {"question": "Does aspirin reduce the risk of stroke in older adults?",
            "answer": "Low-dose aspirin reduced ischemic stroke but raised the risk of major bleeding."}
    comp = {"question": "aspirin reduce risk stroke older adults?",
            "answer": "Low-dose aspirin reduced ischemic stroke raised risk major bleeding."}
    other = {"question": "Which river flows through the capital city?", "answer": "The Danube flows through it."}
    same, compressed, unrelated, empty = g.score([orig] * 4, [orig, comp, other, {"question": "", "answer": ""}])
    assert same.f1 == 1.0 and empty.f1 == 0.0
    assert unrelated.f1 < g.threshold() < compressed.f1 < 1.0
    # a field longer than the encoder's 512 positions is scored in chunks instead of being truncated
    long_ref = {"context": " ".join(["Patients received aspirin daily and were followed for stroke events."] * 80)}
    long_cmp = {"context": " ".join(["Patients received aspirin followed stroke events."] * 80)}
    (lg,) = g.score([long_ref], [long_cmp])
    assert 0.5 < lg.f1 < 1.0
    assert BertScoreGate(settings=settings, threshold=0.9).threshold() == 0.9


class _ScriptedBackend:
    """Stands in for the generation backend to drive the loop: replies are scripted per round."""

    def __init__(self, tokenizer, replies):
        self.tokenizer, self.replies, self.prompts, self.max_length = tokenizer, replies, [], 4096

    def generate(self, prompts, *, max_new_tokens=64, stop=None, batch_size=None):
        self.prompts.append(list(prompts))
        return [self.replies[len(self.prompts) - 1](p) for p in prompts]

    def close(self):
        pass


def test_rewrite_loop_retries_with_negative_examples(known_lm, monkeypatch):
    from damoc.compress import core
    from damoc.models import load_tokenizer

    samples = [Sample(id="one", question="alpha bravo", answer="charlie delta echo foxtrot"),
               Sample(id="two", question="golf hotel india", answer="juliet kilo lima mike november")]
    # a threshold between the two samples' compressed scores, so exactly one fails the gate
    probe = compress_dataset(samples, _cfg(known_lm, threshold=0.0))
    scores = [x.extra["compression"]["bertscore_compressed"] for x in probe.samples]
    assert scores[0] != scores[1]
    bad = scores.index(min(scores))
    good = 1 - bad
    thr = sum(scores) / 2
    orig = samples[bad]
    # round 1 writes unrelated words; round 2 restores the original wording (allowed by a wide length tolerance)
    wrong = lambda p: " oscar papa\nAnswer: quebec romeo sierra\nReason: shorter"                     # noqa: E731
    right = lambda p: f" {orig.question}\nAnswer: {orig.answer}\nReason: kept the facts"               # noqa: E731
    backend = _ScriptedBackend(load_tokenizer(known_lm), [wrong, right])
    monkeypatch.setattr(core, "_rewriter_backend", lambda path, device, scorer: backend)
    res = compress_dataset(samples, _cfg(known_lm, threshold=thr, rewriter=known_lm, max_rounds=2, n_examples=1,
                                         length_tolerance=2.0))
    st = res.stats
    assert (st["passed_direct"], st["rewritten_round_1"], st["rewritten_round_2"], st["fell_back"]) == (1, 0, 1, 0)
    fixed = res.samples[bad]
    assert fixed.extra["compression"]["status"] == "rewritten_2" and fixed.extra["compression"]["rounds"] == 2
    assert fixed.extra["compression"]["bertscore"] == 1.0 and fixed.answer == orig.answer
    assert res.samples[good].extra["compression"]["status"] == "direct"
    r1, r2 = backend.prompts[0][0], backend.prompts[1][0]
    # round 1 shows the original, the compressed text and a passing sample as the example
    assert orig.answer in r1 and probe.samples[bad].answer in r1
    assert "[Examples" in r1 and res.samples[good].answer in r1
    assert "[Rejected" not in r1
    # round 2 adds the failed attempt and its score as a negative example
    assert "[Rejected" in r2 and "quebec romeo sierra" in r2 and re.search(r"similarity -?0\.\d{3}", r2)
    assert st["rewrite"]["attempts"] == 2


def test_rewrite_with_zoo_model_falls_back_and_accounts(small_zoo):
    samples = [Sample(id=f"s{i}", question=q, answer=a) for i, (q, a) in enumerate([
        ("Which town hosts the river market?", "The river market is held in Dunny every spring morning."),
        ("Who repaired the old mill wheel?", "The miller's daughter repaired the old mill wheel last summer."),
        ("What colour is the harbour flag?", "The harbour flag is blue with a single white star."),
    ])]
    path = small_zoo.chat_path
    res = compress_dataset(samples, _cfg(path, rewriter=path, threshold=0.999, max_rounds=2, max_new_tokens=24))
    st = res.stats
    assert st["samples"] == 3
    assert st["passed_direct"] + st["rewritten_round_1"] + st["rewritten_round_2"] + st["fell_back"] == 3
    assert st["passed_direct"] == 0
    assert st["rewrite"]["attempts"] >= 3
    for s, orig in zip(res.samples, samples):
        c = s.extra["compression"]
        if c["status"] == "fell_back":        # never passed: back to the original text, after every round
            assert (s.question, s.answer) == (orig.question, orig.answer) and c["rounds"] == 2
    if st["fell_back"] == 3:
        assert st["keep_rate"] == 1.0
