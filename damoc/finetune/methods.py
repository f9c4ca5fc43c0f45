"""Fine-tuning methods: how a loaded model is made trainable, and turned back into a plain model after training.

A new method is one registration here (and its hyper-parameters in `FinetuneConfig`). Light: peft loads inside
`prepare`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from damoc.plugins import Registry

if TYPE_CHECKING:
    from damoc.finetune.config import FinetuneConfig


class FinetuneMethod(ABC):
    """What a method does to the model around the Trainer's loop."""

    settings: tuple[str, ...] = ()
    """The `FinetuneConfig` fields only this method reads (a run config's section passes them for it alone)."""
    frozen_base: bool = False
    """The base weights do not train: they may be loaded in bf16, and gradient checkpointing must make the inputs
    require grads (nothing before the first adapter would otherwise)."""

    @abstractmethod
    def prepare(self, model: Any, config: FinetuneConfig) -> Any:
        """The model to hand to the Trainer."""

    def finish(self, model: Any) -> Any:
        """A plain transformers model from the trained one (evaluation and saving need nothing else)."""
        return model


class Full(FinetuneMethod):
    def prepare(self, model: Any, config: FinetuneConfig) -> Any:
        return model


class LoRA(FinetuneMethod):
    settings = ("lora_r", "lora_alpha", "lora_dropout")
    frozen_base = True

    def prepare(self, model: Any, config: FinetuneConfig) -> Any:
        from damoc.finetune.config import lora_targets_for

        targets = lora_targets_for(getattr(model.config, "model_type", ""), config.lora_targets)
        return add_lora(model, r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout, targets=targets)

    def finish(self, model: Any) -> Any:
        return model.merge_and_unload()


def add_lora(model: Any, *, r: int, alpha: int, dropout: float, targets: list[str] | str) -> Any:
    """`model` wrapped with LoRA adapters on `targets` (peft), the base frozen: the proxy fine-tune and the
    filters' short warm-ups (LESS, Cherry, MoDS) both adapt a model this way."""
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                                            task_type="CAUSAL_LM"))


FINETUNE_METHODS: Registry[FinetuneMethod] = Registry("fine-tune method", FinetuneMethod)
FINETUNE_METHODS.put("full", Full(), description="every parameter trains (the paper's fine-tune)")
FINETUNE_METHODS.put("lora", LoRA(), description="LoRA adapters on the architecture's projections, merged back "
                                                 "into the weights after training")
