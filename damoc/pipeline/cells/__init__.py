"""Cell kinds: the units of work of a run, in one registry.

    from damoc.pipeline.cells import CELL_KINDS
    kind = CELL_KINDS.get(spec.kind)         # a CellKind subclass
    summary = kind().run(ctx)

Data kinds (shared, under `_data`): prepare -> filter -> compress. Candidate kinds: prune, finetune (fine-tune, then
evaluate in memory), eval (zero-shot / few-shot). To add a kind: subclass `CellKind` in a module of this package,
register it with `@CELL_KINDS.register(name)`, import the module below, and plan its cells in `plan.py`.
"""
from __future__ import annotations

from damoc.pipeline.cells.base import CellContext, CellKind, CellSpec, Role
from damoc.pipeline.cells.registry import CELL_KINDS
from damoc.pipeline.cells.data import CompressCell, FilterCell, PrepareCell  # noqa: E402  (registers)
from damoc.pipeline.cells.model import PruneCell  # noqa: E402
from damoc.pipeline.cells.scoring import EvalCell, FinetuneCell  # noqa: E402


def kind_of(spec_or_stage: CellSpec | str) -> type[CellKind]:
    """The kind of a cell. A bare stage name (a leaderboard fed by hand) is read by the naming rule of the kinds:
    a cell is named after its kind, with `-<detail>` for the kinds that have several cells per candidate."""
    if isinstance(spec_or_stage, CellSpec):
        return CELL_KINDS.get(spec_or_stage.kind)
    return CELL_KINDS.get(spec_or_stage.split("-", 1)[0])


def shared_kinds() -> list[type[CellKind]]:
    """The shared data kinds, in the order a run applies them."""
    return [CELL_KINDS.get(e.name) for e in CELL_KINDS if CELL_KINDS.get(e.name).shared]


__all__ = ["CELL_KINDS", "CellContext", "CellKind", "CellSpec", "Role", "PrepareCell", "FilterCell", "CompressCell",
           "PruneCell", "FinetuneCell", "EvalCell", "kind_of", "shared_kinds"]
