"""`compress_dataset`: token compression, the BERTScore gate and iterative rewriting of one dataset."""
from __future__ import annotations

import random
import re
import time
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from damoc.compress.config import FIELDS, CompressConfig, CompressResult
from damoc.errors import ConfigError
from damoc.events import Reporter, StageTracker
from damoc.registry.resolve import model_folder
from damoc.settings import Settings

if TYPE_CHECKING:
    from damoc.backends.base import GenerationBackend
    from damoc.compress.gate import BertScoreGate
    from damoc.compress.token_loss import TokenScorer

CHUNK = 64                     # samples whose scoring requests are batched together (and progress granularity)


@dataclass
class _Item:
    index: int
    fields: dict[str, Any]                       # name -> FieldTokens (non-empty fields only)
    ratios: dict[str, float] = field(default_factory=dict)
    keeps: dict[str, list[bool]] = field(default_factory=dict)
    compressed: dict[str, str] = field(default_factory=dict)
    final: dict[str, str] = field(default_factory=dict)
    status: str = "direct"
    score: float | None = None                   # gate F1 of the token-compressed text
    final_score: float | None = None             # gate F1 of what is emitted
    rounds: int = 0


def _folder_identity(path: str) -> list[Any]:
    p = Path(path)
    if not p.is_dir():
        return [path]
    return [path] + sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in p.iterdir() if f.is_file())


def _drive(gens: list[Generator], scorer: Any) -> list[Any]:
    """Run method generators side by side: gather every pending request, score them in one batch, send back."""
    results: list[Any] = [None] * len(gens)
    pending: dict[int, list[Any]] = {}
    for i, g in enumerate(gens):
        try:
            pending[i] = next(g)
        except StopIteration as stop:
            results[i] = stop.value
    while pending:
        flat: list[Any] = []
        spans: dict[int, tuple[int, int]] = {}
        for i, reqs in pending.items():
            spans[i] = (len(flat), len(flat) + len(reqs))
            flat.extend(reqs)
        losses = scorer.score(flat)
        nxt: dict[int, list[Any]] = {}
        for i, (a, b) in spans.items():
            try:
                nxt[i] = gens[i].send(losses[a:b])
            except StopIteration as stop:
                results[i] = stop.value
        pending = nxt
    return results


def _distribution(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    a = np.asarray(values, dtype=float)
    edges = [0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0001]
    hist = np.histogram(np.clip(a, 0.0, 1.0), bins=edges)[0]
    return {"n": int(a.size), "mean": round(float(a.mean()), 4), "min": round(float(a.min()), 4),
            **{f"p{q}": round(float(np.percentile(a, q)), 4) for q in (10, 25, 50, 75, 90)},
            "max": round(float(a.max()), 4),
            "histogram": [[edges[i], min(edges[i + 1], 1.0), int(hist[i])] for i in range(len(hist))]}


def _text_fields(s: Any) -> dict[str, str]:
    return {k: getattr(s, k) or "" for k in FIELDS}


def compress_dataset(samples: list[Any], config: CompressConfig | None = None, *, reporter: Reporter | None = None,
                     settings: Settings | None = None) -> CompressResult:
    """Compress the question/context/answer tokens of `samples` (see docs/compression.md)."""
    from damoc.compress import COMPRESSORS
    from damoc.compress.cache import cache_key, load_cached, store_cached

    cfg = (config or CompressConfig()).validate()
    settings = settings or Settings.load()
    method_entry = COMPRESSORS.entry(cfg.compressor)
    if not cfg.model:
        raise ConfigError("no compressor model given",
                          "pass the small LM that scores tokens: --model NAME|FOLDER (a registry candidate or folder)")
    model_path = str(model_folder(settings, cfg.model, setting="compress.model"))
    rewriter_path = str(model_folder(settings, cfg.rewriter, setting="compress.rewriter")) if cfg.rewriter else None
    gated = method_entry.extra.get("gate", True) if cfg.gate is None else cfg.gate
    samples = list(samples)

    key = cache_key(samples, cfg, _folder_identity(model_path),
                    _folder_identity(rewriter_path) if rewriter_path else None, settings)
    tracker = StageTracker(reporter, "compress")
    if cfg.use_cache:
        hit = load_cached(settings, key)
        if hit is not None:
            tracker.start(len(samples))
            tracker.progress(len(samples), "cached")
            hit.stats["cached"] = True
            tracker.finish("ok", "cached", keep_rate=hit.stats.get("keep_rate"))
            return hit

    t_all = time.perf_counter()
    from damoc.compress.question import Env
    from damoc.compress.text import count_tokens, rebuild, tokenize_field
    from damoc.compress.token_loss import TokenScorer
    from damoc.compress.budget import field_ratios
    from damoc.models import resolve_device

    device = resolve_device(cfg.device or settings.device)
    tracker.start(len(samples))
    tracker.log(f"compressor {method_entry.name} with {model_path} on {device}")
    scorer = TokenScorer.load(model_path, device=device, threads=settings.threads)
    tok = scorer.tokenizer
    window = min(cfg.window, max(8, scorer.max_length // 2))
    sep = list(tok("\n\n", add_special_tokens=False)["input_ids"])
    force = re.compile(cfg.force_keep) if cfg.force_keep else None
    method = COMPRESSORS.get(method_entry.name)()

    # a task statement shared by several samples (billsum's "Summarize the following bill.") is a template: kept
    instr_counts = Counter(s.instruction.strip() for s in samples if s.instruction and s.instruction.strip())
    items: list[_Item] = []
    for i, s in enumerate(samples):
        fts = {}
        for name, text in _text_fields(s).items():
            if not text:
                continue
            protected = (name == "instruction" and instr_counts[text.strip()] > 1) or \
                        (name == "answer" and s.choices is not None)   # the answer must stay a choice's text
            fts[name] = tokenize_field(tok, name, text, granularity=cfg.granularity, force=force,
                                       protected=protected)
        it = _Item(i, fts)
        lengths = {n: ft.n_tokens for n, ft in fts.items()}
        it.ratios = field_ratios(lengths, cfg.rate, {k: float(v) for k, v in cfg.rates.items()},
                                 {n for n, ft in fts.items() if ft.protected})
        items.append(it)

    t0 = time.perf_counter()
    n_orig_tokens = sum(ft.n_tokens for it in items for ft in it.fields.values())
    for c in range(0, len(items), CHUNK):
        chunk = items[c:c + CHUNK]
        gens = [method.compress(it.fields, it.ratios, Env(start=scorer.start_ids, sep=sep, window=window),
                       contrastive=cfg.contrastive, rate=cfg.rate) for it in chunk]
        for it, keeps in zip(chunk, _drive(gens, scorer)):
            it.keeps = keeps
            for name, ft in it.fields.items():
                keep = keeps.get(name, [True] * len(ft.units))
                it.compressed[name] = rebuild(ft, keep, tok)
        tracker.progress(min(c + CHUNK, len(items)), "token compression")
    t_compress = time.perf_counter() - t0
    tokens_per_second = n_orig_tokens / t_compress if t_compress > 0 else 0.0

    # ---- the gate ----------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    gate_info: dict[str, Any] = {"enabled": bool(gated)}
    gate = None
    editable = [{n: ft.text for n, ft in it.fields.items() if not ft.protected} for it in items]

    def cand(it: _Item, fields: dict[str, str]) -> dict[str, str]:
        return {n: fields.get(n, "") for n, ft in it.fields.items() if not ft.protected}

    if gated:
        from damoc.compress.gate import BertScoreGate

        gate = BertScoreGate(encoder=cfg.encoder, settings=settings, threshold=cfg.threshold, device=device)
        threshold = gate.threshold(editable)
        gate_info.update(gate.describe())
        gtrack = StageTracker(reporter, "compress-gate").start(len(items))
        scores = gate.score(editable, [cand(it, it.compressed) for it in items])
        for it, sc in zip(items, scores):
            it.score = sc.f1
            it.status = "direct" if sc.f1 >= threshold else "failed"
        gtrack.finish("ok", passed=sum(it.status == "direct" for it in items), threshold=threshold)
        for note in gate.notes:
            tracker.log(note, "warning")
    t_gate = time.perf_counter() - t0

    # ---- rewriting ---------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    rewrite_info: dict[str, Any] = {"rewriter": rewriter_path, "attempts": 0, "unparseable": 0, "too_long": 0,
                                    "no_room": 0}
    failing = [it for it in items if it.status == "failed"]
    if failing and rewriter_path and cfg.max_rounds > 0 and gate is not None:
        # the scorer is no longer needed; free it before loading the rewriter (unless it is the same model)
        shared = rewriter_path == model_path
        backend = _rewriter_backend(rewriter_path, device, scorer if shared else None)
        if not shared:
            scorer.close()
        try:
            _rewrite_loop(items, failing, cfg, gate, backend, tok, reporter, rewrite_info)
        finally:
            if not shared:
                backend.close()
    t_rewrite = time.perf_counter() - t0

    # ---- outcome ------------------------------------------------------------------------------------------
    out_samples = []
    for it, s in zip(items, samples):
        if it.status == "failed":
            it.status = "fell_back"
            it.final = {n: ft.text for n, ft in it.fields.items()}
            it.final_score = 1.0
        elif not it.final:
            it.final = dict(it.compressed)
            it.final_score = it.score
        new = {n: it.final.get(n, getattr(s, n)) for n in FIELDS}
        extra = dict(s.extra)
        extra["original"] = {n: getattr(s, n) for n in FIELDS if getattr(s, n)}
        extra["compression"] = {"status": it.status, "rounds": it.rounds,
                                "bertscore": None if it.final_score is None else round(it.final_score, 4),
                                "bertscore_compressed": None if it.score is None else round(it.score, 4)}
        out_samples.append(s.with_fields(**new, extra=extra, raw=None))

    by_field_orig: Counter[str] = Counter()
    by_field_comp: Counter[str] = Counter()
    by_field_final: Counter[str] = Counter()
    for it in items:
        for n, ft in it.fields.items():
            by_field_orig[n] += ft.n_tokens
            by_field_comp[n] += ft.kept_tokens(it.keeps.get(n, [True] * len(ft.units)))
            final_text = it.final.get(n, ft.text)
            by_field_final[n] += ft.n_tokens if final_text == ft.text else count_tokens(tok, final_text)
    for it in items:
        kept = sum(count_tokens(tok, it.final.get(n, ft.text)) if it.final.get(n, ft.text) != ft.text
                   else ft.n_tokens for n, ft in it.fields.items())
        total = sum(ft.n_tokens for ft in it.fields.values())
        out_samples[it.index].extra["compression"]["keep_rate"] = round(kept / total, 4) if total else 1.0

    total_orig = sum(by_field_orig.values())
    status = Counter(it.status for it in items)
    stats: dict[str, Any] = {
        "samples": len(items),
        "compressor": method_entry.name,
        "model": model_path,
        "rate": cfg.rate,
        "rates": dict(cfg.rates),
        "granularity": cfg.granularity,
        "contrastive": cfg.contrastive,
        "keep_rate": round(sum(by_field_final.values()) / total_orig, 4) if total_orig else 1.0,
        "keep_rate_compressed": round(sum(by_field_comp.values()) / total_orig, 4) if total_orig else 1.0,
        "keep_rate_by_field": {n: round(by_field_final[n] / by_field_orig[n], 4) for n in FIELDS if by_field_orig[n]},
        "keep_rate_by_field_compressed": {n: round(by_field_comp[n] / by_field_orig[n], 4)
                                          for n in FIELDS if by_field_orig[n]},
        "tokens_original": total_orig,
        "tokens_kept": sum(by_field_final.values()),
        "passed_direct": status["direct"],
        **{f"rewritten_round_{r}": status[f"rewritten_{r}"] for r in range(1, max(cfg.max_rounds, 2) + 1)},
        "fell_back": status["fell_back"],
        "gate": gate_info,
        "bertscore": _distribution([it.score for it in items if it.score is not None]),
        "bertscore_final": _distribution([it.final_score for it in items if it.final_score is not None]),
        "rewrite": rewrite_info,
        "seconds": {"compress": round(t_compress, 2), "gate": round(t_gate, 2), "rewrite": round(t_rewrite, 2),
                    "total": round(time.perf_counter() - t_all, 2)},
        "tokens_per_second": round(tokens_per_second, 1),
        "cache_key": key,
        "cached": False,
    }
    if not gated:
        stats["passed_direct"] = len(items)          # nothing was gated: every sample is its token compression
    result = CompressResult(out_samples, stats)
    if cfg.use_cache:
        store_cached(settings, key, result)
    tracker.metric("compress/keep_rate", stats["keep_rate"])
    tracker.finish("ok", keep_rate=stats["keep_rate"], passed_direct=stats["passed_direct"],
                   fell_back=stats["fell_back"])
    return result


def _rewriter_backend(path: str, device: str, scorer: TokenScorer | None) -> GenerationBackend:
    """A generation backend from `damoc.backends` (vLLM on a GPU box when installed, transformers otherwise); the
    compressor's model already in memory is reused when it is also the rewriter."""
    from damoc.backends import get_backend

    if scorer is not None:
        return get_backend(scorer.model, name="transformers", tokenizer=scorer.tokenizer)
    return get_backend(path, name="auto", device=device)


def _rewrite_loop(items: list[_Item], failing: list[_Item], cfg: CompressConfig, gate: BertScoreGate,
                  backend: GenerationBackend, tok: Any, reporter: Reporter | None, info: dict[str, Any]) -> None:
    from damoc.compress.rewrite import (Attempt, RewriteJob, build_prompt, format_for, parse_response, pick_examples,
                                        primer)
    from damoc.compress.text import count_tokens

    threshold = gate.threshold()
    track = StageTracker(reporter, "compress-rewrite").start(len(failing))
    pool = [{n: it.compressed[n] for n, ft in it.fields.items() if not ft.protected}
            for it in items if it.status == "direct"]
    jobs = {it.index: RewriteJob(it.index, {n: ft.text for n, ft in it.fields.items() if not ft.protected},
                                 {n: it.compressed[n] for n, ft in it.fields.items() if not ft.protected},
                                 it.score or 0.0) for it in failing}
    by_index = {it.index: it for it in items}
    passed = 0
    for rnd in range(1, cfg.max_rounds + 1):
        todo = [j for j in jobs.values() if by_index[j.index].status == "failed"]
        if not todo:
            break
        ctx_len = backend.max_length
        prompts, limits, runnable = [], [], []
        for j in todo:
            n_comp = sum(count_tokens(backend.tokenizer, v) for v in j.compressed.values())
            need = int(n_comp * (1 + cfg.length_tolerance)) + 8 * len(j.compressed) + 16
            if ctx_len and need > ctx_len // 2:
                # the rewrite alone would fill the rewriter's context: no room left for the instructions
                j.attempts.append(Attempt(text="", fields=None, score=0.0,
                                          problem=f"needs ~{need} new tokens, the rewriter's context is {ctx_len}"))
                info["no_room"] = info.get("no_room", 0) + 1
                by_index[j.index].rounds = rnd
                continue
            rng = random.Random(f"{cfg.seed}:{j.index}:{rnd}")
            body = build_prompt(j, pick_examples(pool, cfg.n_examples, rng), threshold, cfg.length_tolerance)
            prompts.append(format_for(backend, body, j))
            limits.append(need)
            runnable.append(j)
        if not runnable:
            track.progress(passed, f"round {rnd}")
            continue
        max_new = cfg.max_new_tokens or min(max(limits), 1024)
        outs = backend.generate(prompts, max_new_tokens=max_new, stop=["Reason:"], batch_size=cfg.batch_size)
        todo = runnable
        scored: list[tuple[RewriteJob, Attempt]] = []
        for j, out in zip(todo, outs):
            text = primer(j) + out
            fields = parse_response(text, list(j.compressed))
            at = Attempt(text=text, fields=fields)
            info["attempts"] += 1
            if fields is None:
                at.problem, at.score = "did not follow the labelled layout", 0.0
                info["unparseable"] += 1
            else:
                n_new = sum(count_tokens(tok, v) for v in fields.values())
                n_comp = sum(count_tokens(tok, v) for v in j.compressed.values())
                if n_new > (1 + cfg.length_tolerance) * n_comp + 1:
                    at.problem, at.score = f"{n_new} tokens, over the {n_comp}-token compressed text +" \
                                           f"{round(cfg.length_tolerance * 100)}%", 0.0
                    info["too_long"] += 1
                else:
                    scored.append((j, at))
            j.attempts.append(at)
            by_index[j.index].rounds = rnd
        if scored:
            res = gate.score([j.original for j, _ in scored], [at.fields for _, at in scored])
            for (j, at), sc in zip(scored, res):
                at.score = sc.f1
                if sc.f1 >= threshold:
                    it = by_index[j.index]
                    it.status = f"rewritten_{rnd}"
                    it.final = {**it.compressed, **(at.fields or {})}
                    it.final_score = sc.f1
                    passed += 1
        track.progress(passed, f"round {rnd}")
    track.finish("ok", rewritten=passed, failed=sum(by_index[i].status == "failed" for i in jobs))
