"""The pruning stage as the pipeline and the CLI use it: score layers, choose, drop, merge, write a loadable model."""
from __future__ import annotations

import gc
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from damoc.errors import ConfigError, DamocError
from damoc.events import Reporter, StageTracker
from damoc.fsutil import atomic_write_json
from damoc.prune.config import DEFAULT_MAX_FRACTION, DEFAULT_SPARSITY, DEFAULT_THRESHOLD, SHARD_BYTES

TESTED_THRESHOLDS = (0.80, 0.95)
BF16_ON_CPU_BYTES = 4 << 30   # checkpoints larger than this are scored in bf16 on CPU (fp32 would need 2x RAM)


@dataclass
class PruneResult:
    """What pruning did to one candidate. `scores` are the Eq. 3 cosines, one per original layer."""

    layers_before: int
    layers_after: int
    pruned: list[int]
    scores: list[float]
    merge_rule: str | None            # None when nothing was merged (drop, no Base, skipped)
    skip_reason: str | None           # why pruning did not happen (None when it did)
    out_path: str | None              # None when skipped
    seconds: float
    rule: str = ""                    # the rule asked for ("drop" included)
    threshold: float = DEFAULT_THRESHOLD
    sparsity: float = DEFAULT_SPARSITY
    max_fraction: float = DEFAULT_MAX_FRACTION
    merged_into: dict[int, int] = field(default_factory=dict)   # pruned layer -> kept layer (original indices)
    note: str = ""                    # e.g. why a pruned model was not merged
    calibration: dict[str, Any] = field(default_factory=dict)
    merge_stats: dict[str, Any] = field(default_factory=dict)
    chat_path: str = ""
    base_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["merged_into"] = {str(k): v for k, v in self.merged_into.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PruneResult":
        d = dict(d)
        d["merged_into"] = {int(k): int(v) for k, v in (d.get("merged_into") or {}).items()}
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def choose_layers(scores: Sequence[float], threshold: float = DEFAULT_THRESHOLD,
                  max_fraction: float = DEFAULT_MAX_FRACTION, keep_first: bool = True,
                  keep_last: bool = True) -> list[int]:
    """Layers to prune: cosine > threshold, most redundant first, at most floor(max_fraction * N) of them.

    The first and last layers are kept by default: in a measured spike the cosine rule picked the final layer in 2
    of 5 tiny models and removing it collapsed the model (zoo-spike.md). Never returns every layer.
    """
    n = len(scores)
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"threshold {threshold} outside (0, 1]", "the paper uses 0.85 (0.80-0.95 tested)")
    if not 0.0 <= max_fraction < 1.0:
        raise ConfigError(f"max_fraction {max_fraction} outside [0, 1)", "0.25 matches the paper's pruned counts")
    if any(not math.isfinite(float(s)) for s in scores):
        raise DamocError("layer scores contain NaN or inf", "the model produced non-finite hidden states")
    protected = set()
    if keep_first and n:
        protected.add(0)
    if keep_last and n:
        protected.add(n - 1)
    cap = min(int(math.floor(max_fraction * n + 1e-9)), max(0, n - 1))
    cands = [i for i, s in enumerate(scores) if float(s) > threshold and i not in protected]
    cands.sort(key=lambda i: (-float(scores[i]), i))
    return sorted(cands[:cap])


# -- Base/Chat compatibility -----------------------------------------------------------------------------------------

def check_pair(chat_path: str | Path, base_path: str | Path) -> str | None:
    """None when the Base can supply W_pre for every decoder-layer tensor of the Chat; else the reason why not.
    Reads config.json and safetensors headers only."""
    from damoc.prune.checkpoint import CheckpointReader
    from damoc.prune.surgery import arch_spec, split_layer_key

    try:
        chat, base = CheckpointReader(chat_path), CheckpointReader(base_path)
    except DamocError as e:
        return f"Base unusable: {e.message}"
    cc, bc = chat.config, base.config
    if cc.get("model_type") != bc.get("model_type"):
        return f"Base incompatible: architecture {bc.get('model_type')} vs Chat {cc.get('model_type')}"
    if cc.get("num_hidden_layers") != bc.get("num_hidden_layers"):
        return (f"Base incompatible: {bc.get('num_hidden_layers')} layers vs Chat "
                f"{cc.get('num_hidden_layers')}")
    prefix = arch_spec(cc).layers
    for name in chat.names():
        if split_layer_key(name, prefix) is None:
            continue
        if name not in base:
            return f"Base incompatible: tensor {name} missing from the Base"
        if chat.shape(name) != base.shape(name):
            return f"Base incompatible: {name} is {chat.shape(name)} in the Chat, {base.shape(name)} in the Base"
    return None


# -- the stage ---------------------------------------------------------------------------------------------------------

def _score_dtype(device: str, checkpoint_bytes: int) -> Any:
    import torch

    from damoc.models import default_dtype

    if device.startswith("cuda"):
        return default_dtype(device)
    return torch.bfloat16 if checkpoint_bytes > BF16_ON_CPU_BYTES else torch.float32


def compute_scores(chat_path: str | Path, calib_texts: Sequence[str] | None, *, device: str = "auto",
                   first_token: bool = False, batch_size: int = 8, max_length: int = 256,
                   tracker: StageTracker | None = None, seed: int = 0,
                   trust_remote_code: bool = False) -> tuple[list[float], dict[str, Any]]:
    """Load the Chat model, get calibration texts (self-generated when none are given) and score its layers."""
    from damoc.models import load_causal_lm, load_tokenizer, resolve_device
    from damoc.prune.calibration import SELF_N, SELF_TOKENS, self_calibration_texts
    from damoc.prune.checkpoint import CheckpointReader
    from damoc.prune.importance import layer_importance

    dev = resolve_device(device)
    dtype = _score_dtype(dev, CheckpointReader(chat_path).total_bytes())
    model = load_causal_lm(chat_path, device=dev, dtype=dtype, trust_remote_code=trust_remote_code)
    tok = load_tokenizer(chat_path, trust_remote_code=trust_remote_code)
    try:
        if calib_texts:
            texts, calib = list(calib_texts), {"source": "given", "texts": len(calib_texts)}
        else:
            if tracker:
                tracker.log(f"no calibration data: sampling {SELF_N} texts of {SELF_TOKENS} tokens from the model")
            texts = self_calibration_texts(model, tok, n=SELF_N, max_new_tokens=SELF_TOKENS, seed=seed)
            calib = {"source": "self-generated", "texts": len(texts), "tokens_each": SELF_TOKENS, "seed": seed}
        prog = (lambda d, t: tracker.progress(d, note=f"scoring {d}/{t}")) if tracker else None
        scores = layer_importance(model, tok, texts, first_token=first_token, batch_size=batch_size,
                                  max_length=max_length, progress=prog)
        calib.update(first_token=first_token, max_length=max_length, dtype=str(dtype).replace("torch.", ""))
        return scores, calib
    finally:
        del model
        gc.collect()


def write_pruned(chat_path: str | Path, out_dir: str | Path, pruned: Sequence[int], *, base_path: str | Path | None,
                 scores: Sequence[float], rule: Any, sparsity: float, rescale: str = "none", device: str = "cpu",
                 tracker: StageTracker | None = None, max_shard_bytes: int = SHARD_BYTES) -> dict[str, Any]:
    """Stream the Chat checkpoint into `out_dir` without layers `pruned`, merging their sparse task vectors into
    the kept layers when `rule` merges (needs `base_path`). Returns the merge statistics."""
    from damoc.prune.checkpoint import CheckpointReader, ShardWriter, clear_weights, copy_side_files
    from damoc.prune.merge import LayerMerger, merge_targets
    from damoc.prune.surgery import arch_spec, config_updates, split_layer_key

    chat = CheckpointReader(chat_path)
    cfg = chat.config
    spec = arch_spec(cfg)
    n = int(cfg["num_hidden_layers"])
    keep = [i for i in range(n) if i not in set(pruned)]
    updates = config_updates(cfg, keep)
    new_index = {old: new for new, old in enumerate(keep)}
    merger = None
    if rule.merges and pruned:
        if base_path is None:
            raise DamocError("merging needs the Base model (W_pre)", "use --rule drop, or register the Base")
        merger = LayerMerger(chat=chat, base=CheckpointReader(base_path), prefix=spec.layers,
                             into=merge_targets(pruned, n), scores=scores, rule=rule, sparsity=sparsity,
                             rescale=rescale, device=device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clear_weights(out)
    writer = ShardWriter(out, max_shard_bytes=max_shard_bytes)
    names = chat.names()
    if tracker:
        tracker.set_total(len(names))
    seen_layers = set()
    for i, (name, tensor) in enumerate(chat.iter_by_file(), 1):
        split = split_layer_key(name, spec.layers)
        if split is None:
            writer.add(name, tensor)
        else:
            layer, rest = split
            seen_layers.add(layer)
            if layer in new_index:
                if merger is not None:
                    tensor = merger(layer, rest, tensor)
                writer.add(f"{spec.layers}.{new_index[layer]}.{rest}", tensor)
        if tracker and (i % 16 == 0 or i == len(names)):
            tracker.progress(i, note="writing")
    if seen_layers != set(range(n)):
        raise DamocError(f"{chat_path}: weights hold layers {sorted(seen_layers)[:5]}... but config says {n} layers",
                         "the checkpoint and its config.json disagree")
    writer.close()
    cfg.update(updates)
    atomic_write_json(out / "config.json", cfg)
    copy_side_files(Path(chat_path), out)
    chat.close()
    return merger.stats.to_dict() if merger else {}


def prune_candidate(chat_path: str | Path, base_path: str | Path | None, out_dir: str | Path, *,
                    threshold: float = DEFAULT_THRESHOLD, sparsity: float = DEFAULT_SPARSITY, rule: str | None = None,
                    calib_texts: Sequence[str] | None = None, allow_no_base: bool = False,
                    reporter: Reporter | None = None, device: str = "auto", scores: Sequence[float] | None = None,
                    max_fraction: float = DEFAULT_MAX_FRACTION, keep_first: bool = True, keep_last: bool = True,
                    first_token: bool = False, base_problem: str | None = None, rescale: str = "none",
                    candidate: str = "", run_id: str = "", batch_size: int = 8, max_length: int = 256,
                    seed: int = 0, trust_remote_code: bool = False,
                    max_shard_bytes: int = SHARD_BYTES) -> PruneResult:
    """Score, choose, drop and (sparse-)merge the layers of one Chat model; write the result to `out_dir`.

    No Base (or `base_problem`, a reason from the registry, or an incompatible Base) skips pruning with the reason,
    as the paper does, unless `allow_no_base` (then layers are dropped without merging) or `rule="drop"`.
    `scores` reuses earlier Eq. 3 scores instead of measuring them again.
    """
    from damoc.prune.checkpoint import CheckpointReader
    from damoc.prune.merge import check_sparsity, get_rule
    from damoc.prune.surgery import arch_spec

    t0 = time.perf_counter()
    tracker = StageTracker(reporter, "prune", run_id=run_id, candidate=candidate)
    tracker.start()
    try:
        rule_obj = get_rule(rule)
        check_sparsity(sparsity)
        if not 0.0 < threshold <= 1.0:
            raise ConfigError(f"threshold {threshold} outside (0, 1]", "the paper uses 0.85")
        if not TESTED_THRESHOLDS[0] <= threshold <= TESTED_THRESHOLDS[1]:
            tracker.log(f"threshold {threshold} is outside the tested range 0.80-0.95", level="warning")
        chat_path = Path(chat_path)
        cfg = CheckpointReader(chat_path).config
        arch_spec(cfg)                                    # refuse unsupported architectures before any work
        n = int(cfg["num_hidden_layers"])
        common = dict(layers_before=n, rule=rule_obj.name, threshold=threshold, sparsity=sparsity,
                      max_fraction=max_fraction, chat_path=str(chat_path),
                      base_path=str(base_path) if base_path else None)

        problem = base_problem
        if problem is None and rule_obj.merges:
            problem = ("no Base model (W_pre) to compute the task vector Chat - Base" if base_path is None
                       else check_pair(chat_path, base_path))
        merge = rule_obj.merges and problem is None
        note = ""
        if rule_obj.merges and problem is not None:
            if not allow_no_base:
                reason = problem if problem.lower().startswith("pruning skipped") else f"pruning skipped: {problem}"
                tracker.finish("skipped", reason)
                return PruneResult(layers_after=n, pruned=[], scores=list(scores or []), merge_rule=None,
                                   skip_reason=reason, out_path=None, seconds=time.perf_counter() - t0, **common)
            note = f"layers dropped without merging (allow_no_base): {problem}"

        calib: dict[str, Any] = {}
        if scores is None:
            scores, calib = compute_scores(chat_path, calib_texts, device=device, first_token=first_token,
                                           batch_size=batch_size, max_length=max_length, tracker=tracker, seed=seed,
                                           trust_remote_code=trust_remote_code)
        else:
            calib = {"source": "scores given"}
            if len(scores) != n:
                raise DamocError(f"{len(scores)} scores given for a {n}-layer model")
        scores = [float(s) for s in scores]
        for i, s in enumerate(scores):
            tracker.metric("prune/similarity", s, step=i)
        pruned = choose_layers(scores, threshold, max_fraction, keep_first, keep_last)
        if not pruned:
            best = max(range(n), key=lambda i: scores[i]) if n else 0
            reason = (f"nothing to prune: no eligible layer has similarity > {threshold} "
                      f"(highest {scores[best]:.3f} at layer {best}; first/last kept, cap "
                      f"{int(math.floor(max_fraction * n + 1e-9))} of {n})")
            tracker.finish("skipped", reason, layers_before=n, layers_after=n)
            return PruneResult(layers_after=n, pruned=[], scores=scores, merge_rule=None, skip_reason=reason,
                               out_path=None, seconds=time.perf_counter() - t0, calibration=calib, **common)

        from damoc.models import resolve_device
        from damoc.prune.merge import merge_targets

        merge_dev = resolve_device(device)
        stats = write_pruned(chat_path, out_dir, pruned, base_path=base_path if merge else None, scores=scores,
                             rule=rule_obj if merge else get_rule("drop"), sparsity=sparsity, rescale=rescale,
                             device=merge_dev, tracker=tracker, max_shard_bytes=max_shard_bytes)
        if not merge and rule_obj.name == "drop":
            note = "plain layer dropping (rule drop)"
        result = PruneResult(layers_after=n - len(pruned), pruned=pruned, scores=scores,
                             merge_rule=rule_obj.name if merge else None, skip_reason=None,
                             out_path=str(Path(out_dir)), seconds=time.perf_counter() - t0,
                             merged_into=merge_targets(pruned, n) if merge else {}, note=note,
                             calibration=calib, merge_stats=stats, **common)
        atomic_write_json(Path(out_dir) / "damoc_prune.json", result.to_dict())
        tracker.finish("ok", layers_before=n, layers_after=result.layers_after, pruned=pruned,
                       merge_rule=result.merge_rule)
        return result
    except DamocError as e:
        tracker.finish("failed", e.message)
        raise
    except Exception as e:
        tracker.finish("failed", f"{type(e).__name__}: {e}")
        raise


def prune_model(model: Any, pruned: Sequence[int], *, base_model: Any = None, rule: str | None = None,
                scores: Sequence[float] | None = None, sparsity: float = DEFAULT_SPARSITY, rescale: str = "none") -> list[int]:
    """In-memory variant: drop layers `pruned` from a loaded Chat model, merging their sparse task vectors
    (needs `base_model`) unless `rule="drop"`. Returns the kept original indices. For small models and tests; use
    `prune_candidate` for checkpoints (it streams, so 7-9B pairs fit in CPU memory)."""
    import torch

    from damoc.prune.merge import DictSource, LayerMerger, get_rule, merge_targets
    from damoc.prune.surgery import arch_spec, decoder_layers, drop_layers

    rule_obj = get_rule(rule)
    n = len(decoder_layers(model))
    if rule_obj.merges and pruned:
        if base_model is None:
            raise DamocError("merging needs the Base model", "pass base_model=, or rule='drop'")
        if scores is None:
            if rule_obj.needs_scores:
                raise DamocError(f"rule {rule_obj.name!r} needs the layer scores", "pass scores=")
            scores = [0.0] * n
        prefix = arch_spec(model.config).layers
        merger = LayerMerger(chat=DictSource({k: v.detach() for k, v in model.state_dict().items()}),
                             base=DictSource(base_model.state_dict()), prefix=prefix,
                             into=merge_targets(pruned, n), scores=scores, rule=rule_obj, sparsity=sparsity,
                             rescale=rescale)
        layers = decoder_layers(model)
        new_values = {}
        for k in sorted(set(merger.sources)):
            for rest, p in layers[k].named_parameters():
                new_values[(k, rest)] = merger(k, rest, p.detach())
        with torch.no_grad():
            for (k, rest), v in new_values.items():
                layers[k].get_parameter(rest).copy_(v)
    return drop_layers(model, pruned)
