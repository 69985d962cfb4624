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
from scipy import signal

from feedsim.market import Jumps, ModelParams
from feedsim.prices import Bools, Prints
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


# Microstructure constants (documented in the README's simulation section).
SPREAD_VOL_ELASTICITY = 0.7     # spread ~ (short-term vol / long-term vol) ^ this
SPREAD_LIQUIDITY_ELASTICITY = 0.2  # spread ~ (size at the touch / its mean) ^ -this
SPREAD_MULTIPLIER_BOUNDS = (0.5, 5.0)
VOL_SHORT_HALF_LIFE_S = 60.0
VOL_LONG_HALF_LIFE_S = 6 * 3600.0
ACTIVITY_HALF_LIFE_S = 120.0    # trading activity: an OU factor on the log intensity
ACTIVITY_SD = 0.8
TRADE_SIZE_TAIL = 2.2           # Lomax tail index of one trade's size (finite variance)
TRADE_SIZE_CAP = 500.0          # no single trade above this many mean sizes


def price_grid_bounds(instrument: Instrument) -> tuple[float, float]:
    """Return the lowest and the highest price of the tick grid inside [min_price, max_price]:
    the bounds of every published bid, ask, trade and book level."""
    tick, decimals = instrument.tick_size, instrument.price_decimals
    lo = round(math.ceil(instrument.min_price / tick - 1e-9) * tick, decimals)
    if lo < instrument.min_price:
        lo = round(lo + tick, decimals)
    hi = round(math.floor(instrument.max_price / tick + 1e-9) * tick, decimals)
    if hi > instrument.max_price:
        hi = round(hi - tick, decimals)
    return lo, hi


@dataclass(frozen=True)
class QuoterRngs:
    """The quoter's independent random streams (one per component keeps batching irrelevant)."""

    quote_sizes: np.random.Generator
    sides: np.random.Generator
    counts: np.random.Generator
    trade_sizes: np.random.Generator
    activity: np.random.Generator


class Quoter:
    """Turns mids into ticks: a touch on the tick grid, sizes in lots, trades at the touch.

    The spread widens with short-term volatility (an EWMA of squared returns against a long one)
    and narrows when more size is shown at the touch. Trades arrive as a Poisson count per tick
    whose intensity follows volatility and a slowly mean-reverting activity factor, so they come
    in bursts; trade sizes are heavy-tailed (Lomax), in whole lots; each tick's trades share one
    aggressor side and print at the touch. Every state (EWMAs, activity, volume) is carried
    across calls so the ticks do not depend on how they were batched.
    """

    def __init__(self, params: MarketParams, instrument: Instrument, rngs: QuoterRngs,
                 first_mid: float, tick_variance: float) -> None:
        self._tick = instrument.tick_size
        self._lo, self._hi = price_grid_bounds(instrument)
        self._lot = instrument.lot_size
        self._price_decimals = instrument.price_decimals
        self._size_decimals = instrument.size_decimals
        self._half_spread = params.spread_bps / 2e4
        self._base_intensity = -math.log1p(-min(params.trade_probability, 1 - 1e-9))
        self._trade_size = params.mean_trade_size
        self._quote_size = params.mean_quote_size
        self._rngs = rngs
        self._last = min(max(round(first_mid, self._price_decimals), self._lo), self._hi)
        self._last_log_mid = math.log(first_mid)
        self._last_size = 0.0
        self._volume = 0.0
        dt = 1.0 / params.rate
        self._a_short = 0.5 ** (dt / VOL_SHORT_HALF_LIFE_S)
        self._a_long = 0.5 ** (dt / VOL_LONG_HALF_LIFE_S)
        self._a_activity = 0.5 ** (dt / ACTIVITY_HALF_LIFE_S)
        variance = max(tick_variance, 1e-300)
        self._short = np.array([self._a_short * variance])  # lfilter states
        self._long = np.array([self._a_long * variance])
        self._activity = np.array([0.0])

    def quote(self, mids: Floats, prints: Prints | None = None) -> Ticks:
        """Return ticks for `mids` with prices, sizes, trades and volume (seq and ts unset).

        Without `prints` the quoter draws the trades (Poisson counts, Lomax sizes, a random
        aggressor) at the touch. With them (a replay) those trades print instead, at their own
        prices: a trade tick's touch is moved, keeping its width, so the aggressed side sits at
        the trade price (the ask for a buyer, the bid for a seller).
        """
        n = len(mids)
        ticks = empty_ticks(n)
        if not n:
            return ticks
        rngs = self._rngs
        ratio = self._vol_ratio(mids)

        # Drawn as (n, 2), bid and ask per tick together, so batching cannot reorder draws.
        sizes = self._lots(self._quote_size * rngs.quote_sizes.lognormal(-0.32, 0.8, (n, 2)))
        depth = (sizes[:, 0] + sizes[:, 1]) / (2 * self._quote_size)
        multiplier = np.clip(ratio**SPREAD_VOL_ELASTICITY
                             * depth ** -SPREAD_LIQUIDITY_ELASTICITY, *SPREAD_MULTIPLIER_BOUNDS)
        half = self._half_spread * multiplier
        tick, lo, hi = self._tick, self._lo, self._hi
        # Small epsilons keep a mid that sits exactly on the grid from rounding a whole tick away.
        # The touch stays inside [min_price, max_price] (lo and hi: its grid prices), one tick
        # wide at least: a mid at a bound is quoted from the bound inwards.
        # (np.minimum of np.maximum: np.clip costs 4x as much on a step's few values)
        bid = np.minimum(np.maximum(np.floor(mids * (1 - half) / tick + 1e-9) * tick, lo),
                         hi - tick)
        ask = np.minimum(np.maximum(np.ceil(mids * (1 + half) / tick - 1e-9) * tick, bid + tick),
                         hi)
        if prints is None:
            traded, buyer, trade_size = self._draw_trades(n, ratio)
            bid = np.round(bid, self._price_decimals)
            ask = np.round(ask, self._price_decimals)
            trade_price = np.where(buyer, ask, bid)
        else:
            traded = prints.size > 0
            width = ask - bid
            trade_price = prints.price  # on the grid inside the bounds (replay_bars checks)
            # A buyer lifts an ask at the trade price, a seller hits a bid there; the touch keeps
            # its width on the other side if that stays inside the bounds. Else the print takes
            # the side that has room; if neither has, the side with more, the spread narrowed.
            below = trade_price - width >= lo - 1e-9 * tick
            above = trade_price + width <= hi + 1e-9 * tick
            buyer = np.where(below & above, prints.buyer,
                             np.where(below | above, below, trade_price - lo >= hi - trade_price))
            bid = np.where(traded, np.where(buyer, np.maximum(trade_price - width, lo),
                                            trade_price), bid)
            ask = np.where(traded, np.where(buyer, trade_price,
                                            np.minimum(trade_price + width, hi)), ask)
            trade_size = np.where(traded, prints.size, 0.0)
        ticks["bid"] = np.round(bid, self._price_decimals)
        ticks["ask"] = np.round(ask, self._price_decimals)
        ticks["bid_size"] = sizes[:, 0]
        ticks["ask_size"] = sizes[:, 1]

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
        volume = _carry_cumsum(self._volume, trade_size)
        ticks["volume"] = np.round(volume, self._size_decimals)
        ticks["flags"] = np.where(traded, FLAG_TRADE, 0) | np.where(
            traded & buyer, FLAG_BUYER_AGGRESSOR, 0
        )
        self._last = float(last[-1])
        self._last_size = float(last_size[-1])
        self._volume = float(volume[-1])  # unrounded, so batching cannot change the sums
        return ticks

    def _draw_trades(self, n: int, ratio: Floats) -> tuple[Bools, Bools, Floats]:
        """Draw (traded, buyer, size) per tick: a Poisson count with a bursty intensity, sizes
        heavy-tailed; a tick's trades share one aggressor and are reported as one."""
        rngs = self._rngs
        noise = rngs.activity.standard_normal(n) * ACTIVITY_SD * math.sqrt(
            1 - self._a_activity**2)
        activity, self._activity = signal.lfilter([1.0], [1.0, -self._a_activity], noise,
                                                  zi=self._activity)
        intensity = (self._base_intensity * ratio
                     * np.exp(activity - ACTIVITY_SD**2 / 2))
        counts = rngs.counts.poisson(intensity)
        traded = counts > 0
        buyer = rngs.sides.random(n) < 0.5
        trade_size = np.zeros(n)
        total = int(counts.sum())
        if total:
            one = self._lots(self._trade_size * (TRADE_SIZE_TAIL - 1)
                             * np.minimum(rngs.trade_sizes.pareto(TRADE_SIZE_TAIL, total),
                                          TRADE_SIZE_CAP / (TRADE_SIZE_TAIL - 1)))
            starts = (np.cumsum(counts) - counts)[traded]
            trade_size[traded] = np.round(np.add.reduceat(one, starts), self._size_decimals)
        return traded, buyer, trade_size

    def _vol_ratio(self, mids: Floats) -> Floats:
        """Short-term over long-term volatility at each tick (EWMAs of squared log returns)."""
        logs = np.log(mids)
        returns = np.diff(logs, prepend=self._last_log_mid)
        self._last_log_mid = float(logs[-1])
        squared = returns * returns
        short, self._short = signal.lfilter([1 - self._a_short], [1.0, -self._a_short], squared,
                                            zi=self._short)
        long, self._long = signal.lfilter([1 - self._a_long], [1.0, -self._a_long], squared,
                                          zi=self._long)
        return np.sqrt(np.maximum(short, 1e-300) / np.maximum(long, 1e-300))  # type: ignore[no-any-return]

    def _lots(self, raw: Floats) -> Floats:
        """Round sizes to whole lots, at least one lot."""
        lots = np.maximum(np.round(raw / self._lot), 1.0)
        return np.round(lots * self._lot, self._size_decimals)


def _carry_cumsum(start: float, steps: Floats) -> Floats:
    """Return start + running sums of steps, added strictly left to right.

    Adding `start` first (not afterwards) makes the result bit-identical however a sequence is
    split into batches, which is what keeps a seeded run reproducible.
    """
    return np.cumsum(np.concatenate(([start], steps)))[1:]
