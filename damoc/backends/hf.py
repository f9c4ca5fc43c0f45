"""The transformers backend: batched greedy `generate` with left padding, stop strings + EOS, KV cache; and batched
teacher-forced log-likelihood (the lm-evaluation-harness `loglikelihood` request, re-implemented for our needs)."""
from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

from damoc.backends.base import GenerationBackend, cut_at_stop, eos_ids, prompt_ids
from damoc.errors import ConfigError
from damoc.models import load_causal_lm, load_tokenizer, resolve_device, takes_logits_to_keep


def _stop_criteria(tokenizer: Any, stop: list[str], prompt_len: int) -> Any:
    import torch
    from transformers import StoppingCriteria

    # Decode only the tail of each row: a stop string of n characters spans at most ~n tokens (+ a few for
    # byte-fallback pieces). The final cut is made on the full decoded text, so a miss only costs extra steps.
    tail = max(len(s) for s in stop) + 4

    class StopOnStrings(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            new = input_ids[:, prompt_len:]
            done = [any(s in tokenizer.decode(row[-tail:], skip_special_tokens=True) for s in stop) for row in new]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StopOnStrings()


class TransformersBackend(GenerationBackend, name="transformers"):
    """Generation and scoring with a Hugging Face causal LM (a folder, or a model already in memory)."""

    def __init__(self, model: Any, *, tokenizer: Any = None, device: str = "auto", dtype: Any = None,
                 trust_remote_code: bool = False, **_: Any) -> None:
        if isinstance(model, (str, Path)):
            path = Path(model)
            if not (path / "config.json").is_file() and path.exists():
                raise ConfigError(f"{path}: not a Hugging Face model folder (no config.json)",
                                  "pass a folder written by save_pretrained, or a registry candidate's path")
            self.model = load_causal_lm(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
            self.tokenizer = tokenizer or load_tokenizer(model, trust_remote_code=trust_remote_code)
            self._owns_model = True
        else:
            self.model = model
            if device not in ("", "auto"):
                self.model.to(resolve_device(device))
            if tokenizer is None:
                src = getattr(getattr(model, "config", None), "_name_or_path", "") or getattr(model, "name_or_path", "")
                if not src or not Path(src).exists():
                    raise ConfigError("a model passed in memory needs its tokenizer",
                                      "call get_backend(model, tokenizer=tok)")
                tokenizer = load_tokenizer(src)
            self.tokenizer = tokenizer
            self._owns_model = False
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.device = next(self.model.parameters()).device
        self.eos = eos_ids(self.tokenizer, self.model)

    # -- helpers -----------------------------------------------------------------------------------
    @property
    def max_length(self) -> int:
        cfg = getattr(self.model, "config", None)
        n = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
        tok_n = getattr(self.tokenizer, "model_max_length", None)
        cands = [int(x) for x in (n, tok_n) if x and int(x) < 10**7]
        return min(cands) if cands else 2048

    def _default_batch(self) -> int:
        return 64 if self.device.type == "cuda" else 16

    # -- generation --------------------------------------------------------------------------------
    def generate(self, prompts: list[str], *, max_new_tokens: int = 64, stop: list[str] | None = None,
                 batch_size: int | None = None) -> list[str]:
        import torch

        if not prompts:
            return []
        stop = [s for s in (stop or []) if s]
        bs = max(1, batch_size or self._default_batch())
        room = max(1, self.max_length - max_new_tokens)
        encoded = [prompt_ids(self.tokenizer, p)[-room:] for p in prompts]     # keep the end: it holds the question
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))  # similar lengths share a batch
        out: list[str] = [""] * len(prompts)
        pad = self.tokenizer.pad_token_id
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(order), bs):
                idx = order[start:start + bs]
                width = max(len(encoded[i]) for i in idx)
                # left padding: every row's last prompt token sits at the same position, so the first generated
                # token of each row is read from the same column; position ids follow the attention mask.
                ids = torch.full((len(idx), width), pad, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for r, i in enumerate(idx):
                    n = len(encoded[i])
                    ids[r, width - n:] = torch.tensor(encoded[i], dtype=torch.long)
                    mask[r, width - n:] = 1
                kwargs: dict[str, Any] = dict(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                    max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                    pad_token_id=pad, eos_token_id=self.eos or None,
                    temperature=None, top_p=None, top_k=None)
                if stop:
                    from transformers import StoppingCriteriaList
                    kwargs["stopping_criteria"] = StoppingCriteriaList([_stop_criteria(self.tokenizer, stop, width)])
                with torch.inference_mode():
                    gen = self.model.generate(**kwargs)
                for r, i in enumerate(idx):
                    new = gen[r, width:].tolist()
                    # cut at the first end-of-turn id: it may be an ordinary token (a chat model's end marker
                    # declared in its generation config), which skip_special_tokens would keep
                    end = next((k for k, t in enumerate(new) if t in self.eos), len(new))
                    text = self.tokenizer.decode(new[:end], skip_special_tokens=True)
                    out[i] = cut_at_stop(text, stop)
        finally:
            self.model.train(was_training)
        return out

    # -- scoring -----------------------------------------------------------------------------------
    def loglikelihood(self, contexts: list[str], continuations: list[str], *,
                      batch_size: int | None = None) -> list[tuple[float, int]]:
        """Sum log-prob and token count of each continuation given its context.

        Tokenisation follows the fine-tune: `prompt_ids(context)` + the continuation tokenised on its own (pass the
        continuation exactly as it follows the prompt, e.g. `continuation_text(prompt, answer)`; a leading space is
        kept). Too-long pairs lose context tokens from the left, never continuation tokens."""
        import torch

        if len(contexts) != len(continuations):
            raise ValueError("contexts and continuations differ in length")
        pairs: list[tuple[list[int], int]] = []
        for ctx, cont in zip(contexts, continuations):
            c_ids = prompt_ids(self.tokenizer, ctx) if ctx else []
            a_ids = list(self.tokenizer(cont, add_special_tokens=False)["input_ids"]) if cont else []
            if not c_ids:        # the first continuation token needs something to be predicted from
                c_ids = [self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.eos[0]]
            seq = (c_ids + a_ids)[-(self.max_length):]
            pairs.append((seq, min(len(a_ids), len(seq) - 1)))
        results: list[tuple[float, int]] = [(0.0, 0)] * len(pairs)
        bs = max(1, batch_size or self._default_batch())
        order = sorted(range(len(pairs)), key=lambda i: -len(pairs[i][0]))
        pad = self.tokenizer.pad_token_id
        was_training = self.model.training
        trim = takes_logits_to_keep(self.model)
        self.model.eval()
        try:
            for start in range(0, len(order), bs):
                idx = [i for i in order[start:start + bs] if pairs[i][1] > 0]
                if not idx:
                    continue
                width = max(len(pairs[i][0]) for i in idx)
                ids = torch.full((len(idx), width), pad, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for r, i in enumerate(idx):           # right padding: real tokens keep positions 0..L-1
                    seq = pairs[i][0]
                    ids[r, :len(seq)] = torch.tensor(seq, dtype=torch.long)
                    mask[r, :len(seq)] = 1
                # the LM head only runs from the batch's first scored position on (as the fine-tune's
                # trim_prompt_logits): a batch x width x vocabulary logits tensor is most of the evaluation's
                # memory at a 128-256k vocabulary, and its rows over the prompts are never read
                first = min(len(pairs[i][0]) - pairs[i][1] - 1 for i in idx)
                kw = {"logits_to_keep": width - first} if trim else {}
                offset = first if trim else 0
                with torch.inference_mode():
                    logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                        **kw).logits
                for r, i in enumerate(idx):
                    seq, n = pairs[i]
                    L = len(seq)
                    # token j is predicted by the logits at j-1 (kept row j-1-offset); only the continuation's rows
                    # need a softmax
                    lp = torch.log_softmax(logits[r, L - n - 1 - offset:L - 1 - offset].float(), dim=-1)
                    tgt = torch.tensor(seq[L - n:], device=lp.device)
                    results[i] = (float(lp.gather(1, tgt[:, None]).sum()), n)
        finally:
            self.model.train(was_training)
        return results

    def close(self) -> None:
        if self._owns_model:
            self.model = None
            gc.collect()
            import torch
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

