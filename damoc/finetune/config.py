"""Fine-tuning configuration and the step-count rule (light: no torch)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from damoc.errors import ConfigError

# The paper's hyper-parameters (DaMoC section 5.1): AdamW, lr 1e-5 for full fine-tuning, effective batch 64, 3 epochs.
PAPER_FULL_LR = 1e-5
# LoRA's usual learning rate (LoRA paper and LLaMA-Factory/ms-swift examples use 1e-4 to 2e-4): the adapters start at
# zero and need a larger step than full fine-tuning.
DEFAULT_LORA_LR = 1e-4
# The proxy recipe's step floor. zoo-spike.md: 38 optimizer steps left every proxy below the majority baseline, 114
# recovered the top of the ranking; 120 rounds that up.
PROXY_MIN_STEPS = 120

# LoRA target modules per architecture (feasibility.md section 7): Phi3 has fused projections, GPT-NeoX other names;
# peft's own default adapts q/v only and fails on Phi3. Anything unknown gets "all-linear" (lm_head excluded).
LORA_TARGETS: dict[str, list[str]] = {
    **{arch: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
       for arch in ("llama", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "mistral", "mixtral")},
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
}


def lora_targets_for(model_type: str, override: list[str] | str | None = None) -> list[str] | str:
    if override:
        return override
    return LORA_TARGETS.get(model_type, "all-linear")


class MethodParams(BaseModel):
    """The hyper-parameters of one fine-tuning method that a run config exposes (its `finetune.full` and
    `finetune.lora` sections): the same for every candidate, a fixed proxy harness. Each default is written here
    once; `FinetuneConfig` takes its own defaults from this schema and `to_config` builds it."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    lr: float = Field(PAPER_FULL_LR, gt=0, lt=1)
    epochs: float = Field(3.0, gt=0)
    effective_batch: int = Field(64, ge=1)
    micro_batch: int = Field(0, ge=0, description="per-step batch; 0 = the fine-tune module's choice")
    max_length: int = Field(0, ge=0, description="token cap per sample; 0 = the module's default")
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    params: dict[str, Any] = Field(default_factory=dict)

    def to_config(self, method: str, *, min_steps: int = 0, seed: int = 0, device: str = "auto",
                  deepspeed: str | None = None, bf16: bool | str = "auto") -> "FinetuneConfig":
        """The module's config for this section; `params` are further `FinetuneConfig` fields, checked by name."""
        known = {f.name for f in fields(FinetuneConfig)}
        unknown = sorted(set(self.params) - known)
        if unknown:
            raise ConfigError(f"finetune.{method}.params: FinetuneConfig has no setting(s) {', '.join(unknown)}",
                              f"known: {', '.join(sorted(known))}")
        values: dict[str, Any] = {
            "method": method, "lr": self.lr, "epochs": self.epochs, "effective_batch": self.effective_batch,
            "warmup_ratio": self.warmup_ratio, "weight_decay": self.weight_decay, "min_steps": min_steps,
            "seed": seed, "device": device, "deepspeed": deepspeed, "bf16": bf16}
        if self.micro_batch:
            values["micro_batch"] = self.micro_batch
        if self.max_length:
            values["max_length"] = self.max_length
        from damoc.finetune.methods import FINETUNE_METHODS

        values.update({k: getattr(self, k) for k in FINETUNE_METHODS.get(method).settings})
        return FinetuneConfig(**{**values, **self.params})


class FullParams(MethodParams):
    """Full fine-tuning: the paper's lr 1e-5."""


class LoraParams(MethodParams):
    """LoRA: a ~10x larger lr than full fine-tuning (see DEFAULT_LORA_LR)."""

    lr: float = Field(DEFAULT_LORA_LR, gt=0, lt=1)


_HP = MethodParams()
# FinetuneConfig's own settings beyond the section's (defaults written once, here)
DEFAULT_MAX_LENGTH = 512


@dataclass
class FinetuneConfig:
    """How one model is fine-tuned. Defaults are the paper's full fine-tune; `min_steps` makes it a proxy recipe."""

    method: str = "full"
    """A name of damoc.finetune.methods.FINETUNE_METHODS (full, lora)."""
    lr: float | None = None
    """None = 1e-5 for full (paper), 1e-4 for LoRA."""
    epochs: float = _HP.epochs
    effective_batch: int = _HP.effective_batch
    """Samples per optimizer step, reached by gradient accumulation over `micro_batch`."""
    micro_batch: int | None = None
    """Samples per forward pass; None = 16 on CPU, 4 on CUDA (accumulation makes up the rest)."""
    min_steps: int = 0
    """Minimum optimizer steps (see `plan_steps`); 0 = plain epochs. The proxy recipe uses PROXY_MIN_STEPS."""
    min_effective_batch: int = 8
    """How far `min_steps` may shrink the effective batch before it adds epochs instead."""
    max_epochs: float = 30.0
    """How far `min_steps` may extend training."""
    max_steps: int | None = None
    """Hard cap on optimizer steps (applied last)."""
    max_length: int = DEFAULT_MAX_LENGTH
    """Tokens per sample (prompt is cut from the left, the answer kept)."""
    warmup_ratio: float = _HP.warmup_ratio
    weight_decay: float = _HP.weight_decay
    lr_scheduler: str = "linear"
    max_grad_norm: float = 1.0
    lora_r: int = _HP.lora_r
    lora_alpha: int = _HP.lora_alpha
    lora_dropout: float = _HP.lora_dropout
    lora_targets: list[str] | str | None = None
    """None = per-architecture defaults (LORA_TARGETS), "all-linear" for unknown architectures."""
    chat: bool | None = None
    """Frame prompts with the chat template: None = when the tokenizer has one."""
    seed: int = 0
    device: str = "auto"
    trust_remote_code: bool = False
    """Run the checkpoint's own modelling code (auto_map): only for a candidate the user opted in for."""
    bf16: bool | str = "auto"
    """auto = bf16 autocast on CUDA when supported, fp32 on CPU."""
    deepspeed: str | None = None
    """Path to a DeepSpeed JSON config, passed through to the Trainer (CUDA only)."""
    gradient_checkpointing: bool = False
    trim_prompt_logits: bool = True
    """Run the LM head and the loss on answer positions only (`logits_to_keep`, for architectures whose forward
    takes it): the same loss and gradients, without the prompt's vocabulary-sized logits. Off: every position."""
    logging_steps: int | None = None
    """None = every step up to 200 steps, then ~200 points per run."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Further TrainingArguments passed through unchanged."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def bad(what: str, hint: str) -> ConfigError:
            return ConfigError(f"fine-tune config: {what}", hint)

        from damoc.finetune.methods import FINETUNE_METHODS

        if self.method not in FINETUNE_METHODS:
            raise bad(f"method {self.method!r} is not one of {', '.join(FINETUNE_METHODS.names())}",
                      f"use method={FINETUNE_METHODS.names()[0]!r} or another registered method")
        if self.lr is not None and not (0 < self.lr < 1):
            raise bad(f"lr {self.lr} out of range", "use a learning rate such as 1e-5 (full) or 1e-4 (lora)")
        for name in ("effective_batch", "min_effective_batch", "max_length", "lora_r"):
            if int(getattr(self, name)) < 1:
                raise bad(f"{name} must be >= 1", f"set {name} to a positive integer")
        if self.micro_batch is not None and self.micro_batch < 1:
            raise bad("micro_batch must be >= 1", "set micro_batch to a positive integer or leave it unset")
        if self.epochs <= 0 or self.max_epochs <= 0:
            raise bad("epochs must be > 0", "set epochs (e.g. 3)")
        if self.min_steps < 0 or (self.max_steps is not None and self.max_steps < 1):
            raise bad("min_steps must be >= 0 and max_steps >= 1", "fix the step settings")
        if not 0 <= self.warmup_ratio < 1:
            raise bad(f"warmup_ratio {self.warmup_ratio} not in [0, 1)", "use e.g. 0.1")
        if self.deepspeed and not Path(self.deepspeed).is_file():
            raise bad(f"deepspeed config {self.deepspeed} not found", "pass the path of a DeepSpeed JSON config")
        if isinstance(self.bf16, str) and self.bf16 != "auto":
            raise bad(f"bf16 {self.bf16!r} is not auto/true/false", "use bf16='auto', True or False")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (PAPER_FULL_LR if self.method == "full" else DEFAULT_LORA_LR)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FinetuneConfig":
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"fine-tune config: unknown key(s) {', '.join(sorted(unknown))}",
                              f"known keys: {', '.join(sorted(known))}")
        return cls(**data)


@dataclass(frozen=True)
class StepPlan:
    """The optimizer-step schedule `plan_steps` chose."""

    samples: int
    micro_batch: int
    accumulation: int
    effective_batch: int
    steps_per_epoch: int
    epochs: float
    total_steps: int
    reason: str


def plan_steps(n_samples: int, config: FinetuneConfig, micro_batch: int) -> StepPlan:
    """Turn (samples, epochs, batch, min_steps, max_steps) into a concrete schedule.

    Rule, in order:
      1. paper schedule: effective batch `effective_batch` (micro batch x accumulation), `epochs` epochs;
      2. if that is fewer than `min_steps` optimizer steps, halve the effective batch (never below
         `min_effective_batch`): more, smaller steps for the same compute, since the proxy's cost is tokens seen;
      3. if still short, add epochs (never beyond `max_epochs`): this costs compute, so it comes second;
      4. `max_steps`, when set, caps the total.
    """
    if n_samples < 1:
        raise ConfigError("fine-tune: no training samples", "check the dataset and the filter ratio")
    eff = max(1, config.effective_batch)
    micro = max(1, min(micro_batch, eff))
    epochs = float(config.epochs)
    reasons: list[str] = []

    def per_epoch(e: int) -> int:
        return math.ceil(n_samples / e)

    def total(e: int, ep: float) -> int:
        return max(1, math.ceil(per_epoch(e) * ep))

    if config.min_steps and total(eff, epochs) < config.min_steps:
        floor = max(1, min(config.min_effective_batch, eff))
        while eff > floor and total(eff, epochs) < config.min_steps:
            eff = max(floor, eff // 2)
        if eff != config.effective_batch:
            reasons.append(f"effective batch {config.effective_batch} -> {eff}")
        if total(eff, epochs) < config.min_steps:
            need = config.min_steps / per_epoch(eff)
            new_epochs = min(float(config.max_epochs), float(math.ceil(need)))
            if new_epochs > epochs:
                reasons.append(f"epochs {epochs:g} -> {new_epochs:g}")
                epochs = new_epochs
    # the largest micro batch that divides the effective batch, so accumulation reaches it exactly
    micro = max(d for d in range(1, min(micro, eff) + 1) if eff % d == 0)
    accum = eff // micro
    steps = total(eff, epochs)
    if config.max_steps and steps > config.max_steps:
        reasons.append(f"capped at max_steps {config.max_steps}")
        steps = config.max_steps
    if config.min_steps and steps < config.min_steps and not config.max_steps:
        reasons.append(f"min_steps {config.min_steps} not reached within max_epochs {config.max_epochs:g}")
    return StepPlan(samples=n_samples, micro_batch=micro, accumulation=accum, effective_batch=eff,
                    steps_per_epoch=per_epoch(eff), epochs=steps / per_epoch(eff), total_steps=steps,
                    reason="; ".join(reasons) or "paper schedule")
