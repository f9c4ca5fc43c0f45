"""LaCo baseline (Yang et al. 2024, "LaCo: Large Language Model Pruning via Layer Collapse", arXiv 2402.11187).

Algorithm (the paper's Algorithm 1): walk from the top of the model down; at layer l try to collapse the next C-1
layers into l; keep the collapse if the final hidden states of the collapsed model stay close (cosine of the
flattened last hidden state, averaged over a few calibration texts) to the original model's, > T; then continue
from l - I, otherwise from l - 1.

Which LaCo: `reading="paper"` (the default) is the paper's Reserving-Differences-while-Seeking-Common merge,
theta*_l = theta_l + sum_k (theta_{l+k} - theta_l), on attention and MLP weights (norms untouched).
`reading="code"` reproduces what the official notebooks (yangyifei729/LaCo) actually compute: their in-place
`add_` loop telescopes to theta_{l+m}, i.e. layer l's linear weights are replaced by the last collapsed layer's
(issues yangyifei729/LaCo#4, #5), which is layer dropping plus a similarity-guided search. Written from the
description in algorithms.md 2.3; no code copied.

Runs on a loaded model (the search needs forwards), so memory is the model's; use the damoc rule for 7-9B on CPU.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from damoc.errors import ConfigError, DamocError


@dataclass
class LacoResult:
    removed: list[int]                         # original indices of the collapsed (removed) layers
    collapsed_into: dict[int, list[int]]       # kept original layer -> original layers collapsed into it
    trials: list[dict[str, Any]] = field(default_factory=list)   # l, merged, similarity, accepted
    reading: str = "paper"


def _final_hidden(model: Any, batches: list[dict[str, Any]]) -> list[Any]:
    import torch

    outs = []
    with torch.inference_mode():
        for enc in batches:
            outs.append(model.base_model(**enc, use_cache=False).last_hidden_state.float().flatten())
    return outs


def laco_prune(model: Any, tokenizer: Any, texts: Sequence[str], *, merge_layers: int = 3,
               threshold: float = 0.45, interval: int = 1, lowest: int = 1, highest: int | None = None,
               max_remove: int | None = None, reading: Literal["paper", "code"] = "paper",
               n_texts: int = 8, max_length: int = 128) -> LacoResult:
    """Collapse layers of `model` in place with LaCo; returns what was removed. The model ends up pruned and
    consistent (config, layer_idx), ready for `save_pretrained`.

    `merge_layers` is LaCo's C (layers per collapse, the kept one included; 3 by default for small models, the
    notebooks use 7 for 40 layers). With C = 2, or one layer left in the budget, RDSC degenerates to replacing
    layer l by layer l+1 (l's norms kept). `max_remove` caps the number of
    removed layers (to compare with DaMoC at the same depth); `lowest`/`highest` bound l (default: never
    collapse into layer 0, never touch the last layer).
    """
    import torch

    from damoc.prune.merge import is_norm_key
    from damoc.prune.surgery import decoder_layers, set_layers

    if reading not in ("paper", "code"):
        raise ConfigError(f"unknown LaCo reading {reading!r}", "use paper or code")
    if merge_layers < 2:
        raise ConfigError("merge_layers (C) must be at least 2")
    texts = [t for t in texts if t and t.strip()][:n_texts]
    if not texts:
        raise DamocError("LaCo needs calibration texts")
    device = next(model.parameters()).device
    batches = []
    for t in texts:   # one text per forward: LaCo flattens whole sequences, padding would leak into the cosine
        enc = tokenizer(t, return_tensors="pt", truncation=True, max_length=max_length)
        batches.append({k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")})
    model.eval()
    reference = _final_hidden(model, batches)
    original_cfg = model.config.to_dict()
    layers = decoder_layers(model)
    n = len(layers)
    current = [(i, layers[i]) for i in range(n)]        # (original index, module)
    budget = n - 1 if max_remove is None else max(0, int(max_remove))
    removed: list[int] = []
    collapsed: dict[int, list[int]] = {}
    trials: list[dict[str, Any]] = []
    top = (n - 1) if highest is None else min(highest, n - 1)
    l = top - merge_layers

    while l >= lowest and budget > len(removed):
        m = min(merge_layers - 1, budget - len(removed), len(current) - 1 - (l + 1))
        if m < 1:
            l -= 1
            continue
        target_orig, target = current[l]
        others = [mod for _, mod in current[l + 1:l + 1 + m]]
        saved = {k: p.detach().clone() for k, p in target.named_parameters()}
        with torch.no_grad():
            for name, p in target.named_parameters():
                if is_norm_key(name) or not torch.is_floating_point(p):
                    continue
                if reading == "paper":   # RDSC: theta_l + sum_k (theta_{l+k} - theta_l)
                    delta = sum(o.get_parameter(name).detach().float() - saved[name].float() for o in others)
                    p.copy_((saved[name].float() + delta).to(p.dtype))
                else:                    # official code: telescopes to the last collapsed layer
                    p.copy_(others[-1].get_parameter(name).detach())
        trial = current[:l + 1] + current[l + 1 + m:]
        set_layers(model, [mod for _, mod in trial], [i for i, _ in trial], original_cfg)
        sims = [float(torch.nn.functional.cosine_similarity(a, b, dim=0))
                for a, b in zip(reference, _final_hidden(model, batches))]
        sim = sum(sims) / len(sims)
        merged = [i for i, _ in current[l + 1:l + 1 + m]]
        ok = sim > threshold
        trials.append({"layer": target_orig, "merged": merged, "similarity": sim, "accepted": ok})
        if ok:
            current = trial
            removed += merged
            into = collapsed.setdefault(target_orig, [])
            for i in merged:                  # a collapsed layer may itself hold earlier collapses
                into += [i] + collapsed.pop(i, [])
            into.sort()
            l = min(l - interval, len(current) - 1 - merge_layers)
        else:
            with torch.no_grad():
                for name, p in target.named_parameters():
                    p.copy_(saved[name])
            set_layers(model, [mod for _, mod in current], [i for i, _ in current], original_cfg)
            l -= 1
    return LacoResult(removed=sorted(removed), collapsed_into=collapsed, trials=trials, reading=reading)
