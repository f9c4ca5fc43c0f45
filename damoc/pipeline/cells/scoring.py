"""The scored cells of a candidate: fine-tune (full or LoRA) then evaluate, or evaluate the untouched checkpoint
(zero-shot / few-shot, the paper's Table 1 baselines). A fine-tune cell evaluates the model it trained while it is
still in memory: saving a 7B proxy just to reload it would cost more than the evaluation."""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from damoc.events import CandidateScored
from damoc.finetune.config import MethodParams
from damoc.fsutil import atomic_write_json, read_json
from damoc.pipeline.cells.base import CellContext, CellKind, CellSpec, Role
from damoc.pipeline.cells.registry import CELL_KINDS
from damoc.pipeline.cells.samples import ORDER_FILE, TEST_FILE, nested_subset, token_estimate
from damoc.pipeline.config import EvaluateSection

if TYPE_CHECKING:
    from damoc.data.sample import Sample
    from damoc.evaluate import EvalResult


class FinetuneCellParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hp: MethodParams                                  # the run's finetune.<method> section
    min_steps: int = 0                                # finetune.proxy_min_steps for a proxy, 0 for ground truth
    subset: float = Field(1.0, gt=0, le=1)            # the fraction of the training input it trains on (select.sizes)
    deepspeed: str | None = None
    bf16: Literal["auto", "on", "off"] = "auto"
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)


class EvalCellParams(EvaluateSection):
    few_shot: int = Field(0, ge=0)                    # 0 = zero-shot; the run's evaluate.few_shot for few-shot


def eval_kwargs(ev: EvaluateSection, metric: str) -> dict[str, Any]:
    """Keyword arguments of `damoc.evaluate.evaluate` for the run's evaluate section."""
    kw: dict[str, Any] = {"metric": metric, **ev.params}
    if ev.max_new_tokens:
        kw["max_new_tokens"] = ev.max_new_tokens
    if ev.backend != "auto":
        kw["backend"] = ev.backend
    return kw


def eval_summary(res: "EvalResult") -> dict[str, Any]:
    return {"metric": str(res.metric), "score": float(res.score),
            "stderr": None if res.stderr is None else float(res.stderr), "n_eval": int(res.n),
            "secondary": {k: float(v[0]) for k, v in res.secondary.items() if v},
            "eval_seconds": float(res.seconds)}


PER_ITEM_FILE = "per_item.json"      # each test item's score, in test-file order: the leaderboard's P(best)


def write_per_item(ctx: CellContext, res: "EvalResult") -> None:
    atomic_write_json(ctx.out / PER_ITEM_FILE, {"metric": res.metric, "per_item": [float(x) for x in res.per_item]})


def read_per_item(cell_dir: Path) -> list[float] | None:
    """The per-item scores a scored cell wrote (None for cells of runs made before they were kept)."""
    try:
        data = read_json(cell_dir / PER_ITEM_FILE)
    except ValueError:          # a damaged file loses the probability, never the leaderboard
        return None
    return [float(x) for x in data["per_item"]] if isinstance(data, dict) and data.get("per_item") else None


def _metric(ctx: CellContext) -> str:
    return str(ctx.result(Role.DATA).get("metric") or "auto")


def _release_memory() -> None:
    """A worker serves several candidates in turn: give the last model's memory back before the next one loads."""
    import gc
    gc.collect()
    import torch
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@CELL_KINDS.register("finetune", description="fine-tune a proxy (full or LoRA), then evaluate it in memory")
class FinetuneCell(CellKind):
    name = "finetune"
    params_model = FinetuneCellParams
    requires = (Role.DATA, Role.TRAIN)
    accepts = (Role.MODEL, Role.ORDER)
    scored = True

    @staticmethod
    def stage(method: str, seed: int, subset: float = 1.0) -> str:
        """`finetune-full-s0`; a proxy on a nested subset adds its share: `finetune-full-s0-p25`."""
        base = f"{FinetuneCell.name}-{method}-s{seed}"
        return base if subset >= 1.0 else f"{base}-p{subset * 100:g}"

    @staticmethod
    def train_samples(ctx: CellContext, subset: float) -> list[Sample]:
        train = ctx.samples(Role.TRAIN)
        if subset >= 1.0:
            return train
        order = read_json(ctx.input_path(Role.ORDER) / ORDER_FILE) if ctx.spec.input(Role.ORDER) else None
        return nested_subset(train, subset, order)

    def run(self, ctx: CellContext) -> dict[str, Any]:
        from damoc.evaluate import evaluate
        from damoc.finetune import finetune

        p: FinetuneCellParams = self.params(ctx.spec)
        method, seed = ctx.spec.method or "full", int(ctx.spec.seed or 0)
        model_path = ctx.result(Role.MODEL).get("model_path") or ctx.candidate.model_path or ""
        train, test = self.train_samples(ctx, p.subset), ctx.samples(Role.DATA, TEST_FILE)
        cfg = p.hp.to_config(method, min_steps=p.min_steps, seed=seed, device=ctx.device, deepspeed=p.deepspeed,
                             bf16="auto" if p.bf16 == "auto" else p.bf16 == "on")
        cfg.trust_remote_code = ctx.candidate.trust_remote_code     # the user's opt-in, never the folder's say
        t0 = time.perf_counter()
        # no out_dir: the proxy is scored in memory and never written (a 7B proxy would cost minutes and disk)
        ft = finetune(model_path, train, cfg, None, reporter=ctx.reporter, keep_model=True, settings=ctx.settings)
        train_seconds = float(ft.seconds or (time.perf_counter() - t0))
        res = evaluate(ft.model, test, tokenizer=ft.tokenizer, reporter=ctx.reporter, settings=ctx.settings,
                       seed=seed, **eval_kwargs(p.evaluate, _metric(ctx)))
        write_per_item(ctx, res)
        summary = {"method": method, "seed": ctx.spec.seed, "model_path": model_path, "subset": p.subset,
                   "train_samples": len(train), "train_tokens": token_estimate(train), "steps": int(ft.steps),
                   "train_seconds": train_seconds, "tokens_seen": int(ft.train_tokens),
                   "parameters": int(ft.total_params or 0), "train_flops": float(ft.train_flops),
                   "final_loss": float(ft.losses[-1]) if ft.losses else None, **eval_summary(res),
                   "plan": ft.plan.reason if ft.plan is not None else None}
        del ft, res
        _release_memory()
        return summary


@CELL_KINDS.register("eval", description="evaluate the untouched checkpoint (zero-shot or few-shot)")
class EvalCell(CellKind):
    name = "eval"
    params_model = EvalCellParams
    requires = (Role.DATA,)
    scored = True

    @staticmethod
    def stage(mode: str) -> str:
        return f"{EvalCell.name}-{mode}"

    def run(self, ctx: CellContext) -> dict[str, Any]:
        from damoc.evaluate import evaluate

        p: EvalCellParams = self.params(ctx.spec)
        kw = eval_kwargs(p, _metric(ctx))
        if p.few_shot:
            kw.update(few_shot=p.few_shot, few_shot_pool=ctx.samples(Role.DATA))
        res = evaluate(ctx.candidate.model_path or "", ctx.samples(Role.DATA, TEST_FILE), reporter=ctx.reporter,
                       settings=ctx.settings, seed=int(ctx.spec.seed or 0),
                       trust_remote_code=ctx.candidate.trust_remote_code, **kw)
        write_per_item(ctx, res)
        return {"model_path": ctx.candidate.model_path or "", "few_shot": p.few_shot, "train_seconds": 0.0,
                **eval_summary(res)}


def subset_of(spec: CellSpec) -> float:
    """The share of the filtered set a cell's proxy trains on; 0 for the cells a candidate's first round needs
    (pruning), 1 for the others."""
    if spec.kind == FinetuneCell.name:
        return float(spec.params.get("subset", 1.0))
    return 0.0 if spec.kind != EvalCell.name else 1.0


def scored_event(run_id: str, candidate: str, cell: str, summary: dict[str, Any]) -> CandidateScored:
    return CandidateScored(run_id=run_id, candidate=candidate, metric=summary.get("metric", ""),
                           score=float(summary["score"]), stderr=summary.get("stderr"),
                           details={"cell": cell, "method": summary.get("method"), "seed": summary.get("seed")})
