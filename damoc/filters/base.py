"""The filter interface: typed parameters, `score` once, then `select` any budget from the scores.

A method scores the pool (`score(ctx, budget) -> Scored`) and picks from the scores (`Scored.pick(budget)`). For a
ranking method the scores hold a full priority order, so another ratio is a different prefix; greedy methods
(GraphCut, KCenterGreedy, Deita's filter) store their pick sequence, which is budget-independent, so any smaller
budget is a prefix and a larger one extends the run. Methods whose picks depend on the budget in another way (DQ's
per-bin draws, CaR's per-cluster quota, MoDS's seed count) override `pick`.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from damoc.data.sample import Sample
from damoc.errors import ConfigError, DamocError, DataError
from damoc.events import NullReporter, Reporter, StageTracker
from damoc.plugins import Plugin, Registry
from damoc.settings import Settings


# ---------------------------------------------------------------------------------------------------------------
# budgets
def resolve_budget(n: int, ratio: float | None = 0.1, count: int | None = None) -> int:
    """Samples to keep: `count` when given, else round(ratio * n). Errors name the fix."""
    if n <= 0:
        raise DataError("no samples to filter", "give a dataset with at least one sample")
    if count is not None:
        if isinstance(count, bool) or int(count) != count or count <= 0:
            raise ConfigError(f"count must be a positive whole number, got {count!r}")
        if count > n:
            raise ConfigError(f"count {count} is larger than the data ({n} samples)",
                              f"use --count {n} or less, or a ratio in (0, 1]")
        return int(count)
    if ratio is None:
        raise ConfigError("give a ratio or a count")
    try:
        r = float(ratio)
    except (TypeError, ValueError):
        raise ConfigError(f"ratio must be a number in (0, 1], got {ratio!r}") from None
    if not (0.0 < r <= 1.0) or math.isnan(r):
        raise ConfigError(f"ratio must be in (0, 1], got {ratio!r}", "the paper uses 0.2, 0.1 and 0.05")
    k = int(math.floor(r * n + 0.5))          # round half up: 0.1 * 505 keeps 51, not banker's 50
    if k == 0:
        raise ConfigError(f"ratio {r} of {n} samples keeps none",
                          f"raise the ratio to at least {1 / n:.3g} or pass --count")
    return k


# ---------------------------------------------------------------------------------------------------------------
# parameters
@dataclass
class MethodParams:
    """Base of a method's parameters: a dataclass of typed fields, each documented by the string under it."""

    def validate(self) -> None:
        """Raise ConfigError for a value out of range (called once the fields are parsed)."""


@dataclass
class NoParams(MethodParams):
    """This method has no parameters."""


def parse_params(cls: type[MethodParams], given: Mapping[str, Any] | Any | None, method: str) -> MethodParams:
    """Build the method's parameter dataclass from a mapping (CLI strings are coerced to the field types)."""
    if given is None:
        return cls()
    if isinstance(given, cls):
        return given
    if not isinstance(given, Mapping):
        raise ConfigError(f"{method}: params must be a mapping or {cls.__name__}, got {type(given).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, raw in given.items():
        name = key.replace("-", "_")
        if name not in known:
            choices = ", ".join(sorted(known)) or "none"
            raise ConfigError(f"{method}: unknown parameter {key!r}", f"parameters of {method}: {choices}")
        values[name] = _coerce(raw, hints[name], f"{method}.{name}")
    try:
        obj = cls(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{method}: {e}") from None
    obj.validate()
    return obj


def _coerce(raw: Any, hint: Any, where: str) -> Any:
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = type(None) in typing.get_args(hint)
    if optional and text.lower() in ("none", "null", ""):
        return None
    target = args[0] if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args else hint
    try:
        if target is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if target is int:
            return int(text)
        if target is float:
            return float(text)
        if typing.get_origin(target) is typing.Literal:
            if text not in typing.get_args(target):
                raise ValueError(text)
            return text
    except ValueError:
        raise ConfigError(f"{where}: {raw!r} is not a valid {getattr(target, '__name__', target)}") from None
    return text


def params_dict(params: Any) -> dict[str, Any]:
    return dataclasses.asdict(params) if dataclasses.is_dataclass(params) else {}


def describe_params(cls: type) -> list[dict[str, Any]]:
    """Name, type, default and doc line of each parameter (for `damoc filter --list` and the docs)."""
    out = []
    hints = typing.get_type_hints(cls)
    docs = _field_docs(cls)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        out.append({"name": f.name, "type": _type_name(hints[f.name]), "default": default,
                    "help": docs.get(f.name, "")})
    return out


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return "|".join(map(str, typing.get_args(hint)))
    return getattr(hint, "__name__", str(hint).replace("typing.", ""))


def _field_docs(cls: type) -> dict[str, str]:
    """The string literal right under each field (the convention of damoc.settings)."""
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for a, b in zip(body, body[1:]):
        if isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name) and isinstance(b, ast.Expr) \
                and isinstance(getattr(b, "value", None), ast.Constant) and isinstance(b.value.value, str):
            docs[a.target.id] = " ".join(b.value.value.split())
    return docs


# ---------------------------------------------------------------------------------------------------------------
# context handed to a method
@dataclass
class FilterContext:
    samples: list[Sample]
    settings: Settings
    seed: int = 0
    reporter: Reporter = field(default_factory=NullReporter)
    scorer: str | None = None                 # resolved model folder (or hub id) for LM-based methods
    target: list[Sample] | None = None        # LESS target samples
    embeddings_given: Any = None              # (n, d) array the caller supplied
    encoder: str | None = None
    run_id: str = ""
    _emb: dict[str, Any] = field(default_factory=dict, repr=False)
    log_lines: list[str] = field(default_factory=list, repr=False)

    @property
    def n(self) -> int:
        return len(self.samples)

    def device(self) -> str:
        from damoc.models import resolve_device
        return resolve_device(self.settings.device)

    def tracker(self, stage: str) -> StageTracker:
        return StageTracker(self.reporter, stage, run_id=self.run_id)

    def log(self, message: str, level: str = "info") -> None:
        self.log_lines.append(message)
        StageTracker(self.reporter, "filter", run_id=self.run_id).log(message, level)

    def embeddings(self, text: str = "sample") -> Any:
        """(n, d) unit rows for the pool: the caller's array, else the local encoder's (cached on disk).

        `text` picks what is embedded: "sample" = prompt + answer (DQ's `instruction [input] output`),
        "prompt" = the user turn only (MoDS embeds instructions)."""
        import numpy as np

        if self.embeddings_given is not None:
            return self.embeddings_given
        if text not in self._emb:
            from damoc.embeddings import encode
            texts = [sample_text(s, text) for s in self.samples]
            tr = self.tracker("embed").start(self.n)
            arr = encode(texts, self.encoder, self.settings, tracker=tr)
            tr.finish("ok", samples=self.n)
            self._emb[text] = np.ascontiguousarray(arr, dtype=np.float32)
        return self._emb[text]

    def need_scorer(self, method: str) -> str:
        if not self.scorer:
            raise ConfigError(f"{method} needs a scorer language model",
                              "pass --scorer with a model folder or a registry candidate name "
                              "(the demo zoo's smallest model works)")
        return self.scorer


def sample_text(s: Sample, what: str = "sample") -> str:
    if what == "prompt":
        return s.prompt
    if what == "answer":
        return s.answer
    return f"{s.prompt}\n{s.answer}" if s.answer else s.prompt


# ---------------------------------------------------------------------------------------------------------------
# scores
@dataclass
class Scored:
    """Per-sample scores of one method on one pool, from which any budget can be picked.

    `values[i]` is sample i's score (higher = kept first, unless the method says otherwise in `score_name`);
    `order` lists eligible sample indices in priority order (a prefix is kept); `eligible` marks samples the method
    would ever keep; `reasons` explains ineligible samples; `complete` is False when `order` is a greedy prefix that
    can only serve budgets up to `len(order)` (a larger budget rescoring through `extend`)."""

    method: str
    values: Any                                   # np.ndarray (n,)
    order: list[int]
    eligible: Any                                 # np.ndarray[bool] (n,)
    score_name: str = "score"
    reasons: dict[int, str] = field(default_factory=dict)
    kept_reason: Callable[[int, int], str] | None = None     # (index, rank) -> reason for a kept sample
    drop_reason: Callable[[int, list[int]], str] | None = None   # (index, kept order) -> reason it was not kept
    complete: bool = True
    details: dict[str, Any] = field(default_factory=dict)
    extend: Callable[[int], "Scored"] | None = None
    picker: Callable[["Scored", int], list[int]] | None = None
    fill: bool = False

    def pick(self, budget: int, log: Callable[[str, str], None] | None = None) -> tuple[list[int], "Scored"]:
        """Indices to keep for `budget` (in selection order) and the scores they came from."""
        scored: Scored = self
        if self.picker is not None:
            return self.picker(self, budget), self
        if not self.complete and budget > len(self.order):
            if self.extend is None:
                raise DamocError(f"{self.method}: scores only cover {len(self.order)} picks, {budget} asked")
            scored = self.extend(budget)
            return scored.pick(budget, log)
        chosen = list(self.order[:budget])
        if len(chosen) < budget:
            short = budget - len(chosen)
            if not chosen and not self.fill:
                raise DamocError(f"{self.method}: no sample passed the method's filter (0 of {len(self.values)})",
                                 "see the reasons in --scores, change the method's threshold params, "
                                 "or pass params fill=true to top up from the rest")
            if self.fill:
                import numpy as np
                rest = [int(i) for i in np.argsort(-np.nan_to_num(self.values, nan=-np.inf), kind="stable")
                        if int(i) not in set(chosen)]
                extra = rest[:short]
                for i in extra:
                    self.reasons[i] = "filled to reach the budget: " + self.reasons.get(i, "not eligible")
                chosen += extra
                if log:
                    log(f"{self.method}: {len(self.order)} eligible samples < budget {budget}; filled {len(extra)} "
                        f"from the rest", "warning")
            elif log:
                log(f"{self.method}: only {len(chosen)} samples pass the method's filter, fewer than the budget "
                    f"{budget}: keeping {len(chosen)} (params fill=true tops up from the rest)", "warning")
        return chosen, scored


# ---------------------------------------------------------------------------------------------------------------
# the method interface
class FilterMethod(Plugin):
    """One data-selection method: `class GraphCut(FilterMethod, name="graphcut")` registers it in `FILTERS` (name,
    family and description come from the index in `damoc.filters`); subclasses set the flags and implement `score`."""

    Params: ClassVar[type[MethodParams]] = NoParams
    needs_answers: ClassVar[bool] = False
    needs_scorer: ClassVar[bool] = False
    uses_embeddings: ClassVar[bool] = False
    reference: ClassVar[str] = ""                 # the paper / repository it follows

    def __init__(self, params: Mapping[str, Any] | Any | None = None) -> None:
        self.params = parse_params(self.Params, params, self.name)

    @classmethod
    def registry(cls) -> Registry[Any]:
        return FILTERS

    def score(self, ctx: FilterContext, budget: int) -> Scored:
        raise NotImplementedError

    # helpers for subclasses ----------------------------------------------------------------------------------
    @staticmethod
    def ranked(values: Any, eligible: Any = None, *, descending: bool = True, seed: int = 0) -> list[int]:
        """Eligible indices sorted by value; ties broken by a seeded shuffle (not by file position)."""
        import numpy as np

        v = np.asarray(values, dtype=np.float64)
        n = len(v)
        el = np.ones(n, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
        tie = np.random.default_rng(seed).permutation(n)
        key = -v if descending else v
        idx = np.lexsort((tie, key))            # primary: key, secondary: the seeded permutation
        return [int(i) for i in idx if el[i] and np.isfinite(v[i])]


FILTERS: Registry[type[FilterMethod]] = Registry("filter method", FilterMethod)
"""The methods, indexed lazily in `damoc.filters` (listing them imports no numpy)."""
