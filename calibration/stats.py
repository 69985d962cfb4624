"""Statistics of return series that the scorecard compares: pure numpy, hand-checkable.

Every function takes one-bar log returns; moments are population moments (divided by n).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as st  # type: ignore[import-untyped, unused-ignore]

from calibration.bars import Floats
from calibration.errors import InsufficientData
from feedsim.market import SECONDS_PER_YEAR


def _series(x: Floats, minimum: int = 2) -> Floats:
    """Return `x` as finite float64 with some spread, or raise InsufficientData."""
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.size < minimum:
        raise InsufficientData(f"need at least {minimum} values, got {a.size}")
    if not np.all(np.isfinite(a)):
        raise InsufficientData("values must be finite")
    if not np.std(a) > 0:
        raise InsufficientData("values have zero variance")
    return a


def annualised_volatility(returns: Floats, interval_s: float) -> float:
    """Return sqrt(bars per 365.25-day year) x the standard deviation of one-bar returns."""
    return float(np.std(_series(returns))) * math.sqrt(SECONDS_PER_YEAR / interval_s)


def excess_kurtosis(returns: Floats) -> float:
    """Return m4 / m2^2 - 3: zero for a normal law, large for fat tails."""
    a = _series(returns)
    d = a - a.mean()
    m2 = float(np.mean(d * d))
    return float(np.mean(d**4)) / (m2 * m2) - 3.0


def hill_index(returns: Floats, fraction: float) -> float:
    """Return the Hill estimate of the tail index of |r| from its top `fraction` of values.

    alpha = 1 / mean(log(x_(i) / x_(k+1))), i = 1..k, x sorted descending, k = floor(fraction n):
    a power law P(|r| > x) ~ x^-alpha; smaller alpha means fatter tails.
    """
    a = np.sort(np.abs(_series(returns)))[::-1]
    k = int(fraction * a.size)
    if not 0 < fraction < 1 or k < 2:
        raise InsufficientData(f"top {fraction:g} of {a.size} values is too few for a Hill index")
    threshold = a[k]
    if not threshold > 0:
        raise InsufficientData("the Hill threshold |r| is zero")
    mean_log = float(np.mean(np.log(a[:k] / threshold)))
    if not mean_log > 0:
        raise InsufficientData("the top values are all equal")
    return 1.0 / mean_log


def autocorrelation(x: Floats, max_lag: int) -> Floats:
    """Return the sample autocorrelation at lags 1..max_lag (index 0 is lag 1).

    rho(k) = sum_t (x_t - m)(x_{t+k} - m) / sum_t (x_t - m)^2, the usual biased estimator.
    """
    a = _series(x, minimum=max_lag + 2)
    d = a - a.mean()
    denominator = float(np.dot(d, d))
    return np.array([float(np.dot(d[:-k], d[k:])) / denominator for k in range(1, max_lag + 1)],
                    dtype=np.float64)


def standardise(x: Floats) -> Floats:
    """Return (x - mean) / sd, so that distributions of different scales can be compared."""
    a = _series(x)
    return np.asarray((a - a.mean()) / np.std(a), dtype=np.float64)


def ks_distance(x: Floats, y: Floats) -> float:
    """Return the two-sample Kolmogorov-Smirnov distance between the standardised samples."""
    return float(st.ks_2samp(standardise(x), standardise(y), method="asymp").statistic)


def wasserstein(x: Floats, y: Floats) -> float:
    """Return the 1-Wasserstein distance between the standardised samples, in sd units."""
    return float(st.wasserstein_distance(standardise(x), standardise(y)))


def correlation(x: Floats, y: Floats) -> float:
    """Return the Pearson correlation of two equally long series."""
    a, b = _series(x), _series(y)
    if a.size != b.size:
        raise InsufficientData(f"series differ in length: {a.size} and {b.size}")
    return float(np.corrcoef(a, b)[0, 1])
