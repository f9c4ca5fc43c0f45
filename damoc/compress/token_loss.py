"""Per-token loss of target tokens given a context, batched: l_i = -log p(t_i | context, t_<i).

This is LLMLingua's `get_ppl(granularity="token", condition_mode="after")` without its KV-cache juggling (which breaks
on transformers' `DynamicCache`, microsoft/LLMLingua#210): the iterative loop passes the already compressed prefix as
plain context ids, so every window is one ordinary forward pass. Rows are left-padded with explicit position ids so
only the last `max targets + 1` logits are materialised (`logits_to_keep`); that bounds memory for 150k-token
vocabularies.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Request:
    context: list[int]             # ids the targets are conditioned on (start token included when there is one)
    targets: list[int]


class TokenScorer:
    """A causal LM that scores target tokens. Loads from a folder or wraps a model already in memory."""

    def __init__(self, model: Any, tokenizer: Any, *, max_batch_tokens: int | None = None,
                 max_logit_floats: int = 1 << 27) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        cfg = getattr(model, "config", None)
        self.vocab = int(getattr(cfg, "vocab_size", 0) or len(tokenizer))
        n = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None) or 2048
        self.max_length = int(n)
        self.max_batch_tokens = max_batch_tokens or (32768 if self.device.type == "cuda" else 4096)
        self.max_logit_floats = max_logit_floats
        self._keep_arg = "logits_to_keep" in inspect.signature(model.forward).parameters
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        self.start_ids: list[int] = [int(start)] if start is not None else []
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (self.start_ids or [0])[0]
        self.tokens_scored = 0

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto", threads: int = 0) -> "TokenScorer":
        from damoc.models import load_causal_lm, load_tokenizer, set_threads

        set_threads(threads)
        model = load_causal_lm(path, device=device)
        return cls(model, load_tokenizer(path))

    def close(self) -> None:
        import gc

        self.model = None
        gc.collect()

    # ------------------------------------------------------------------------------------------------
    def _fit(self, req: Request) -> tuple[list[int], int, bool]:
        """The row to feed (context cut from the left to fit the model) and whether its first target has a
        predecessor. The start token survives the cut: models lean on it (attention sinks)."""
        tgt = req.targets
        room = self.max_length - len(tgt)
        ctx = req.context
        if len(ctx) > room:
            keep_start = self.start_ids if ctx[: len(self.start_ids)] == self.start_ids else []
            tail = max(room - len(keep_start), 0)
            ctx = keep_start + (ctx[-tail:] if tail else [])
        return ctx + tgt, len(tgt), bool(ctx)

    def score(self, requests: list[Request]) -> list[np.ndarray]:
        """Loss of every target token (float32; NaN for a first token that has no context)."""
        import torch

        out: list[np.ndarray] = [np.zeros(0, dtype=np.float32)] * len(requests)
        rows = []
        for i, r in enumerate(requests):
            if not r.targets:
                continue
            if len(r.targets) >= self.max_length:
                raise ValueError(f"window of {len(r.targets)} tokens does not fit a {self.max_length}-token model")
            seq, n_t, has_ctx = self._fit(r)
            rows.append((i, seq, n_t, has_ctx))
        rows.sort(key=lambda x: len(x[1]))
        b = 0
        while b < len(rows):
            width = len(rows[b][1])
            batch = [rows[b]]
            k = b + 1
            while k < len(rows):
                w = len(rows[k][1])
                nt = max(max(x[2] for x in batch), rows[k][2]) + 1
                if (len(batch) + 1) * w > self.max_batch_tokens or \
                        (len(batch) + 1) * nt * self.vocab > self.max_logit_floats:
                    break
                batch.append(rows[k])
                width = w
                k += 1
            self._run(batch, width, out, torch)
            b = k
        return out

    def _run(self, batch: list[tuple[int, list[int], int, bool]], width: int, out: list[np.ndarray],
             torch: Any) -> None:
        keep = max(x[2] for x in batch) + 1
        ids = torch.full((len(batch), width), int(self.pad_id), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, (_, seq, _, _) in enumerate(batch):
            ids[r, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[r, width - len(seq):] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        kwargs: dict[str, Any] = dict(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                      position_ids=pos.to(self.device), use_cache=False)
        if self._keep_arg:
            kwargs["logits_to_keep"] = min(keep, width)
        with torch.inference_mode():
            logits = self.model(**kwargs).logits
        logits = logits[:, -min(keep, width):, :].float()
        logp = torch.log_softmax(logits, dim=-1)
        kw = logp.shape[1]
        for r, (i, seq, n_t, has_ctx) in enumerate(batch):
            tg = torch.tensor(seq[-n_t:], dtype=torch.long, device=logp.device)
            # target j sits at column kw - n_t + j and is predicted by column kw - n_t + j - 1
            cols = torch.arange(kw - n_t - 1, kw - 1, device=logp.device)
            vals = torch.full((n_t,), math.nan, dtype=torch.float32)
            valid = cols >= 0
            if not has_ctx:
                valid[0] = False
            if valid.any():
                got = -logp[r, cols[valid], tg[valid]]
                vals[valid.cpu()] = got.cpu()
            out[i] = vals.numpy()
            self.tokens_scored += n_t
