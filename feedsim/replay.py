"""Historical replay as a price source: ticks whose trades rebuild each source bar exactly.

Pure and seeded; no I/O (feedsim.config reads the file with calibration's importer).

Inside each bar of `per_bar` ticks the path starts at the open (tick 0), touches the high and
the low at two random interior ticks, and ends at the close (the last tick). Which extreme comes
first is drawn, with the high first with probability ((O - L) + (H - C)) / (2 (H - L)): an open
near the low or a close near the high makes "down first, then up" the likelier story. Between
these four anchors the mid follows a Brownian bridge in log price, clipped to [L, H].

Trades: the four anchors always print, at exactly O, H, L and C; any other tick prints with the
symbol's `trade_probability`, at its mid rounded to the tick size (which stays inside [L, H]:
both are on the grid). The first trade of a bar opens its candle and the last closes it, so a
candle rebuilt from the trades at the bar's interval has the bar's open, high, low and close.

**Rounding, so the match is exact.** Bar prices are put on the symbol's tick grid once, when the
file is loaded (a file quoted in cents for a 0.01 tick is unchanged; feedsim logs how many
prices moved otherwise), and the bar's base volume is rounded to whole lots. Trade sizes are
whole lots, at least one each, summing to the bar's lots: a heavy-tailed (Lomax) share each,
largest remainders taking the odd lots. So candles equal the source bars with prices on the
tick grid and volume to the lot size.

Edge cases, counted when the file is loaded: a bar whose volume rounds to zero lots prints no
trade (its mids still travel O, H/L, C), so it has no candle, as on an exchange; a bar with fewer
lots than the distinct prices it must print (at most four) prints one lot at each and its volume
comes out that many lots.

The aggressor follows the tick rule: a trade above the previous trade price was a buyer lifting
the ask, below it a seller hitting the bid, at the same price either (drawn).

Each bar draws from its own generator, keyed by (seed, symbol, bar index), so a bar's ticks do
not depend on how the replay was batched or paced.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from feedsim.prices import Floats, PricePath, Prints
from marketdata.errors import ConfigError
from marketdata.symbols import Instrument

if TYPE_CHECKING:  # the calibration package loads only when a replay is configured
    from calibration.bars import Bars
    from calibration.importer import ImportReport

Ints = npt.NDArray[np.int64]

ANCHORS = 4  # open, first extreme, second extreme, close
MIN_TICKS_PER_BAR = ANCHORS
MAX_TICKS_PER_BAR = 1_000_000  # one bar's ticks are drawn at once: bounds the memory it takes
BRIDGE_SCALE = 0.5  # a bar's log range spread over sqrt(ticks): the wander between anchors
_REPLAY_KEY = 0x5245504C  # "REPL": keeps replay draws apart from the simulation's streams
TRADE_SIZE_TAIL = 2.2  # as the simulated quoter's trade sizes


@dataclass(frozen=True, eq=False)
class ReplayBars:
    """The bars one symbol replays: prices on its tick grid, volumes in whole lots."""

    source: str
    time_ns: Ints
    open: Floats
    high: Floats
    low: Floats
    close: Floats
    lots: Ints
    interval_ns: int
    lines: Ints
    """The source line of each bar, for messages."""
    moved: int = 0
    """How many prices putting them on the tick grid changed."""
    report: ImportReport | None = None
    """What the importer dropped, repaired and found missing in the file."""

    def __len__(self) -> int:
        return int(self.time_ns.size)

    @property
    def zero_volume(self) -> int:
        """Bars that print no trade (their volume is under half a lot)."""
        return int(np.count_nonzero(self.lots == 0))

    @property
    def short_volume(self) -> int:
        """Bars that may have fewer lots than the distinct prices they must print."""
        return int(np.count_nonzero((self.lots > 0) & (self.lots < _essential_counts(self))))

    @property
    def first_open(self) -> float:
        """The open of the first bar: where the replay starts."""
        return float(self.open[0])

    def tick_variance(self, per_bar: int) -> float:
        """Mean squared log return per tick (the quoter's reference for 'normal' volatility)."""
        returns = np.diff(np.log(self.close))
        if not returns.size:
            return float(np.log(self.high[0] / self.low[0]) ** 2 / per_bar) or 1e-12
        return float(np.mean(returns**2) / per_bar) or 1e-12


def replay_bars(bars: Bars, instrument: Instrument, source: str,
                report: ImportReport | None = None) -> ReplayBars:
    """Put `bars` on the instrument's grid; raise ConfigError naming the file and line if a
    price falls outside the instrument's [min_price, max_price] or rounds to zero."""
    tick, decimals = instrument.tick_size, instrument.price_decimals
    lines = bars.lines if bars.lines is not None else np.zeros(len(bars), dtype=np.int64)
    raw = np.stack([bars.open, bars.high, bars.low, bars.close])
    snapped = on_grid(raw, tick, decimals)
    names = ("open", "high", "low", "close")
    for row, name in enumerate(names):
        low_bad = snapped[row] < max(instrument.min_price, tick)
        high_bad = snapped[row] > instrument.max_price
        bad = np.flatnonzero(low_bad | high_bad)
        if bad.size:
            i = int(bad[0])
            raise ConfigError(
                f"replay file {source} line {int(lines[i])}: {name} {raw[row, i]:.10g} is outside "
                f"{instrument.symbol}'s [min_price, max_price] = [{instrument.min_price:g}, "
                f"{instrument.max_price:g}] ({bad.size} bar(s) in all); widen them in "
                "SYMBOLS_FILE")
    lots = np.round(bars.volume_base / instrument.lot_size).astype(np.int64)
    return ReplayBars(source, bars.time_ns, snapped[0], snapped[1], snapped[2], snapped[3], lots,
                      bars.interval_ns, lines, int(np.count_nonzero(snapped != raw)), report)


def on_grid(prices: Floats, tick: float, decimals: int) -> Floats:
    """Round prices to the nearest multiple of `tick`, written with `decimals` places."""
    return np.round(np.round(prices / tick) * tick, decimals)


def ticks_per_bar(interval_ns: int, rate: float) -> int:
    """Ticks inside one bar at `rate` ticks per replayed second (at least the four anchors)."""
    return max(MIN_TICKS_PER_BAR, round(interval_ns / 1e9 * rate))


def _essential_counts(bars: ReplayBars) -> Ints:
    """Distinct consecutive prices among (O, H, L, C) and (O, L, H, C): what must print."""
    o, h, lo, c = bars.open, bars.high, bars.low, bars.close
    # 1 + the changes along O, X1, X2, C; the order of the extremes is drawn, so the larger.
    high_first = 1 + (h != o).astype(np.int64) + (lo != h) + (c != lo)
    low_first = 1 + (lo != o).astype(np.int64) + (h != lo) + (c != h)
    return np.maximum(high_first, low_first)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class BarPath:
    """One bar's ticks: mids and the trades that print."""

    mids: Floats
    prints: Prints


def bar_path(o: float, h: float, lo: float, c: float, lots: int, per_bar: int,
             trade_probability: float, instrument: Instrument, previous: float,
             rng: np.random.Generator) -> BarPath:
    """Return the ticks of one bar (module docstring): O first, H and L inside, C last.

    `previous` is the price of the trade before the bar (for the first trade's aggressor).
    """
    m = per_bar
    if m < MIN_TICKS_PER_BAR:
        raise ValueError(f"a bar needs at least {MIN_TICKS_PER_BAR} ticks, got {m}")
    tick, decimals = instrument.tick_size, instrument.price_decimals
    span = h - lo
    high_first = rng.random() < (((o - lo) + (h - c)) / (2 * span) if span > 0 else 0.5)
    t1, t2 = np.sort(rng.choice(np.arange(1, m - 1), size=2, replace=False))
    at = np.array([0, int(t1), int(t2), m - 1])
    anchor_prices = np.array([o, h, lo, c] if high_first else [o, lo, h, c])

    # A Brownian bridge in log price between consecutive anchors, clipped to [L, H].
    log_lo, log_hi = math.log(lo), math.log(h)
    sd = BRIDGE_SCALE * (log_hi - log_lo) / math.sqrt(m)
    walk = np.concatenate(([0.0], np.cumsum(rng.standard_normal(m - 1) * sd)))
    k = np.arange(m)
    seg = np.clip(np.searchsorted(at, k, side="right") - 1, 0, ANCHORS - 2)
    start, end = at[seg], at[seg + 1]
    frac = (k - start) / (end - start)
    log_anchor = np.log(anchor_prices)
    x = (log_anchor[seg] + frac * (log_anchor[seg + 1] - log_anchor[seg])
         + walk - walk[start] - frac * (walk[end] - walk[start]))
    mids = np.exp(np.clip(x, log_lo, log_hi))
    mids[at] = anchor_prices

    # Which ticks trade, and at what price.
    price = np.clip(on_grid(mids, tick, decimals), lo, h)
    price[at] = anchor_prices
    optional = rng.random(m) < trade_probability
    optional[at] = False
    anchors = np.zeros(m, dtype=bool)
    anchors[at] = True
    if lots < ANCHORS:
        # Too few lots for every anchor: print only where the price changes, nothing optional.
        keep = np.concatenate(([True], anchor_prices[1:] != anchor_prices[:-1]))
        anchors[at[~keep]] = False
        optional[:] = False
    elif int(optional.sum()) > lots - ANCHORS:
        drop = rng.choice(np.flatnonzero(optional), int(optional.sum()) - (lots - ANCHORS),
                          replace=False)
        optional[drop] = False
    traded = (anchors | optional) if lots > 0 else np.zeros(m, dtype=bool)

    size = np.zeros(m)
    where = np.flatnonzero(traded)
    if where.size:
        size[where] = _split_lots(max(lots, where.size), where.size, rng) * instrument.lot_size
        size = np.round(size, instrument.size_decimals)

    # Tick rule for the aggressor; a trade at the previous trade's price is either.
    buyer = np.zeros(m, dtype=bool)
    if where.size:
        p = price[where]
        before = np.concatenate(([previous], p[:-1]))
        coin = rng.random(where.size) < 0.5
        buyer[where] = np.where(p > before, True, np.where(p < before, False, coin))
    return BarPath(mids, Prints(price, size, buyer))


def _split_lots(lots: int, n: int, rng: np.random.Generator) -> Ints:
    """Split `lots` into `n` whole parts of at least one: heavy-tailed shares, largest
    remainders taking the odd lots. The parts sum to `lots` exactly."""
    extra = lots - n
    weights = rng.pareto(TRADE_SIZE_TAIL, n) + 1.0
    share = extra * weights / weights.sum()
    parts = np.floor(share).astype(np.int64)
    short = extra - int(parts.sum())
    if short > 0:
        parts[np.argsort(-(share - parts), kind="stable")[:short]] += 1
    return parts + 1  # type: ignore[no-any-return]


class ReplaySource:
    """A PriceSource over a symbol's bars: `per_bar` ticks a bar, drawn a bar at a time."""

    def __init__(self, bars: ReplayBars, instrument: Instrument, per_bar: int,
                 trade_probability: float, seed: int) -> None:
        self.bars = bars
        self.instrument = instrument
        self.per_bar = per_bar
        self.trade_probability = trade_probability
        self._key = (zlib.crc32(instrument.symbol.encode()), _REPLAY_KEY)
        self._seed = seed
        self._next_bar = 0
        self._previous = float(bars.open[0]) if len(bars) else 0.0
        self._buffer: list[BarPath] = []
        self._offset = 0  # ticks of the first buffered bar already handed out
        self._remaining = len(bars) * per_bar

    @property
    def remaining(self) -> int | None:
        """Ticks not yet handed out."""
        return self._remaining

    def path(self, n: int) -> PricePath:
        """Return the next `n` ticks (n <= remaining)."""
        if n > self._remaining:
            raise ValueError(f"asked for {n} ticks; the replay has {self._remaining} left")
        mids, price, size, buyer = [], [], [], []
        need = n
        while need:
            if not self._buffer:
                self._buffer.append(self._draw_bar())
                self._offset = 0
            bar = self._buffer[0]
            take = slice(self._offset, min(self._offset + need, self.per_bar))
            mids.append(bar.mids[take])
            price.append(bar.prints.price[take])
            size.append(bar.prints.size[take])
            buyer.append(bar.prints.buyer[take])
            got = take.stop - take.start
            need -= got
            self._offset += got
            if self._offset == self.per_bar:
                self._buffer.clear()
        self._remaining -= n
        if not n:
            empty = np.empty(0)
            return PricePath(empty, Prints(empty, empty, np.empty(0, dtype=bool)))
        return PricePath(np.concatenate(mids), Prints(np.concatenate(price),
                                                      np.concatenate(size),
                                                      np.concatenate(buyer)))

    def _draw_bar(self) -> BarPath:
        b = self._next_bar
        self._next_bar += 1
        rng = np.random.default_rng(np.random.SeedSequence(entropy=self._seed,
                                                           spawn_key=(*self._key, b)))
        bars = self.bars
        path = bar_path(float(bars.open[b]), float(bars.high[b]), float(bars.low[b]),
                        float(bars.close[b]), int(bars.lots[b]), self.per_bar,
                        self.trade_probability, self.instrument, self._previous, rng)
        traded = path.prints.size > 0
        if traded.any():
            self._previous = float(path.prints.price[np.flatnonzero(traded)[-1]])
        return path
