"""One registry pattern for every pluggable method: filters, compressors, merge rules, metrics, backends,
curve predictors, cell kinds, executors.

Design follows lm-evaluation-harness's `lm_eval/api/registry.py`: lazy "module:attr" entries (listing methods
never imports torch), did-you-mean errors, a base-type check on everything registered, and duplicates refused.
A lazy entry is a placeholder; the object it points to is checked against the registry's base type when it is
first loaded, and `register` (the decorator, at the definition) upgrades a placeholder of the same target.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from damoc.errors import UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """What a registry knows about a method without importing it."""

    name: str
    target: str                       # "package.module:attr"
    family: str = ""
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Named, lazily imported implementations of one kind of thing, each an instance or subclass of `base`."""

    def __init__(self, kind: str, base: type) -> None:
        self.kind = kind
        self.base = base
        self._entries: dict[str, Entry] = {}
        self._loaded: dict[str, T] = {}

    def add(self, name: str, target: str, *, family: str = "", description: str = "", **extra: Any) -> None:
        """Register a lazy entry: `target` is imported on first `get`."""
        if not name or name != name.strip():
            raise ValueError(f"{self.kind} name {name!r} is empty or padded")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} already registered as {self._entries[name].target}")
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
                raise ValueError(f"{self.kind} {name!r} already registered as {known.target}")
            self._loaded[name] = obj
            return obj
        return deco

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
