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

from damoc.pipeline.cells import CompressCell, FilterCell, FinetuneCell, PrepareCell, PruneCell
from damoc.pipeline.config import RunConfig
from damoc.plugins import Registry

EVALUATE = "evaluate"      # the evaluation step of a candidate: inside its fine-tune cells, or an eval cell


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
    out = [StageDecision(PrepareCell.name, True, params=config.dataset.model_dump())]
    if config.mode != "damoc":
        why = f"not part of --mode {config.mode}"
        return out + [StageDecision(FilterCell.name, False, why), StageDecision(CompressCell.name, False, why)]
    f = config.filter
    out.append(StageDecision(FilterCell.name, f.enabled, "" if f.enabled else "disabled (filter.enabled=false)",
                             f.model_dump()))
    c = config.compress
    out.append(StageDecision(CompressCell.name, c.enabled, "" if c.enabled else "disabled (compress.enabled=false)",
                             c.model_dump()))
    return out


def prune_decision(config: RunConfig, cand: CandidateFacts) -> StageDecision:
    p = config.prune
    params = p.model_dump()
    if config.mode != "damoc":
        return StageDecision(PruneCell.name, False, f"not part of --mode {config.mode}")
    if not p.enabled:
        return StageDecision(PruneCell.name, False, "disabled (prune.enabled=false)")
    if config.variant == "base":
        return StageDecision(PruneCell.name, False, "Base candidates are not pruned (paper sec. 5.2: GraphCut + "
                                             "token compression only)")
    if not cand.has_base or not cand.merge_supported:
        why = (cand.merge_reason or "").removeprefix("pruning skipped: ") or \
            "no Base checkpoint (W_pre) for sparse merging"
        if p.allow_no_base:
            return StageDecision(PruneCell.name, True, f"merge skipped: {why}; layers dropped without merging",
                                 {**params, "allow_no_base": True})
        return StageDecision(PruneCell.name, False, f"{why} (set prune.allow_no_base=true to prune by plain dropping)")
    return StageDecision(PruneCell.name, True, params=params)


def candidate_stages(config: RunConfig, cand: CandidateFacts) -> list[StageDecision]:
    """The model stages of one candidate, in order (the cells are derived from these in plan.py)."""
    if config.mode in ("zero-shot", "few-shot"):
        return [StageDecision(PruneCell.name, False, f"not part of --mode {config.mode}"),
                StageDecision(FinetuneCell.name, False, f"not part of --mode {config.mode}"),
                StageDecision(EVALUATE, True, params=config.evaluate.model_dump())]
    return [prune_decision(config, cand),
            StageDecision(FinetuneCell.name, True, params={m: config.finetune.method(m).model_dump()
                                                    for m in config.methods}),
            StageDecision(EVALUATE, True, params=config.evaluate.model_dump())]


# -- named presets (ablations) -----------------------------------------------------------------------

@dataclass(frozen=True)
class Recipe:
    """A named preset: `--set` overrides of the default run config."""

    name: str
    description: str
    overrides: tuple[str, ...] = ()


RECIPES: Registry[Recipe] = Registry("recipe", Recipe)


def _recipe(name: str, description: str, *overrides: str) -> Recipe:
    return RECIPES.put(name, Recipe(name, description, overrides), description=description)


_recipe("paper", "GraphCut 10% + token compression + pruning with sparse merging (Chat with Base), one proxy each, "
                 "ranked by its score", "select.sizes=[1.0]", "select.predictor=final", "select.adaptive=false")
_recipe("filter-only", "GraphCut 10% only", "compress.enabled=false", "prune.enabled=false")
_recipe("filter+compress", "GraphCut + token compression (the paper's Base recipe)", "prune.enabled=false")
_recipe("filter+prune", "GraphCut + pruning with sparse merging", "compress.enabled=false")
_recipe("no-filter", "token compression + pruning on the whole training set", "filter.enabled=false")


def recipe_overrides(name: str) -> list[str]:
    """The `--set` overrides a named recipe stands for (UnknownNameError with did-you-mean otherwise)."""
    return list(RECIPES.get(name).overrides)
