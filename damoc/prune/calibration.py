"""Calibration texts for layer importance.

With training data (the paper's choice): a seeded sample of the training samples, each framed the way the model
sees it (its chat template for the prompt, then the answer).

Without data: self-calibration. The Chat model samples its own texts from its BOS token (seeded, temperature 1,
top-p 0.95). Williams et al. 2025, "Self-calibration for Language Model Quantization and Pruning" (NAACL), found
such self-generated text as good as or better than generic corpora for calibrating pruning, and it needs no
dataset, no download and no guess about the model's domain.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from damoc.errors import DamocError

DEFAULT_N = 64
SELF_N = 32
SELF_TOKENS = 128


def texts_from_samples(samples: Sequence[Any], tokenizer: Any = None, *, n: int = DEFAULT_N,
                       seed: int = 0) -> list[str]:
    """Up to `n` samples (seeded choice), each as prompt (chat-framed when a tokenizer is given) + answer."""
    from damoc.models import format_prompt

    pool = [s for s in samples if (s.prompt or s.answer)]
    if not pool:
        raise DamocError("the calibration data has no sample with text", "pass a training file with samples")
    if len(pool) > n:
        pool = random.Random(seed).sample(pool, n)
    texts = []
    for s in pool:
        prompt = format_prompt(tokenizer, s.prompt) if tokenizer is not None and s.prompt else s.prompt
        sep = "" if not prompt or prompt.endswith((" ", "\n")) else " "
        texts.append(f"{prompt}{sep}{s.answer}".strip())
    return texts


def texts_from_file(path: str | Path, tokenizer: Any = None, *, n: int = DEFAULT_N, seed: int = 0) -> list[str]:
    """Calibration texts from a training file in any format `damoc.data.load_samples` reads."""
    from damoc.data import load_samples

    res = load_samples(path, skip_bad=True)
    return texts_from_samples(res.samples, tokenizer, n=n, seed=seed)


def self_calibration_texts(model: Any, tokenizer: Any, *, n: int = SELF_N, max_new_tokens: int = SELF_TOKENS,
                           seed: int = 0, batch_size: int = 16) -> list[str]:
    """`n` texts sampled from the model itself, starting at its BOS (or EOS) token; deterministic for a seed."""
    import torch

    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if start is None:
        raise DamocError("the tokenizer has neither a BOS nor an EOS token to start self-calibration from",
                         "pass calibration data with --data FILE")
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else start
    texts: list[str] = []
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.inference_mode():
            torch.manual_seed(seed)
            if device.type == "cuda":
                torch.cuda.manual_seed_all(seed)
            for i in range(0, n, batch_size):
                b = min(batch_size, n - i)
                ids = torch.full((b, 1), start, dtype=torch.long, device=device)
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                     temperature=1.0, top_p=0.95, top_k=0, max_new_tokens=max_new_tokens,
                                     min_new_tokens=min(8, max_new_tokens), pad_token_id=pad)
                texts += tokenizer.batch_decode(out[:, 1:], skip_special_tokens=True)
    finally:
        model.train(was_training)
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise DamocError("the model generated no usable calibration text", "pass calibration data with --data FILE")
    return texts
