"""Evaluation per task type, as in the paper: SQuAD F1/EM, (BERTScore + ROUGE-L)/2, MMLU-style multiple-choice
accuracy, and the teacher-forced answer log-likelihood as a low-noise secondary score."""
from __future__ import annotations

from damoc.plugins import Registry

METRICS: Registry = Registry("metric", object)
METRICS.add("squad_f1", "damoc.evaluate.metrics:squad_f1", family="generate",
            description="SQuAD token F1 (and exact match) of the greedy answer, max over references; percent",
            aliases=("f1", "squad"))
METRICS.add("bertscore_rouge", "damoc.evaluate.metrics:bertscore_rouge", family="generate",
            description="(BERTScore F1 + ROUGE-L F)/2 of the greedy answer, offline MiniLM encoder; percent",
            aliases=("bertscore", "rouge"))
METRICS.add("mc_accuracy", "damoc.evaluate.metrics:mc_accuracy", family="loglik",
            description="multiple-choice accuracy by option log-likelihood (MMLU style); percent",
            aliases=("accuracy", "mmlu", "mc"))
METRICS.add("answer_loglik", "damoc.evaluate.metrics:answer_loglik", family="loglik",
            description="teacher-forced mean log-likelihood per token of the reference answer; nats, higher is better",
            aliases=("loglik",))

from damoc.evaluate.core import EvalResult, build_prompts, evaluate, pick_metric  # noqa: E402
from damoc.evaluate.metrics import MetricOutput  # noqa: E402
from damoc.evaluate.text import f1_em, mean_stderr, normalize_answer, squad_scores  # noqa: E402

__all__ = ["METRICS", "EvalResult", "MetricOutput", "evaluate", "pick_metric", "build_prompts", "f1_em",
           "squad_scores", "normalize_answer", "mean_stderr"]
