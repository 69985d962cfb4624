"""Correlated price paths for a group of symbols on one time grid: pure, seeded, vectorised.

Symbols that tick at the same rate share a grid (their tick times) and move together: every
random normal drawn for the group is correlated across its symbols through the Cholesky factor
of the configured correlation matrix.

Most models are *step models*: the price's law is given on a coarse step (an hour by default,
the interval their parameters were calibrated on), and the ticks inside a step follow a Brownian
bridge between the step's endpoints. So hourly bars are exactly the calibrated model's draws (a
GARCH(1,1)-t return, say, with its fat tails), while the path inside the hour is continuous and
correlated tick by tick. A jump lands at a random instant inside its step, not spread over it.

The bridge is built in blocks: at the start of a step the bridge's value at the end of every
block is drawn (a coarse Brownian path, tied down at the step's end); a block's interior is drawn
only when its ticks are due, tied to its two ends. Memory stays bounded at any tick rate, and the
draws happen in the same order however the ticks are batched, so a seeded run is reproducible.

Symbols with their own dynamics (the Ornstein-Uhlenbeck peg) take their column of the group's
correlated tick-level normals directly instead of a bridge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
from scipy import signal, special

from feedsim.prices import PricePath

Floats = npt.NDArray[np.float64]

SECONDS_PER_YEAR = 365.25 * 24 * 3600.0  # crypto trades around the clock
BLOCK_TICKS = 1024


@dataclass(frozen=True)
class Jumps:
    """Merton jumps: a Poisson count per step, each jump a normal log return."""

    rate_per_day: float
    mean: float  # log return
    sd: float

    def draw(self, step_s: float, rng: np.random.Generator) -> tuple[float, float]:
        """Return (total jump log return, fraction of the step at which it lands)."""
        count = int(rng.poisson(self.rate_per_day * step_s / 86_400.0))
        at = float(rng.random())
        if count == 0:
            return 0.0, at
        return float(rng.normal(count * self.mean, math.sqrt(count) * self.sd)), at


@dataclass(frozen=True)
class GbmParams:
    """Geometric Brownian motion: annualised volatility and drift."""

    volatility: float
    drift: float = 0.0


@dataclass(frozen=True)
class GarchParams:
    """GARCH(1,1) with Student-t innovations, per step of `interval_s` seconds (log returns).

    sigma2[j+1] = omega + alpha (r[j] - mu)^2 + beta sigma2[j], r[j] = mu + sigma[j] z[j] + jumps,
    z standardised Student-t with `nu` > 2 degrees of freedom.
    """

    mu: float
    omega: float
    alpha: float
    beta: float
    nu: float
    interval_s: float = 3600.0

    def __post_init__(self) -> None:
        """Reject parameters outside the stationary, finite-variance region."""
        if not all(math.isfinite(v) for v in (self.mu, self.omega, self.alpha, self.beta,
                                               self.nu, self.interval_s)):
            raise ValueError("GARCH parameters must be finite")
        if self.omega <= 0 or self.alpha < 0 or self.beta < 0 or self.alpha + self.beta >= 1:
            raise ValueError("need omega > 0, alpha >= 0, beta >= 0, alpha + beta < 1")
        if self.nu <= 2 or self.interval_s <= 0:
            raise ValueError("need nu > 2 and interval_s > 0")

    @property
    def persistence(self) -> float:
        """Return alpha + beta, the decay per step of a variance shock."""
        return self.alpha + self.beta

    @property
    def bars_per_year(self) -> float:
        """Return how many steps a 365.25-day year holds."""
        return SECONDS_PER_YEAR / self.interval_s

    @property
    def unconditional_variance(self) -> float:
        """Long-run variance per step."""
        return self.omega / (1.0 - self.alpha - self.beta)

    @property
    def annualised_volatility(self) -> float:
        """Long-run volatility per year."""
        return math.sqrt(self.unconditional_variance * SECONDS_PER_YEAR / self.interval_s)


@dataclass(frozen=True)
class OuParams:
    """Ornstein-Uhlenbeck on the price level: mean reversion to `mean`.

    dP = kappa (mean - P) dt + sigma dW, with kappa per day and sigma in price units per sqrt(day).
    """

    mean: float
    kappa_per_day: float
    sigma_per_sqrt_day: float


@dataclass(frozen=True)
class CrossParams:
    """A cross rate: numerator / denominator, e.g. BTC-ETH = BTC-USD / ETH-USD, at every tick."""

    numerator: str
    denominator: str


@dataclass(frozen=True)
class CrossLegs:
    """A cross rate inside a group: the columns of its two legs."""

    numerator: int
    denominator: int


ModelParams = GbmParams | GarchParams | OuParams | CrossParams



class StepModel(Protocol):
    """Draws one step's return from a standard normal shock (correlated across the group)."""

    def step(self, shock: float, rng: np.random.Generator) -> tuple[float, float, float, float]:
        """Return (continuous log return, bridge scale, jump log return, jump position)."""
        ...


GroupModel = StepModel | OuParams | CrossLegs
"""What a group column follows: a step model, its own OU recursion, or two other columns."""


class GbmSteps:
    """GBM on the step clock: constant volatility, normal shocks."""

    def __init__(self, params: GbmParams, step_s: float, jumps: Jumps | None) -> None:
        years = step_s / SECONDS_PER_YEAR
        self.sd = params.volatility * math.sqrt(years)
        self.mean = (params.drift - 0.5 * params.volatility**2) * years
        self.jumps = jumps
        self.step_s = step_s

    def step(self, shock: float, rng: np.random.Generator) -> tuple[float, float, float, float]:
        jump, at = self.jumps.draw(self.step_s, rng) if self.jumps else (0.0, 0.0)
        return self.mean + self.sd * shock, self.sd, jump, at


class GarchTSteps:
    """GARCH(1,1)-t on the step clock; the normal shock becomes a Student-t by its quantile."""

    def __init__(self, params: GarchParams, jumps: Jumps | None) -> None:
        self.params = params
        self.jumps = jumps
        self.variance = params.unconditional_variance
        self._t_scale = math.sqrt((params.nu - 2.0) / params.nu)

    def step(self, shock: float, rng: np.random.Generator) -> tuple[float, float, float, float]:
        p = self.params
        sigma = math.sqrt(self.variance)
        # A Gaussian copula keeps the group's correlation while each symbol has its own tails.
        u = min(max(float(special.ndtr(shock)), 1e-15), 1.0 - 1e-15)
        z = float(special.stdtrit(p.nu, u)) * self._t_scale
        jump, at = self.jumps.draw(p.interval_s, rng) if self.jumps else (0.0, 0.0)
        continuous = p.mu + sigma * z
        residual = continuous + jump - p.mu
        self.variance = p.omega + p.alpha * residual**2 + p.beta * self.variance
        return continuous, sigma, jump, at


@dataclass
class _Step:
    """The drawn shape of one step of one group: per symbol, and per block end."""

    start: Floats        # log price at the step's start, per symbol
    drift: Floats        # continuous log return over the step
    scale: Floats        # bridge scale (the step's volatility)
    jump: Floats
    jump_at: Floats      # fraction of the step
    block_ends: Floats   # (blocks, symbols): bridge value at each block's end, unit scale


class MarketGroup:
    """Correlated log-price paths of the symbols that share one tick grid.

    `models[i]` says what column i follows (a StepModel, an OuParams, or the CrossLegs of two
    other columns: log cross = log numerator - log denominator); `start_prices` are initial mids;
    `ticks_per_step` grid points make one step of `step_s` seconds.
    """

    def __init__(self, models: Sequence[GroupModel], start_prices: Sequence[float],
                 correlation: Floats, rate: float, ticks_per_step: int, seed_sequence:
                 np.random.SeedSequence, log_bounds: Sequence[tuple[float, float]]) -> None:
        self.models = list(models)
        self.k = len(self.models)
        self.cholesky = np.linalg.cholesky(correlation)
        self.ticks_per_step = ticks_per_step
        self.dt_days = 1.0 / rate / 86_400.0
        steps_rng, blocks_rng, jumps_rng = (np.random.default_rng(s)
                                            for s in seed_sequence.spawn(3))
        self._steps_rng, self._blocks_rng, self._jumps_rng = steps_rng, blocks_rng, jumps_rng
        self._bridged = np.array([not isinstance(m, OuParams | CrossLegs) for m in self.models])
        self._log = np.log(np.asarray(start_prices, dtype=np.float64))
        self._level = np.asarray(start_prices, dtype=np.float64)  # OU symbols' price level
        self._lo = np.array([b[0] for b in log_bounds])
        self._hi = np.array([b[1] for b in log_bounds])
        self._produced = 0
        self._step: _Step | None = None
        self._buffer = np.empty((0, self.k))

    def advance(self, n: int) -> Floats:
        """Return the next `n` log prices of every symbol, shape (n, symbols)."""
        parts = []
        need = n
        while need > 0:
            if not len(self._buffer):
                self._buffer = self._next_block()
            take = self._buffer[:need]
            self._buffer = self._buffer[need:]
            parts.append(take)
            need -= len(take)
        out = np.concatenate(parts) if len(parts) != 1 else parts[0]
        return np.clip(out, self._lo, self._hi)

    def _correlated(self, rng: np.random.Generator, rows: int) -> Floats:
        return rng.standard_normal((rows, self.k)) @ self.cholesky.T

    def _begin_step(self) -> _Step:
        m = self.ticks_per_step
        shocks = self._correlated(self._steps_rng, 1)[0]
        drift, scale, jump, jump_at = (np.zeros(self.k) for _ in range(4))
        for i, model in enumerate(self.models):
            if not isinstance(model, OuParams | CrossLegs):
                drift[i], scale[i], jump[i], jump_at[i] = model.step(float(shocks[i]),
                                                                     self._jumps_rng)
        # Bridge values at every block end: a Brownian path at those fractions, tied at 1.
        ends = np.minimum(np.arange(1, -(-m // BLOCK_TICKS) + 1) * BLOCK_TICKS, m) / m
        increments = np.diff(np.concatenate(([0.0], ends)))
        walk = np.cumsum(self._correlated(self._steps_rng, len(ends))
                         * np.sqrt(increments)[:, None], axis=0)
        block_ends = walk - ends[:, None] * walk[-1]
        return _Step(self._log.copy(), drift, scale, jump, jump_at, block_ends)

    def _next_block(self) -> Floats:
        m = self.ticks_per_step
        local = self._produced % m
        if local == 0 or self._step is None:
            self._step = self._begin_step()
        step = self._step
        block = local // BLOCK_TICKS
        first, last = local, min(local + BLOCK_TICKS, m)  # local indices [first, last)
        size = last - first
        normals = self._correlated(self._blocks_rng, size)
        out = np.empty((size, self.k))

        # Bridged symbols: a Brownian bridge from the block's start value to its end value.
        f = (np.arange(first, last) + 1.0) / m                      # fraction after each tick
        f_start, f_end = first / m, last / m
        b_start = step.block_ends[block - 1] if block else np.zeros(self.k)
        b_end = step.block_ends[block]
        walk = np.cumsum(normals * math.sqrt(1.0 / m), axis=0)
        w = ((f - f_start) / (f_end - f_start))[:, None]
        bridge = b_start + walk - w * walk[-1] + w * (b_end - b_start)
        jumped = (f[:, None] >= step.jump_at) * step.jump
        path = step.start + f[:, None] * step.drift + step.scale * bridge + jumped
        out[:, self._bridged] = path[:, self._bridged]

        # OU symbols: the exact discrete-time recursion, driven by their correlated normals.
        for i, model in enumerate(self.models):
            if isinstance(model, OuParams):
                out[:, i] = np.log(self._ou_path(i, model, normals[:, i]))
        # Cross rates: exactly numerator / denominator at every tick.
        for i, model in enumerate(self.models):
            if isinstance(model, CrossLegs):
                out[:, i] = out[:, model.numerator] - out[:, model.denominator]

        self._produced += size
        if self._produced % m == 0:
            self._log = path[-1].copy()  # the step's end is the next step's start
            self._log[~self._bridged] = out[-1, ~self._bridged]
        return out

    def _ou_path(self, i: int, p: OuParams, normals: Floats) -> Floats:
        phi = math.exp(-p.kappa_per_day * self.dt_days)
        sd = p.sigma_per_sqrt_day * math.sqrt((1 - phi**2) / (2 * p.kappa_per_day))
        # x[t] = phi x[t-1] + sd e[t], with x the deviation from the mean.
        deviation, _ = signal.lfilter([1.0], [1.0, -phi], sd * normals,
                                      zi=[phi * (self._level[i] - p.mean)])
        levels: Floats = p.mean + deviation
        levels = np.maximum(levels, 1e-12)
        self._level[i] = float(levels[-1])
        return levels


class GroupMember:
    """One symbol's view of its group, as a PriceSource: the next `n` mids, without end.

    Members of a group are always advanced together (same rate, same schedule); the group's
    rows are buffered per member so each takes its own column in its own time.
    """

    def __init__(self, group: MarketGroup, index: int, pending: list[list[Floats]]) -> None:
        self.group = group
        self.index = index
        self._pending = pending  # shared by the group's members: rows not yet taken, per member

    @property
    def remaining(self) -> int | None:
        """A simulated symbol never runs out."""
        return None

    def path(self, n: int) -> PricePath:
        """Return the next `n` mids; the quoter draws the trades."""
        return PricePath(self.advance(n))

    def advance(self, n: int) -> Floats:
        """Return the next `n` mids."""
        queue = self._pending[self.index]
        have = sum(len(a) for a in queue)
        if have < n:
            rows = self.group.advance(n - have)
            for j, other in enumerate(self._pending):
                other.append(rows[:, j])
        joined = np.concatenate(queue) if len(queue) > 1 else queue[0]
        queue[:] = [joined[n:]] if len(joined) > n else []
        return np.exp(joined[:n])
