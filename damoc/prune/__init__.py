"""Layer importance (DaMoC Eq. 3), layer pruning, and sparse merging of Chat-minus-Base task vectors (Eq. 4-5).

    scores = layer_importance(model, tokenizer, texts)          # cosine(layer input, layer output) per layer
    pruned = choose_layers(scores, threshold=0.85)              # > threshold, <= 25% of layers, first/last kept
    result = prune_candidate(chat_path, base_path, out_dir)     # score + choose + drop + merge, streamed to disk

Merge rules live in the `MERGE_RULES` registry (`additive`, `additive_scaled`, `convex`, `paper`, `literal`,
`drop`); LaCo is in `damoc.prune.laco`. Nothing here imports torch until a function runs.
"""
from damoc.prune.api import (DEFAULT_MAX_FRACTION, DEFAULT_THRESHOLD, PruneResult, check_pair, choose_layers,
                             prune_candidate, prune_model)
from damoc.prune.calibration import self_calibration_texts, texts_from_file, texts_from_samples
from damoc.prune.importance import layer_importance
from damoc.prune.merge import DEFAULT_RULE, MERGE_RULES, MergeRule, get_rule, merge_targets, sparsify
from damoc.prune.surgery import UnsupportedArchitecture, drop_layers, supported_architectures

__all__ = [
    "DEFAULT_MAX_FRACTION", "DEFAULT_RULE", "DEFAULT_THRESHOLD", "MERGE_RULES", "MergeRule", "PruneResult",
    "UnsupportedArchitecture", "check_pair", "choose_layers", "drop_layers", "get_rule", "layer_importance",
    "laco_prune", "merge_targets", "prune_candidate", "prune_model", "self_calibration_texts", "sparsify",
    "supported_architectures", "texts_from_file", "texts_from_samples",
]


def __getattr__(name: str):  # laco pulls in nothing heavy either, but keep it out of the import path
    if name == "laco_prune":
        from damoc.prune.laco import laco_prune

        return laco_prune
    raise AttributeError(name)
