"""Sparse merging of Chat-minus-Base task vectors into the kept layers (DaMoC Eq. 4-5), and the merge rules.

For a pruned layer l merged into kept layer k (the nearest kept layer before l, see `merge_targets`):

    tau_l = W_chat[l] - W_base[l]                       per tensor (attention and MLP weights and biases)
    S_l   = Sparse(tau_l): the floor(sparsity * numel) smallest |tau_l| set to zero (Eq. 5; 20% by default)
    W[k]  = rule(W_chat[k], S_l, sim_l, sim_k)           math in fp32, cast back to the checkpoint dtype

Norm weights are never merged (merging norms broke LaCo-style merges, algorithms.md 3.4). The sparsifier is the
magnitude strategy of DARE's `mask_input_with_mask_rate` and mergekit's `sparsify.magnitude` (density = 1 -
sparsity), written from their description: exactly k entries are zeroed even when magnitudes tie.

The paper's printed Eq. 4, W_new(l-1) = (1 - IS_l) W(l-1) + (1 - IS_(l-1)) Sparse(W(l) - W_pre(l)), cannot be used
literally with IS the cosine of Eq. 3 (it scales a kept layer by ~0.1), so several readings are registered and the
default is chosen by measurement (docs/pruning.md, bench/bench_prune.py).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from damoc.errors import ConfigError, DamocError
from damoc.plugins import Registry


@dataclass(frozen=True)
class MergeContext:
    """What a rule may use besides the kept weight and the sparse task vector."""

    sim_pruned: float           # Eq. 3 cosine of the pruned layer l
    sim_target: float           # Eq. 3 cosine of the kept layer k
    base_target: Any = None     # W_base[k] (fp32), only for rules with needs_base_target


@dataclass(frozen=True)
class MergeRule:
    name: str
    description: str
    fn: Callable[[Any, Any, MergeContext], Any] | None = None   # None: plain dropping
    needs_base_target: bool = False
    needs_scores: bool = True        # reads the Eq. 3 cosines (MergeContext.sim_*); additive and drop do not

    @property
    def merges(self) -> bool:
        return self.fn is not None

    def apply(self, w: Any, sparse_tau: Any, ctx: MergeContext) -> Any:
        if self.fn is None:
            return w
        return self.fn(w, sparse_tau, ctx)


def _bi_share(ctx: MergeContext) -> float:
    """BI_l / (BI_l + BI_k) with BI = 1 - cosine (ShortGPT's Block Influence); 0.5 when both are 0."""
    bi_l, bi_k = max(0.0, 1.0 - ctx.sim_pruned), max(0.0, 1.0 - ctx.sim_target)
    return 0.5 if bi_l + bi_k <= 0 else bi_l / (bi_l + bi_k)


def _additive(w: Any, s: Any, ctx: MergeContext) -> Any:
    return w + s


def _additive_scaled(w: Any, s: Any, ctx: MergeContext) -> Any:
    return w + _bi_share(ctx) * s


def _convex(w: Any, s: Any, ctx: MergeContext) -> Any:
    beta = _bi_share(ctx)
    return (1.0 - beta) * w + beta * (ctx.base_target + s)


def _paper(w: Any, s: Any, ctx: MergeContext) -> Any:
    # Eq. 4 with IS read as importance (1 - cosine): (1 - IS) = cosine, a mild shrink of the kept layer
    return ctx.sim_pruned * w + ctx.sim_target * s


def _literal(w: Any, s: Any, ctx: MergeContext) -> Any:
    # Eq. 4 exactly as printed, IS = the Eq. 3 cosine: kept layer scaled by (1 - cos) ~ 0.1 (kept for the ablation)
    return (1.0 - ctx.sim_pruned) * w + (1.0 - ctx.sim_target) * s


MERGE_RULES: Registry[MergeRule] = Registry("merge rule", MergeRule)


def _rule(name: str, description: str, fn: Callable[[Any, Any, MergeContext], Any] | None, *,
          family: str = "merge", aliases: tuple[str, ...] = (), **flags: bool) -> MergeRule:
    """A rule, registered where it is defined; the registry's name and description are the rule's own."""
    return MERGE_RULES.put(name, MergeRule(name, description, fn, **flags), family=family, description=description,
                           aliases=aliases)


ADDITIVE = _rule("additive", "W_k + Sparse(tau_l) (TIES-style task-vector addition, lambda = 1)", _additive,
                 aliases=("add", "ties"), needs_scores=False)
ADDITIVE_SCALED = _rule("additive_scaled", "W_k + BI_l/(BI_l+BI_k) * Sparse(tau_l), BI = 1 - cosine",
                        _additive_scaled)
CONVEX = _rule("convex", "(1-b) W_k + b (W_base_k + Sparse(tau_l)), b = BI_l/(BI_l+BI_k)", _convex,
               needs_base_target=True)
PAPER = _rule("paper", "Eq. 4 with IS = 1 - cosine: cos_l * W_k + cos_k * Sparse(tau_l)", _paper, aliases=("eq4",))
LITERAL = _rule("literal", "Eq. 4 as printed, IS = cosine: (1-cos_l) W_k + (1-cos_k) Sparse(tau_l); "
                "destroys the kept layer, for the ablation only", _literal)
DROP = _rule("drop", "plain layer dropping by the same scores (ShortGPT-style), no merge", None, family="drop",
             aliases=("shortgpt", "none"), needs_scores=False)

DEFAULT_RULE = "convex"
"""Chosen by bench/bench_prune.py on the demo zoo (docs/pruning.md has the numbers): of the rules, only `convex` beat
plain dropping on average on both held-out perplexities (raw: 5/5 pairs, answer: mean log-ratio -0.25) and on the
fine-tuned proxy score (+0.70 F1 over 10 pair-seeds); `additive` had the best proxy score (+0.96) but lost to
dropping on answer perplexity and on KL to the unpruned Chat."""


def get_rule(name: str | None) -> MergeRule:
    return MERGE_RULES.get(name or DEFAULT_RULE)


# -- sparsification ------------------------------------------------------------------------------------------------

def n_zeroed(numel: int, sparsity: float) -> int:
    """How many entries Sparse() zeroes: floor(sparsity * numel), robust to 0.29 * 100 = 28.999..."""
    return min(numel, int(math.floor(sparsity * numel + 1e-9)))


def check_sparsity(sparsity: float) -> float:
    if not 0.0 <= float(sparsity) < 1.0:
        raise ConfigError(f"sparsity {sparsity} is outside [0, 1)",
                          "sparsity is the fraction of task-vector entries set to zero; the paper uses 0.2")
    return float(sparsity)


def sparsify(tau: Any, sparsity: float, *, rescale: str = "none", inplace: bool = False) -> Any:
    """Zero exactly floor(sparsity * numel) entries of smallest magnitude (Eq. 5), per tensor, in fp32.

    `rescale="dare"` multiplies the survivors by 1/(1-sparsity) as DARE does; the default leaves them as they are
    (TIES-style)."""
    import torch

    check_sparsity(sparsity)
    out = tau.detach().to(torch.float32)
    if not (inplace and out.data_ptr() == tau.data_ptr()):     # `inplace`: zero the caller's fp32 tensor itself
        out = out.clone()
    k = n_zeroed(out.numel(), sparsity)
    if k > 0:
        flat = out.view(-1)
        # topk returns exactly k indices even among tied magnitudes (a threshold |x| <= tau would not)
        idx = torch.topk(flat.abs(), k, largest=False, sorted=False).indices
        flat[idx] = 0.0
    if rescale == "dare" and sparsity > 0:
        out.mul_(1.0 / (1.0 - sparsity))
    elif rescale not in ("none", "dare"):
        raise ConfigError(f"unknown rescale {rescale!r}", "use none or dare")
    return out


def is_norm_key(rest: str) -> bool:
    """`input_layernorm.weight`, `self_attn.q_norm.weight`, `ln_1.bias`, ... (never merged)."""
    modules = rest.split(".")[:-1]
    return any("norm" in m.lower() or m.lower().startswith("ln") for m in modules)


def merge_targets(pruned: Sequence[int], n_layers: int) -> dict[int, int]:
    """Pruned layer -> the nearest kept layer before it (after it when no kept layer precedes it)."""
    pruned_set = set(pruned)
    kept = [i for i in range(n_layers) if i not in pruned_set]
    if not kept:
        raise DamocError("cannot prune every layer")
    into = {}
    for l in sorted(pruned_set):
        before = [k for k in kept if k < l]
        into[l] = before[-1] if before else min(k for k in kept if k > l)
    return into


# -- the merger used by the checkpoint writer and by in-memory pruning ----------------------------------------------

@dataclass
class MergeStats:
    tensors_merged: int = 0
    tensors_skipped_norm: int = 0
    zeroed: int = 0
    entries: int = 0
    tau_rel_norm: list[float] = field(default_factory=list)   # ||tau_l|| / ||W_chat[l]|| per merged tensor

    def to_dict(self) -> dict[str, Any]:
        rel = self.tau_rel_norm
        return {"tensors_merged": self.tensors_merged, "norm_tensors_skipped": self.tensors_skipped_norm,
                "zeroed_fraction": (self.zeroed / self.entries) if self.entries else 0.0,
                "task_vector_rel_norm": (sum(rel) / len(rel)) if rel else None}


class LayerMerger:
    """Transform for the kept tensors: adds the sparse task vectors of the layers merged into them.

    `chat` and `base` only need `.get(full_name)` (a `CheckpointReader`, or a state dict wrapped in `DictSource`).
    """

    def __init__(self, *, chat: Any, base: Any, prefix: str, into: Mapping[int, int], scores: Sequence[float],
                 rule: MergeRule, sparsity: float, rescale: str = "none", device: str = "cpu") -> None:
        self.chat, self.base, self.prefix = chat, base, prefix
        self.sources: dict[int, list[int]] = {}
        for l, k in sorted(into.items()):
            self.sources.setdefault(k, []).append(l)
        self.scores = list(scores)
        self.rule = rule
        self.sparsity = check_sparsity(sparsity)
        self.rescale = rescale
        self.device = device
        self.stats = MergeStats()

    def __call__(self, layer: int, rest: str, tensor: Any) -> Any:
        import torch

        if layer not in self.sources or not self.rule.merges or not torch.is_floating_point(tensor):
            return tensor
        if is_norm_key(rest):
            self.stats.tensors_skipped_norm += 1
            return tensor
        w = tensor.to(self.device, torch.float32)
        base_k = None
        if self.rule.needs_base_target:
            base_k = self.base.get(f"{self.prefix}.{layer}.{rest}").to(self.device, torch.float32)
        for l in self.sources[layer]:
            name = f"{self.prefix}.{l}.{rest}"
            chat_l = self.chat.get(name).to(self.device, torch.float32)
            base_l = self.base.get(name).to(self.device, torch.float32)
            if chat_l.shape != w.shape or base_l.shape != w.shape:
                raise DamocError(f"cannot merge {name}: shapes chat {tuple(chat_l.shape)}, base "
                                 f"{tuple(base_l.shape)}, target {tuple(w.shape)}",
                                 "Chat and Base must share the architecture; use --rule drop")
            denom = float(chat_l.norm())
            tau = chat_l.sub_(base_l)               # in place: one fp32 copy less of the largest tensors
            del chat_l, base_l
            numel, tau_norm = tau.numel(), float(tau.norm())
            s = sparsify(tau, self.sparsity, rescale=self.rescale, inplace=True)
            del tau
            ctx = MergeContext(sim_pruned=float(self.scores[l]), sim_target=float(self.scores[layer]),
                               base_target=base_k)
            w = self.rule.apply(w, s, ctx)
            self.stats.tensors_merged += 1
            self.stats.zeroed += n_zeroed(numel, self.sparsity)
            self.stats.entries += numel
            if denom > 0:
                self.stats.tau_rel_norm.append(tau_norm / denom)
            del s
        return w.to(tensor.dtype).cpu()


class DictSource:
    """`.get(name)` over an in-memory state dict (for `prune_model` on loaded models)."""

    def __init__(self, state: Mapping[str, Any]) -> None:
        self.state = state

    def get(self, name: str) -> Any:
        if name not in self.state:
            raise DamocError(f"tensor {name!r} not found in the model")
        return self.state[name]
