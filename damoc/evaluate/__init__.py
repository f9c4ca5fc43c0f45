"""Evaluation per task type, as in the paper: SQuAD F1/EM, (BERTScore + ROUGE-L)/2, MMLU-style multiple-choice
accuracy, and the teacher-forced answer log-likelihood as a low-noise secondary score."""
from __future__ import annotations

from damoc.evaluate.core import EvalResult, build_prompts, evaluate, pick_metric
from damoc.evaluate.metrics import METRICS, Metric, MetricOutput
from damoc.evaluate.text import f1_em, mean_stderr, normalize_answer, squad_scores

__all__ = ["METRICS", "Metric", "EvalResult", "MetricOutput", "evaluate", "pick_metric", "build_prompts", "f1_em",
           "squad_scores", "normalize_answer", "mean_stderr"]
