"""Short LoRA runs of the LM-based filters (LESS's warm-up, Cherry's pre-experience, MoDS's seed tuning) and LESS's
gradient features. Samples are tokenised and models adapted exactly as the proxy fine-tune does it
(`damoc.finetune.encode_sample`, `add_lora`); only the truncation budget differs (the prompt keeps half).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from damoc.errors import DamocError
from damoc.finetune.data import Collator, Feature, encode_sample
from damoc.finetune.methods import add_lora
from damoc.settings import Settings


@dataclass
class LoraConfigLite:
    r: int = 8
    alpha: int = 32
    dropout: float = 0.0
    lr: float = 2e-5
    epochs: int = 1
    batch_size: int = 4
    max_length: int = 256
    max_steps: int | None = None


@dataclass
class LoraRun:
    model: Any                      # peft model (train mode off)
    tokenizer: Any
    optimizer: Any
    steps: int
    losses: list[float] = field(default_factory=list)


def _features(tokenizer: Any, samples: Sequence[Any], max_length: int) -> list[Feature]:
    """Answer + EOS learned, prompt masked; too long, the answer keeps at most half and the prompt loses its start."""
    return [encode_sample(tokenizer, s, max_length=max_length, answer_budget="half") for s in samples]


def _lora_targets(model: Any) -> Any:
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    attn = [t for t in ("q_proj", "k_proj", "v_proj", "o_proj") if t in names]
    return attn if len(attn) == 4 else "all-linear"     # LESS adapts q/k/v/o; other layouts get every linear


def _batch(feats: list[Feature], pad: int, device: Any) -> dict[str, Any]:
    return {k: v.to(device) for k, v in Collator(pad)(feats).items()}


def lora_train(model_path: str, samples: Sequence[Any], cfg: LoraConfigLite, *, settings: Settings, seed: int = 0,
               tracker: Any = None, on_epoch_end: Callable[[int, Any, Any, float], None] | None = None) -> LoraRun:
    """LoRA fine-tune `model_path` on `samples` with AdamW (linear decay after a 3% warm-up, as LESS's scripts).
    `on_epoch_end(epoch, model, optimizer, mean_lr)` runs after each epoch (LESS reads the Adam state there)."""
    import torch

    from damoc.models import load_causal_lm, load_tokenizer, resolve_device

    if not samples:
        raise DamocError("LoRA warm-up: no samples to train on")
    dev = resolve_device(settings.device)
    torch.manual_seed(seed)
    tok = load_tokenizer(model_path)
    base = load_causal_lm(model_path, device=dev, train=True)
    model = add_lora(base, r=cfg.r, alpha=cfg.alpha, dropout=cfg.dropout, targets=_lora_targets(base))
    feats = _features(tok, samples, cfg.max_length)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    per_epoch = math.ceil(len(feats) / cfg.batch_size)
    total = per_epoch * cfg.epochs if cfg.max_steps is None else min(cfg.max_steps, per_epoch * cfg.epochs)
    warm = max(1, int(0.03 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    rng = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    step = 0
    if tracker is not None:
        tracker.set_total(total)
    model.train()
    for epoch in range(cfg.epochs):
        lrs: list[float] = []
        perm = torch.randperm(len(feats), generator=rng).tolist()
        for b in range(0, len(perm), cfg.batch_size):
            if step >= total:
                break
            batch = _batch([feats[i] for i in perm[b:b + cfg.batch_size]], pad, dev)
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            step += 1
            if tracker is not None:
                tracker.progress(step, note=f"loss {losses[-1]:.3f}")
        if on_epoch_end is not None:
            model.eval()
            on_epoch_end(epoch, model, opt, float(sum(lrs) / len(lrs)) if lrs else 0.0)
            model.train()
        if step >= total:
            break
    model.eval()
    return LoraRun(model=model, tokenizer=tok, optimizer=opt, steps=step, losses=losses)


# ---------------------------------------------------------------------------------------------------------------
# LESS gradient features
class RademacherProjector:
    """x -> x R / sqrt(k) with R a (p x k) matrix of +-1 drawn block by block from a seeded generator, so train and
    target gradients meet the same R without ever holding it whole (TRAK's BasicProjector idea, re-implemented)."""

    def __init__(self, p: int, k: int, seed: int = 0, block: int = 4096) -> None:
        self.p, self.k, self.seed, self.block = p, k, seed, block

    def __call__(self, X: Any) -> Any:
        import torch

        if self.k >= self.p:                     # projecting up would only add noise: keep the gradient
            return X.float()
        out = torch.zeros(X.shape[0], self.k, dtype=torch.float32, device=X.device)
        for b, s in enumerate(range(0, self.p, self.block)):
            g = torch.Generator(device="cpu").manual_seed(self.seed * 1_000_003 + b)
            rows = min(self.block, self.p - s)
            R = torch.randint(0, 2, (rows, self.k), generator=g, dtype=torch.int8).to(X.device)
            out += X[:, s:s + rows].float() @ (R.float() * 2 - 1)
        return out / math.sqrt(self.k)


def grad_features(model: Any, tokenizer: Any, samples: Sequence[Any], *, max_length: int, projector: Any,
                  optimizer: Any = None, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                  tracker: Any = None, offset: int = 0) -> Any:
    """Per-sample LoRA gradients (batch size 1), L2-normalised after projection.

    With `optimizer` (LESS's train side) each gradient becomes the Adam update direction the warm-up optimizer
    would take: m' = b1 m + (1 - b1) g, v' = b2 v + (1 - b2) g^2, m' / sqrt(v' + eps) (princeton-nlp/LESS
    collect_grad_reps.py, eps inside the root). Without it (the target side) the plain SGD gradient is used."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise DamocError("LESS: the model has no trainable (LoRA) parameters")
    m_prev = v_prev = None
    if optimizer is not None:
        st = [optimizer.state.get(p, {}) for p in params]
        if all("exp_avg" in s for s in st):
            m_prev = torch.cat([s["exp_avg"].flatten() for s in st]).float()
            v_prev = torch.cat([s["exp_avg_sq"].flatten() for s in st]).float()
    feats = _features(tokenizer, samples, max_length)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    dev = params[0].device
    rows: list[Any] = []
    out: list[Any] = []
    b1, b2 = betas
    for k, f in enumerate(feats):
        model.zero_grad(set_to_none=True)
        loss = model(**_batch([f], pad, dev)).loss
        loss.backward()
        g = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params]).float()
        if m_prev is not None:
            m = b1 * m_prev + (1 - b1) * g
            v = b2 * v_prev + (1 - b2) * g * g
            g = m / torch.sqrt(v + eps)
        rows.append(g)
        if len(rows) == 32 or k == len(feats) - 1:
            out.append(projector(torch.stack(rows)))
            rows = []
        if tracker is not None:
            tracker.progress(offset + k + 1)
    model.zero_grad(set_to_none=True)
    F = torch.cat(out)
    return torch.nn.functional.normalize(F, dim=1).cpu().numpy()


def n_trainable(model: Any) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
