"""Data filtering: the DaMoC paper's 12 selection methods in three families, behind one interface.

    from damoc.filters import select
    sel = select(samples, "graphcut", ratio=0.1)            # Selection(ids, scores, reasons, kept, dropped, ...)
    pool = score(samples, "superfiltering", scorer="tiny-llama", budget=100)
    sel_05 = pool.select(ratio=0.05)                         # another ratio without rescoring

Importing this package is cheap (no numpy, no torch): `damoc filter --list` only reads the registry below. The
methods live in `distribution.py`, `quality.py` and `hybrid.py`; the scalable greedy cores in `greedy.py`; the
language-model scorers (IFD, judge, gradients) in `lm.py`.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from damoc.errors import ConfigError, DamocError, DataError, UnknownNameError
from damoc.events import NullReporter, Reporter
from damoc.filters.base import (FILTERS, FilterContext, FilterMethod, Scored, describe_params, params_dict,
                                resolve_budget)
from damoc.settings import Settings

FAMILIES = ("distribution", "quality", "hybrid")

# The index: each method's metadata, written once; the classes take theirs from here (`FilterMethod`).
_add = FILTERS.add
# distribution-aware
_add("dq", "damoc.filters.distribution:DQ", family="distribution", aliases=("datasetquantization",),
     description="Dataset Quantization: bins by repeated GraphCut, then a uniform draw from every bin.")
_add("graphcut", "damoc.filters.distribution:GraphCut", family="distribution", aliases=("gc", "graph-cut"),
     description="Greedy GraphCut on sentence embeddings: representative yet diverse (the paper's pick).")
_add("kcentergreedy", "damoc.filters.distribution:KCenterGreedy", family="distribution",
     aliases=("kcenter", "kcg", "k-center"),
     description="K-Center greedy: repeatedly take the sample farthest from those already taken.")
_add("random", "damoc.filters.distribution:Random", family="distribution", aliases=("rand", "uniform"),
     description="Uniform random sample without replacement (seeded).")
# quality-aware
_add("alpagasus", "damoc.filters.quality:AlpaGasus", family="quality", aliases=("ag",),
     description="AlpaGasus: an LLM judge rates each sample 0-5; keep the best rated (or those >= a threshold).")
_add("lma", "damoc.filters.quality:LMA", family="quality", aliases=("longest", "long-is-more", "lima"),
     description="Long Is More for Alignment: keep the samples with the longest responses (in tokens).")
_add("superfiltering", "damoc.filters.quality:Superfiltering", family="quality", aliases=("sf",),
     description="Superfiltering: IFD from a small scorer LM; drop IFD >= 1, keep the highest IFD.")
_add("less", "damoc.filters.quality:LESS", family="quality", aliases=(),
     description="LESS: LoRA gradient features after a short warm-up, keep those most similar to a target set.")
# hybrid
_add("mods", "damoc.filters.hybrid:MoDS", family="hybrid", aliases=(),
     description="MoDS: quality filter, K-Center seed set, then the samples a seed-tuned model still answers badly.")
_add("cherry", "damoc.filters.hybrid:Cherry", family="hybrid", aliases=("cherryllm", "ifd"),
     description="Cherry LLM: K-Means pre-experience set, brief tuning, then keep the highest IFD (< 1).")
_add("deita", "damoc.filters.hybrid:Deita", family="hybrid", aliases=(),
     description="Deita: complexity x quality scores, then skip samples too similar to those already kept.")
_add("car", "damoc.filters.hybrid:CaR", family="hybrid", aliases=("clusteringandranking",),
     description="CaR: quality ranking plus clustering; the best of every cluster and the best overall.")


def list_methods() -> list[dict[str, str]]:
    """Name, family and one-line description of every method, by family (no heavy imports)."""
    rank = {f: i for i, f in enumerate(FAMILIES)}
    entries = sorted(FILTERS, key=lambda e: (rank.get(e.family, 9), e.name))
    return [{"name": e.name, "family": e.family, "description": e.description,
             "aliases": list(e.extra.get("aliases", ()))} for e in entries]


def method_info(name: str) -> dict[str, Any]:
    """A method's registry entry plus its parameters (imports the method's module)."""
    e = FILTERS.entry(name)
    cls = FILTERS.get(name)
    return {"name": e.name, "family": e.family, "description": e.description, "reference": cls.reference,
            "needs_scorer": cls.needs_scorer, "needs_answers": cls.needs_answers,
            "uses_embeddings": cls.uses_embeddings, "params": describe_params(cls.Params)}


@dataclass
class Selection:
    """The outcome of one filter run. `ids` are kept sample ids in selection order; `scores`/`reasons` cover every
    sample of the pool (kept or not)."""

    method: str
    ids: list[str]
    scores: dict[str, float]
    reasons: dict[str, str]
    kept: int
    dropped: int
    seconds: float
    n: int = 0
    budget: int = 0
    score_name: str = "score"
    params: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    indices: list[int] = field(default_factory=list)       # positions of the kept samples in the input list

    def subset(self, samples: Sequence[Any]) -> list[Any]:
        """The kept samples, in the order of the input (the order training files keep)."""
        keep = set(self.ids)
        return [s for s in samples if s.id in keep]

    def summary(self) -> dict[str, Any]:
        return {"method": self.method, "n": self.n, "budget": self.budget, "kept": self.kept,
                "dropped": self.dropped, "seconds": round(self.seconds, 3), "score": self.score_name,
                "params": self.params, "details": self.details}

    def score_rows(self) -> list[dict[str, Any]]:
        """One row per sample for `--scores`: id, score, kept, rank (1-based selection order), reason."""
        rank = {i: r for r, i in enumerate(self.ids, 1)}
        return [{"id": sid, "score": _num(sc), "kept": sid in rank, "rank": rank.get(sid),
                 "reason": self.reasons.get(sid, "")} for sid, sc in self.scores.items()]


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if v == v and v not in (float("inf"), float("-inf")) else None


class ScoredPool:
    """A method's scores on a pool; `select` any ratio or count from them without rescoring."""

    def __init__(self, method: FilterMethod, ctx: FilterContext, scored: Scored, seconds: float,
                 skipped: dict[str, str], total: int) -> None:
        self.method, self.ctx, self.scored, self.seconds = method, ctx, scored, seconds
        self.skipped = skipped            # id -> reason of samples dropped before scoring (no answer)
        self.total = total                # samples given, skipped ones included

    def select(self, ratio: float | None = 0.1, count: int | None = None) -> Selection:
        t0 = time.perf_counter()
        ctx, n = self.ctx, self.ctx.n
        budget = resolve_budget(n, ratio, count)
        order, scored = self.scored.pick(budget, ctx.log)
        self.scored = scored
        if not order:
            raise DamocError(f"{self.method.name}: the selection is empty", "see the reasons in --scores")
        ids = [ctx.samples[i].id for i in order]
        kept_pos = {i: r for r, i in enumerate(order)}
        values = scored.values
        scores: dict[str, float] = {}
        reasons: dict[str, str] = {}
        for i, s in enumerate(ctx.samples):
            scores[s.id] = float(values[i])
            if i in kept_pos:
                why = scored.kept_reason(i, kept_pos[i]) if scored.kept_reason else \
                    f"kept: rank {kept_pos[i] + 1} by {scored.score_name}"
                if i in scored.reasons and scored.reasons[i].startswith("filled"):
                    why = scored.reasons[i]
                reasons[s.id] = why
            else:
                reasons[s.id] = scored.reasons.get(i) or _dropped_reason(scored, i, order)
        for sid, why in self.skipped.items():
            scores[sid] = float("nan")
            reasons[sid] = why
        seconds = self.seconds + (time.perf_counter() - t0)
        return Selection(method=self.method.name, ids=ids, scores=scores, reasons=reasons, kept=len(ids),
                         dropped=self.total - len(ids), seconds=seconds, n=self.total, budget=budget,
                         score_name=scored.score_name, params=params_dict(self.method.params),
                         details=dict(scored.details, log=list(ctx.log_lines)) if ctx.log_lines
                         else dict(scored.details), indices=list(order))


def _dropped_reason(scored: Scored, i: int, order: list[int]) -> str:
    if scored.drop_reason is not None:
        return scored.drop_reason(i, order)
    if not bool(scored.eligible[i]):
        return "not eligible"
    last = order[-1]
    return (f"not kept: {scored.score_name} {float(scored.values[i]):.4g} ranks below the last kept "
            f"({float(scored.values[last]):.4g})")


def resolve_scorer(settings: Settings, scorer: str | Path | None) -> str | None:
    """A scorer model folder: a folder as given, else a registry candidate's Chat folder, else an "org/name" hub id
    as-is (transformers finds it in the local HF cache, if it is there)."""
    from damoc.registry.resolve import model_folder

    if scorer is None or str(scorer) == "":
        return None
    try:
        return str(model_folder(settings, scorer, setting="scorer"))
    except ConfigError as e:
        if "/" in str(scorer) and isinstance(e.__cause__, UnknownNameError):
            return str(scorer)
        raise


def _load_embeddings(emb: Any, n: int) -> Any:
    import numpy as np

    if isinstance(emb, (str, Path)):
        path = Path(emb)
        if not path.is_file():
            raise DataError("no such embeddings file", "pass a .npy file with one row per sample", path=str(path))
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise DataError(f"not a readable .npy array ({e})", "save it with numpy.save", path=str(path)) from None
        where = str(path)
    else:
        arr = np.asarray(emb)
        where = "embeddings"
    if arr.ndim != 2:
        raise DataError(f"{where}: expected a 2-d array (samples x dims), got shape {arr.shape}")
    if arr.shape[0] != n:
        raise DataError(f"{where}: {arr.shape[0]} rows for {n} samples",
                        "give one row per sample, in file order (after any skipped records)")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    # checked and normalised in row blocks: whole-array temporaries would double the peak at 1M rows
    for s in range(0, len(arr), 65536):
        block = arr[s:s + 65536]
        finite = np.isfinite(block).all(1)
        if not finite.all():
            raise DataError(f"{where}: row {s + int(np.argmin(finite))} holds NaN or infinite values")
        norms = np.linalg.norm(block, axis=1)
        if (norms == 0).any():
            raise DataError(f"{where}: row {s + int(np.argmax(norms == 0))} is all zeros (no direction to compare)")
        block /= norms[:, None]     # cosine similarity, as the methods expect (in place: no second copy)
    return arr


def _as_samples(samples: Any, skip_bad: bool) -> list[Any]:
    if isinstance(samples, (str, Path)):
        from damoc.data import load_samples
        return load_samples(samples, skip_bad=skip_bad).samples
    return list(samples)


def score(samples: Any, method: str = "graphcut", *, budget: int | None = None, ratio: float | None = 0.1,
          count: int | None = None, seed: int = 0, params: Mapping[str, Any] | Any | None = None,
          embeddings: Any = None, reporter: Reporter | None = None, settings: Settings | None = None,
          scorer: str | Path | None = None, target: Any = None, skip_bad: bool = False, encoder: str | None = None,
          run_id: str = "") -> ScoredPool:
    """Score a pool with one method (the expensive part). `budget` (else ratio/count) is a hint for greedy methods."""
    if settings is None:
        settings = Settings.load()
    t0 = time.perf_counter()
    cls = FILTERS.get(method)
    inst = cls(params)
    pool = _as_samples(samples, skip_bad)
    total = len(pool)
    if not pool:
        raise DataError("no samples to filter", "give a dataset with at least one sample")
    skipped: dict[str, str] = {}
    if cls.needs_answers:
        missing = [s for s in pool if not (s.answer or "").strip()]
        if missing:
            if not skip_bad:
                raise DataError(f"{cls.name} scores answers, but {len(missing)} sample(s) have none "
                                f"(first: {missing[0].id!r})", "fix those records, or pass --skip-bad to drop them")
            skipped = {s.id: "dropped before scoring: no answer" for s in missing}
            pool = [s for s in pool if (s.answer or "").strip()]
            if not pool:
                raise DataError("no sample has an answer", "this method scores answers")
    emb = _load_embeddings(embeddings, len(pool)) if embeddings is not None else None
    if emb is not None and skipped:
        raise DataError("precomputed embeddings cannot be combined with skipped samples",
                        "drop the bad records from the data file first")
    tgt = _as_samples(target, skip_bad) if target is not None else None
    ctx = FilterContext(samples=pool, settings=settings, seed=int(seed), reporter=reporter or NullReporter(),
                        scorer=resolve_scorer(settings, scorer), target=tgt, embeddings_given=emb, encoder=encoder,
                        run_id=run_id)
    hint = budget if budget is not None else resolve_budget(len(pool), ratio, count)
    tr = ctx.tracker("filter").start(None)
    try:
        scored = inst.score(ctx, hint)
    except BaseException as e:
        tr.finish("failed" if not isinstance(e, KeyboardInterrupt) else "cancelled", reason=str(e).split("\n")[0])
        raise
    tr.finish("ok", method=cls.name, n=len(pool))
    return ScoredPool(inst, ctx, scored, time.perf_counter() - t0, skipped, total)


def select(samples: Any, method: str = "graphcut", *, ratio: float | None = 0.1, count: int | None = None,
           seed: int = 0, params: Mapping[str, Any] | Any | None = None, embeddings: Any = None,
           reporter: Reporter | None = None, settings: Settings | None = None, scorer: str | Path | None = None,
           target: Any = None,
           skip_bad: bool = False, encoder: str | None = None, run_id: str = "") -> Selection:
    """Select `count` samples, or round(ratio * n), from `samples` (a list of `Sample` or a dataset path).

    `embeddings`: an (n, d) array or .npy path, one row per sample, instead of encoding; `scorer`: model folder or
    registry name for the LM-based methods; `target`: samples (or a path) LESS matches against."""
    pool_samples = _as_samples(samples, skip_bad)
    if not pool_samples:
        raise DataError("no samples to filter", "give a dataset with at least one sample")
    resolve_budget(len(pool_samples), ratio, count)        # bad budgets fail before any scoring
    pool = score(pool_samples, method, ratio=ratio, count=count, seed=seed, params=params, embeddings=embeddings,
                 reporter=reporter, settings=settings, scorer=scorer, target=target, skip_bad=skip_bad,
                 encoder=encoder, run_id=run_id)
    return pool.select(ratio=ratio, count=count)


__all__ = ["FILTERS", "FAMILIES", "Selection", "ScoredPool", "select", "score", "list_methods", "method_info",
           "resolve_scorer"]
