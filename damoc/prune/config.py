"""The pruning stage's settings: the run config's `prune` section, and the defaults `prune_candidate` shares."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_THRESHOLD = 0.85      # the paper's default (0.85-0.90 work, 0.80 prunes too much: its Appendix D)
DEFAULT_SPARSITY = 0.2        # Eq. 5: the 20% smallest task-vector entries are zeroed before merging
DEFAULT_CALIB_SAMPLES = 64
DEFAULT_MAX_FRACTION = 0.25   # the paper prunes 7/28 to 11/48 layers (its Table 6): all <= floor(25%)
SHARD_BYTES = 2 << 30           # output shards of a pruned checkpoint (the streamed merge holds one)


class PruneParams(BaseModel):
    """Layer pruning by input/output cosine (Eq. 3) and sparse merging of the task vector (Eq. 4-5)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    enabled: bool = True
    threshold: float = Field(DEFAULT_THRESHOLD, gt=0, le=1)
    sparsity: float = Field(DEFAULT_SPARSITY, ge=0, lt=1)
    rule: str = Field("", description="merge rule of damoc.prune.MERGE_RULES; empty = the module's default")
    calib_samples: int = Field(DEFAULT_CALIB_SAMPLES, ge=1)
    allow_no_base: bool = Field(False, description="prune Chat candidates without a Base by plain dropping")
    params: dict[str, Any] = Field(default_factory=dict)

    def candidate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `damoc.prune.prune_candidate` (`params` are further keywords of it)."""
        kw: dict[str, Any] = {"threshold": self.threshold, "sparsity": self.sparsity,
                              "allow_no_base": self.allow_no_base, **self.params}
        if self.rule:
            kw["rule"] = self.rule
        return kw
