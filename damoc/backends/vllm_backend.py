"""The vLLM backend (GPU boxes with vllm installed; never part of the base install: feasibility.md section 3).

Greedy decoding with vLLM's native stop strings; log-likelihoods from `prompt_logprobs`, as lm-evaluation-harness's
vllm model does. Prompts are passed as token ids built by `prompt_ids`, so BOS handling matches the fine-tune.
"""
from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

from damoc.backends.base import GenerationBackend, cut_at_stop, prompt_ids
from damoc.errors import ConfigError


class VLLMBackend(GenerationBackend, name="vllm"):

    def __init__(self, model: Any, *, tokenizer: Any = None, device: str = "auto", dtype: str = "auto",
                 gpu_memory_utilization: float = 0.85, tensor_parallel_size: int = 1, max_model_len: int | None = None,
                 trust_remote_code: bool = False, seed: int = 0, **_: Any) -> None:
        if not isinstance(model, (str, Path)):
            raise ConfigError("the vllm backend loads models from a folder, not from memory",
                              "save the model first, or use backend='transformers'")
        try:
            from vllm import LLM
        except ImportError as e:
            raise ConfigError(f"vllm is not importable ({e})",
                              "pip install vllm on a CUDA machine, or use backend='transformers'") from e
        if device not in ("", "auto") and not str(device).startswith("cuda"):
            raise ConfigError(f"the vllm backend needs a CUDA device, got {device!r}", "use backend='transformers'")
        self.llm = LLM(model=str(model), dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
                       tensor_parallel_size=tensor_parallel_size, max_model_len=max_model_len,
                       trust_remote_code=trust_remote_code, seed=seed)
        self.tokenizer = tokenizer or self.llm.get_tokenizer()

    def _prompts(self, texts: list[str]) -> list[Any]:
        from vllm.inputs import TokensPrompt

        return [TokensPrompt(prompt_token_ids=prompt_ids(self.tokenizer, t)) for t in texts]

    def generate(self, prompts: list[str], *, max_new_tokens: int = 64, stop: list[str] | None = None,
                 batch_size: int | None = None) -> list[str]:
        from vllm import SamplingParams

        if not prompts:
            return []
        stop = [s for s in (stop or []) if s]
        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop=stop or None)
        # vLLM schedules its own batches (continuous batching); batch_size is accepted for interface parity.
        outs = self.llm.generate(self._prompts(prompts), params, use_tqdm=False)
        return [cut_at_stop(o.outputs[0].text, stop) for o in outs]

    def loglikelihood(self, contexts: list[str], continuations: list[str], *,
                      batch_size: int | None = None) -> list[tuple[float, int]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        seqs: list[tuple[list[int], int]] = []
        for ctx, cont in zip(contexts, continuations, strict=True):
            c_ids = prompt_ids(self.tokenizer, ctx) if ctx else [self.tokenizer.bos_token_id or
                                                                    self.tokenizer.eos_token_id]
            a_ids = list(self.tokenizer(cont, add_special_tokens=False)["input_ids"]) if cont else []
            seqs.append((c_ids + a_ids, len(a_ids)))
        params = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=1)
        todo = [i for i, (_, n) in enumerate(seqs) if n > 0]
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=seqs[i][0]) for i in todo], params, use_tqdm=False)
        results: list[tuple[float, int]] = [(0.0, 0)] * len(seqs)
        for i, o in zip(todo, outs):
            seq, n = seqs[i]
            total = 0.0
            for pos in range(len(seq) - n, len(seq)):
                total += o.prompt_logprobs[pos][seq[pos]].logprob   # the actual token is always included
            results[i] = (total, n)
        return results

    def close(self) -> None:
        try:
            from vllm.distributed.parallel_state import destroy_model_parallel
            destroy_model_parallel()
        except Exception:  # noqa: BLE001 - best effort; the process usually ends right after
            pass
        self.llm = None
        gc.collect()
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
