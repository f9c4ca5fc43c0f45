"""How sure a pick is: the probability that each candidate is the true winner, from its proxies' evaluations.

    from damoc.selection import p_best
    p_best({"a": per_item_a, "b": per_item_b})           # {"a": 0.83, "b": 0.17}

Light at import: numpy loads when a probability is computed.
"""
from __future__ import annotations

from damoc.selection.pbest import p_best, p_best_exact

__all__ = ["p_best", "p_best_exact"]
