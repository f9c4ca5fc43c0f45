"""The run config's settings as a form sees them: type, default and description of each dotted key, read from
the pydantic sections of `RunConfig` (each default is written once, in its section)."""
from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from damoc.errors import ConfigError
from damoc.pipeline.config import RunConfig


@dataclass(frozen=True)
class Setting:
    key: str                          # dotted run-config key, e.g. "filter.ratio"
    type: type                        # bool, int, float, str or list
    item: type | None                 # element type of a list setting
    optional: bool                    # None is a value (an empty field means it)
    default: Any
    description: str
    choices: tuple[str, ...] = ()     # the values of a Literal setting


def setting(key: str) -> Setting:
    model: type[BaseModel] = RunConfig
    *sections, name = key.split(".")
    for section in sections:
        model = model.model_fields[section].annotation  # type: ignore[assignment]
    if name not in model.model_fields:
        raise ConfigError(f"{key} is not a run-config setting", "see docs/run.md for the settings")
    field = model.model_fields[name]
    annotation = field.annotation
    args = get_args(annotation)
    optional = get_origin(annotation) in (Union, types.UnionType) and type(None) in args
    if optional:
        annotation = next(a for a in args if a is not type(None))
    choices: tuple[str, ...] = ()
    item: type | None = None
    if get_origin(annotation) is Literal:
        annotation, choices = str, get_args(annotation)
    elif get_origin(annotation) is list:
        annotation, item = list, get_args(annotation)[0]
    return Setting(key, annotation, item, optional, field.get_default(call_default_factory=True),
                   field.description or "", choices)
