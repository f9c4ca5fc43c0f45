"""The compressor interface and its registry. Light: the methods' modules (numpy, the engine) load on first use."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from damoc.plugins import Plugin, Registry

if TYPE_CHECKING:
    import numpy as np

    from damoc.compress.question import Env
    from damoc.compress.text import FieldTokens
    from damoc.compress.token_loss import Request

Masks = Generator["list[Request]", "list[np.ndarray]", dict[str, list[bool]]]
"""A compression of one sample: yields token-scoring requests, receives their per-token losses, returns the keep
mask of each field (`damoc.compress.core` drives many samples side by side and batches their requests)."""


class Compressor(Plugin, ABC):
    """One token-compression method: `class DaMoC(Compressor, name="damoc")` registers it in `COMPRESSORS`, whose
    index in `damoc.compress` holds its family, description and whether the BERTScore gate applies (`gate`)."""

    @classmethod
    def registry(cls) -> Registry[Any]:
        return COMPRESSORS

    @abstractmethod
    def compress(self, fields: dict[str, FieldTokens], ratios: dict[str, float], env: Env, *,
                 contrastive: bool = False, rate: float = 0.5) -> Masks:
        """Keep masks for one sample's non-empty fields at the per-field `ratios` (`rate`: the sample's overall)."""


COMPRESSORS: Registry[type[Compressor]] = Registry("compressor", Compressor)
