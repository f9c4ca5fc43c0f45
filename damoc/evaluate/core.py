"""`evaluate`: prompts (zero- or few-shot) -> the backend -> a metric, with per-item scores and standard errors."""
from __future__ import annotations

import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from damoc.errors import ConfigError, DataError
from damoc.events import Reporter, StageTracker
from damoc.evaluate.metrics import MetricOutput
from damoc.evaluate.text import mean_stderr
from damoc.settings import Settings

SHORT_ANSWER_WORDS = 10
"""`pick_metric`: a median reference answer of at most this many words is extractive/short (squad_f1)."""
N_PREDICTIONS_KEPT = 20


@dataclass
class EvalResult:
    metric: str
    score: float
    stderr: float
    n: int
    per_item: list[float] = field(default_factory=list)
    secondary: dict[str, tuple[float, float]] = field(default_factory=dict)
    """{metric name: (score, stderr)}: the secondary metrics and the primary's extra figures (e.g. exact_match)."""
    predictions: list[dict[str, Any]] = field(default_factory=list)
    """The first few items: id, prediction, reference (for logs)."""
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, *, per_item: bool = True) -> dict[str, Any]:
        d = {"metric": self.metric, "score": self.score, "stderr": self.stderr, "n": self.n,
             "secondary": {k: list(v) for k, v in self.secondary.items()}, "predictions": self.predictions,
             "seconds": self.seconds, "details": self.details}
        if per_item:
            d["per_item"] = self.per_item
        return d


def pick_metric(samples: Sequence[Any]) -> str:
    """The metric for `metric="auto"`, as the paper assigns them per task type:
    most samples have `choices` -> mc_accuracy; the median reference answer has at most SHORT_ANSWER_WORDS (10)
    words -> squad_f1 (extractive / short QA); otherwise -> bertscore_rouge (generative answers)."""
    if not samples:
        raise DataError("no samples to evaluate", "check the test file")
    if sum(1 for s in samples if s.choices) * 2 >= len(samples):
        return "mc_accuracy"
    words = statistics.median(len((s.answer or "").split()) for s in samples)
    return "squad_f1" if words <= SHORT_ANSWER_WORDS else "bertscore_rouge"


def build_prompts(tokenizer: Any, samples: Sequence[Any], *, few_shot: int = 0,
                  few_shot_pool: Sequence[Any] | None = None, seed: int = 0, chat: bool | None = None) -> list[str]:
    """The formatted prompt of each sample, with `few_shot` solved examples in front (the paper's Table 1 few-shot
    baseline). The same k examples, drawn once with `seed` from the pool, precede every item, so every candidate sees
    identical shots. Chat models get them as earlier user/assistant turns, Base models as Question/Answer blocks."""
    from damoc.models import format_prompt, has_chat_template

    shots: list[Any] = []
    if few_shot > 0:
        if not few_shot_pool:
            raise ConfigError(f"few_shot={few_shot} needs a pool of solved examples",
                              "pass few_shot_pool (usually the training set)")
        eval_ids = {s.id for s in samples}
        pool = [s for s in few_shot_pool if s.id not in eval_ids and (s.answer or "").strip()] or list(few_shot_pool)
        shots = random.Random(seed).sample(pool, min(few_shot, len(pool)))
    use_chat = has_chat_template(tokenizer) if chat is None else (chat and has_chat_template(tokenizer))
    prompts = []
    for s in samples:
        if use_chat:
            msgs: list[dict[str, str]] = []
            for ex in shots:
                msgs += [{"role": "user", "content": ex.prompt}, {"role": "assistant", "content": ex.answer}]
            msgs.append({"role": "user", "content": s.prompt})
            prompts.append(tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
        else:
            prefix = "".join(f"{format_prompt(tokenizer, ex.prompt, chat=False)} {ex.answer.strip()}\n\n"
                             for ex in shots)
            prompts.append(prefix + format_prompt(tokenizer, s.prompt, chat=False))
    return prompts


class EvalContext:
    """What a metric sees: samples, their prompts, the backend; generation and scoring are cached and report
    progress."""

    def __init__(self, samples: Sequence[Any], prompts: list[str], backend: Any, tracker: StageTracker, *,
                 max_new_tokens: int, stop: list[str], batch_size: int | None, settings: Settings) -> None:
        self.samples, self.prompts, self.backend, self.tracker = list(samples), prompts, backend, tracker
        self.max_new_tokens, self.stop, self.batch_size, self.settings = max_new_tokens, stop, batch_size, settings
        self._preds: list[str] | None = None

    def _chunk(self) -> int:
        # progress granularity; vLLM schedules its own batches and wants large submissions
        if getattr(self.backend, "name", "") == "vllm":
            return 512
        return max(1, (self.batch_size or 16) * 2)

    def predictions(self) -> list[str]:
        if self._preds is None:
            preds: list[str] = []
            step = self._chunk()
            for i in range(0, len(self.prompts), step):
                preds += self.backend.generate(self.prompts[i:i + step], max_new_tokens=self.max_new_tokens,
                                               stop=self.stop, batch_size=self.batch_size)
                self.tracker.advance(len(self.prompts[i:i + step]), "generate")
            self._preds = [p.strip() for p in preds]
        return self._preds

    def loglikelihood(self, contexts: list[str], continuations: list[str]) -> list[tuple[float, int]]:
        out: list[tuple[float, int]] = []
        step = self._chunk() * 2
        for i in range(0, len(contexts), step):
            out += self.backend.loglikelihood(contexts[i:i + step], continuations[i:i + step],
                                              batch_size=self.batch_size)
            self.tracker.advance(len(contexts[i:i + step]), "score")
        return out

    def encoder(self) -> str:
        from damoc.encoders import encoder_path

        return encoder_path(self.settings)

    def metric_device(self) -> str:
        from damoc.models import resolve_device

        return resolve_device(self.settings.device or "auto")


def _work(metric: str, samples: Sequence[Any]) -> int:
    """Progress units a metric costs: one per generation or per scored continuation."""
    if metric == "mc_accuracy":
        return sum(len(s.choices or ()) for s in samples)
    return len(samples)


def _auto_max_new_tokens(tokenizer: Any, samples: Sequence[Any]) -> int:
    """Room for ~1.5x the 95th-percentile reference length (+8), between 8 and 512 tokens."""
    lengths = sorted(max((len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in s.references),
                         default=1) for s in samples)
    p95 = lengths[min(len(lengths) - 1, int(0.95 * len(lengths)))]
    return max(8, min(512, int(1.5 * p95) + 8))


def _stop_for(metric: str) -> list[str]:
    # Short answers end at the line (zoo-spike.md: zero-shot models never emit EOS); long ones at EOS or when the
    # model starts a new Question/Answer block of the plain frame.
    return ["\n"] if metric == "squad_f1" else ["\nQuestion:"]


def _is_backend(obj: Any) -> bool:
    return hasattr(obj, "generate") and hasattr(obj, "loglikelihood") and hasattr(obj, "close") \
        and not hasattr(obj, "forward")


def evaluate(model_or_path: Any, samples: Sequence[Any], *, metric: str = "auto", tokenizer: Any = None,
             max_new_tokens: int | None = None, few_shot: int = 0, few_shot_pool: Sequence[Any] | None = None,
             backend: str = "auto", reporter: Reporter | None = None, batch_size: int | None = None,
             secondary: Sequence[str] = ("answer_loglik",), settings: Settings | None = None, seed: int = 0,
             stop: list[str] | None = None, chat: bool | None = None,
             tracker: StageTracker | None = None, trust_remote_code: bool = False) -> EvalResult:
    """Score a model on `samples`.

    `model_or_path`: a model folder, an in-memory model (with `tokenizer`), a `FinetuneResult`, or a ready backend.
    Generation goes through `damoc.backends` (vLLM when usable, transformers otherwise); a backend built here is
    closed before returning. Progress goes to `reporter` as stage "evaluate" events (or to `tracker`)."""
    from damoc.backends import get_backend
    from damoc.evaluate import METRICS
    from damoc.finetune.train import FinetuneResult

    t0 = time.perf_counter()
    samples = list(samples)
    if not samples:
        raise DataError("no samples to evaluate", "check the test file")
    settings = settings or Settings.load()
    name = pick_metric(samples) if metric in ("", "auto") else METRICS.entry(metric).name
    second = [METRICS.entry(m).name for m in secondary if METRICS.entry(m).name != name]
    no_ref = [s.id for s in samples if not s.references]
    if no_ref:
        raise DataError(f"{len(no_ref)} test sample(s) have no reference answer (first: {no_ref[0]!r})",
                        "evaluation needs an answer per test sample")
    if "mc_accuracy" in second and not all(s.choices for s in samples):
        second.remove("mc_accuracy")

    owned = False
    if isinstance(model_or_path, FinetuneResult):
        if model_or_path.model is None:
            if model_or_path.out_dir is None:
                raise ConfigError("this fine-tune result kept no model and saved none",
                                  "fine-tune with keep_model=True or an out_dir")
            model_or_path = model_or_path.out_dir
        else:
            tokenizer = tokenizer or model_or_path.tokenizer
            model_or_path = model_or_path.model
    if _is_backend(model_or_path):
        be = model_or_path
    else:
        if isinstance(model_or_path, (str, Path)) and not Path(model_or_path).exists():
            raise ConfigError(f"model folder {model_or_path} does not exist", "check the candidate's path")
        be = get_backend(model_or_path, name=backend, device=settings.device, tokenizer=tokenizer,
                         trust_remote_code=trust_remote_code)
        owned = True

    own_tracker = tracker is None
    tracker = tracker or StageTracker(reporter, "evaluate")
    try:
        prompts = build_prompts(be.tokenizer, samples, few_shot=few_shot, few_shot_pool=few_shot_pool, seed=seed,
                                chat=chat)
        gen_metrics = {e.name for e in METRICS if e.family == "generate"}
        needs_gen = name in gen_metrics or any(m in gen_metrics for m in second)
        total = (len(samples) if needs_gen else 0) + sum(_work(m, samples) for m in [name, *second]
                                                        if m not in gen_metrics)
        tracker.start(total)
        ctx = EvalContext(samples, prompts, be, tracker,
                          max_new_tokens=max_new_tokens or _auto_max_new_tokens(be.tokenizer, samples),
                          stop=stop if stop is not None else _stop_for(name), batch_size=batch_size,
                          settings=settings)
        primary: MetricOutput = METRICS.get(name)(ctx)
        score, err = mean_stderr(primary.per_item)
        sec: dict[str, tuple[float, float]] = {k: v for k, v in primary.details.items() if isinstance(v, tuple)}
        for m in second:
            out = METRICS.get(m)(ctx)
            sec[m] = mean_stderr(out.per_item)
        tracker.metric(f"eval/{name}", score)
        for k, (v, _) in sec.items():
            tracker.metric(f"eval/{k}", v)
        preds = ctx._preds
        shown = []
        for i, s in enumerate(samples[:N_PREDICTIONS_KEPT]):
            item = {"id": s.id, "reference": s.answer, "score": primary.per_item[i]}
            if preds is not None:
                item["prediction"] = preds[i]
            elif name == "mc_accuracy":
                item["prediction"] = s.choices[primary.item_details[i]["pred_index"]]
            shown.append(item)
        result = EvalResult(metric=name, score=score, stderr=err, n=len(samples), per_item=primary.per_item,
                            secondary=sec, predictions=shown, seconds=time.perf_counter() - t0,
                            details={"backend": getattr(be, "name", type(be).__name__), "few_shot": few_shot,
                                     "max_new_tokens": ctx.max_new_tokens, "stop": ctx.stop})
    except BaseException as e:
        if own_tracker:
            tracker.finish("cancelled" if isinstance(e, KeyboardInterrupt) else "failed", str(e))
        raise
    finally:
        if owned:
            be.close()
    if own_tracker:
        tracker.finish("ok", metric=name, score=result.score, stderr=result.stderr, n=result.n)
    return result
