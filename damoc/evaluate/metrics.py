"""The evaluation metrics. Each is a `Metric`, `(EvalContext) -> MetricOutput`, registered in `METRICS` where it is
defined (with its family and description, written once).

Scale: squad_f1, bertscore_rouge and mc_accuracy are percentages (0-100, as the paper's tables); answer_loglik is
nats per answer token (<= 0, higher is better).
"""
from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from damoc.errors import DataError
from damoc.evaluate.text import UnicodeRougeTokenizer, mean_stderr, squad_scores
from damoc.plugins import Registry

if TYPE_CHECKING:
    from damoc.evaluate.core import EvalContext


@dataclass
class MetricOutput:
    per_item: list[float]
    details: dict[str, Any] = field(default_factory=dict)
    """Further aggregate figures (e.g. exact match next to F1), each as (score, stderr) or a plain value."""
    item_details: list[dict[str, Any]] = field(default_factory=list)


class Metric:
    """A metric: scores every item of an `EvalContext`. Family `generate` metrics read greedy answers, `loglik`
    ones teacher-forced log-likelihoods (evaluation generates only when a `generate` metric is asked for)."""

    def __init__(self, score: Callable[[EvalContext], MetricOutput]) -> None:
        self.score = score
        functools.update_wrapper(self, score)

    def __call__(self, ctx: EvalContext) -> MetricOutput:
        return self.score(ctx)


METRICS: Registry[Metric] = Registry("metric", Metric)


def metric(name: str, *, family: str, description: str,
           aliases: tuple[str, ...] = ()) -> Callable[[Callable[[EvalContext], MetricOutput]], Metric]:
    """Register the decorated function as the metric `name`, at its definition."""
    def deco(score: Callable[[EvalContext], MetricOutput]) -> Metric:
        return METRICS.put(name, Metric(score), family=family, description=description, aliases=aliases)
    return deco


@metric("squad_f1", family="generate", aliases=("f1", "squad"),
        description="SQuAD token F1 (and exact match) of the greedy answer, max over references; percent")
def squad_f1(ctx: EvalContext) -> MetricOutput:
    """SQuAD token F1 of the greedy answer, max over `Sample.references`; exact match in details."""
    preds = ctx.predictions()
    f1s, ems = [], []
    for pred, s in zip(preds, ctx.samples):
        f1, em = squad_scores(pred, s.references)
        f1s.append(100 * f1)
        ems.append(100 * em)
    return MetricOutput(f1s, {"exact_match": mean_stderr(ems)}, [{"f1": f, "em": e} for f, e in zip(f1s, ems)])


_SCORERS: dict[tuple[str, str], Any] = {}


def _bertscorer(encoder: str, device: str) -> Any:
    """One BERTScorer per (encoder, device) per process: building it is cheap, re-loading the encoder is not."""
    key = (encoder, device)
    if key not in _SCORERS:
        from bert_score import BERTScorer

        from damoc.encoders import encoder_num_layers

        # A local folder needs num_layers explicitly (feasibility.md T5). No baseline rescaling: there is no
        # baseline file for MiniLM, so scores are raw cosine-based F1 (typically 0.3-1.0, not 0-1 spread).
        layers = encoder_num_layers(encoder)
        kw: dict[str, Any] = {"num_layers": layers} if layers else {"lang": "en"}
        _SCORERS[key] = BERTScorer(model_type=encoder, device=device, rescale_with_baseline=False, **kw)
    return _SCORERS[key]


def bertscore_f1(candidates: list[str], references: list[list[str]], *, encoder: str, device: str = "cpu",
                 batch_size: int = 64) -> list[float]:
    """BERTScore F1 in [0, 1] (max over each item's references). Empty candidates or references score 0 without
    reaching bert-score (which would print a warning to stdout and break `--json` output)."""
    out = [0.0] * len(candidates)
    idx = [i for i, (c, rs) in enumerate(zip(candidates, references)) if c.strip() and any(r.strip() for r in rs)]
    if not idx:
        return out
    scorer = _bertscorer(encoder, device)
    with contextlib.redirect_stdout(io.StringIO()):       # bert-score prints progress notes on stdout
        _, _, f = scorer.score([candidates[i] for i in idx], [[r for r in references[i] if r.strip()] for i in idx],
                               batch_size=batch_size, verbose=False)
    for i, v in zip(idx, f.tolist()):
        out[i] = float(v)
    return out


def rouge_l(candidates: list[str], references: list[list[str]]) -> list[float]:
    """ROUGE-L F-measure in [0, 1] with rouge-score (max over references), Porter stemming, Unicode-aware tokens."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=UnicodeRougeTokenizer())
    out = []
    for c, rs in zip(candidates, references):
        rs = [r for r in rs if r.strip()]
        out.append(max((scorer.score(r, c)["rougeL"].fmeasure for r in rs), default=0.0))
    return out


@metric("bertscore_rouge", family="generate", aliases=("bertscore", "rouge"),
        description="(BERTScore F1 + ROUGE-L F)/2 of the greedy answer, offline MiniLM encoder; percent")
def bertscore_rouge(ctx: EvalContext) -> MetricOutput:
    """The paper's generative score: (BERTScore F1 + ROUGE-L F) / 2, per item, in percent."""
    preds = ctx.predictions()
    refs = [s.references for s in ctx.samples]
    device = ctx.metric_device()
    bs = bertscore_f1(preds, refs, encoder=ctx.encoder(), device=device)
    rl = rouge_l(preds, refs)
    per = [100 * (b + r) / 2 for b, r in zip(bs, rl)]
    return MetricOutput(per, {"bertscore_f1": mean_stderr([100 * b for b in bs]),
                              "rouge_l": mean_stderr([100 * r for r in rl])},
                        [{"bertscore_f1": b, "rouge_l": r} for b, r in zip(bs, rl)])


def correct_index(sample: Any) -> int:
    """Index of the right choice: `extra["answer_index"]`, else the choice equal to the answer text."""
    idx = sample.extra.get("answer_index")
    if isinstance(idx, int) and 0 <= idx < len(sample.choices):
        return idx
    if sample.answer in sample.choices:
        return sample.choices.index(sample.answer)
    raise DataError(f"sample {sample.id!r}: the answer is not one of its choices",
                    "set extra.answer_index or make the answer the text of the right choice")


@metric("mc_accuracy", family="loglik", aliases=("accuracy", "mmlu", "mc"),
        description="multiple-choice accuracy by option log-likelihood (MMLU style); percent")
def mc_accuracy(ctx: EvalContext) -> MetricOutput:
    """Multiple-choice accuracy by option log-likelihood (lm-evaluation-harness style): the option with the highest
    summed log-probability after the prompt is the prediction (acc); `acc_norm` divides by the option's length in
    characters (lm-eval's acc_norm). Options are scored as the fine-tune frames answers (the choice text)."""
    samples = ctx.samples
    bad = [s.id for s in samples if not s.choices]
    if bad:
        raise DataError(f"mc_accuracy needs choices; {len(bad)} sample(s) have none (first: {bad[0]!r})",
                        "use --metric squad_f1 or bertscore_rouge for open answers")
    from damoc.backends.base import continuation_text

    ctxs, conts, owners = [], [], []
    for k, (s, p) in enumerate(zip(samples, ctx.prompts)):
        for c in s.choices:
            ctxs.append(p)
            conts.append(continuation_text(p, c))
            owners.append(k)
    lls = ctx.loglikelihood(ctxs, conts)
    per, norm, items = [], [], []
    pos = 0
    for s in samples:
        n = len(s.choices)
        scores = [ll for ll, _ in lls[pos:pos + n]]
        lengths = [max(1, len(conts[pos + j])) for j in range(n)]
        pos += n
        gold = correct_index(s)
        pick = max(range(n), key=lambda j: scores[j])
        pick_n = max(range(n), key=lambda j: scores[j] / lengths[j])
        per.append(100.0 * (pick == gold))
        norm.append(100.0 * (pick_n == gold))
        items.append({"pred_index": pick, "gold_index": gold, "loglik": scores})
    return MetricOutput(per, {"acc_norm": mean_stderr(norm)}, items)


@metric("answer_loglik", family="loglik", aliases=("loglik",),
        description="teacher-forced mean log-likelihood per token of the reference answer; nats, higher is better")
def answer_loglik(ctx: EvalContext) -> MetricOutput:
    """Teacher-forced mean log-likelihood per token of the reference answer (`Sample.answer`) after the prompt: a
    low-noise secondary signal when greedy scores sit near chance (zoo-spike.md)."""
    from damoc.backends.base import continuation_text

    conts = [continuation_text(p, s.answer) for s, p in zip(ctx.samples, ctx.prompts)]
    lls = ctx.loglikelihood(ctx.prompts, conts)
    per = [ll / n if n else 0.0 for ll, n in lls]
    return MetricOutput(per, {}, [{"loglik": ll, "tokens": n} for ll, n in lls])
