"""Layer importance, DaMoC Eq. 3: the cosine between each decoder layer's input and output hidden states,
averaged over the real tokens of calibration texts. High cosine = the layer barely changes the residual stream =
unimportant (ShortGPT's Block Influence is 1 - this).

Measured with forward hooks on the decoder layers themselves, never `output_hidden_states`: in HF Llama/Qwen/Gemma
the last entry of `hidden_states` is taken *after* the final norm, which would corrupt the last layer's score
(algorithms.md 2.1). Padding never counts; the first token is excluded by default because its "massive activation"
makes its cosine ~1 in every layer and inflates all scores.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from damoc.errors import DamocError


def _hidden_in(args: tuple, kwargs: dict) -> Any:
    if args:
        return args[0]
    if "hidden_states" in kwargs:
        return kwargs["hidden_states"]
    raise DamocError("cannot find the hidden states passed to a decoder layer",
                     "this architecture calls its layers in an unexpected way; report it")


def _hidden_out(out: Any) -> Any:
    return out[0] if isinstance(out, (tuple, list)) else out


def layer_importance(model: Any, tokenizer: Any, texts: Sequence[str], *, first_token: bool = False,
                     batch_size: int = 8, max_length: int = 256,
                     progress: Callable[[int, int], None] | None = None) -> list[float]:
    """Eq. 3 per decoder layer: mean over calibration tokens of cos(layer input, layer output).

    `first_token=True` also counts each text's first token. Scores are token-weighted (a long text counts more, as
    in Eq. 3's 1/T sum over all calibration tokens). `progress(done, total)` is called after each batch.
    """
    import torch

    from damoc.prune.surgery import decoder_layers

    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise DamocError("no calibration text to measure layer importance on",
                         "pass training samples (--data FILE) or let damoc generate calibration text")
    if batch_size < 1 or max_length < 2:
        raise DamocError(f"batch_size {batch_size} / max_length {max_length} too small")
    layers = decoder_layers(model)
    n = len(layers)
    device = next(model.parameters()).device
    sums = torch.zeros(n, dtype=torch.float64)
    counts = torch.zeros(n, dtype=torch.float64)
    state: dict[str, Any] = {}

    def pre_hook(i: int) -> Callable:
        def fn(module: Any, args: tuple, kwargs: dict) -> None:
            state[i] = _hidden_in(args, kwargs)
        return fn

    def post_hook(i: int) -> Callable:
        def fn(module: Any, args: tuple, kwargs: dict, out: Any) -> None:
            h_in, h_out = state.pop(i), _hidden_out(out)
            mask = state["mask"]
            cos = torch.nn.functional.cosine_similarity(h_in.float(), h_out.float(), dim=-1)   # (B, T), fp32
            sums[i] += float(cos[mask].double().sum())
            counts[i] += float(mask.sum())
        return fn

    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.register_forward_pre_hook(pre_hook(i), with_kwargs=True))
        handles.append(layer.register_forward_hook(post_hook(i), with_kwargs=True))
    old_side = getattr(tokenizer, "padding_side", "right")
    was_training = model.training
    backbone = model.base_model  # skip the LM head: logits of a 150k vocabulary would dominate memory
    try:
        tokenizer.padding_side = "right"   # real tokens start at position 0, the first-token rule is simple
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.eval()
        batches = [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]
        with torch.inference_mode():
            for b, chunk in enumerate(batches, 1):
                enc = tokenizer(chunk, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
                attn = enc["attention_mask"].to(device)
                mask = attn.bool()
                if not first_token:
                    mask[:, 0] = False
                state["mask"] = mask
                backbone(input_ids=enc["input_ids"].to(device), attention_mask=attn, use_cache=False)
                if progress:
                    progress(b, len(batches))
    finally:
        for h in handles:
            h.remove()
        tokenizer.padding_side = old_side
        model.train(was_training)
    if float(counts.min()) == 0:
        raise DamocError("the calibration texts have no token to score (each is a single token?)",
                         "use longer calibration texts, or first_token=True")
    return [float(s / c) for s, c in zip(sums, counts)]
