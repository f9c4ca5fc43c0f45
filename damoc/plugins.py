"""One registry pattern for every pluggable method: filters, compressors, merge rules, metrics, backends.

Design follows lm-evaluation-harness's `Registry` (lazy "module:attr" entries, did-you-mean errors):
entries can be registered eagerly with the decorator or lazily by import path, so listing methods never
imports torch.
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
    """Named, lazily imported implementations of one kind of thing."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._loaded: dict[str, T] = {}

    def add(self, name: str, target: str, *, family: str = "", description: str = "", **extra: Any) -> None:
        if name in self._entries and self._entries[name].target != target:
            raise ValueError(f"{self.kind} {name!r} already registered as {self._entries[name].target}")
        self._entries[name] = Entry(name, target, family, description, dict(extra))

    def register(self, name: str, *, family: str = "", description: str = "", **extra: Any) -> Callable[[T], T]:
        """Decorator form, for code that is already imported."""
        def deco(obj: T) -> T:
            target = f"{obj.__module__}:{obj.__qualname__}"  # type: ignore[attr-defined]
            if name not in self._entries:
                self.add(name, target, family=family, description=description, **extra)
            self._loaded[name] = obj
            return obj
        return deco

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

    def names(self) -> list[str]:
        return list(self._entries)
