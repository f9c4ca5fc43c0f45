"""Proxy fine-tuning, full and LoRA (`FINETUNE_METHODS`; transformers Trainer + peft). Heavy imports happen inside
`finetune`."""
from __future__ import annotations

from damoc.finetune.config import (DEFAULT_LORA_LR, LORA_TARGETS, PAPER_FULL_LR, PROXY_MIN_STEPS, FinetuneConfig,
                                   StepPlan, lora_targets_for, plan_steps)
from damoc.finetune.data import IGNORE_INDEX, Collator, Feature, encode_sample, encode_samples
from damoc.finetune.methods import FINETUNE_METHODS, FinetuneMethod, add_lora
from damoc.finetune.train import FinetuneResult, finetune

__all__ = ["FINETUNE_METHODS", "FinetuneMethod", "add_lora", "FinetuneConfig", "FinetuneResult", "StepPlan",
           "finetune", "plan_steps", "encode_sample", "encode_samples", "Collator", "Feature", "IGNORE_INDEX",
           "LORA_TARGETS", "lora_targets_for", "PAPER_FULL_LR", "DEFAULT_LORA_LR", "PROXY_MIN_STEPS"]
