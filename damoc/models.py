"""Loading models the same way for a 7B on a GPU box and a tiny zoo model on a laptop.

Heavy imports happen inside the functions. Device: `auto` picks CUDA when present; dtype: bf16 on CUDA when
supported, fp32 on CPU.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from damoc.settings import Settings


def hf_offline_env(settings: Settings | None = None) -> None:
    """Make Hugging Face fail fast instead of retrying DNS for ~50 s when there is no network."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    if settings is not None and settings.hf_offline:
        os.environ["HF_HUB_OFFLINE"] = "1"


def resolve_device(device: str = "auto") -> str:
    import torch

    if device in ("", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        from damoc.errors import ConfigError
        raise ConfigError(f"device {device!r} asked for but CUDA is not available", "use --set device=cpu or auto")
    return device


def default_dtype(device: str) -> Any:
    import torch

    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset narrow), at least 1."""
    import os

    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def set_threads(threads: int = 0) -> None:
    import torch

    if threads and threads > 0:
        torch.set_num_threads(threads)


def load_tokenizer(path: str | Path, *, revision: str | None = None, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    hf_offline_env()
    tok = AutoTokenizer.from_pretrained(str(path), revision=revision, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(path: str | Path, *, device: str = "auto", dtype: Any = None, revision: str | None = None,
                   trust_remote_code: bool = False, train: bool = False) -> Any:
    """AutoModelForCausalLM.from_pretrained on the resolved device, eval mode unless `train`."""
    from transformers import AutoModelForCausalLM

    hf_offline_env()
    dev = resolve_device(device)
    model = AutoModelForCausalLM.from_pretrained(str(path), revision=revision, trust_remote_code=trust_remote_code,
                                                 dtype=dtype or default_dtype(dev))
    model.to(dev)
    model.train(train)
    return model


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def format_prompt(tokenizer: Any, user_text: str, *, chat: bool | None = None, system: str | None = None) -> str:
    """The text a model sees before its answer: the chat template for Chat models, a plain
    `Question/Answer` frame for Base models (no template)."""
    use_chat = has_chat_template(tokenizer) if chat is None else chat
    if use_chat and has_chat_template(tokenizer):
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user_text}]
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    return f"{system + chr(10) if system else ''}Question: {user_text}\nAnswer:"


def takes_logits_to_keep(model: Any) -> bool:
    """The causal LM (under a peft wrapper, if any) accepts `logits_to_keep`, as transformers' own architectures do."""
    import inspect

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return "logits_to_keep" in inspect.signature(inner.forward).parameters
    except (TypeError, ValueError):
        return False
