"""Generation backends: one small interface (`generate`, `loglikelihood`, `close`) that the compression rewriter,
filters, fine-tune checks and evaluation share.

`get_backend(model, name="auto")` picks vLLM when it imports, CUDA is present and the model is a folder; the
transformers backend otherwise (the tested CPU path). Nothing heavy is imported until a backend is built.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from damoc.backends.base import (BACKENDS, GenerationBackend, answer_loglik, continuation_ids, continuation_text,
                                 cut_at_stop, eos_ids, prompt_ids)

# The index: each backend's metadata, written once.
BACKENDS.add("transformers", "damoc.backends.hf:TransformersBackend", family="local",
             description="transformers generate: batched greedy, left padding, stop strings + EOS, KV cache",
             aliases=("hf", "huggingface"))
BACKENDS.add("vllm", "damoc.backends.vllm_backend:VLLMBackend", family="gpu",
             description="vLLM (CUDA only, optional install): continuous batching, native stop strings")


def vllm_usable(device: str = "auto") -> bool:
    """vLLM is used automatically only when it is installed, importable and a CUDA device is asked for or present."""
    if str(device) not in ("", "auto") and not str(device).startswith("cuda"):
        return False
    if importlib.util.find_spec("vllm") is None:
        return False
    try:
        import torch
        if not torch.cuda.is_available():
            return False
        import vllm  # noqa: F401  (a broken install must fall back, not fail the run)
    except Exception:  # noqa: BLE001
        return False
    return True


def choose_backend(model: Any, name: str = "auto", device: str = "auto") -> str:
    if name and name != "auto":
        return BACKENDS.entry(name).name
    if isinstance(model, (str, Path)) and vllm_usable(device):
        return "vllm"
    return "transformers"


def get_backend(model_path_or_model: Any, name: str = "auto", device: str = "auto", tokenizer: Any = None,
                **options: Any) -> GenerationBackend:
    """A ready backend for a model folder or an in-memory model (transformers only for the latter).

    `options` go to the backend (e.g. `dtype`, `gpu_memory_utilization`, `trust_remote_code`)."""
    chosen = choose_backend(model_path_or_model, name, device)
    cls = BACKENDS.get(chosen)
    return cls(model_path_or_model, tokenizer=tokenizer, device=device, **options)


__all__ = ["BACKENDS", "GenerationBackend", "get_backend", "choose_backend", "vllm_usable", "prompt_ids",
           "continuation_text", "continuation_ids", "cut_at_stop", "eos_ids", "answer_loglik"]
