"""Which stage applies to which candidate: the paper's default recipe, and named presets.

DaMoC sec. 5.2: fine-tuning a Chat model -> GraphCut + token compression + layer pruning with sparse merging;
fine-tuning a Base model -> GraphCut + token compression only. Pruning with sparse merging needs the Base weights
(W_pre in Eq. 4), so a Chat candidate without a Base gets the Base recipe unless `prune.allow_no_base` asks for
pruning by plain layer dropping. Every stage can be switched off or tuned in the run config; presets below are
just `--set` overrides with a name (used by the ablation benchmark).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from damoc.plugins import Registry
from damoc.pipeline.config import RunConfig


@dataclass(frozen=True)
class StageDecision:
    """Whether one stage runs, and why not when it does not."""

    stage: str
    enabled: bool
    reason: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CandidateFacts:
    """What the recipe needs to know about a candidate (from the registry)."""

    name: str
    has_base: bool
    merge_supported: bool = False
    merge_reason: str = ""


def data_stages(config: RunConfig) -> list[StageDecision]:
    """The shared data stages, in order. `prepare` (load + split) always runs."""
    out = [StageDecision("prepare", True, params=config.dataset.model_dump())]
    if config.mode != "damoc":
        why = f"not part of --mode {config.mode}"
        return out + [StageDecision("filter", False, why), StageDecision("compress", False, why)]
    f = config.filter
    out.append(StageDecision("filter", f.enabled, "" if f.enabled else "disabled (filter.enabled=false)",
                             f.model_dump()))
    c = config.compress
    out.append(StageDecision("compress", c.enabled, "" if c.enabled else "disabled (compress.enabled=false)",
                             c.model_dump()))
    return out


def prune_decision(config: RunConfig, cand: CandidateFacts) -> StageDecision:
    p = config.prune
    params = p.model_dump()
    if config.mode != "damoc":
        return StageDecision("prune", False, f"not part of --mode {config.mode}")
    if not p.enabled:
        return StageDecision("prune", False, "disabled (prune.enabled=false)")
    if config.variant == "base":
        return StageDecision("prune", False, "Base candidates are not pruned (paper sec. 5.2: GraphCut + "
                                             "token compression only)")
    if not cand.has_base or not cand.merge_supported:
        why = (cand.merge_reason or "").removeprefix("pruning skipped: ") or \
            "no Base checkpoint (W_pre) for sparse merging"
        if p.allow_no_base:
            return StageDecision("prune", True, f"merge skipped: {why}; layers dropped without merging",
                                 {**params, "allow_no_base": True})
        return StageDecision("prune", False, f"{why} (set prune.allow_no_base=true to prune by plain dropping)")
    return StageDecision("prune", True, params=params)


def candidate_stages(config: RunConfig, cand: CandidateFacts) -> list[StageDecision]:
    """The model stages of one candidate, in order (the cells are derived from these in plan.py)."""
    if config.mode in ("zero-shot", "few-shot"):
        return [StageDecision("prune", False, f"not part of --mode {config.mode}"),
                StageDecision("finetune", False, f"not part of --mode {config.mode}"),
                StageDecision("evaluate", True, params=config.evaluate.model_dump())]
    return [prune_decision(config, cand),
            StageDecision("finetune", True, params={m: getattr(config.finetune, m).model_dump()
                                                    for m in config.methods}),
            StageDecision("evaluate", True, params=config.evaluate.model_dump())]


# -- named presets (ablations) -----------------------------------------------------------------------

RECIPES: Registry[list[str]] = Registry("recipe", list)


def _preset(name: str, description: str, overrides: list[str]) -> None:
    RECIPES.add(name, f"{__name__}:_PRESETS.{name.replace('-', '_').replace('+', '_')}",
                description=description, overrides=overrides)


class _PRESETS:  # attribute holder so the registry's lazy "module:attr" targets resolve
    paper: list[str] = []
    filter_only = ["compress.enabled=false", "prune.enabled=false"]
    filter_compress = ["prune.enabled=false"]
    filter_prune = ["compress.enabled=false"]
    no_filter = ["filter.enabled=false"]


_preset("paper", "GraphCut 10% + token compression + pruning with sparse merging (Chat with Base)", [])
_preset("filter-only", "GraphCut 10% only", _PRESETS.filter_only)
_preset("filter+compress", "GraphCut + token compression (the paper's Base recipe)", _PRESETS.filter_compress)
_preset("filter+prune", "GraphCut + pruning with sparse merging", _PRESETS.filter_prune)
_preset("no-filter", "token compression + pruning on the whole training set", _PRESETS.no_filter)


def recipe_overrides(name: str) -> list[str]:
    """The `--set` overrides a named recipe stands for (UnknownNameError with did-you-mean otherwise)."""
    return list(RECIPES.entry(name).extra.get("overrides", []))
