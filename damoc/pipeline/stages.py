"""The body of each cell kind, run inside a worker process (never in the CLI or TUI process).

Each function reads the outputs of the cells it needs, calls the module that owns the method (filters, compress,
prune, finetune, evaluate), writes its artifacts into its cell folder and returns the summary that goes into the
cell's `done.json`. Heavy imports stay inside the functions.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import time
from pathlib import Path
from typing import Any

from damoc.data.sample import Sample
from damoc.errors import ConfigError, DamocError, StageFailed
from damoc.events import CandidateScored, Reporter
from damoc.fsutil import atomic_write_text

TRAIN_FILE = "train.jsonl"
TEST_FILE = "test.jsonl"


# -- samples between processes (exact round trip, no format detection) -------------------------------

def write_samples_jsonl(path: Path, samples: list[Sample]) -> None:
    lines = []
    for s in samples:
        d = dataclasses.asdict(s)
        d.pop("raw", None)
        lines.append(json.dumps(d, ensure_ascii=False, default=str))
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def read_samples_jsonl(path: Path) -> list[Sample]:
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                out.append(Sample(**json.loads(line)))
    return out


def token_estimate(samples: list[Sample]) -> int:
    """Whitespace-token count of prompts + answers: a tokenizer-free size measure comparable across stages."""
    return sum(len(s.prompt.split()) + len(s.answer.split()) for s in samples)


# -- building the owning module's config objects ------------------------------------------------------

def build_config(cls: Any, values: dict[str, Any], *, what: str, optional: dict[str, Any] | None = None) -> Any:
    """`cls(**values, **accepted optional)`: required values must be accepted by `cls`; optional ones are passed
    only when `cls` knows them (e.g. `device`), so our config does not break on a module's smaller config."""
    try:
        fields = set(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        fields = set()
    unknown = [k for k in values if fields and k not in fields]
    if unknown:
        raise ConfigError(f"{what}: {cls.__name__} has no setting(s) {', '.join(unknown)}",
                          f"known: {', '.join(sorted(fields))}")
    kwargs = dict(values)
    for k, v in (optional or {}).items():
        if k in fields and v is not None:
            kwargs[k] = v
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what}: {e}", "check the values in the run config") from None


# -- data stages ----------------------------------------------------------------------------------------

def _split_key(sample: Sample, seed: int) -> float:
    h = hashlib.sha256(f"{seed}:{sample.id}".encode()).hexdigest()
    return int(h[:12], 16) / float(1 << 48)


def _subsample(samples: list[Sample], n: int, seed: int) -> list[Sample]:
    """`n` samples chosen by a hash of their id (deterministic, independent of file order), in file order."""
    if n >= len(samples):
        return samples
    keep = {id(s) for s in sorted(samples, key=lambda s: _split_key(s, seed))[:n]}
    return [s for s in samples if id(s) in keep]


def run_prepare(params: dict[str, Any], out: Path, tracker: Any) -> dict[str, Any]:
    """Load the user's data once; hold out a deterministic test split when no test file is given. `max_train` and
    `max_test` keep a deterministic pseudo-random subset (not the head of the file, which may be sorted)."""
    from damoc.data.io import load_samples

    train_path = params["train"]
    res = load_samples(train_path, format=params.get("format", "auto"))
    train = res.samples
    if not train:
        raise DamocError(f"{train_path}: no samples", "check the file with `damoc data inspect`")
    if params.get("test"):
        test = load_samples(params["test"], format=params.get("format", "auto")).samples
        held_out = False
    else:
        frac, seed = float(params.get("test_fraction", 0.1)), int(params.get("split_seed", 0))
        test = [s for s in train if _split_key(s, seed) < frac]
        train = [s for s in train if _split_key(s, seed) >= frac]
        held_out = True
        if not test or not train:
            raise DamocError(f"{train_path}: {len(train) + len(test)} samples are too few to hold out a test split",
                             "pass a test file with --test")
    seed = int(params.get("split_seed", 0))
    if params.get("max_train"):
        train = _subsample(train, int(params["max_train"]), seed + 1)
    if params.get("max_test"):
        test = _subsample(test, int(params["max_test"]), seed + 2)
    write_samples_jsonl(out / TRAIN_FILE, train)
    write_samples_jsonl(out / TEST_FILE, test)
    metric = params.get("metric", "auto")
    if metric == "auto":
        from damoc.evaluate import pick_metric
        metric = pick_metric(test)
    return {"n_train": len(train), "n_test": len(test), "format": res.format, "metric": str(metric),
            "test_held_out": held_out, "train_tokens": token_estimate(train)}


def run_filter(params: dict[str, Any], samples: list[Sample], out: Path, reporter: Reporter, settings: Any
               ) -> dict[str, Any]:
    from damoc.filters import select

    kw: dict[str, Any] = {"count": params["count"]} if params.get("count") else {"ratio": params["ratio"]}
    sel = select(samples, params["method"], seed=params.get("seed", 0), params=params.get("params") or {},
                 reporter=reporter, settings=settings, scorer=params.get("scorer_path"), **kw)
    keep = set(sel.ids)
    chosen = [s for s in samples if s.id in keep]
    if not chosen:
        raise StageFailed(f"filter {params['method']} kept no sample", "raise filter.ratio or use another method")
    write_samples_jsonl(out / TRAIN_FILE, chosen)
    return {"method": params["method"], "n_in": len(samples), "n_out": len(chosen),
            "tokens_in": token_estimate(samples), "tokens_out": token_estimate(chosen)}


def run_compress(params: dict[str, Any], samples: list[Sample], out: Path, reporter: Reporter, settings: Any,
                 device: str) -> dict[str, Any]:
    from damoc.compress import CompressConfig, compress_dataset

    values: dict[str, Any] = {"rate": params["rate"], "compressor": params.get("method") or "damoc",
                              "model": params.get("model_path"), **(params.get("params") or {})}
    if params.get("rewriter_path"):
        values["rewriter"] = params["rewriter_path"]
    if params.get("threshold") is not None:
        values["threshold"] = params["threshold"]
    optional = {"device": None if device == "auto" else device}
    cfg = build_config(CompressConfig, values, what="compress", optional=optional)
    res = compress_dataset(samples, cfg, reporter=reporter, settings=settings)
    write_samples_jsonl(out / TRAIN_FILE, list(res.samples))
    stats = res.stats
    if dataclasses.is_dataclass(stats):
        stats = dataclasses.asdict(stats)
    elif hasattr(stats, "model_dump"):
        stats = stats.model_dump()
    return {"n_out": len(res.samples), "tokens_in": token_estimate(samples),
            "tokens_out": token_estimate(list(res.samples)), "stats": stats if isinstance(stats, dict) else {}}


# -- model stages ---------------------------------------------------------------------------------------

def run_prune(params: dict[str, Any], cand: dict[str, Any], calib: list[Sample], out: Path, reporter: Reporter,
              device: str = "auto") -> dict[str, Any]:
    """Eq. 3 layer importance, pruning above the threshold, sparse merge with the Base (damoc.prune owns all of it).

    When nothing is pruned (no layer above the threshold, or no Base), `model_path` is None and the fine-tune
    cells use the untouched checkpoint."""
    from damoc.prune import prune_candidate

    texts = [f"{s.prompt}\n{s.answer}" for s in calib[: int(params.get("calib_samples", 64))]]
    kw: dict[str, Any] = {"threshold": params["threshold"], "sparsity": params["sparsity"], "calib_texts": texts,
                          "allow_no_base": bool(params.get("allow_no_base")), "reporter": reporter,
                          **(params.get("params") or {})}
    if params.get("rule"):
        kw["rule"] = params["rule"]
    if device != "auto":
        kw["device"] = device
    res = prune_candidate(cand["chat_path"], cand.get("base_path"), out / "model", **kw)
    return {"layers_before": res.layers_before, "layers_after": res.layers_after, "pruned": list(res.pruned),
            "scores": [round(float(x), 4) for x in (res.scores or [])], "merge_rule": res.merge_rule,
            "skip_reason": res.skip_reason or getattr(res, "note", "") or None,
            "model_path": str(res.out_path) if res.out_path else None}


def _finetune_config(method: str, hp: dict[str, Any], min_steps: int, seed: int, deepspeed: str | None,
                     bf16: str, device: str) -> Any:
    from damoc.finetune import FinetuneConfig

    values: dict[str, Any] = {"method": method, "lr": hp["lr"], "epochs": hp["epochs"],
                              "effective_batch": hp["effective_batch"], "min_steps": min_steps}
    optional: dict[str, Any] = {"seed": seed, "device": device, "deepspeed": deepspeed,
                                "warmup_ratio": hp.get("warmup_ratio"), "weight_decay": hp.get("weight_decay"),
                                "bf16": None if bf16 == "auto" else bf16 == "on"}
    if hp.get("micro_batch"):
        values["micro_batch"] = hp["micro_batch"]
    if hp.get("max_length"):
        values["max_length"] = hp["max_length"]
    if method == "lora":
        optional.update({"lora_r": hp.get("lora_r"), "lora_alpha": hp.get("lora_alpha"),
                         "lora_dropout": hp.get("lora_dropout")})
    values.update(hp.get("params") or {})
    return build_config(FinetuneConfig, values, what=f"finetune.{method}", optional=optional)


def _eval_kwargs(ev: dict[str, Any], metric: str) -> dict[str, Any]:
    kw: dict[str, Any] = {"metric": metric, **(ev.get("params") or {})}
    if ev.get("max_new_tokens"):
        kw["max_new_tokens"] = ev["max_new_tokens"]
    if ev.get("backend") and ev["backend"] != "auto":
        kw["backend"] = ev["backend"]
    return kw


def _eval_summary(res: Any) -> dict[str, Any]:
    secondary = getattr(res, "secondary", None) or {}
    return {"metric": str(getattr(res, "metric", "")), "score": float(res.score),
            "stderr": None if getattr(res, "stderr", None) is None else float(res.stderr),
            "n_eval": int(getattr(res, "n", 0) or 0),
            "secondary": {k: float(v[0] if isinstance(v, (tuple, list)) else v) for k, v in dict(secondary).items()
                          if isinstance(v, (int, float)) or (isinstance(v, (tuple, list)) and v)},
            "eval_seconds": float(getattr(res, "seconds", 0.0) or 0.0)}


def run_finetune(spec: dict[str, Any], model_path: str, train: list[Sample], test: list[Sample], metric: str,
                 out: Path, reporter: Reporter, device: str, settings: Any = None) -> dict[str, Any]:
    """Fine-tune (full or LoRA) then evaluate the trained model while it is in memory."""
    from damoc.evaluate import evaluate
    from damoc.finetune import finetune

    p = spec["params"]
    cfg = _finetune_config(spec["method"], p["hp"], int(p.get("min_steps") or 0), int(spec.get("seed") or 0),
                           p.get("deepspeed"), p.get("bf16", "auto"), device)
    t0 = time.perf_counter()
    # no out_dir: the proxy is scored in memory and never written (a 7B proxy would cost minutes and disk)
    ft = finetune(model_path, train, cfg, None, reporter=reporter, keep_model=True, settings=settings)
    train_seconds = float(getattr(ft, "seconds", 0.0) or (time.perf_counter() - t0))
    res = evaluate(ft.model, test, tokenizer=ft.tokenizer, reporter=reporter, settings=settings,
                   seed=int(spec.get("seed") or 0), **_eval_kwargs(p["evaluate"], metric))
    losses = list(getattr(ft, "losses", None) or [])
    summary = {"method": spec["method"], "seed": spec.get("seed"), "model_path": model_path,
               "train_samples": len(train), "train_tokens": token_estimate(train),
               "steps": int(getattr(ft, "steps", 0) or 0), "train_seconds": train_seconds,
               "tokens_seen": int(getattr(ft, "train_tokens", 0) or 0), "parameters": int(ft.total_params or 0),
               "train_flops": float(ft.train_flops),
               "final_loss": float(losses[-1]) if losses else None, **_eval_summary(res)}
    summary["plan"] = getattr(getattr(ft, "plan", None), "reason", None)
    del ft, res
    _release_memory()
    return summary


def _release_memory() -> None:
    """A worker serves several candidates in turn: give the last model's memory back before the next one loads."""
    import gc
    gc.collect()
    import torch
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_eval(spec: dict[str, Any], model_path: str, test: list[Sample], pool: list[Sample], metric: str,
             reporter: Reporter, settings: Any = None) -> dict[str, Any]:
    """Zero-shot or few-shot evaluation of the untouched checkpoint (the paper's Table 1 baselines)."""
    from damoc.evaluate import evaluate

    p = spec["params"]
    kw = _eval_kwargs(p, metric)
    k = int(p.get("few_shot") or 0)
    if k:
        kw.update(few_shot=k, few_shot_pool=pool)
    res = evaluate(model_path, test, reporter=reporter, settings=settings, seed=int(spec.get("seed") or 0), **kw)
    return {"model_path": model_path, "few_shot": k, "train_seconds": 0.0, **_eval_summary(res)}


def scored_event(run_id: str, candidate: str, cell: str, summary: dict[str, Any]) -> CandidateScored:
    return CandidateScored(run_id=run_id, candidate=candidate, metric=summary.get("metric", ""),
                           score=float(summary["score"]), stderr=summary.get("stderr"),
                           details={"cell": cell, "method": summary.get("method"), "seed": summary.get("seed")})
