"""damoc's curve predictor: a state-space model of every candidate's log-log learning curve, with hyper-parameters
shared by the candidates and estimated by maximum likelihood on the points they were measured at.

For candidate i let l(x) = log loss and x = log(training examples). The state is (level l, slope s = dl/dx):

    dl = s dx
    ds = -kappa (l - c) dx + sqrt(q) dW        (one Wiener process per candidate)
    y_k = l(x_k) + e_k,  e_k ~ N(0, r)        (each measured point)

* With kappa = 0 this is the integrated random walk, the prior behind the cubic smoothing spline (Wahba 1978;
  Durbin & Koopman, "Time Series Analysis by State Space Methods", 2nd ed., sec. 3.2): the slope is free to bend,
  so the pre-power phase of a curve (Lin et al. 2024, AtS) needs no cut-off point, and the forecast continues
  the curve's *current* slope, weighted towards its latest points by how fast slopes were seen to drift (q)
  against how noisy single points are (r).
* kappa > 0 adds a catch-up drift shared by the candidates: a curve that is higher (log loss l above c) is
  steepening, one near c is not. Fine-tuning curves of different pre-trained models converge as data grows:
  on AtS's tables the spread of losses shrinks from 200 to 1.6M examples, and how much a curve's slope will still
  grow tracks how high it sits. c is bounded above by the lowest current loss, so the drift never pushes a
  candidate towards a higher loss (more data does not make the fine-tuned loss worse).

q, r, kappa and c (four numbers for the whole table, none set by hand) maximise the exact Gaussian likelihood of
every candidate's points under the Kalman filter (diffuse start: each curve's first two points fix its level and
slope and do not enter the likelihood). The forecast at the target is the filter's prediction there: a normal
law of the log loss, whose spread grows with the horizon.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from damoc.curves.base import Curve, CurvePredictor, Forecast

_DIFFUSE = 100.0    # prior variance of the initial level and slope: sd 10 in log loss and in log-log slope, far
                    # wider than any curve (losses of e^+-10, slopes of +-10), yet well inside float64's range


@dataclass(frozen=True)
class Fit:
    """The maximum-likelihood hyper-parameters of one table (kept for reports and tests)."""

    q: float            # slope drift variance per unit of log size
    r: float            # measurement variance of one log loss
    kappa: float        # catch-up rate (0: none)
    c: float            # catch-up level, in log loss
    loglik: float


def transition(kappa: float, q: float, d: float) -> tuple[Any, Any]:
    """F and Q of the state (l - c, s) over a step d in log size: the exact discretisation of the SDE above."""
    import numpy as np

    w = math.sqrt(kappa)
    wd = w * d
    if wd < 0.05:   # series in (w d)^2; the closed forms cancel badly here and all agree to ~1e-9 at 0.05
        w2 = kappa
        f = np.array([[1 - w2 * d * d / 2, d - w2 * d ** 3 / 6], [-w2 * d, 1 - w2 * d * d / 2]])
        q11 = d ** 3 / 3 - w2 * d ** 5 / 15 + 2 * w2 * w2 * d ** 7 / 315
        q12 = d * d / 2 - w2 * d ** 4 / 6 + w2 * w2 * d ** 6 / 45
        q22 = d - w2 * d ** 3 / 3 + 2 * w2 * w2 * d ** 5 / 15
    else:
        sn, cs = math.sin(wd), math.cos(wd)
        f = np.array([[cs, sn / w], [-w * sn, cs]])
        q11 = (d / 2 - math.sin(2 * wd) / (4 * w)) / kappa
        q12 = sn * sn / (2 * kappa)
        q22 = d / 2 + math.sin(2 * wd) / (4 * w)
    return f, q * np.array([[q11, q12], [q12, q22]])


def kalman(xs: Any, ys: Any, q: float, r: float, kappa: float, c: float) -> tuple[float, Any, Any]:
    """Filter all candidates at once on the common grid `xs` (t,), `ys` (n, t) with NaN where a size is missing.

    Returns (log-likelihood, state means (n, 2), covariances (n, 2, 2)) at the last grid point."""
    import numpy as np

    n, t = ys.shape
    m = np.zeros((n, 2))
    P = np.tile(np.eye(2) * _DIFFUSE, (n, 1, 1))
    seen = np.zeros(n, dtype=int)
    ll = 0.0
    for k in range(t):
        if k:
            f, qm = transition(kappa, q, float(xs[k] - xs[k - 1]))
            m = m @ f.T
            P = f @ P @ f.T + qm
        obs = ~np.isnan(ys[:, k])
        if not obs.any():
            continue
        s = P[obs, 0, 0] + r
        v = ys[obs, k] - c - m[obs, 0]
        counted = seen[obs] >= 2                       # the diffuse start: 2 states, 2 points
        ll += float(-0.5 * (np.log(2 * math.pi * s[counted]) + v[counted] ** 2 / s[counted]).sum())
        gain = P[obs, :, 0] / s[:, None]
        m[obs] += gain * v[:, None]
        P[obs] -= gain[:, :, None] * gain[:, None, :] * s[:, None, None]
        seen[obs] += 1
    return ll, m, P


@dataclass
class StateSpace(CurvePredictor):
    """damoc: pooled state-space extrapolation of log-log curves (see the module docstring)."""

    drift: bool = True      # the shared catch-up drift; False leaves the integrated random walk (an ablation)
    min_points = 2

    def fit(self, xs: Any, ys: Any) -> Fit:
        import numpy as np
        from scipy.optimize import minimize

        n = ys.shape[0]
        counts = (~np.isnan(ys)).sum(axis=1)
        residuals = int(np.clip(counts - 2, 0, None).sum())     # points that enter the likelihood
        if residuals < 2:           # no spread to learn from: each curve is its least-squares line, no interval
            return Fit(0.0, 1e-12, 0.0, 0.0, 0.0)
        last = np.array([row[~np.isnan(row)][-1] for row in ys])
        cmax = float(last.min())
        drift = self.drift and n >= 2 and residuals >= 4        # c and kappa are cross-candidate: 4 parameters
        # starting values from the data: second differences of the log-log curves carry 6r of noise
        d2 = [np.diff(row[~np.isnan(row)], 2) for row in ys]
        d2 = np.concatenate([v for v in d2 if v.size] or [np.zeros(1)])
        r0 = max(float(np.median(d2 ** 2)) / 6, 1e-10)
        lo, hi = np.log([1e-12, 1e-14, 1e-8, 1e-6]), np.log([10.0, 10.0, 10.0, 10.0])

        def unpack(th: Any) -> tuple[float, float, float, float]:
            th = np.clip(th, lo[: len(th)], hi[: len(th)])
            q, r = math.exp(th[0]), math.exp(th[1])
            if not drift:
                return q, r, 0.0, 0.0
            return q, r, math.exp(th[2]), cmax - math.exp(th[3])

        def nll(th: Any) -> float:
            ll = kalman(xs, ys, *unpack(th))[0]
            return -ll if math.isfinite(ll) else 1e300

        starts = [[math.log(r0 * 10), math.log(r0)]]
        if drift:   # slow and fast catch-up, the level 0.1 below the best curve
            starts = [s + [math.log(k0), math.log(0.1)] for s in starts for k0 in (1e-3, 1e-1)]
        best = None
        for th0 in starts:
            res = minimize(nll, np.array(th0), method="Nelder-Mead",
                           options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-9})
            if best is None or res.fun < best.fun:
                best = res
        assert best is not None
        q, r, kappa, c = unpack(best.x)
        return Fit(q, r, kappa, c, -float(best.fun))

    def forecast(self, curves: Sequence[Curve], target: float) -> list[Forecast]:
        import numpy as np

        xs = np.array(sorted({math.log(s) for cv in curves for s in cv.sizes}))
        index = {x: i for i, x in enumerate(xs)}
        ys = np.full((len(curves), len(xs)), np.nan)
        for i, cv in enumerate(curves):
            for s, v in zip(cv.sizes, cv.values):
                ys[i, index[math.log(s)]] = math.log(v)
        fit = self.last_fit = self.fit(xs, ys)
        _, m, P = kalman(xs, ys, fit.q, fit.r, fit.kappa, fit.c)
        f, qm = transition(fit.kappa, fit.q, max(math.log(target) - float(xs[-1]), 0.0))
        mean = m @ f.T
        var = np.einsum("ij,njk,lk->nil", f, P, f)[:, 0, 0] + qm[0, 0] + fit.r
        return [Forecast(float(fit.c + mu), math.sqrt(max(float(v), 0.0))) for mu, v in zip(mean[:, 0], var)]


class IRW(StateSpace):
    """The same model without the catch-up drift: the integrated random walk alone (an ablation of `damoc`)."""

    def __init__(self) -> None:
        super().__init__(drift=False)
