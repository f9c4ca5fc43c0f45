"""Compression results cached under `settings.cache_dir/compress/<key>`, keyed by the dataset's content, every
setting that changes the output, and the identity (file names, sizes, times) of the compressor and rewriter models."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from damoc.compress.config import CompressConfig, CompressResult
from damoc.fsutil import atomic_write_json, atomic_write_text, read_json, stable_hash
from damoc.settings import Settings

VERSION = "compress-v1"
_RUNTIME_ONLY = ("use_cache", "batch_size", "device")


def cache_key(samples: list[Any], cfg: CompressConfig, model_id: list[Any], rewriter_id: list[Any] | None,
              settings: Settings) -> str:
    content = [[s.id, s.instruction, s.question, s.context, s.answer, s.choices] for s in samples]
    conf = {k: v for k, v in cfg.to_dict().items() if k not in _RUNTIME_ONLY}
    return stable_hash(VERSION, content, conf, model_id, rewriter_id, cfg.encoder or settings.encoder,
                       length=20)


def _dir(settings: Settings, key: str) -> Path:
    return Path(settings.cache_dir) / "compress" / key


def store_cached(settings: Settings, key: str, result: CompressResult) -> None:
    d = _dir(settings, key)
    lines = [json.dumps({"id": s.id, "instruction": s.instruction, "question": s.question, "context": s.context,
                         "answer": s.answer, "choices": s.choices, "extra": s.extra}, ensure_ascii=False, default=str)
             for s in result.samples]
    atomic_write_text(d / "samples.jsonl", "\n".join(lines) + ("\n" if lines else ""))
    atomic_write_json(d / "stats.json", result.stats)       # written last: its presence marks a complete entry


def load_cached(settings: Settings, key: str) -> CompressResult | None:
    from damoc.data.sample import Sample

    d = _dir(settings, key)
    stats = read_json(d / "stats.json")
    if stats is None or not (d / "samples.jsonl").is_file():
        return None
    try:
        samples = [Sample(**json.loads(line)) for line in (d / "samples.jsonl").read_text("utf-8").splitlines()
                   if line.strip()]
    except (json.JSONDecodeError, TypeError):
        return None                 # a damaged entry is recomputed
    return CompressResult(samples, stats)
