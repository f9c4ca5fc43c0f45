"""Metrics against hand-computed values and evaluation on real tiny models (rigged and fine-tuned)."""
from __future__ import annotations

import math

import pytest

from damoc.data.sample import Sample
from damoc.errors import ConfigError, DataError, UnknownNameError
from damoc.evaluate import (METRICS, build_prompts, evaluate, f1_em, mean_stderr, normalize_answer, pick_metric,
                            squad_scores)
from damoc.events import ListReporter, StageFinished, StageProgress, StageStarted
from tests.helpers.tiny_models import make_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

COLORS = {"cat": "red", "dog": "blue", "bird": "green", "lake": "two"}


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("llama"), arch="llama", hidden=48)


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("chat"), arch="llama", chat=True, hidden=48)


def qa(n: int = 1) -> list[Sample]:
    return [Sample(id=f"{k}{i}", question=f"what is the color of the {k}", answer=v)
            for i in range(n) for k, v in COLORS.items()]


# -- text metrics, by hand ------------------------------------------------------------------------------

def test_squad_normalisation_f1_em():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    # pred {cat, sat} vs ref {cat, sat, down}: P = 1, R = 2/3, F1 = 0.8
    assert f1_em("the cat sat", "a cat sat down") == pytest.approx((0.8, 0.0))
    assert f1_em("Paris!", "paris") == (1.0, 1.0)
    assert f1_em("", "") == (1.0, 1.0) and f1_em("x", "") == (0.0, 0.0)
    # repeated tokens count with multiplicity: pred [a1 a1 b] vs ref [a1 b b] -> common 2, P = R = 2/3
    assert f1_em("a1 a1 b", "a1 b b")[0] == pytest.approx(2 / 3)
    # max over references, F1 and EM separately
    assert squad_scores("red car", ["blue car", "red car"]) == (1.0, 1.0)
    assert squad_scores("red", ["red car", "rose"]) == pytest.approx((2 / 3, 0.0))
    assert squad_scores("x", []) == (0.0, 0.0)


def test_stderr_formula():
    mean, se = mean_stderr([0, 100, 100, 0])
    assert mean == 50 and se == pytest.approx(math.sqrt((4 * 50 ** 2) / 3) / 2)   # sample sd / sqrt(n)
    assert mean_stderr([7.0]) == (7.0, 0.0) and mean_stderr([]) == (0.0, 0.0)


def test_rouge_l_by_hand_and_unicode():
    from damoc.evaluate.metrics import rouge_l

    # LCS("the cat sat on the mat", "the cat lay on the mat") = the cat on the mat = 5 of 6 -> P = R = F = 5/6
    assert rouge_l(["the cat sat on the mat"], [["the cat lay on the mat"]])[0] == pytest.approx(5 / 6)
    # stemmed: "dogs running" -> [dog, run] vs [the, dog, run]: LCS 2, P 1, R 2/3 -> F 0.8 (max over references)
    assert rouge_l(["dogs running"], [["cats", "the dog runs"]])[0] == pytest.approx(0.8)
    assert rouge_l(["Ελληνικά κείμενα"], [["Ελληνικά κείμενα"]])[0] == pytest.approx(1.0)
    assert rouge_l(["中文测试"], [["中文"]])[0] == pytest.approx(2 * (0.5 * 1) / 1.5)
    assert rouge_l(["anything"], [[""]])[0] == 0.0


def test_bertscore_offline_encoder(capsys):
    from damoc.encoders import default_encoder_path
    from damoc.evaluate.metrics import bertscore_f1

    enc = default_encoder_path()
    got = bertscore_f1(["the cat sat on the mat", "", "quantum chromodynamics of quarks"],
                       [["the cat sat on the mat"], ["a reference"], ["a cat on a mat"]], encoder=enc)
    assert got[0] == pytest.approx(1.0, abs=1e-4)
    assert got[1] == 0.0                                   # empty prediction: 0, without bert-score's stdout note
    assert 0.0 < got[2] < 0.9
    assert capsys.readouterr().out == ""


def test_pick_metric_rules():
    mc = [Sample(id="1", question="q", answer="a", choices=["a", "b"])]
    assert pick_metric(mc) == "mc_accuracy"
    assert pick_metric(qa()) == "squad_f1"
    long = [Sample(id="1", question="q", answer=" ".join(["word"] * 11))]
    assert pick_metric(long) == "bertscore_rouge"
    with pytest.raises(DataError):
        pick_metric([])


def test_pick_metric_on_the_paper_datasets(shared_data):
    from damoc.data import load_samples

    want = {"pubmedqa/test.jsonl": "bertscore_rouge", "squad/test.jsonl": "squad_f1",
            "mmlu/dev.jsonl": "mc_accuracy", "alpaca/test.jsonl": "bertscore_rouge"}
    for rel, metric in want.items():
        assert pick_metric(load_samples(shared_data / rel, skip_bad=True).samples[:300]) == metric, rel


# -- prompts -------------------------------------------------------------------------------------------------

def test_few_shot_prompts(llama_dir, chat_dir):
    from damoc.models import load_tokenizer

    pool = [Sample(id=f"p{i}", question=f"pool question {i}", answer=f"answer {i}") for i in range(10)]
    items = qa()
    plain = build_prompts(load_tokenizer(llama_dir), items, few_shot=2, few_shot_pool=pool, seed=5)
    shots = [line for line in plain[0].split("\n\n")[:2]]
    assert all(s.startswith("Question: pool question") and "\nAnswer: answer" in s for s in shots)
    assert all(p.split("\n\n")[:2] == shots for p in plain)             # the same shots before every item
    assert plain[0].endswith("Question: what is the color of the cat\nAnswer:")
    assert build_prompts(load_tokenizer(llama_dir), items, few_shot=2, few_shot_pool=pool, seed=5) == plain
    chat = build_prompts(load_tokenizer(chat_dir), items, few_shot=2, few_shot_pool=pool, seed=5)
    assert chat[0].count("<|assistant|>") == 3 and chat[0].endswith("<|assistant|>\n")
    # an item of the evaluation set is never its own example
    own = build_prompts(load_tokenizer(llama_dir), items, few_shot=3, few_shot_pool=items + pool[:3])
    assert "color of the" not in own[0].rsplit("\n\n", 1)[0]
    with pytest.raises(ConfigError, match="pool"):
        build_prompts(load_tokenizer(llama_dir), items, few_shot=1)


# -- metrics through evaluate --------------------------------------------------------------------------------

class ScriptedBackend:
    """A backend double with fixed answers: checks evaluate's aggregation exactly (real models are tested below)."""

    name = "scripted"

    def __init__(self, tokenizer, answers):
        self.tokenizer, self.answers, self.calls = tokenizer, answers, []

    def generate(self, prompts, *, max_new_tokens=64, stop=None, batch_size=None):
        self.calls.append((len(prompts), max_new_tokens, stop))
        return [self.answers[p.split("the ")[-1].split("\n")[0]] for p in prompts]

    def loglikelihood(self, contexts, continuations, *, batch_size=None):
        return [(-1.0 * len(c), max(1, len(c))) for c in continuations]

    def close(self):
        raise AssertionError("evaluate must not close a backend it was given")


def test_squad_f1_aggregation(llama_dir):
    from damoc.models import load_tokenizer

    be = ScriptedBackend(load_tokenizer(llama_dir), {"cat": " red \n", "dog": "the blue", "bird": "green tree",
                                                     "lake": "seven"})
    res = evaluate(be, qa(), metric="squad_f1")
    per = [100.0, 100.0, 100 * 2 / 3, 0.0]                    # "green tree" vs "green": P 1/2, R 1 -> 2/3
    assert res.per_item == pytest.approx(per)
    assert (res.score, res.stderr) == pytest.approx(mean_stderr(per))
    assert res.secondary["exact_match"] == pytest.approx(mean_stderr([100.0, 100.0, 0.0, 0.0]))
    assert res.secondary["answer_loglik"][0] == pytest.approx(-1.0)
    assert be.calls[0][2] == ["\n"]                           # short answers stop at the line
    assert res.predictions[0]["prediction"] == "red" and res.n == 4


def _rig_constant_logits(model, tokenizer, favour: dict[str, float]):
    """Make the next-token distribution the same at every position: zero the final norm (hidden state 0) and give
    lm_head a bias. log p(t) is then bias[t] - logsumexp(bias) whatever the context."""
    import torch

    vocab = model.config.vocab_size
    bias = torch.zeros(vocab)
    for text, value in favour.items():
        for t in tokenizer(text, add_special_tokens=False)["input_ids"]:
            bias[t] = value
    model.model.norm.weight.data.zero_()
    head = torch.nn.Linear(model.config.hidden_size, vocab, bias=True)
    head.weight.data.zero_()
    head.bias.data.copy_(bias)
    model.lm_head = head
    return torch.log_softmax(bias, -1)


def test_mc_accuracy_on_a_rigged_model(llama_dir):
    from damoc.backends.base import continuation_text
    from damoc.models import load_causal_lm, load_tokenizer

    tok = load_tokenizer(llama_dir)
    model = load_causal_lm(llama_dir, device="cpu")
    logp = _rig_constant_logits(model, tok, {" blue": 6.0})
    choices = ["red", "blue", "green", "two"]
    items = [Sample(id=f"m{i}", question=f"what is the color of the {k}", answer=v, choices=choices)
             for i, (k, v) in enumerate(COLORS.items())]
    res = evaluate(model, items, tokenizer=tok)               # auto -> mc_accuracy
    assert res.metric == "mc_accuracy"
    assert res.per_item == [0.0, 100.0, 0.0, 0.0]             # the rigged model always picks "blue"
    assert res.score == 25.0 and res.stderr == pytest.approx(mean_stderr([0, 100, 0, 0])[1])
    assert all(p["prediction"] == "blue" for p in res.predictions)
    # and the answer log-likelihood is the hand sum under the constant distribution
    prompts = build_prompts(tok, items)
    want = []
    for p, s in zip(prompts, items):
        ids = tok(continuation_text(p, s.answer), add_special_tokens=False)["input_ids"]
        want.append(sum(logp[t].item() for t in ids) / len(ids))
    assert res.secondary["answer_loglik"][0] == pytest.approx(sum(want) / len(want), abs=1e-4)


def test_generation_stops_at_newline_for_short_answers(llama_dir):
    res = evaluate(llama_dir, qa(), metric="squad_f1", max_new_tokens=24)
    assert res.details["stop"] == ["\n"] and res.details["backend"] == "transformers"
    assert all("\n" not in p["prediction"] for p in res.predictions)
    assert res.score < 20                                     # a random model does not know the colors


def test_finetuned_chat_model_beats_its_base(chat_dir):
    from damoc.finetune import FinetuneConfig, finetune

    train = qa(8)
    rep = ListReporter()
    base = evaluate(chat_dir, qa(), metric="squad_f1")
    ft = finetune(chat_dir, train, FinetuneConfig(lr=5e-3, effective_batch=8, micro_batch=8, min_steps=40))
    tuned = evaluate(ft, qa(), reporter=rep)                  # a FinetuneResult is accepted as is
    assert tuned.metric == "squad_f1"
    assert tuned.score >= 75 and tuned.score > base.score + 50
    assert tuned.secondary["answer_loglik"][0] > base.secondary["answer_loglik"][0] + 1.0
    kinds = [type(e) for e in rep.events]
    assert kinds[0] is StageStarted and kinds[-1] is StageFinished and rep.events[-1].status == "ok"
    progress = [e for e in rep.events if isinstance(e, StageProgress)]
    assert progress[-1].done == progress[-1].total == 8       # 4 generations + 4 answer scores


def test_bertscore_rouge_through_evaluate(llama_dir):
    from damoc.models import load_tokenizer

    refs = {"cat": "the cat is red", "dog": "it is blue", "bird": "green", "lake": "two"}
    be = ScriptedBackend(load_tokenizer(llama_dir), {**refs, "bird": ""})
    items = [Sample(id=k, question=f"what is the color of the {k}", answer=v) for k, v in refs.items()]
    res = evaluate(be, items, metric="bertscore_rouge", secondary=())
    assert res.per_item[0] == pytest.approx(100.0, abs=0.01) and res.per_item[3] == pytest.approx(100.0, abs=0.01)
    assert res.per_item[2] == 0.0                              # an empty answer scores 0
    assert set(res.secondary) == {"bertscore_f1", "rouge_l"}
    assert be.calls[0][2] == ["\nQuestion:"]


def test_errors(llama_dir, tmp_path):
    with pytest.raises(DataError, match="choices"):
        evaluate(llama_dir, qa(), metric="mc_accuracy")
    with pytest.raises(UnknownNameError):
        evaluate(llama_dir, qa(), metric="bleu")
    with pytest.raises(DataError, match="reference"):
        evaluate(llama_dir, [Sample(id="x", question="q")], metric="squad_f1")
    with pytest.raises(ConfigError, match="does not exist"):
        evaluate(tmp_path / "missing", qa())
    with pytest.raises(DataError):
        evaluate(llama_dir, [])
    assert {"squad_f1", "bertscore_rouge", "mc_accuracy", "answer_loglik"} <= set(METRICS.names())


def test_zoo_candidate_zero_shot(test_zoo, laws_task):
    from damoc.data import load_samples

    task = laws_task
    test = load_samples(task.test_path).samples[:8]
    res = evaluate(test_zoo[0].chat_path, test, metric=task.metric)
    assert res.n == 8 and 0 <= res.score <= 100 and res.secondary["answer_loglik"][0] < 0


def test_zoo_proxy_finetune_raises_answer_loglik(test_zoo, laws_task):
    """A short proxy fine-tune of a real zoo candidate moves the teacher-forced answer score the right way."""
    from damoc.data import load_samples
    from damoc.finetune import FinetuneConfig, finetune

    task = laws_task
    train = load_samples(task.train_path).samples[:64]
    test = load_samples(task.test_path).samples[:40]
    cand = test_zoo[0]
    zero = evaluate(cand.chat_path, test, metric=task.metric)
    ft = finetune(cand.chat_path, train, FinetuneConfig(lr=1e-3, effective_batch=8, min_steps=40))
    assert ft.steps == 40 and ft.final_loss < ft.losses[0]
    tuned = evaluate(ft, test, metric=task.metric)
    assert tuned.secondary["answer_loglik"][0] > zero.secondary["answer_loglik"][0] + 0.3
