"""One registry pattern for every pluggable method: filters, compressors, merge rules, metrics, backends,
curve predictors, cell kinds, executors.

Design follows lm-evaluation-harness's `lm_eval/api/registry.py`: lazy "module:attr" entries (listing methods
never imports torch), did-you-mean errors, a base-type check on everything registered, and duplicates refused.
A lazy entry is a placeholder; the object it points to is checked against the registry's base type when it is
first loaded, and `register` (the decorator, at the definition) upgrades a placeholder of the same target.

A method's metadata (family, description, aliases) is written once, in one of two ways:
- a lazy index (`add`) where listing must stay cheap, and classes that subclass a `Plugin` base with
  `class GraphCut(FilterMethod, name="graphcut")`: the class registers itself at its definition (its module and
  name must be the index's target) and takes name, family and description from the index;
- `put(name, obj, ...)` at the definition, for method objects of a module that is cheap to import anyway.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from damoc.errors import UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """What a registry knows about a method without importing it."""

    name: str
    target: str                       # "package.module:attr"; "" for an object `put` in place
    family: str = ""
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Named, lazily imported implementations of one kind of thing, each an instance or subclass of `base`."""

    def __init__(self, kind: str, base: type = object) -> None:
        self.kind = kind
        self.base = base
        self._entries: dict[str, Entry] = {}
        self._loaded: dict[str, T] = {}

    def add(self, name: str, target: str, *, family: str = "", description: str = "", **extra: Any) -> None:
        """Register a lazy entry: `target` is imported on first `get`."""
        if not name or name != name.strip():
            raise ValueError(f"{self.kind} name {name!r} is empty or padded")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} already registered{self._where(name)}")
        self._entries[name] = Entry(name, target, family, description, dict(extra))

    def register(self, name: str, *, family: str = "", description: str = "", **extra: Any) -> Callable[[T], T]:
        """Decorator form, at the definition. A lazy entry of the same target is upgraded, not duplicated."""
        def deco(obj: T) -> T:
            self._check(name, obj)
            target = f"{obj.__module__}:{obj.__qualname__}"  # type: ignore[attr-defined]
            known = self._entries.get(name)
            if known is None:
                self.add(name, target, family=family, description=description, **extra)
            elif known.target != target:
                raise ValueError(f"{self.kind} {name!r} already registered{self._where(name)}")
            self._loaded[name] = obj
            return obj
        return deco

    def put(self, name: str, obj: T, *, family: str = "", description: str = "", **extra: Any) -> T:
        """Register an object (an instance, not a class) at its definition; returns it."""
        self._check(name, obj)
        self.add(name, "", family=family, description=description, **extra)
        self._loaded[name] = obj
        return obj

    def _where(self, name: str) -> str:
        target = self._entries[name].target
        return f" as {target}" if target else ""

    def _check(self, name: str, obj: Any) -> None:
        ok = isinstance(obj, self.base) or (isinstance(obj, type) and issubclass(obj, self.base))
        if not ok:
            raise TypeError(f"{self.kind} {name!r} is {obj!r}, not a {self.base.__name__}")

    def entry(self, name: str) -> Entry:
        key = self.normalise(name)
        if key not in self._entries:
            raise UnknownNameError(self.kind, name, self._entries)
        return self._entries[key]

    def get(self, name: str) -> T:
        e = self.entry(name)
        if e.name not in self._loaded:
            module, _, attr = e.target.partition(":")
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            self._check(e.name, obj)
            self._loaded[e.name] = obj
        return self._loaded[e.name]

    def normalise(self, name: str) -> str:
        """Accept `KCenterGreedy`, `kcenter-greedy` and `kcenter_greedy` alike."""
        if name in self._entries:
            return name
        squash = lambda s: s.lower().replace("-", "").replace("_", "").replace(" ", "")
        for key in self._entries:
            if squash(key) == squash(name):
                return key
        for key, e in self._entries.items():
            if squash(name) in {squash(a) for a in e.extra.get("aliases", ())}:
                return key
        return name

    def __contains__(self, name: str) -> bool:
        return self.normalise(name) in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def choices(self) -> list[tuple[str, str]]:
        """(name, description) of every entry, in registration order: the UI's and the CLI's choice lists."""
        return [(e.name, e.description) for e in self._entries.values()]


class Plugin:
    """Base of the classes a lazily indexed registry holds (filters, compressors, backends).

    `class GraphCut(FilterMethod, name="graphcut")` registers the class at its definition and sets `name`, `family`
    and `description` from the registry's entry, so the index that lists methods without importing them is the
    one place their metadata is written. A method base names its registry by overriding `registry()`."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    description: ClassVar[str] = ""

    @classmethod
    def registry(cls) -> Registry[Any]:
        raise NotImplementedError(f"{cls.__name__} names no registry")

    def __init_subclass__(cls, *, name: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if name:
            reg = cls.registry()
            reg.register(name)(cls)
            entry = reg.entry(name)
            cls.name, cls.family, cls.description = entry.name, entry.family, entry.description
