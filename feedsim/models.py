"""Price models and quoting: pure, seeded, vectorised; no I/O and no clock.

A model turns a count `n` into the next `n` mid prices. The quoter turns mids into what a
venue shows: bid and ask on the tick grid around the mid, sizes in lots, and trades at the touch.
Each random component draws from its own generator, so the values depend only on the seed and
the number of ticks drawn so far, never on how the ticks were split into batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from marketdata.symbols import Instrument
from marketdata.wire import FLAG_BUYER_AGGRESSOR, FLAG_TRADE, Ticks, empty_ticks

SECONDS_PER_YEAR = 365.25 * 24 * 3600.0  # crypto trades around the clock

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class MarketParams:
    """How one symbol's market behaves: price dynamics and microstructure."""

    price: float              # initial mid
    volatility: float         # annualised, e.g. 0.6 for 60%
    drift: float              # annualised
    spread_bps: float         # quoted spread around the mid, in basis points
    rate: float               # ticks per second
    trade_probability: float  # chance that a tick carries a trade
    mean_trade_size: float    # base units
    mean_quote_size: float    # base units at the touch


class PriceModel(Protocol):
    """Produces the next mids of one symbol; the realism issue adds models beside GBM."""

    def advance(self, n: int) -> Floats:
        """Return the next `n` mid prices."""
        ...


class GBM:
    """Geometric Brownian motion of the mid, sampled every `dt` seconds.

    log S(t+dt) = log S(t) + (mu - sigma^2 / 2) dt + sigma sqrt(dt) Z, with sigma and mu annualised.
    The log price is kept within the instrument's price bounds.
    """

    def __init__(self, params: MarketParams, instrument: Instrument, dt: float,
                 rng: np.random.Generator) -> None:
        years = dt / SECONDS_PER_YEAR
        self._step_mean = (params.drift - 0.5 * params.volatility**2) * years
        self._step_sd = params.volatility * math.sqrt(years)
        self._log_price = math.log(params.price)
        self._log_min = math.log(instrument.min_price)
        self._log_max = math.log(instrument.max_price)
        self._rng = rng

    def advance(self, n: int) -> Floats:
        steps = self._step_mean + self._step_sd * self._rng.standard_normal(n)
        path = _carry_cumsum(self._log_price, steps)
        np.clip(path, self._log_min, self._log_max, out=path)
        if n:
            self._log_price = float(path[-1])
        return np.exp(path)


class Quoter:
    """Turns mids into ticks: a touch on the tick grid, sizes in lots, trades at the touch."""

    def __init__(self, params: MarketParams, instrument: Instrument,
                 rngs: tuple[np.random.Generator, np.random.Generator, np.random.Generator],
                 first_mid: float) -> None:
        self._tick = instrument.tick_size
        self._lot = instrument.lot_size
        self._price_decimals = instrument.price_decimals
        self._size_decimals = instrument.size_decimals
        self._half_spread = params.spread_bps / 2e4
        self._p_trade = params.trade_probability
        self._trade_size = params.mean_trade_size
        self._quote_size = params.mean_quote_size
        self._trade_rng, self._trade_size_rng, self._quote_size_rng = rngs
        self._last = round(first_mid, self._price_decimals)
        self._last_size = 0.0
        self._volume = 0.0

    def quote(self, mids: Floats) -> Ticks:
        """Return ticks for `mids` with prices, sizes, trades and volume (seq and ts unset)."""
        n = len(mids)
        ticks = empty_ticks(n)
        tick = self._tick
        # Small epsilons keep a mid that sits exactly on the grid from rounding a whole tick away.
        bid = np.floor(mids * (1 - self._half_spread) / tick + 1e-9) * tick
        ask = np.ceil(mids * (1 + self._half_spread) / tick - 1e-9) * tick
        ask = np.maximum(ask, bid + tick)
        bid = np.maximum(bid, tick)
        ask = np.maximum(ask, bid + tick)
        ticks["bid"] = np.round(bid, self._price_decimals)
        ticks["ask"] = np.round(ask, self._price_decimals)
        # Drawn as (n, 2), bid and ask per tick together, so batching cannot reorder draws.
        sizes = self._sizes(self._quote_size_rng, self._quote_size, (n, 2))
        ticks["bid_size"] = sizes[:, 0]
        ticks["ask_size"] = sizes[:, 1]

        # Two uniforms per tick, always drawn, so trade decisions do not depend on batching.
        u = self._trade_rng.random((n, 2))
        traded = u[:, 0] < self._p_trade
        buyer = u[:, 1] < 0.5
        trade_price = np.where(buyer, ticks["ask"], ticks["bid"])
        trade_size = self._sizes(self._trade_size_rng, self._trade_size, n)
        # Forward-fill the last trade over ticks without one.
        idx = np.where(traded, np.arange(n), -1)
        np.maximum.accumulate(idx, out=idx)
        has = idx >= 0
        last = np.full(n, self._last)
        last_size = np.full(n, self._last_size)
        last[has] = trade_price[idx[has]]
        last_size[has] = trade_size[idx[has]]
        ticks["last"] = last
        ticks["last_size"] = last_size
        volume = _carry_cumsum(self._volume, np.where(traded, trade_size, 0.0))
        ticks["volume"] = np.round(volume, self._size_decimals)
        ticks["flags"] = np.where(traded, FLAG_TRADE, 0) | np.where(
            traded & buyer, FLAG_BUYER_AGGRESSOR, 0
        )
        if n:
            self._last = float(last[-1])
            self._last_size = float(last_size[-1])
            self._volume = float(volume[-1])  # unrounded, so batching cannot change the sums
        return ticks

    def _sizes(self, rng: np.random.Generator, mean: float, n: int | tuple[int, int]) -> Floats:
        """Lognormal sizes with the given mean, rounded to whole lots, at least one lot."""
        sigma = 0.8
        raw = rng.lognormal(math.log(mean) - sigma**2 / 2, sigma, n)
        lots = np.maximum(np.round(raw / self._lot), 1.0)
        return np.round(lots * self._lot, self._size_decimals)


def _carry_cumsum(start: float, steps: Floats) -> Floats:
    """Return start + running sums of steps, added strictly left to right.

    Adding `start` first (not afterwards) makes the result bit-identical however a sequence is
    split into batches, which is what keeps a seeded run reproducible.
    """
    return np.cumsum(np.concatenate(([start], steps)))[1:]
