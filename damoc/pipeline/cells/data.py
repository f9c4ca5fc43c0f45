"""The shared data cells (pseudo-candidate `_data`): prepare, filter, compress. Each reads the training samples of
its input cell, calls the module that owns the method and writes the samples the next cell reads."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from damoc.compress.config import CompressParams
from damoc.data.sample import Sample
from damoc.errors import DamocError, StageFailed
from damoc.events import Reporter
from damoc.pipeline.cells.base import CellContext, CellKind, Role
from damoc.pipeline.cells.registry import CELL_KINDS
from damoc.fsutil import atomic_write_json
from damoc.pipeline.cells.samples import ORDER_FILE, TEST_FILE, TRAIN_FILE, token_estimate, write_samples_jsonl
from damoc.pipeline.config import DatasetSection, FilterSection
from damoc.settings import Settings


class PrepareParams(DatasetSection):
    metric: str = "auto"            # the run's evaluate.metric; "auto" is resolved here from the test samples


class FilterCellParams(FilterSection):
    seed: int = 0
    scorer_path: str | None = None  # the LM-based methods' scorer, resolved by the plan


class CompressCellParams(CompressParams):
    model_path: str = ""            # compress.model, resolved by the plan
    rewriter_path: str | None = None


def _split_key(sample: Sample, seed: int) -> float:
    h = hashlib.sha256(f"{seed}:{sample.id}".encode()).hexdigest()
    return int(h[:12], 16) / float(1 << 48)


def _subsample(samples: list[Sample], n: int, seed: int) -> list[Sample]:
    """`n` samples chosen by a hash of their id (deterministic, independent of file order), in file order."""
    if n >= len(samples):
        return samples
    keep = {id(s) for s in sorted(samples, key=lambda s: _split_key(s, seed))[:n]}
    return [s for s in samples if id(s) in keep]


def run_prepare(params: dict[str, Any], out: Path) -> dict[str, Any]:
    """Load the user's data once; hold out a deterministic test split when no test file is given. `max_train` and
    `max_test` keep a deterministic pseudo-random subset (not the head of the file, which may be sorted)."""
    from damoc.data.io import load_samples

    p = PrepareCell.params_model.model_validate(params)
    res = load_samples(p.train, format=p.format)
    train = res.samples
    if not train:
        raise DamocError(f"{p.train}: no samples", "check the file with `damoc data inspect`")
    if p.test:
        test = load_samples(p.test, format=p.format).samples
        held_out = False
    else:
        test = [s for s in train if _split_key(s, p.split_seed) < p.test_fraction]
        train = [s for s in train if _split_key(s, p.split_seed) >= p.test_fraction]
        held_out = True
        if not test or not train:
            raise DamocError(f"{p.train}: {len(train) + len(test)} samples are too few to hold out a test split",
                             "pass a test file with --test")
    if p.max_train:
        train = _subsample(train, p.max_train, p.split_seed + 1)
    if p.max_test:
        test = _subsample(test, p.max_test, p.split_seed + 2)
    write_samples_jsonl(out / TRAIN_FILE, train)
    write_samples_jsonl(out / TEST_FILE, test)
    metric = p.metric
    if metric == "auto":
        from damoc.evaluate import pick_metric
        metric = pick_metric(test)
    return {"n_train": len(train), "n_test": len(test), "format": res.format, "metric": str(metric),
            "test_held_out": held_out, "train_tokens": token_estimate(train)}


def run_filter(params: dict[str, Any], samples: list[Sample], out: Path, reporter: Reporter, settings: Settings
               ) -> dict[str, Any]:
    from damoc.filters import select

    p = FilterCell.params_model.model_validate(params)
    budget: dict[str, Any] = {"count": p.count} if p.count else {"ratio": p.ratio}
    sel = select(samples, p.method, seed=p.seed, params=p.params, reporter=reporter, settings=settings,
                 scorer=p.scorer_path, **budget)
    keep = set(sel.ids)
    chosen = [s for s in samples if s.id in keep]
    if not chosen:
        raise StageFailed(f"filter {p.method} kept no sample", "raise filter.ratio or use another method")
    write_samples_jsonl(out / TRAIN_FILE, chosen)
    atomic_write_json(out / ORDER_FILE, list(sel.ids))
    return {"method": p.method, "n_in": len(samples), "n_out": len(chosen),
            "tokens_in": token_estimate(samples), "tokens_out": token_estimate(chosen)}


def run_compress(params: dict[str, Any], samples: list[Sample], out: Path, reporter: Reporter, settings: Settings,
                 device: str) -> dict[str, Any]:
    from damoc.compress import compress_dataset

    p = CompressCell.params_model.model_validate(params)
    cfg = p.to_config(model_path=p.model_path, rewriter_path=p.rewriter_path,
                      device=None if device == "auto" else device)
    res = compress_dataset(samples, cfg, reporter=reporter, settings=settings)
    write_samples_jsonl(out / TRAIN_FILE, list(res.samples))
    return {"n_out": len(res.samples), "tokens_in": token_estimate(samples),
            "tokens_out": token_estimate(list(res.samples)), "stats": res.stats}


@CELL_KINDS.register("prepare", description="load the dataset once, hold out the test split, pick the metric")
class PrepareCell(CellKind):
    name = "prepare"
    params_model = PrepareParams
    shared = True

    def run(self, ctx: CellContext) -> dict[str, Any]:
        return run_prepare(ctx.spec.params, ctx.out)


@CELL_KINDS.register("filter", description="select a subset of the training samples (filter.method)")
class FilterCell(CellKind):
    name = "filter"
    params_model = FilterCellParams
    requires = (Role.TRAIN,)
    shared = True

    def run(self, ctx: CellContext) -> dict[str, Any]:
        return run_filter(ctx.spec.params, ctx.samples(Role.TRAIN), ctx.out, ctx.reporter, ctx.settings)


@CELL_KINDS.register("compress", description="compress the tokens of the training samples (compress.method)")
class CompressCell(CellKind):
    name = "compress"
    params_model = CompressCellParams
    requires = (Role.TRAIN,)
    shared = True

    def run(self, ctx: CellContext) -> dict[str, Any]:
        return run_compress(ctx.spec.params, ctx.samples(Role.TRAIN), ctx.out, ctx.reporter, ctx.settings,
                            ctx.device)
