"""Proxy and full fine-tuning on the transformers Trainer.

Why the Trainer rather than a hand loop: it already does gradient accumulation with a correct token-weighted loss,
bf16 autocast, DeepSpeed (a config file passed through), multi-GPU and the LR schedules, and its overhead on CPU is
~8% (feasibility.md section 5: 84 s vs 78 s). Progress and losses leave it through a TrainerCallback that forwards to
damoc events; its own printing/progress callbacks are removed.
"""
from __future__ import annotations

import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from damoc.errors import ConfigError, DamocError
from damoc.events import Reporter, StageTracker
from damoc.finetune.config import FinetuneConfig, StepPlan, plan_steps
from damoc.finetune.data import Collator, encode_samples
from damoc.finetune.methods import FINETUNE_METHODS
from damoc.fsutil import atomic_write_json
from damoc.models import hf_offline_env, load_causal_lm, load_tokenizer, resolve_device, takes_logits_to_keep
from damoc.settings import Settings


@dataclass
class FinetuneResult:
    """What a fine-tune produced. `model` is a plain transformers model (LoRA adapters merged in), on the training
    device, in eval mode; None when `keep_model=False`."""

    model: Any
    tokenizer: Any
    steps: int
    epochs_run: float
    train_tokens: int
    seconds: float
    """Wall time of the whole call: loading, tokenising, training, merging, saving."""
    losses: list[float] = field(default_factory=list)
    """Training loss at each logged point (mean over the optimizer steps since the previous point)."""
    loss_steps: list[int] = field(default_factory=list)
    """The optimizer step of each entry of `losses`."""
    final_loss: float | None = None
    out_dir: Path | None = None
    method: str = "full"
    plan: StepPlan | None = None
    trainable_params: int = 0
    total_params: int = 0
    device: str = "cpu"
    precision: str = "fp32"
    train_seconds: float = 0.0
    """Wall time of the optimisation loop alone (the paper's training-time measure)."""

    @property
    def train_flops(self) -> float:
        """Estimated training compute, 6·N·D (Kaplan et al. 2020, arXiv 2001.08361): N = parameters of the model
        trained (after pruning; for LoRA the base weights still run forward and backward), D = the non-padding
        tokens actually fed. Wall time on a GPU follows it for large models; on tiny CPU models a fixed per-step
        cost dominates instead, so damoc reports both."""
        return 6.0 * float(self.total_params) * float(self.train_tokens)

    def summary(self) -> dict[str, Any]:
        """JSON-safe summary (for run-directory cells and logs)."""
        return {"method": self.method, "steps": self.steps, "epochs_run": round(self.epochs_run, 4),
                "train_tokens": self.train_tokens, "seconds": round(self.seconds, 3),
                "train_seconds": round(self.train_seconds, 3), "final_loss": self.final_loss,
                "first_loss": self.losses[0] if self.losses else None,
                "trainable_params": self.trainable_params, "total_params": self.total_params,
                "device": self.device, "precision": self.precision,
                "plan": None if self.plan is None else self.plan.__dict__,
                "out_dir": str(self.out_dir) if self.out_dir else None}


class _Dataset:
    """A list as a map-style dataset (the Trainer only needs len and indexing)."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i]


def _events_callback(tracker: StageTracker, losses: list[float], loss_steps: list[int]) -> Any:
    from transformers import TrainerCallback

    class EventsCallback(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            tracker.progress(state.global_step)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))
                loss_steps.append(int(state.global_step))
                tracker.metric("train/loss", float(logs["loss"]), step=int(state.global_step))

    return EventsCallback()


def _resolve_precision(config: FinetuneConfig, device: str) -> bool:
    import torch

    if config.bf16 == "auto":
        return device.startswith("cuda") and torch.cuda.is_bf16_supported()
    if config.bf16 and not device.startswith("cuda"):
        raise ConfigError("bf16 training asked for on CPU", "use bf16='auto' (fp32 on CPU) or a CUDA device")
    return bool(config.bf16)


def finetune(model_path: Any, train_samples: list[Any], config: FinetuneConfig | None = None,
             out_dir: str | Path | None = None, *, reporter: Reporter | None = None, keep_model: bool = True,
             tokenizer: Any = None, tracker: StageTracker | None = None,
             settings: Settings | None = None) -> FinetuneResult:
    """Fine-tune a model folder (or an in-memory model with its `tokenizer`) on `train_samples`.

    Loss on answer tokens only (prompt labels masked), EOS appended to every answer, chat template for models that
    have one. With `out_dir`, the (merged) model, tokenizer and `finetune.json` are written there. Progress goes to
    `reporter` as stage "finetune" events (or to the given `tracker`)."""
    config = config or FinetuneConfig()
    config.validate()
    own_tracker = tracker is None            # a caller's tracker is finished by the caller
    tracker = tracker or StageTracker(reporter, "finetune")
    try:
        result = _finetune(model_path, train_samples, config, out_dir, tracker, keep_model, tokenizer, settings)
    except BaseException as e:
        if own_tracker:
            tracker.finish("cancelled" if isinstance(e, KeyboardInterrupt) else "failed", str(e).split("\n")[0])
        raise
    if own_tracker:
        tracker.finish("ok", **{k: v for k, v in result.summary().items() if k != "plan"})
    return result


def _finetune(model_path: Any, train_samples: list[Any], config: FinetuneConfig, out_dir: str | Path | None,
              tracker: StageTracker, keep_model: bool, tokenizer: Any, settings: Settings | None) -> FinetuneResult:
    import torch
    from transformers import PrinterCallback, ProgressCallback, Trainer, TrainingArguments, set_seed

    hf_offline_env(settings)
    t0 = time.perf_counter()
    device = resolve_device(config.device)
    bf16 = _resolve_precision(config, device)

    set_seed(config.seed)
    method = FINETUNE_METHODS.get(config.method)
    if isinstance(model_path, (str, Path)):
        # a frozen base (LoRA) can sit in bf16; full fine-tuning keeps fp32 master weights and autocasts
        dtype = torch.bfloat16 if (bf16 and method.frozen_base) else torch.float32
        model = load_causal_lm(model_path, device=device, dtype=dtype, train=True,
                               trust_remote_code=config.trust_remote_code)
        tokenizer = tokenizer or load_tokenizer(model_path, trust_remote_code=config.trust_remote_code)
    else:
        model = model_path
        if tokenizer is None:
            raise ConfigError("fine-tuning an in-memory model needs its tokenizer", "pass tokenizer=...")
        model.train(True)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token

    features = encode_samples(tokenizer, train_samples, max_length=config.max_length, chat=config.chat)
    micro = config.micro_batch or (4 if device.startswith("cuda") else 16)
    plan = plan_steps(len(features), config, micro)

    model = method.prepare(model, config)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        if method.frozen_base:
            model.enable_input_require_grads()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())

    losses: list[float] = []
    loss_steps: list[int] = []
    collator = Collator(tokenizer.pad_token_id, multiple_of=8 if device.startswith("cuda") else 1,
                        trim_prompt=config.trim_prompt_logits and takes_logits_to_keep(model))
    settings_home = Path(settings.cache_dir) if settings is not None else None
    scratch = Path(tempfile.mkdtemp(prefix="damoc-ft-", dir=_scratch_root(settings_home)))
    log_every = config.logging_steps or (1 if plan.total_steps <= 200 else math.ceil(plan.total_steps / 200))
    args = TrainingArguments(
        output_dir=str(scratch), per_device_train_batch_size=plan.micro_batch,
        gradient_accumulation_steps=plan.accumulation, max_steps=plan.total_steps,
        learning_rate=config.learning_rate, weight_decay=config.weight_decay, lr_scheduler_type=config.lr_scheduler,
        warmup_steps=math.ceil(config.warmup_ratio * plan.total_steps), max_grad_norm=config.max_grad_norm,
        optim="adamw_torch", logging_strategy="steps", logging_steps=log_every, save_strategy="no",
        report_to="none", disable_tqdm=True, seed=config.seed, data_seed=config.seed,
        use_cpu=not device.startswith("cuda"), bf16=bf16, remove_unused_columns=False,
        dataloader_num_workers=0, log_level="error",
        deepspeed=config.deepspeed if (config.deepspeed and device.startswith("cuda")) else None,
        **config.extra)
    trainer = Trainer(model=model, args=args, train_dataset=_Dataset(features), data_collator=collator)
    for cb in (PrinterCallback, ProgressCallback):         # no prints from library code: events only
        trainer.remove_callback(cb)
    trainer.add_callback(_events_callback(tracker, losses, loss_steps))

    tracker.start(plan.total_steps)
    if config.deepspeed and not device.startswith("cuda"):
        tracker.log("deepspeed config ignored: DeepSpeed needs CUDA; training on CPU in fp32", "warning")
    if plan.reason != "paper schedule":
        tracker.log(f"step plan: {plan.total_steps} steps ({plan.reason})")
    t_train = time.perf_counter()
    try:
        trainer.train()
    except KeyboardInterrupt:
        raise
    except torch.cuda.OutOfMemoryError as e:  # type: ignore[attr-defined]
        raise DamocError(f"out of GPU memory while fine-tuning ({e})",
                         "lower micro_batch (accumulation keeps the effective batch), enable gradient_checkpointing "
                         "or use method='lora'") from e
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    train_seconds = time.perf_counter() - t_train
    state = trainer.state
    model = method.finish(trainer.model)
    model.eval()
    del trainer

    result = FinetuneResult(
        model=model, tokenizer=tokenizer, steps=int(state.global_step), epochs_run=float(state.epoch or 0.0),
        train_tokens=collator.tokens_seen, seconds=time.perf_counter() - t0, losses=losses, loss_steps=loss_steps,
        final_loss=losses[-1] if losses else None, out_dir=Path(out_dir) if out_dir else None,
        method=config.method, plan=plan, trainable_params=trainable, total_params=total, device=device,
        precision="bf16" if bf16 else "fp32", train_seconds=train_seconds)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        atomic_write_json(out / "finetune.json", {"config": config.to_dict(), **result.summary(),
                                                  "losses": losses, "loss_steps": loss_steps})
    if not keep_model:
        result.model = None
        del model
        import gc
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return result


def _scratch_root(cache_dir: Path | None) -> str:
    """Trainer needs an output_dir even when it saves nothing; keep it under damoc's cache, never the checkout."""
    if cache_dir is None:
        cache_dir = Settings.load().cache_dir
    root = Path(cache_dir) / "finetune-scratch"
    root.mkdir(parents=True, exist_ok=True)
    return str(root)
