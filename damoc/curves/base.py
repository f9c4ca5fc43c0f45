"""The curve-predictor contract: typed inputs (`Curve`), a predictor's raw output (`Forecast`, a normal law of the log
loss at the target size) and what callers get back (`Prediction`, ranked, with an interval and P(best)).

Pure Python: numpy and scipy are imported by the predictors when they run, so `import damoc.curves` stays cheap.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Curve:
    """One candidate's learning curve: `values[i]` measured after fine-tuning on `sizes[i]` examples.

    Lower is better and every value is positive (a loss, or an error when `predict(higher_is_better=True)` turned
    scores into errors). `zero_shot` (the value at 0 examples), `size` (parameters) and `family` are optional
    side information; a predictor that does not use them ignores them.
    """

    name: str
    sizes: tuple[float, ...]
    values: tuple[float, ...]
    zero_shot: float | None = None
    size: float | None = None
    family: str | None = None

    def __post_init__(self) -> None:
        if len(self.sizes) != len(self.values):
            raise ValueError(f"{self.name}: {len(self.sizes)} sizes but {len(self.values)} values")
        if any(b <= a for a, b in zip(self.sizes, self.sizes[1:])):
            raise ValueError(f"{self.name}: sizes must be strictly increasing")

    @property
    def last(self) -> float:
        return self.values[-1]


@dataclass(frozen=True)
class Forecast:
    """A predictor's belief about log(value) at the target size: Normal(mean, sd**2). sd = 0 is a point forecast."""

    mean: float
    sd: float


@dataclass(frozen=True)
class Prediction:
    """One ranked candidate. `predicted` is the median forecast on the input's scale; (low, high) is the central
    `level` interval (90% by default); `p_best` the probability that this candidate is the best one; rank 1 = best."""

    name: str
    predicted: float
    low: float
    high: float
    p_best: float
    rank: int

    def as_dict(self) -> dict[str, float | int | str]:
        return {"name": self.name, "predicted": self.predicted, "low": self.low, "high": self.high,
                "p_best": self.p_best, "rank": self.rank}


class CurvePredictor(ABC):
    """Forecasts every candidate's value at `target` from the curves of all candidates (a predictor may pool them).

    Subclasses implement `forecast`; `damoc.curves.predict` does the validation, the score/loss transform, the
    intervals, P(best) and the ranking, once for all predictors.
    """

    #: the smallest number of measured points (at sizes > 0) a curve needs
    min_points: int = 1

    @abstractmethod
    def forecast(self, curves: Sequence[Curve], target: float) -> list[Forecast]:
        """One Forecast per curve, in order."""


def point_forecast(value: float) -> Forecast:
    return Forecast(math.log(value), 0.0)
