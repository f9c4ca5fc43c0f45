"""Training loops of the zoo: causal-LM pretraining from scratch on mixed token streams, then the Chat SFT.

Plain torch loops (not `transformers.Trainer`): the models are tiny, the budget is counted in optimizer steps, and
the loop must report through damoc events. CUDA is used when present (bf16 autocast); CPU is the tested path.
"""
from __future__ import annotations

import math
import random
from typing import Any

from damoc.events import StageTracker
from damoc.zoo.tokenizer import END, chat_prompt

IGNORE = -100


def encode_stream(tokenizer: Any, docs: list[str]) -> Any:
    """All documents as one flat id tensor, EOS between documents (GPT-style packing)."""
    import torch

    eos = tokenizer.convert_tokens_to_ids(tokenizer.bos_token)   # <|endoftext|> (bos == document separator)
    ids: list[int] = []
    for enc in tokenizer(docs, add_special_tokens=False)["input_ids"]:
        ids.extend(enc)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def _lr_at(step: int, total: int, peak: float, warmup_frac: float = 0.05, floor: float = 0.1) -> float:
    """Linear warm-up then cosine decay to `floor * peak` (the usual LM pretraining schedule)."""
    warm = max(1, int(total * warmup_frac))
    if step < warm:
        return peak * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def _optimizer(model: Any, lr: float, weight_decay: float) -> Any:
    import torch

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))


def _autocast(device: str) -> Any:
    import contextlib

    import torch

    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def pretrain(model: Any, streams: dict[str, Any], mix: dict[str, float], *, steps: int, batch_size: int,
             seq_len: int, lr: float, seed: int, device: str, tracker: StageTracker) -> list[float]:
    """Next-token pretraining on random windows drawn from `streams` in proportion to `mix`. Returns the losses."""
    import torch

    rng = random.Random(seed)
    names = [n for n in mix if mix[n] > 0]
    weights = [mix[n] for n in names]
    model.to(device).train()
    opt = _optimizer(model, lr, weight_decay=0.1)
    losses: list[float] = []
    tracker.start(steps)
    for step in range(steps):
        rows = []
        for stream in rng.choices(names, weights=weights, k=batch_size):
            ids = streams[stream]
            start = rng.randrange(0, max(1, len(ids) - seq_len - 1))
            rows.append(ids[start:start + seq_len])
        batch = torch.stack(rows).to(device)
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, steps, lr)
        with _autocast(device):
            loss = model(input_ids=batch, labels=batch).loss
        _optimizer_step(model, opt, loss, losses, tracker, "pretrain/loss", step, steps)
    model.eval()
    return losses


def _optimizer_step(model: Any, opt: Any, loss: Any, losses: list[float], tracker: StageTracker, metric: str,
                    step: int, steps: int) -> None:
    """Backward, clip to norm 1, step, record the loss (a metric event every 10 steps and at the end)."""
    import torch

    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    losses.append(loss.item())
    if step % 10 == 0 or step == steps - 1:
        tracker.metric(metric, losses[-1], step)
    tracker.advance(1)


def encode_chat_pairs(tokenizer: Any, pairs: list[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, answer ids) in the Chat template: the loss is on the answer and its `<|end|>` only."""
    prompts = tokenizer([chat_prompt(u) for u, _ in pairs], add_special_tokens=False)["input_ids"]
    answers = tokenizer([a + END for _, a in pairs], add_special_tokens=False)["input_ids"]
    return list(zip(prompts, answers))


def sft(model: Any, encoded: list[tuple[list[int], list[int]]], *, steps: int, batch_size: int, lr: float,
        seed: int, pad_id: int, device: str, tracker: StageTracker) -> list[float]:
    """Instruction SFT with answer-only loss (prompt tokens masked), right padding. Returns the losses."""
    import torch

    rng = random.Random(seed)
    order: list[int] = []
    model.to(device).train()
    opt = _optimizer(model, lr, weight_decay=0.0)
    losses: list[float] = []
    tracker.start(steps)
    for step in range(steps):
        if len(order) < batch_size:            # epochs over a reshuffled order
            fresh = list(range(len(encoded)))
            rng.shuffle(fresh)
            order.extend(fresh)
        idx, order = order[:batch_size], order[batch_size:]
        seqs = [(encoded[i][0] + encoded[i][1], len(encoded[i][0])) for i in idx]
        width = max(len(s) for s, _ in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        labels = torch.full((len(seqs), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, (s, n_prompt) in enumerate(seqs):
            ids[r, :len(s)] = torch.tensor(s)
            labels[r, n_prompt:len(s)] = torch.tensor(s[n_prompt:])
            mask[r, :len(s)] = 1
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, steps, lr, warmup_frac=0.1, floor=0.0)
        with _autocast(device):
            loss = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss
        _optimizer_step(model, opt, loss, losses, tracker, "sft/loss", step, steps)
    model.eval()
    return losses
