"""GARCH(1,1) with Student-t innovations: fit by maximum likelihood, simulate, correlate.

The model, per bar of ``interval_s`` seconds, for the log return ``r_t`` of the close::

    r_t = mu + e_t,   e_t = sqrt(h_t) z_t,   z_t ~ Student-t(nu) scaled to unit variance
    h_t = omega + alpha e_{t-1}^2 + beta h_{t-1},   alpha, beta >= 0,  alpha + beta < 1,  nu > 2

The fit targets the variance (``omega = (1 - alpha - beta) * sample variance``, so the model's
unconditional variance is the sample's) and maximises the exact Student-t likelihood over
``mu, alpha, beta, nu`` with L-BFGS-B from a few starting points. The constraints are built into
the parametrisation (``alpha + beta`` and ``alpha / (alpha + beta)`` through a logistic function,
``nu = 2 + exp(.)``), so every point the optimiser tries is admissible. The variance recursion
is a first-order linear filter (:func:`scipy.signal.lfilter`), so 37,000 returns fit in well
under a second.

Tails. GARCH fattens the tails of its innovations: the stationary variance has a power-law tail
``P(h > x) ~ x^-kappa``, with ``kappa`` the root of ``E[(beta + alpha z^2)^kappa] = 1`` (Kesten),
so returns have tail index ``2 kappa`` (below ``nu``). On crypto hours the plain maximum
likelihood lands on near-integrated, nu ~ 3.2 fits whose ``2 kappa`` (~2.2) is fatter than the
data's own tail (Hill index ~2.8): their variance is so heavy-tailed that a path as long as the
data typically shows ~65% of the variance target, and single paths range from 0.5 to 1.2 times
it. So the fit is constrained (SLSQP) to models whose return tail is no fatter than the data's:
``2 kappa >=`` the Hill index of the top :data:`TAIL_FRACTION` of ``|r|``. Where the plain
maximum already satisfies that, it is the answer.

Two symbols are joined by the correlation of their standardised innovations (constant conditional
correlation), drawn through a Student-t copula so that large shocks are shared; each margin keeps
its own Student-t.
"""

from __future__ import annotations

import logging
import math
import tomllib
from dataclasses import dataclass

import numpy as np
from scipy import optimize, signal, special  # type: ignore[import-untyped, unused-ignore]

from calibration import stats
from calibration.bars import Bars, Floats, Ints, log_returns
from calibration.errors import DataFormatError, FitError, InsufficientData
from feedsim.market import GarchParams

log = logging.getLogger(__name__)

MIN_RETURNS = 50
TAIL_FRACTION = 0.025  # the share of largest |r| whose Hill index bounds the model's tail
_JACOBI_NODES = 48
_PERSISTENCE_LOGIT = (-10.0, 12.0)  # alpha + beta up to 1 - 6e-6
_SHARE_LOGIT = (-12.0, 12.0)
_NU_LOG = (math.log(0.01), math.log(198.0))  # nu in [2.01, 200]
_STARTS = ((0.97, 0.10, 5.0), (0.90, 0.20, 4.0), (0.99, 0.05, 8.0), (0.95, 0.15, 12.0))


@dataclass(frozen=True)
class Correlation:
    """The correlation of two symbols' log returns over their common bar end times."""

    rho: float
    n: int
    interval_s: float


@dataclass(frozen=True)
class Pair:
    """Two symbols' GARCH-t parameters and the correlation of their standardised innovations."""

    a: GarchParams
    b: GarchParams
    rho: float


def _nll_scaled(theta: Floats, x: Floats) -> float:
    """Return the negative log-likelihood of unit-variance returns `x` at free parameters `theta`.

    theta = (mu, logit(alpha + beta), logit(alpha / (alpha + beta)), log(nu - 2)); the sample
    variance of `x` is 1, so variance targeting gives omega = 1 - alpha - beta and h_0 = 1.
    """
    mu, alpha, beta, nu = _unpack(theta)
    e = x - mu
    e2 = e * e
    drive = np.empty_like(e2)
    drive[0] = 1.0
    drive[1:] = (1.0 - alpha - beta) + alpha * e2[:-1]
    h = signal.lfilter([1.0], [1.0, -beta], drive)
    const = (special.gammaln((nu + 1) / 2) - special.gammaln(nu / 2)
             - 0.5 * math.log(math.pi * (nu - 2)))
    ll = const * x.size - 0.5 * np.sum(np.log(h)) - (nu + 1) / 2 * np.sum(
        np.log1p(e2 / ((nu - 2) * h)))
    value = -float(ll)
    return value if math.isfinite(value) else 1e300


def _unpack(theta: Floats) -> tuple[float, float, float, float]:
    """Return (mu, alpha, beta, nu) from the free parameters."""
    persistence = float(special.expit(theta[1]))
    share = float(special.expit(theta[2]))
    return float(theta[0]), persistence * share, persistence * (1 - share), 2.0 + math.exp(
        float(theta[3]))


def _pack(mu: float, alpha: float, beta: float, nu: float) -> Floats:
    """Return the free parameters of (mu, alpha, beta, nu), clipped into the optimiser's box."""
    persistence = min(max(alpha + beta, 1e-6), 1 - 1e-6)
    share = min(max(alpha / persistence, 1e-6), 1 - 1e-6)
    return np.array([mu, float(special.logit(persistence)), float(special.logit(share)),
                     math.log(max(nu - 2.0, 0.01))])


def _checked(returns: Floats) -> tuple[Floats, float]:
    """Return the returns as float64 and their standard deviation, or raise InsufficientData."""
    r = np.asarray(returns, dtype=np.float64)
    if r.size < MIN_RETURNS or not np.all(np.isfinite(r)):
        raise InsufficientData(f"need at least {MIN_RETURNS} finite returns, got {r.size}")
    sd = float(np.std(r))
    if not sd > 0:
        raise InsufficientData("returns have zero variance")
    return r, sd


def power_moment(alpha: float, beta: float, nu: float, power: float) -> float:
    """Return E[(beta + alpha z^2)^power] for z unit-variance Student-t(nu), power < nu / 2.

    With z^2 = (nu - 2) B / (1 - B) and B ~ Beta(1/2, nu/2) the integrand is smooth once the
    weight B^-1/2 (1 - B)^(nu/2 - 1 - power) is taken out, so Gauss-Jacobi quadrature is exact
    to ~1e-12 with 48 nodes (infinite at or beyond nu / 2, where the moment diverges).
    """
    c = nu / 2.0 - 1.0 - power
    if c <= -1.0:
        return math.inf
    x, w = special.roots_jacobi(_JACOBI_NODES, c, -0.5)
    b = (1.0 + x) / 2.0
    smooth = (beta * (1.0 - b) + alpha * (nu - 2.0) * b) ** power
    return float(2.0 ** (-0.5 - c) * np.dot(w, smooth) / special.beta(0.5, nu / 2.0))


def tail_index(params: GarchParams) -> float:
    """Return 2 kappa, the power-law tail index of the model's returns (Kesten's exponent x 2).

    kappa solves E[(beta + alpha z^2)^kappa] = 1; it lies between 1 (E[.] at 1 is alpha + beta
    < 1) and nu / 2 (where the moment diverges); with alpha = 0 the tail is the innovations' nu.
    """
    a, b, nu = params.alpha, params.beta, params.nu
    top = nu / 2.0 - 1e-4
    if a == 0.0 or power_moment(a, b, nu, top) <= 1.0:
        return nu
    kappa = optimize.brentq(lambda s: power_moment(a, b, nu, s) - 1.0, 1.0, top, xtol=1e-10)
    return 2.0 * float(kappa)


def _data_tail(x: Floats) -> float | None:
    """Return the Hill index of the data's |r| that bounds the model's tail, if it binds."""
    try:
        hill = stats.hill_index(x, TAIL_FRACTION)
    except InsufficientData as exc:
        log.info("GARCH-t fit: no tail bound (%s)", exc)
        return None
    return hill if hill > 2.0 else None  # 2 kappa > 2 holds for every admissible model


def _tail_gap(theta: Floats, min_tail: float) -> float:
    """Return 1 - E[(beta + alpha z^2)^(min_tail / 2)]: >= 0 iff the tail index >= min_tail."""
    _, alpha, beta, nu = _unpack(theta)
    moment = power_moment(alpha, beta, nu, min_tail / 2.0)
    return 1.0 - moment if math.isfinite(moment) else -1e6


def _fit_scaled(x: Floats, min_tail: float | None) -> tuple[float, Floats]:
    """Return (nll, free parameters) of the best fit to unit-variance `x`, tail-bounded."""
    bounds = [(-1.0, 1.0), _PERSISTENCE_LOGIT, _SHARE_LOGIT, _NU_LOG]
    best: tuple[float, Floats] | None = None
    for persistence, share, nu in _STARTS:
        start = _pack(float(np.mean(x)), persistence * share, persistence * (1 - share), nu)
        result = optimize.minimize(_nll_scaled, start, args=(x,), method="L-BFGS-B",
                                   bounds=bounds)
        value = float(result.fun)
        log.debug("GARCH-t start %s: nll %.3f, %s", (persistence, share, nu), value,
                  result.message)
        if math.isfinite(value) and value < 1e299 and (best is None or value < best[0]):
            best = (value, np.asarray(result.x, dtype=np.float64))
    if best is None:
        raise FitError("no starting point gave a finite GARCH(1,1)-t likelihood")
    if min_tail is None or _tail_gap(best[1], min_tail) >= 0.0:
        return best
    # nu must exceed the tail bound for the bounding moment to exist
    nu_floor = math.log(max(min_tail - 2.0, 0.0) + 0.02)
    bounds[3] = (max(_NU_LOG[0], nu_floor), _NU_LOG[1])
    constraint = {"type": "ineq", "fun": _tail_gap, "args": (min_tail,)}
    unbounded, best = best, None
    starts = [unbounded[1]] + [_pack(float(np.mean(x)), p * s, p * (1 - s), max(nu, min_tail + 1))
                               for p, s, nu in _STARTS]
    lower, upper = [lo for lo, _ in bounds], [hi for _, hi in bounds]
    for start in starts:
        result = optimize.minimize(_nll_scaled, np.clip(start, lower, upper), args=(x,),
                                   method="SLSQP", bounds=bounds, constraints=[constraint],
                                   options={"maxiter": 200})
        value = float(result.fun)
        theta = np.asarray(result.x, dtype=np.float64)
        feasible = _tail_gap(theta, min_tail) >= -1e-7
        log.debug("tail-bounded start: nll %.3f, feasible %s, %s", value, feasible,
                  result.message)
        if feasible and math.isfinite(value) and (best is None or value < best[0]):
            best = (value, theta)
        if best is not None and result.success:
            break  # from the unbounded maximum, the first success is the bounded one
    if best is None:
        raise FitError(f"no GARCH(1,1)-t fit has a tail index of at least {min_tail:.3g}")
    log.info("GARCH-t tail bound %.3f binds: nll %.2f against %.2f unbounded", min_tail,
             best[0], unbounded[0])
    return best


def fit_garch_t(returns: Floats, interval_s: float, *, bound_tail: bool = True) -> GarchParams:
    """Fit GARCH(1,1)-t by maximum likelihood with variance targeting, to calibrate the feed.

    Returns are scaled to unit variance for the optimiser and the result scaled back. The best of
    a few runs from different starting points is kept. With `bound_tail` (the default) the
    model's return tail index is at least the data's Hill index (module docstring); without it
    the fit is the plain maximum.
    """
    r, sd = _checked(returns)
    x = r / sd
    nll, theta = _fit_scaled(x, _data_tail(x) if bound_tail else None)
    mu, alpha, beta, nu = _unpack(theta)
    params = GarchParams(mu=mu * sd, omega=(1.0 - alpha - beta) * sd * sd, alpha=alpha, beta=beta,
                    nu=nu, interval_s=float(interval_s))
    log.info("GARCH-t fit on %d returns: %s (nll %.2f)", r.size, params, nll)
    return params


def garch_t_nll(params: GarchParams, returns: Floats) -> float:
    """Return the negative log-likelihood of `returns` under `params`, to compare fits.

    The recursion starts from the unconditional variance, as the fit does.
    """
    r = np.asarray(returns, dtype=np.float64)
    h = conditional_variance(params, r)
    e2 = (r - params.mu) ** 2
    nu = params.nu
    const = (special.gammaln((nu + 1) / 2) - special.gammaln(nu / 2)
             - 0.5 * math.log(math.pi * (nu - 2)))
    ll = const * r.size - 0.5 * np.sum(np.log(h)) - (nu + 1) / 2 * np.sum(
        np.log1p(e2 / ((nu - 2) * h)))
    return -float(ll)


def conditional_variance(params: GarchParams, returns: Floats) -> Floats:
    """Return h_t for each return, starting from the unconditional variance."""
    r = np.asarray(returns, dtype=np.float64)
    if r.size == 0:
        return np.empty(0, dtype=np.float64)
    e2 = (r - params.mu) ** 2
    drive = np.empty_like(e2)
    drive[0] = params.unconditional_variance
    drive[1:] = params.omega + params.alpha * e2[:-1]
    return np.asarray(signal.lfilter([1.0], [1.0, -params.beta], drive), dtype=np.float64)


def standardised_residuals(params: GarchParams, returns: Floats) -> Floats:
    """Return (r_t - mu) / sqrt(h_t): the innovations the model says it saw."""
    r = np.asarray(returns, dtype=np.float64)
    return (r - params.mu) / np.sqrt(conditional_variance(params, r))


def _unit_t(nu: float, size: int, rng: np.random.Generator) -> Floats:
    """Draw Student-t(nu) variates scaled to unit variance."""
    return np.asarray(rng.standard_t(nu, size=size), dtype=np.float64) * math.sqrt(
        (nu - 2.0) / nu)


def _recurse(params: GarchParams, z: Floats) -> Floats:
    """Run the GARCH recursion over unit innovations `z`, from the unconditional variance."""
    omega, alpha, beta, mu = params.omega, params.alpha, params.beta, params.mu
    h = params.unconditional_variance
    out = np.empty(z.size, dtype=np.float64)
    for i, zi in enumerate(z.tolist()):
        e = math.sqrt(h) * zi
        out[i] = e
        h = omega + alpha * e * e + beta * h
    return out + mu


def simulate_garch_t(params: GarchParams, n: int, rng: np.random.Generator, *,
                     burn: int = 500) -> Floats:
    """Return `n` log returns drawn from `params`, to score the model against real data.

    The recursion starts at the unconditional variance and its first `burn` draws are discarded,
    so the path starts from the stationary distribution rather than from its mean.
    """
    if n < 0 or burn < 0:
        raise ValueError("n and burn must be non-negative")
    return _recurse(params, _unit_t(params.nu, n + burn, rng))[burn:]


def _t_to_t(t: Floats, from_nu: float, to_nu: float) -> Floats:
    """Map Student-t(from_nu) draws to unit-variance Student-t(to_nu) draws by their quantiles.

    Both tails are mapped through the lower tail probability, so extreme draws keep their
    precision.
    """
    lower_tail = special.stdtr(from_nu, -np.abs(t))
    quantile = -np.asarray(special.stdtrit(to_nu, lower_tail), dtype=np.float64)
    return np.asarray(np.sign(t) * quantile * math.sqrt((to_nu - 2.0) / to_nu),
                      dtype=np.float64)


def simulate_pair(pair: Pair, n: int, rng: np.random.Generator, *,
                  burn: int = 500) -> tuple[Floats, Floats]:
    """Return `n` log returns of each symbol, their innovations joined by a Student-t copula.

    The copula's correlation is `pair.rho` and its degrees of freedom the mean of the two
    margins': one shared chi-square draw scales both normals, so large shocks tend to hit both
    symbols at once (tail dependence), as crashes do; each margin keeps its own Student-t(nu).
    """
    if n < 0 or burn < 0:
        raise ValueError("n and burn must be non-negative")
    shared_nu = 0.5 * (pair.a.nu + pair.b.nu)
    normal = rng.standard_normal((2, n + burn))
    mixing = np.sqrt(rng.chisquare(shared_nu, n + burn) / shared_nu)
    first = normal[0] / mixing
    second = (pair.rho * normal[0]
              + math.sqrt(max(1.0 - pair.rho**2, 0.0)) * normal[1]) / mixing
    a = _recurse(pair.a, _t_to_t(first, shared_nu, pair.a.nu))[burn:]
    b = _recurse(pair.b, _t_to_t(second, shared_nu, pair.b.nu))[burn:]
    return a, b


def align(bars_a: Bars, bars_b: Bars) -> tuple[Ints, Floats, Floats]:
    """Return (end times, returns of a, returns of b) over the one-interval returns both have."""
    if bars_a.interval_ns != bars_b.interval_ns:
        raise InsufficientData(f"intervals differ: {bars_a.interval_s:g} s and "
                               f"{bars_b.interval_s:g} s")
    times_a, ra = log_returns(bars_a)
    times_b, rb = log_returns(bars_b)
    common, ia, ib = np.intersect1d(times_a, times_b, assume_unique=True, return_indices=True)
    return common.astype(np.int64), ra[ia], rb[ib]


def correlate(bars_a: Bars, bars_b: Bars) -> Correlation:
    """Return the Pearson correlation of two symbols' log returns on their common timestamps."""
    _, ra, rb = align(bars_a, bars_b)
    if ra.size < MIN_RETURNS:
        raise InsufficientData(f"only {ra.size} common returns; need {MIN_RETURNS}")
    if not (np.std(ra) > 0 and np.std(rb) > 0):
        raise InsufficientData("a return series has zero variance")
    return Correlation(float(np.corrcoef(ra, rb)[0, 1]), int(ra.size), bars_a.interval_s)


def fit_pair(bars_a: Bars, bars_b: Bars) -> Pair:
    """Fit each symbol on all its returns and correlate their standardised innovations."""
    times_a, ra = log_returns(bars_a)
    times_b, rb = log_returns(bars_b)
    if bars_a.interval_ns != bars_b.interval_ns:
        raise InsufficientData(f"intervals differ: {bars_a.interval_s:g} s and "
                               f"{bars_b.interval_s:g} s")
    a = fit_garch_t(ra, bars_a.interval_s)
    b = fit_garch_t(rb, bars_b.interval_s)
    _, ia, ib = np.intersect1d(times_a, times_b, assume_unique=True, return_indices=True)
    if ia.size < MIN_RETURNS:
        raise InsufficientData(f"only {ia.size} common returns; need {MIN_RETURNS}")
    za = standardised_residuals(a, ra)[ia]
    zb = standardised_residuals(b, rb)[ib]
    return Pair(a, b, float(np.corrcoef(za, zb)[0, 1]))


def params_to_toml(params: GarchParams, comment: str = "") -> str:
    """Return the parameters as a TOML document with a ``[garch]`` table, for the feed to load."""
    lines = [f"# {line}" for line in comment.splitlines()]
    lines += [
        "# GARCH(1,1) with Student-t innovations on log returns per bar of interval_s seconds:",
        "# r = mu + sqrt(h) z, h' = omega + alpha (r - mu)^2 + beta h, z ~ t(nu) / sd",
        "[garch]",
        f"mu = {params.mu!r}",
        f"omega = {params.omega!r}",
        f"alpha = {params.alpha!r}",
        f"beta = {params.beta!r}",
        f"nu = {params.nu!r}",
        f"interval_s = {params.interval_s!r}",
        f"annualised_volatility = {params.annualised_volatility!r}",
    ]
    return "\n".join(lines) + "\n"


def params_from_toml(text: str) -> GarchParams:
    """Return the parameters of a ``[garch]`` table written by :func:`params_to_toml`."""
    try:
        table = tomllib.loads(text)["garch"]
        return GarchParams(**{name: float(table[name]) for name in
                         ("mu", "omega", "alpha", "beta", "nu", "interval_s")})
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataFormatError(f"not a [garch] parameter table: {exc}") from exc
