"""Removing decoder layers from Hugging Face causal LMs, safely.

Three things must change together when layers go (feasibility.md section 6, algorithms.md 2.4):
1. the `ModuleList` of decoder layers (state-dict keys renumber themselves from it);
2. every `layer_idx` attribute inside the kept layers: attention modules use it as their KV-cache slot, so a stale
   index raises `IndexError` in `generate()` (transformers#30508);
3. every config field that counts or lists layers: `num_hidden_layers` (models iterate `layers[:num_hidden_layers]`,
   so a stale count silently truncates, and `from_pretrained` re-initialises "missing" layers), `layer_types` and
   `no_rope_layers` (one entry per layer, read by index at construction and in the forward), `max_window_layers`.

Only architectures whose layer bookkeeping we have checked (and test) are accepted; anything else is refused with
the list of supported ones, because a silently wrong surgery gives a model that loads but computes garbage.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from damoc.errors import DamocError


class UnsupportedArchitecture(DamocError):
    """Layer surgery is not implemented (and tested) for this model type."""


@dataclass(frozen=True)
class ArchSpec:
    """Where a model type keeps its decoder layers and which config fields count them."""

    model_type: str
    layers: str = "model.layers"          # attribute path from the *ForCausalLM, and state-dict key prefix
    per_layer_lists: tuple[str, ...] = ()  # config lists with one entry per layer (sliced by the kept indices)
    window_count: bool = False            # config.max_window_layers: first-N-layers count (Qwen2/Qwen3)


_LT = ("layer_types",)
ARCHS: dict[str, ArchSpec] = {s.model_type: s for s in (
    # the demo zoo's architectures and the catalog's families (Llama-3.x, Yi, SmolLM2 are llama; Ministral is
    # mistral or ministral; GLM-4-9B-chat-hf is glm)
    ArchSpec("llama"),
    ArchSpec("mistral"),
    ArchSpec("ministral", per_layer_lists=_LT),
    ArchSpec("qwen2", per_layer_lists=_LT, window_count=True),
    ArchSpec("qwen3", per_layer_lists=_LT, window_count=True),
    ArchSpec("gemma"),
    ArchSpec("gemma2", per_layer_lists=_LT),
    ArchSpec("gemma3_text", per_layer_lists=_LT),
    ArchSpec("phi3"),
    ArchSpec("gpt_neox", layers="gpt_neox.layers"),
    ArchSpec("olmo"),
    ArchSpec("olmo2"),
    ArchSpec("olmo3", per_layer_lists=_LT),
    ArchSpec("glm"),
    ArchSpec("glm4"),
    ArchSpec("granite"),
    ArchSpec("starcoder2"),
    ArchSpec("cohere"),
    ArchSpec("cohere2", per_layer_lists=_LT),
    ArchSpec("smollm3", per_layer_lists=("layer_types", "no_rope_layers")),
    ArchSpec("helium"),
    ArchSpec("stablelm"),
)}


def supported_architectures() -> list[str]:
    return sorted(ARCHS)


def arch_spec(config: Any) -> ArchSpec:
    """The spec for a config (a `PretrainedConfig` or the dict of a config.json); refuses what we cannot handle."""
    cfg = _as_dict(config)
    mt = str(cfg.get("model_type") or "")
    if cfg.get("auto_map"):
        raise UnsupportedArchitecture(
            f"model type {mt!r} uses remote code (auto_map in config.json); damoc cannot know how it counts layers",
            "use a checkpoint converted to a native transformers architecture (e.g. the '-hf' variant), "
            "or pass --rule drop after checking the model by hand")
    if mt not in ARCHS:
        raise UnsupportedArchitecture(
            f"layer pruning is not supported for model type {mt!r}",
            f"supported: {', '.join(supported_architectures())}; the candidate can still be selected without pruning")
    if not isinstance(cfg.get("num_hidden_layers"), int) or cfg["num_hidden_layers"] < 1:
        raise UnsupportedArchitecture(f"config of model type {mt!r} has no valid num_hidden_layers",
                                      "check the model's config.json")
    return ARCHS[mt]


def _as_dict(config: Any) -> dict[str, Any]:
    if isinstance(config, Mapping):
        return dict(config)
    return config.to_dict()


def config_updates(config: Any, keep: Sequence[int]) -> dict[str, Any]:
    """The config fields to set so that a model keeping original layers `keep` (ascending) rebuilds identically."""
    cfg = _as_dict(config)
    spec = arch_spec(cfg)
    n = int(cfg["num_hidden_layers"])
    keep = list(keep)
    if not keep:
        raise DamocError("cannot remove every decoder layer", "lower the pruning fraction")
    if sorted(set(keep)) != keep or keep[0] < 0 or keep[-1] >= n:
        raise DamocError(f"invalid kept layers {keep} for a {n}-layer model")
    upd: dict[str, Any] = {"num_hidden_layers": len(keep)}
    for field in spec.per_layer_lists:
        val = cfg.get(field)
        if val is None:
            continue
        if not isinstance(val, list) or len(val) != n:
            raise UnsupportedArchitecture(
                f"config.{field} has {len(val) if isinstance(val, list) else type(val).__name__} entries "
                f"for {n} layers", "the config is inconsistent; fix config.json first")
        upd[field] = [val[i] for i in keep]
    if spec.window_count and isinstance(cfg.get("max_window_layers"), int):
        # Qwen2/3: layers with index >= max_window_layers use the sliding window; keep the same layers full.
        upd["max_window_layers"] = sum(1 for i in keep if i < cfg["max_window_layers"])
    return upd


# -- in-memory surgery --------------------------------------------------------------------------------------------

def _resolve(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def decoder_layers(model: Any) -> Any:
    """The `nn.ModuleList` of decoder layers of a loaded causal LM."""
    spec = arch_spec(model.config)
    return _resolve(model, spec.layers)


def _set_layers(model: Any, modules: Iterable[Any]) -> None:
    from torch import nn

    spec = arch_spec(model.config)
    parent_path, _, attr = spec.layers.rpartition(".")
    parent = _resolve(model, parent_path) if parent_path else model
    setattr(parent, attr, nn.ModuleList(list(modules)))


def reindex_layers(layers: Iterable[Any]) -> None:
    """Give every module inside layer i `layer_idx = i` (the attention's KV-cache slot, and MoE/MLP indices)."""
    for new_idx, layer in enumerate(layers):
        for sub in layer.modules():
            if isinstance(getattr(sub, "layer_idx", None), int):
                sub.layer_idx = new_idx


def apply_config(config: Any, updates: Mapping[str, Any]) -> None:
    for key, value in updates.items():
        setattr(config, key, value)


def drop_layers(model: Any, drop: Iterable[int]) -> list[int]:
    """Remove decoder layers `drop` (current indices) from `model` in place; returns the kept indices.

    After this the model runs forward, generates with its KV cache, and survives `save_pretrained` /
    `from_pretrained` with no missing keys.
    """
    layers = decoder_layers(model)
    n = len(layers)
    drop = {int(i) for i in drop}
    bad = sorted(i for i in drop if not 0 <= i < n)
    if bad:
        raise DamocError(f"layer indices {bad} out of range for a {n}-layer model")
    keep = [i for i in range(n) if i not in drop]
    updates = config_updates(model.config, keep)      # validates before anything changes
    _set_layers(model, [layers[i] for i in keep])
    reindex_layers(decoder_layers(model))
    apply_config(model.config, updates)
    return keep


def set_layers(model: Any, modules: Sequence[Any], keep: Sequence[int], original_config: Mapping[str, Any]) -> None:
    """Install `modules` (the original layers `keep`, possibly modified) and derive the config from the
    original one. Used by searches that try several layer sets on one model (LaCo)."""
    updates = config_updates(original_config, keep)
    _set_layers(model, modules)
    reindex_layers(decoder_layers(model))
    apply_config(model.config, updates)


def split_layer_key(key: str, prefix: str) -> tuple[int, str] | None:
    """`model.layers.7.self_attn.q_proj.weight` -> (7, `self_attn.q_proj.weight`); None for non-layer keys."""
    head = prefix + "."
    if not key.startswith(head):
        return None
    idx, _, rest = key[len(head):].partition(".")
    if not idx.isdigit() or not rest:
        return None
    return int(idx), rest
