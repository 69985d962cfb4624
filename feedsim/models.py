"""Market parameters and quoting: pure, seeded, vectorised; no I/O and no clock.

Prices come from the step models in ``feedsim.market``. The quoter turns mids into what a
venue shows: bid and ask on the tick grid around the mid, sizes in lots, and trades at the touch.
Each random component draws from its own generator, so the values depend only on the seed and
the number of ticks drawn so far, never on how the ticks were split into batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feedsim.market import Jumps, ModelParams
from marketdata.symbols import Instrument
from marketdata.wire import FLAG_BUYER_AGGRESSOR, FLAG_TRADE, Ticks, empty_ticks

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class MarketParams:
    """How one symbol's market behaves: its price model and its microstructure."""

    price: float              # initial mid
    model: ModelParams        # GBM, GARCH(1,1)-t or an OU peg (feedsim.market)
    jumps: Jumps | None       # Merton jumps on top of a step model, or None
    spread_bps: float         # quoted spread around the mid, in basis points
    rate: float               # ticks per second
    trade_probability: float  # chance that a tick carries a trade
    mean_trade_size: float    # base units
    mean_quote_size: float    # base units at the touch


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
