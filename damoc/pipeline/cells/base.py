"""The cell-kind interface: what the pipeline runs, one registered kind per unit of work.

A cell is one (candidate x stage) unit of work with its own folder and completion marker (rundir.py). A kind says
what its cells need and do:
- `params_model`: the typed parameters of its cells (the run-config section it runs, plus what the plan resolved);
- `requires` / `accepts`: its inputs, as typed roles (`Role`) that a cell binds to the keys of other cells;
- `run(ctx) -> summary`: the work, in a worker process; the summary becomes the cell's `done.json`.
Heavy imports stay inside `run`: the registry is imported by the CLI, the app and the leaderboard.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ValidationError

from damoc.errors import ConfigError
from damoc.events import Reporter
from damoc.pipeline.rundir import DATA_CANDIDATE

if TYPE_CHECKING:
    from damoc.data.sample import Sample
    from damoc.pipeline.plan import CandidatePlan
    from damoc.settings import Settings


class Role(str, Enum):
    """What a cell reads from another cell."""

    DATA = "data"      # the prepared dataset: the test split, the metric, the whole training split
    TRAIN = "train"    # the training samples this cell works on (prepared, filtered or compressed)
    MODEL = "model"    # a model folder written by a pruning cell
    ORDER = "order"    # the filter's pick order (nested subsets of the training samples are its prefixes)


@dataclass
class CellSpec:
    """One planned cell, as `plan.json` stores it. `inputs` binds each role to the key of the cell it reads;
    `needs` (every input key, in role order) is what the worker checks before it starts the cell."""

    candidate: str
    stage: str                      # cell name: prepare | filter | compress | prune | finetune-full-s0 | eval-...
    kind: str                       # a name of CELL_KINDS
    method: str | None = None       # full | lora (fine-tune cells)
    seed: int | None = None
    needs: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.candidate}/{self.stage}"

    def input(self, role: Role) -> str | None:
        return self.inputs.get(role.value)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CellSpec":
        spec = cls(**d)
        if not spec.inputs and spec.needs:
            spec.inputs = _inputs_from_needs(spec)
        return spec


def _inputs_from_needs(spec: CellSpec) -> dict[str, str]:
    """Plans written before cells had typed inputs (run directories of damoc 0.1) list only `needs`: the
    prepared data is `_data/prepare`, the training samples the last shared data cell, the model a prune cell."""
    prep = f"{DATA_CANDIDATE}/prepare"
    data = [n for n in spec.needs if n.startswith(DATA_CANDIDATE + "/")]
    inputs: dict[str, str] = {}
    if prep in spec.needs:
        inputs[Role.DATA.value] = prep
    if data:
        inputs[Role.TRAIN.value] = data[-1]
    model = [n for n in spec.needs if n == f"{spec.candidate}/prune"]
    if model:
        inputs[Role.MODEL.value] = model[0]
    return inputs


class CellContext(ABC):
    """What a running cell sees: its spec, folder, typed inputs, candidate, settings and event sink."""

    spec: CellSpec
    out: Path
    settings: "Settings"
    device: str
    reporter: Reporter

    @abstractmethod
    def samples(self, role: Role, file: str = "train.jsonl") -> list["Sample"]:
        """Samples written by the input cell bound to `role`."""

    @abstractmethod
    def input_path(self, role: Role) -> Path:
        """The folder of the input cell bound to `role` (for files beyond samples and summary)."""

    @abstractmethod
    def result(self, role: Role) -> dict[str, Any]:
        """The summary (`done.json`) of the input cell bound to `role`; {} when the role is not bound."""

    @property
    @abstractmethod
    def candidate(self) -> "CandidatePlan":
        """The candidate this cell belongs to (per-candidate kinds only)."""


class CellKind(ABC):
    """A kind of cell. Subclasses are registered in `CELL_KINDS` (damoc.pipeline.cells) at their definition."""

    name: ClassVar[str]
    params_model: ClassVar[type[BaseModel]]
    requires: ClassVar[tuple[Role, ...]] = ()
    accepts: ClassVar[tuple[Role, ...]] = ()        # optional inputs
    shared: ClassVar[bool] = False                   # a data cell of the pseudo-candidate `_data`
    scored: ClassVar[bool] = False                   # its summary carries an evaluation score
    description: ClassVar[str] = ""

    @classmethod
    def make(cls, candidate: str, stage: str, *, inputs: dict[Role, str], params: BaseModel,
             method: str | None = None, seed: int | None = None) -> CellSpec:
        """A cell of this kind with its inputs checked against what the kind declares."""
        missing = [r.value for r in cls.requires if r not in inputs]
        extra = [r.value for r in inputs if r not in cls.requires + cls.accepts]
        if missing or extra:
            raise ValueError(f"{cls.name} cell {candidate}/{stage}: missing inputs {missing}, unexpected {extra}")
        bound = {r.value: inputs[r] for r in (*cls.requires, *cls.accepts) if r in inputs}
        return CellSpec(candidate, stage, cls.name, method=method, seed=seed,
                        needs=list(dict.fromkeys(bound.values())),
                        # unset extras stay out of plan.json (e.g. no scorer_path for a method that needs none)
                        params=params.model_dump(mode="json", exclude_unset=True),
                        inputs=bound)

    @classmethod
    def params(cls, spec: CellSpec) -> Any:
        """The cell's parameters, typed (a plan edited by hand gets a clear error, not a KeyError)."""
        try:
            return cls.params_model.model_validate(spec.params)
        except ValidationError as e:
            raise ConfigError(f"plan.json: cell {spec.key} has invalid parameters ({e.errors()[0]['msg']})",
                              "the run was planned by another version of damoc; start a new run") from None

    @abstractmethod
    def run(self, ctx: CellContext) -> dict[str, Any]:
        """Do the cell's work in `ctx.out`; return its summary."""
