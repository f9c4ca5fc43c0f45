"""The registry of cell kinds. Kinds register themselves at their definition (the kind modules are light: their
heavy imports live inside `run`)."""
from __future__ import annotations

from damoc.pipeline.cells.base import CellKind
from damoc.plugins import Registry

CELL_KINDS: Registry[type[CellKind]] = Registry("cell kind", CellKind)
