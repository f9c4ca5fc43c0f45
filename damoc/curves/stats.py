"""Numbers around the forecasts: P(best) from independent normal forecasts, and AtS's selection metrics.

Imported only when a prediction is made or scored (numpy, scipy).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import log_ndtr

_N = 2001       # points on each candidate's own standardised axis, -10 sd to +10 sd (or to the lowest point mass)


def p_best(means: Sequence[float], sds: Sequence[float]) -> list[float]:
    """P(candidate i has the lowest value) when value_i ~ Normal(means[i], sds[i]**2) independently.

    sd = 0 is a point mass. For a spread candidate, P_i = integral of phi_i(t) prod_{j != i} P(X_j > t) over
    t below the lowest point mass, on i's own standardised grid (so very different spreads are all resolved);
    the lowest point mass wins when every spread candidate lies above it (ties share)."""
    mu, sd = np.asarray(means, dtype=float), np.asarray(sds, dtype=float)
    spread = sd > 0
    m0 = mu[~spread].min() if (~spread).any() else np.inf
    out = np.zeros(len(mu))
    if spread.any():
        ms, ss = mu[spread], sd[spread]
        idx = np.flatnonzero(spread)
        for a, i in enumerate(idx):
            top = min(10.0, (m0 - ms[a]) / ss[a])       # only values below the lowest point mass can win
            if top <= -10.0:
                continue
            u = np.linspace(-10.0, top, _N)
            t = ms[a] + ss[a] * u
            logsurv = log_ndtr(-(t[:, None] - ms[None, :]) / ss[None, :])   # log P(X_j > t), (grid, spread)
            f = np.exp(-0.5 * u * u + logsurv.sum(axis=1) - logsurv[:, a]) / np.sqrt(2 * np.pi)
            out[i] = float((f[1:] + f[:-1]).sum() * (u[1] - u[0]) / 2)   # trapezoid rule (numpy 1.26 has none)
    if np.isfinite(m0):
        ties = np.flatnonzero(~spread & (mu == m0))
        above = float(np.exp(log_ndtr(-(m0 - mu[spread]) / sd[spread]).sum())) if spread.any() else 1.0
        out[ties] = above / len(ties)
    total = out.sum()
    return [float(v) for v in out / total] if total > 0 else [1.0 / len(mu)] * len(mu)


def pearcorr(predicted: Sequence[float], true: Sequence[float]) -> float:
    """AtS's PearCorr: 100 x Pearson correlation of the predicted and the true values."""
    return 100.0 * float(np.corrcoef(np.asarray(predicted, float), np.asarray(true, float))[0, 1])


def relacc(predicted: Sequence[float], true: Sequence[float]) -> float:
    """AtS's RelAcc: 100 x (worst true - true of the predicted best) / (worst true - best true); lower is better."""
    t = np.asarray(true, float)
    chosen = t[int(np.argmin(np.asarray(predicted, float)))]
    return 100.0 * float((t.max() - chosen) / (t.max() - t.min()))


def kendall(predicted: Sequence[float], true: Sequence[float]) -> float:
    """Kendall's tau-b between the predicted and the true values."""
    from scipy.stats import kendalltau

    return float(kendalltau(predicted, true).statistic)
