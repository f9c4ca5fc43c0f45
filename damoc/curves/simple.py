"""The reference predictors: the proxy's own last value (`final`, AtS's "SubTuning"), the zero-shot value, and AtS.

AtS follows Lin et al., ICML 2024, "Selecting Large Language Model to Fine-tune via Rectified Scaling Law" (arXiv
2402.02314), as its repository implements it (linhaowei1/Fine-tuning-Scaling-Law, `src/model_select.py`:
`ats_select` and `_estimate_phase_transition`, k=3, delta=5). Read as written there, it reproduces the paper's
Table 1 to the printed digit on the FLAN and WMT19 tables (see docs/curves.md).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from damoc.curves.base import Curve, CurvePredictor, Forecast, point_forecast
from damoc.errors import DataError


class Final(CurvePredictor):
    """The last measured value, unchanged: what a single short proxy fine-tune ranks by today."""

    def forecast(self, curves: Sequence[Curve], target: float) -> list[Forecast]:
        return [point_forecast(c.last) for c in curves]


class ZeroShot(CurvePredictor):
    """The value before any fine-tuning (the table's `0` column): AtS's ZeroShot baseline."""

    min_points = 0

    def forecast(self, curves: Sequence[Curve], target: float) -> list[Forecast]:
        missing = [c.name for c in curves if c.zero_shot is None]
        if missing:
            raise DataError(f"no zero-shot value (column 0) for {', '.join(missing[:3])}"
                            + (f" and {len(missing) - 3} more" if len(missing) > 3 else ""),
                            "add a `0` column, or pick another --predictor")
        return [point_forecast(c.zero_shot) for c in curves]  # type: ignore[arg-type]


def _line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float, float, float]:
    """Least squares y = a + b x: (a, b, residual variance (n-2 dof; 0 below 3 points), mean x, Sxx)."""
    n = len(xs)
    xb, yb = sum(xs) / n, sum(ys) / n
    sxx = sum((x - xb) ** 2 for x in xs)
    b = sum((x - xb) * (y - yb) for x, y in zip(xs, ys)) / sxx
    a = yb - b * xb
    sse = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys))
    return a, b, (sse / (n - 2) if n > 2 else 0.0), xb, sxx


def phase_transition(lx: Sequence[float], ly: Sequence[float], k: int, delta: float) -> int:
    """AtS's `_estimate_phase_transition`: the index of the last pre-power-phase point (-1: none).

    Walking back from the largest size: fit a line to the last p points (p = k, k+1, ...) in log-log space, and
    stop at the first earlier point whose residual exceeds `delta` standard deviations of that fit's residuals
    (population std, as numpy's `.std()`). As in the reference code, a walk that never stops still leaves out
    the smallest size (the loop ends at p = n - 1), and a curve of at most k points keeps them all.
    """
    n = len(lx)
    if n <= k:
        return -1
    p = k
    for p in range(k, n):
        xs, ys = lx[n - p:], ly[n - p:]
        a, b, _, _, _ = _line(xs, ys)
        std = math.sqrt(sum((y - a - b * x) ** 2 for x, y in zip(xs, ys)) / p)
        resid = abs(ly[n - p - 1] - a - b * lx[n - p - 1])
        # a perfect fit gives numpy's inf (stop) or nan (go on, nan > delta is False), as in the reference
        ratio = resid / std if std > 0 else (math.inf if resid > 0 else 0.0)
        if ratio > delta:
            break
    return n - p - 1


@dataclass
class AtS(CurvePredictor):
    """AtS: detect the phase transition, fit a line in log-log space to the points after it, extrapolate.

    The interval is the least-squares prediction interval of that line (a point forecast with 2 points)."""

    k: int = 3              # points of the first fit (the paper's default)
    delta: float = 5.0      # stop threshold, in residual standard deviations (the paper's default)
    min_points = 2

    def forecast(self, curves: Sequence[Curve], target: float) -> list[Forecast]:
        out = []
        lt = math.log(target)
        for c in curves:
            lx = [math.log(s) for s in c.sizes]
            ly = [math.log(v) for v in c.values]
            if len(lx) < 2:
                raise DataError(f"{c.name}: AtS needs at least two measured sizes, got {len(lx)}")
            start = phase_transition(lx, ly, self.k, self.delta) + 1
            xs, ys = lx[start:], ly[start:]
            a, b, s2, xb, sxx = _line(xs, ys)
            sd = math.sqrt(s2 * (1 + 1 / len(xs) + (lt - xb) ** 2 / sxx))
            out.append(Forecast(a + b * lt, sd))
        return out
