"""Learning-curve predictors: forecast each candidate's loss (or score) at a larger training-set size from the short
fine-tunes it had, rank the candidates, and say how sure the ranking is.

    from damoc.curves import Curve, predict
    ranking = predict([Curve("a", (200, 400, 800), (3.1, 2.9, 2.6)), ...], target=1_638_400)
    ranking[0].name, ranking[0].predicted, ranking[0].low, ranking[0].high, ranking[0].p_best

Score curves (higher is better) go in with `higher_is_better=True`: they are turned into errors (ceiling - score)
for the log-log fits and back again. Importing this package is cheap: the predictors, numpy and scipy load when a
prediction is made. `damoc extrapolate` reads AtS-format tables (`damoc.curves.table`). See docs/curves.md.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

from damoc.curves.base import Curve, CurvePredictor, Forecast, Prediction
from damoc.errors import ConfigError, DataError
from damoc.plugins import Registry

PREDICTORS: Registry[CurvePredictor] = Registry("curve predictor", CurvePredictor)
PREDICTORS.add("damoc", "damoc.curves.statespace:StateSpace", family="damoc",
               description="pooled state space in log-log: integrated random walk + shared catch-up drift, "
                           "hyper-parameters by maximum likelihood over all candidates")
PREDICTORS.add("ats", "damoc.curves.simple:AtS", family="baseline", aliases=("accept-then-stop",),
               description="AtS (Lin et al. 2024): phase transition (k=3, delta=5), then a log-log line")
PREDICTORS.add("final", "damoc.curves.simple:Final", family="baseline", aliases=("subtuning", "last"),
               description="the last measured value (one proxy fine-tune; AtS's SubTuning)")
PREDICTORS.add("zero-shot", "damoc.curves.simple:ZeroShot", family="baseline", aliases=("zeroshot",),
               description="the value before fine-tuning (column 0)")
PREDICTORS.add("irw", "damoc.curves.statespace:IRW", family="ablation",
               description="damoc without the catch-up drift (integrated random walk only)")

DEFAULT_PREDICTOR = "damoc"
DEFAULT_LEVEL = 0.9     # the (low, high) interval: central 90%


def get_predictor(name: str) -> CurvePredictor:
    """The registered predictor `name` (a class is instantiated with its defaults); did-you-mean when unknown."""
    obj = PREDICTORS.get(name)
    return obj() if isinstance(obj, type) else obj


def predict(curves: Sequence[Curve], target: float, predictor: str | CurvePredictor = DEFAULT_PREDICTOR, *,
            higher_is_better: bool = False, ceiling: float | None = None,
            level: float = DEFAULT_LEVEL) -> list[Prediction]:
    """Forecast every curve at `target` examples and rank them, best first (lowest loss, or highest score).

    `higher_is_better`: the values are scores; they are modelled as errors `ceiling - score` (ceiling: 1 when
    every score is at most 1, else 100). Raises DataError for unusable curves, ConfigError for bad arguments."""
    pred = get_predictor(predictor) if isinstance(predictor, str) else predictor
    if not curves:
        raise DataError("no curves to rank", "give at least one candidate")
    if not 0 < level < 1:
        raise ConfigError(f"interval level {level} is not between 0 and 1")
    if not (target > 0 and math.isfinite(target)):
        raise ConfigError(f"target size {target} is not a positive number")
    names = [c.name for c in curves]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"candidate {dup[0]!r} appears more than once", "give each candidate one curve")
    largest = max((c.sizes[-1] for c in curves if c.sizes), default=0.0)
    if target < largest:
        raise ConfigError(f"target size {target:g} is below the largest measured size {largest:g}",
                          "the predictors extrapolate: pick a target at or above the budget")
    if higher_is_better:
        top = max([v for c in curves for v in c.values] + [c.zero_shot for c in curves if c.zero_shot is not None])
        ceiling = ceiling if ceiling is not None else (1.0 if top <= 1 else 100.0)
        curves = [_to_error(c, ceiling) for c in curves]
    for c in curves:
        bad = [(s, v) for s, v in zip(c.sizes, c.values) if not (v > 0 and math.isfinite(v))]
        if bad:
            raise DataError(f"{c.name}: value {bad[0][1]} at {bad[0][0]:g} examples is not a positive number",
                            "losses (and errors) are fitted on a log scale")
        if len(c.sizes) < pred.min_points:
            raise DataError(f"{c.name}: {len(c.sizes)} measured size(s) (above 0); this predictor needs "
                            f"{pred.min_points}", "measure the curve at more training-set sizes")
    forecasts = pred.forecast(curves, target)
    return _rank(curves, forecasts, level, ceiling if higher_is_better else None)


def _to_error(c: Curve, ceiling: float) -> Curve:
    over = [v for v in c.values if v >= ceiling]
    if over:
        raise DataError(f"{c.name}: score {over[0]} is not below the ceiling {ceiling:g}",
                        "pass ceiling= above every score (errors = ceiling - score must be positive)")
    zs = None if c.zero_shot is None else ceiling - c.zero_shot
    return Curve(c.name, c.sizes, tuple(ceiling - v for v in c.values), zs, c.size, c.family)


def _rank(curves: Sequence[Curve], fc: Sequence[Forecast], level: float, ceiling: float | None) -> list[Prediction]:
    from damoc.curves.stats import p_best

    z = NormalDist().inv_cdf((1 + level) / 2)
    pb = p_best([f.mean for f in fc], [f.sd for f in fc])
    order = sorted(range(len(curves)), key=lambda i: (fc[i].mean, curves[i].name))
    out = []
    for rank, i in enumerate(order, 1):
        mid, lo, hi = (math.exp(fc[i].mean + k * fc[i].sd) for k in (0.0, -z, z))
        if ceiling is not None:         # back to scores: the interval flips
            mid, lo, hi = ceiling - mid, ceiling - hi, ceiling - lo
        out.append(Prediction(curves[i].name, mid, lo, hi, pb[i], rank))
    return out


__all__ = ["DEFAULT_LEVEL", "DEFAULT_PREDICTOR", "PREDICTORS", "Curve", "CurvePredictor", "Forecast",
           "Prediction", "get_predictor", "predict"]
