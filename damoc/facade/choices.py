"""What a front end offers to choose from, each list read from its registry or from the run config's schema."""
from __future__ import annotations

from damoc.compress import COMPRESSORS
from damoc.filters import FILTERS
from damoc.pipeline.config import FT_CHOICES, METRICS, MODES
from damoc.pipeline.executors import EXECUTORS
from damoc.pipeline.executors import unavailable as _unavailable
from damoc.plugins import Entry
from damoc.prune.merge import DEFAULT_RULE, MERGE_RULES


def modes() -> tuple[str, ...]:
    return MODES


def finetune_methods() -> tuple[str, ...]:
    """`ft` of the run config: each fine-tuning method, or both."""
    return FT_CHOICES


def metrics() -> tuple[str, ...]:
    """`evaluate.metric` of the run config: "auto" (from the data), then the metrics a run accepts."""
    return METRICS


def filters() -> list[Entry]:
    """Every data filter with its family and description (the registry's order)."""
    return list(FILTERS)


def compressors() -> list[tuple[str, str]]:
    """(name, description) of every token compressor."""
    return COMPRESSORS.choices()


def merge_rules() -> list[tuple[str, str]]:
    """(name, description) of every sparse-merge rule."""
    return MERGE_RULES.choices()


def default_merge_rule() -> str:
    return DEFAULT_RULE


def executors() -> list[tuple[str, str]]:
    """(name, description) of every executor (`executor.kind`: local, ray)."""
    return [(e.name, e.description) for e in EXECUTORS]


def executor_unavailable(kind: str) -> str:
    """Why executor `kind` cannot run on this machine ("" when it can): the package it needs, and its install line."""
    return _unavailable(kind)
