"""Language-model scoring for the quality-aware and hybrid filters: IFD, judge ratings, digit-probability scores,
reward models, Cherry's hidden-state read-out (the short LoRA runs and LESS gradients are in `warmup.py`).

Prompts are framed as the fine-tune frames them (`damoc.models.format_prompt`, `damoc.backends.base.prompt_ids` /
`continuation_ids`), so a scorer sees a sample exactly as a candidate will be trained on it. Generation and
teacher-forced log-likelihoods go through `damoc.backends` (vLLM on a GPU box when installed, transformers
otherwise). Scores that only depend on (model, text) are cached on disk under `settings.cache_dir / "filters"`.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from damoc.errors import ConfigError
from damoc.fsutil import stable_hash
from damoc.settings import Settings


# ---------------------------------------------------------------------------------------------------------------
# on-disk cache of per-text scores
class ScoreCache:
    """key -> JSON value, one JSONL file per (kind, model). Appends whole lines, so parallel writers are safe."""

    def __init__(self, settings: Settings, kind: str, model_key: str) -> None:
        self.path = Path(settings.cache_dir) / "filters" / f"{kind}-{model_key}.jsonl"
        self._data: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._data is None:
            self._data = {}
            if self.path.is_file():
                with open(self.path, encoding="utf-8", errors="replace") as f:
                    for line in f:
                        try:
                            rec = json.loads(line)
                            self._data[rec["k"]] = rec["v"]
                        except (json.JSONDecodeError, KeyError, TypeError):
                            continue          # a torn last line after a crash
        return self._data

    def get(self, key: str) -> Any:
        return self._load().get(key)

    def put_many(self, items: dict[str, Any]) -> None:
        if not items:
            return
        self._load().update(items)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = "".join(json.dumps({"k": k, "v": v}, ensure_ascii=False) + "\n" for k, v in items.items())
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data.encode("utf-8"))
        finally:
            os.close(fd)


def cached_map(cache: ScoreCache | None, keys: Sequence[str], compute: Callable[[list[int]], list[Any]]) -> list[Any]:
    """Values for `keys`, computing only the missing ones (by position) and storing them."""
    out: list[Any] = [None] * len(keys)
    todo: list[int] = []
    for i, k in enumerate(keys):
        v = cache.get(k) if cache is not None else None
        if v is None:
            todo.append(i)
        else:
            out[i] = v
    if todo:
        # compute each distinct key once
        first: dict[str, int] = {}
        uniq = [i for i in todo if first.setdefault(keys[i], i) == i]
        vals = compute(uniq)
        got = {keys[i]: v for i, v in zip(uniq, vals)}
        for i in todo:
            out[i] = got[keys[i]]
        if cache is not None:
            cache.put_many({k: v for k, v in got.items() if v is not None})
    return out


def model_key(path: str) -> str:
    from damoc.embeddings import encoder_key        # same folder fingerprint: config + weight file sizes
    return encoder_key(path)


# ---------------------------------------------------------------------------------------------------------------
# the scorer model
class ScorerLM:
    """A causal LM used as a scorer or judge, loaded once through `damoc.backends`."""

    def __init__(self, path: str, settings: Settings, *, model: Any = None, tokenizer: Any = None,
                 name: str | None = None) -> None:
        from damoc.backends import get_backend
        from damoc.backends.hf import TransformersBackend
        from damoc.models import hf_offline_env, resolve_device

        hf_offline_env(settings)
        self.path = path
        self.settings = settings
        self.device = resolve_device(settings.device)
        try:
            self.backend = get_backend(model if model is not None else path, device=self.device,
                                       tokenizer=tokenizer)
        except OSError as e:
            raise ConfigError(f"cannot load the scorer model {path!r}: {str(e).splitlines()[0]}",
                              "pass a local model folder or a registry candidate name with --scorer") from None
        self.tokenizer = self.backend.tokenizer
        self.key = name or (model_key(path) if model is None else stable_hash("in-memory", path, id(model)))
        # the transformers backend's model serves forward passes too; next to vLLM a copy loads on first use
        self._hf_model = self.backend.model if isinstance(self.backend, TransformersBackend) else None

    @property
    def model(self) -> Any:
        """A transformers model for forward passes (the backend's own, or a second copy next to vLLM)."""
        if self._hf_model is None:
            from damoc.models import load_causal_lm
            self._hf_model = load_causal_lm(self.path, device=self.device)
        return self._hf_model

    def frame(self, user_text: str, system: str | None = None) -> str:
        from damoc.models import format_prompt
        return format_prompt(self.tokenizer, user_text, system=system)

    def close(self) -> None:
        self.backend.close()
        self._hf_model = None


def is_reward_model(path: str) -> bool:
    """A sequence-classification head (MoDS's reward model, CaR's IQS-like regressors) rather than a causal LM."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        archs = json.loads(cfg.read_text(encoding="utf-8")).get("architectures") or []
    except (json.JSONDecodeError, OSError):
        return False
    return any(str(a).endswith("ForSequenceClassification") for a in archs)


# ---------------------------------------------------------------------------------------------------------------
# IFD
@dataclass
class AnswerLoss:
    cond: float          # mean CE of the answer tokens given the prompt
    direct: float        # mean CE of the answer tokens alone
    tokens: int


def answer_losses(lm: ScorerLM, samples: Sequence[Any], *, tracker: Any = None, cache: bool = True,
                  batch_size: int | None = None) -> list[AnswerLoss]:
    """Per-sample mean answer losses with and without the prompt (one teacher-forced pass each).

    Both use the same answer tokens (tokenised after the prompt, as the fine-tune does); the direct pass starts the
    answer after a lone BOS (or EOS) token, so every answer token is scored in both, unlike GPT-2 in the
    Superfiltering code, where the first answer token is never scored."""
    from damoc.backends.base import continuation_text

    prompts = [lm.frame(s.prompt) for s in samples]
    conts = [continuation_text(p, s.answer) for p, s in zip(prompts, samples)]
    keys = [stable_hash("ifd", p, c) for p, c in zip(prompts, conts)]
    store = ScoreCache(lm.settings, "ifd", lm.key) if cache else None
    done = [0]

    def compute(idx: list[int]) -> list[Any]:
        out = []
        step = 64
        for s in range(0, len(idx), step):
            part = idx[s:s + step]
            cond = lm.backend.loglikelihood([prompts[i] for i in part], [conts[i] for i in part],
                                            batch_size=batch_size)
            direct = lm.backend.loglikelihood(["" for _ in part], [conts[i] for i in part], batch_size=batch_size)
            for (lc, nc), (ld, nd) in zip(cond, direct):
                out.append([-lc / nc if nc else None, -ld / nd if nd else None, int(nc)])
            done[0] += len(part)
            if tracker is not None:
                tracker.progress(done[0])
        return out

    vals = cached_map(store, keys, compute)
    return [AnswerLoss(float("nan") if v[0] is None else v[0], float("nan") if v[1] is None else v[1], int(v[2]))
            for v in vals]


def ifd_superfiltering(loss: AnswerLoss) -> float:
    """Superfiltering's IFD (tianyi-lab/Superfiltering code_ifd/data_analysis.py): the perplexity ratio
    ppl(A|Q) / ppl(A) = exp(L(A|Q) - L(A))."""
    if not (math.isfinite(loss.cond) and math.isfinite(loss.direct)):
        return float("nan")
    return math.exp(loss.cond - loss.direct)


def ifd_cherry(loss: AnswerLoss) -> float:
    """Cherry LLM's IFD (tianyi-lab/Cherry_LLM cherry_seletion/data_analysis.py): the ratio of mean losses
    L(A|Q) / L(A)."""
    if not (math.isfinite(loss.cond) and math.isfinite(loss.direct)) or loss.direct <= 0:
        return float("nan")
    return loss.cond / loss.direct


# ---------------------------------------------------------------------------------------------------------------
# ratings from next-token probabilities (Deita's scorer read-out; our fallback for judges that do not answer)
def digit_expectations(lm: ScorerLM, prompts: Sequence[str], digits: Sequence[int], *, tracker: Any = None,
                       cache_kind: str | None = None, batch_tokens: int = 4096) -> list[tuple[float, float]]:
    """For each (already framed) prompt: (sum_k k * p(k) / sum_k p(k), sum_k p(k)) over the next token being one of
    `digits`, as Deita reads its scorers (hkust-nlp/deita llama_scorer.py: softmax over the "1".."6" logits).
    The digit token ids come from this tokenizer (never hard-coded Llama-1 ids); a digit that is not a single
    token after the prompt is scored by its full teacher-forced probability instead."""
    import numpy as np

    from damoc.backends.base import continuation_ids, prompt_ids

    store = ScoreCache(lm.settings, cache_kind, lm.key) if cache_kind else None
    keys = [stable_hash("digits", list(digits), p) for p in prompts]
    done = [0]

    def compute(idx: list[int]) -> list[Any]:
        import torch

        out: list[Any] = [None] * len(idx)
        singles: list[int] = []
        for j, i in enumerate(idx):
            ids = [continuation_ids(lm.tokenizer, prompts[i], str(d)) for d in digits]
            if all(len(t) == 1 for t in ids):
                singles.append(j)
            else:                    # multi-token digits: exact probability of each digit string
                ll = lm.backend.loglikelihood([prompts[i]] * len(digits),
                                              [lm.tokenizer.decode(t) for t in ids])
                p = np.exp([x for x, _ in ll])
                out[j] = _expect(p, digits)
        model = lm.model
        pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
        enc = {j: prompt_ids(lm.tokenizer, prompts[idx[j]]) for j in singles}
        order = sorted(singles, key=lambda j: len(enc[j]))
        k = 0
        was = model.training
        model.eval()
        try:
            while k < len(order):
                width = len(enc[order[k]])
                batch = [order[k]]
                k += 1
                while k < len(order) and len(enc[order[k]]) * (len(batch) + 1) <= max(batch_tokens, width):
                    batch.append(order[k])
                    width = len(enc[order[k]])
                    k += 1
                ids = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for r, j in enumerate(batch):
                    e = enc[j]
                    ids[r, :len(e)] = torch.tensor(e)
                    mask[r, :len(e)] = 1
                with torch.inference_mode():
                    logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits
                for r, j in enumerate(batch):
                    last = logits[r, len(enc[j]) - 1].float()
                    probs = torch.softmax(last, dim=-1)
                    dig = [continuation_ids(lm.tokenizer, prompts[idx[j]], str(d))[0] for d in digits]
                    out[j] = _expect(probs[dig].cpu().numpy(), digits)
                done[0] += len(batch)
                if tracker is not None:
                    tracker.progress(done[0])
        finally:
            model.train(was)
        return out

    vals = cached_map(store, keys, compute)
    return [(float(v[0]), float(v[1])) for v in vals]


def _expect(p: Any, digits: Sequence[int]) -> list[float]:
    import numpy as np

    p = np.asarray(p, dtype=np.float64)
    mass = float(p.sum())
    if not mass > 0:
        return [float(np.mean(digits)), 0.0]
    return [float((p * np.asarray(digits, dtype=np.float64)).sum() / mass), mass]


# ---------------------------------------------------------------------------------------------------------------
# generation (judges, MoDS's necessity step)
def generate(lm: ScorerLM, prompts: Sequence[str], *, max_new_tokens: int = 64, stop: list[str] | None = None,
             cache_kind: str | None = None, tracker: Any = None) -> list[str]:
    store = ScoreCache(lm.settings, cache_kind, lm.key) if cache_kind else None
    keys = [stable_hash("gen", max_new_tokens, stop or [], p) for p in prompts]
    done = [0]

    def compute(idx: list[int]) -> list[Any]:
        out: list[str] = []
        step = 32
        for s in range(0, len(idx), step):
            part = idx[s:s + step]
            out += lm.backend.generate([prompts[i] for i in part], max_new_tokens=max_new_tokens, stop=stop)
            done[0] += len(part)
            if tracker is not None:
                tracker.progress(done[0])
        return out

    return [str(v) for v in cached_map(store, keys, compute)]


# ---------------------------------------------------------------------------------------------------------------
# reward models (MoDS quality; any *ForSequenceClassification folder)
def reward_scores(path: str, settings: Settings, questions: Sequence[str], answers: Sequence[str], *,
                  batch_size: int = 16, tracker: Any = None) -> list[float]:
    """logit[0] of a sequence-classification reward model on (question, answer) pairs, as MoDS scores with
    OpenAssistant/reward-model-deberta-v3-large-v2 (CASIA-LM/MoDS quality-evaluation)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from damoc.models import hf_offline_env, resolve_device

    hf_offline_env(settings)
    dev = resolve_device(settings.device)
    store = ScoreCache(settings, "reward", model_key(path))
    keys = [stable_hash("reward", q, a) for q, a in zip(questions, answers)]

    def compute(idx: list[int]) -> list[Any]:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path).to(dev).eval()
        out = []
        for s in range(0, len(idx), batch_size):
            part = idx[s:s + batch_size]
            enc = tok([questions[i] for i in part], [answers[i] for i in part], padding=True, truncation=True,
                      max_length=512, return_tensors="pt").to(dev)
            with torch.inference_mode():
                logits = model(**enc).logits
            out += [float(x) for x in logits[:, 0].float().cpu()]
            if tracker is not None:
                tracker.progress(s + len(part))
        return out

    return [float(v) for v in cached_map(store, keys, compute)]


# ---------------------------------------------------------------------------------------------------------------
# Cherry's pre-experience read-out
def mean_hidden_and_ppl(lm: ScorerLM, texts: Sequence[str], *, batch_tokens: int = 4096, tracker: Any = None
                        ) -> tuple[Any, Any]:
    """Mean of the last hidden state over each text's tokens (Cherry's instruction embedding) and the text's
    perplexity under the model, from one forward pass."""
    import numpy as np
    import torch

    from damoc.backends.base import prompt_ids

    model = lm.model
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    enc = [prompt_ids(lm.tokenizer, t)[-1024:] or [pad] for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(enc[i]))
    H: list[Any] = [None] * len(texts)
    P = np.zeros(len(texts))
    k = 0
    was = model.training
    model.eval()
    try:
        while k < len(order):
            batch = [order[k]]
            k += 1
            while k < len(order) and len(enc[order[k]]) * (len(batch) + 1) <= batch_tokens:
                batch.append(order[k])
                k += 1
            width = max(len(enc[i]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, i in enumerate(batch):
                ids[r, :len(enc[i])] = torch.tensor(enc[i])
                mask[r, :len(enc[i])] = 1
            ids, mask = ids.to(model.device), mask.to(model.device)
            with torch.inference_mode():
                out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            h = out.hidden_states[-1].float()
            m = mask.unsqueeze(-1).float()
            mean = (h * m).sum(1) / m.sum(1).clamp_min(1)
            lp = torch.log_softmax(out.logits[:, :-1].float(), dim=-1)
            tok_lp = lp.gather(2, ids[:, 1:, None]).squeeze(-1) * mask[:, 1:]
            counts = mask[:, 1:].sum(1).clamp_min(1)
            for r, i in enumerate(batch):
                H[i] = mean[r].cpu().numpy()
                P[i] = float(torch.exp(-tok_lp[r].sum() / counts[r]))
            if tracker is not None:
                tracker.advance(len(batch))
    finally:
        model.train(was)
    return np.stack(H).astype(np.float32), P
