"""The model cell of a candidate: layer importance, pruning and sparse merging (damoc.prune owns all of it)."""
from __future__ import annotations

from typing import Any

from damoc.pipeline.cells.base import CellContext, CellKind, Role
from damoc.pipeline.cells.registry import CELL_KINDS
from damoc.prune.config import PruneParams


@CELL_KINDS.register("prune", description="Eq. 3 layer importance, pruning, sparse merge of Chat - Base")
class PruneCell(CellKind):
    """When nothing is pruned (no layer above the threshold, or no Base), `model_path` is None and the fine-tune
    cells use the untouched checkpoint."""

    name = "prune"
    params_model = PruneParams
    requires = (Role.DATA,)

    def run(self, ctx: CellContext) -> dict[str, Any]:
        from damoc.prune import prune_candidate

        p: PruneParams = self.params(ctx.spec)
        calib = ctx.samples(Role.DATA)[: p.calib_samples]
        cand = ctx.candidate
        kw = p.candidate_kwargs()
        if ctx.device != "auto":
            kw["device"] = ctx.device
        res = prune_candidate(cand.chat_path or "", cand.base_path, ctx.out / "model",
                              calib_texts=[f"{s.prompt}\n{s.answer}" for s in calib], reporter=ctx.reporter,
                              trust_remote_code=cand.trust_remote_code, **kw)
        return {"layers_before": res.layers_before, "layers_after": res.layers_after, "pruned": list(res.pruned),
                "scores": [round(float(x), 4) for x in res.scores], "merge_rule": res.merge_rule,
                "skip_reason": res.skip_reason or res.note or None, "model_path": res.out_path}
