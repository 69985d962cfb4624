"""L2 order books that evolve from update to update: pure, seeded, no I/O.

A symbol's book is updated at chosen ticks (the engine picks them from the tick sequence, so
they do not depend on timing). Each update:

- moves each side's touch to the tick's bid or ask, with the tick's sizes: levels at or inside
  the new touch are gone (traded through or cancelled), and when the touch moves away from the
  book, the space it opens is filled with new levels at the usual spacing;
- lets the levels behind the touch rest: most keep their price and size, a few are cancelled
  (P_CANCEL) or change size (P_RESIZE, reverting towards the size expected at their depth), and
  now and then a new level appears in an empty price (P_INSERT);
- tops each side up to `levels` from its far end, and drops levels beyond that depth.

Adjacent levels are a geometric number of ticks apart, with a mean of a quarter of the quoted
spread (at least MIN_MEAN_GAP_TICKS): on a fine grid with a wide spread (BTC-USD: 0.01 ticks,
a spread of ~1,500 of them) levels one tick apart would span less than the mid moves between
updates, and nothing would ever rest.

Sizes grow with distance from the mid: a new level at rank i gets a mean size of
mean_quote_size * (1 + DEPTH_GROWTH * i). Prices are whole ticks, held as integers, so a level
that rests keeps exactly the same price from update to update.

Each update draws a fixed number of random numbers from the symbol's own generator (seeded by
the seed and the symbol), so a book is a function of the seed, the symbol and the sequence of
ticks it was updated at.
"""

from __future__ import annotations

import bisect
import math
import zlib
from dataclasses import dataclass

import numpy as np

from feedsim.models import MarketParams, price_grid_bounds
from marketdata.symbols import Instrument
from marketdata.wire import LEVEL_DTYPE, Levels

DEPTH_GROWTH = 0.35  # mean size at rank i is mean_quote_size * (1 + DEPTH_GROWTH * i)
MIN_MEAN_GAP_TICKS = 1.6  # mean ticks between adjacent levels, at least
GAP_SPREAD_FRACTION = 0.25  # ... or this fraction of the quoted spread, when that is more
P_CANCEL = 0.02  # chance per update that a resting level is cancelled
P_RESIZE = 0.12  # chance per update that a resting level's size changes
P_INSERT = 0.3  # chance per update and side that a new level appears in an empty price
RESIZE_REVERSION = 0.3  # weight of the depth's expected size in a changed size (geometric)
SIZE_SIGMA = 0.6  # log-normal spread of a new level's size


@dataclass(frozen=True)
class BookChanges:
    """What one update changed: levels with their new size (0: removed), best first."""

    bids: Levels
    asks: Levels


class BookBuilder:
    """One symbol's order book, updated at ticks the caller chooses.

    Each side is held as distances and sizes, best first: a distance is the price in ticks,
    negated on the bid side so that both sides grow away from the mid. The per-level work is
    plain Python on lists: with 20 levels, a numpy call costs more than the loop it replaces.
    """

    def __init__(self, instrument: Instrument, market: MarketParams, seed: int,
                 levels: int = 20) -> None:
        self.levels = levels
        self._tick = instrument.tick_size
        self._lot = instrument.lot_size
        self._price_decimals = instrument.price_decimals
        self._size_decimals = instrument.size_decimals
        self._mean_sizes = [market.mean_quote_size * (1 + DEPTH_GROWTH * rank)
                            for rank in range(levels + 1)]
        self._scale = 10.0**self._price_decimals
        lo, hi = price_grid_bounds(instrument)
        # The deepest distance each side may reach: levels stay inside [min_price, max_price].
        self._limits = (-round(lo / self._tick), round(hi / self._tick))
        self._rng = np.random.default_rng(np.random.SeedSequence(
            entropy=seed, spawn_key=(zlib.crc32(instrument.symbol.encode()), 0xB00C)))
        self._distances: list[list[int]] = [[], []]
        self._sizes: list[list[float]] = [[], []]

    def update(self, tick: np.void) -> BookChanges:
        """Move the book to `tick`'s touch and let it evolve; return the levels that changed."""
        bid, ask = float(tick["bid"]), float(tick["ask"])
        touches = (-round(bid / self._tick), round(ask / self._tick))
        touch_sizes = (float(tick["bid_size"]), float(tick["ask_size"]))
        mean_gap = max(MIN_MEAN_GAP_TICKS, GAP_SPREAD_FRACTION * (touches[1] + touches[0]))
        # A fixed number of draws per update, whatever happens in it: every update's randomness
        # depends only on how many updates came before. They are turned into gaps and sizes
        # only where used.
        n = self.levels
        uniforms = self._rng.random((2, 3 * n + 2)).tolist()
        normals = self._rng.standard_normal((2, 2 * n)).tolist()
        log_q = math.log1p(-1 / mean_gap)
        limits = self._limits
        changes = []
        for side in (0, 1):
            old_d, old_s = self._distances[side], self._sizes[side]
            new_d, new_s = self._evolve(old_d, old_s, touches[side], touch_sizes[side],
                                        limits[side], uniforms[side], log_q, normals[side])
            self._distances[side], self._sizes[side] = new_d, new_s
            changes.append(self._changes(side, old_d, old_s, new_d, new_s))
        return BookChanges(changes[0], changes[1])

    def book(self) -> tuple[Levels, Levels]:
        """Return the current (bids, asks), best first."""
        return (self._levels(0, self._distances[0], self._sizes[0]),
                self._levels(1, self._distances[1], self._sizes[1]))

    def _evolve(self, old_d: list[int], old_s: list[float], touch: int, touch_size: float,
                limit: int, uniforms: list[float], log_q: float, normals: list[float]
                ) -> tuple[list[int], list[float]]:
        """Return one side's next (distances, sizes) with its touch at `touch`.

        `uniforms` holds `levels` fates, 2 * levels gap draws, then two for an inserted level;
        `log_q` is log(1 - 1 / mean gap); `normals` holds 2 * levels draws for the sizes of
        resized levels and then of new ones.
        """
        n = self.levels
        # Geometric gaps (>= 1 tick, mean 1 / (1 - q)) by inverting the CDF.
        gaps = (1 + int(math.log1p(-u) / log_q) for u in uniforms[n:3 * n])
        first = bisect.bisect_right(old_d, touch)  # the levels behind the new touch rest...
        rest_d: list[int] = []
        rest_s: list[float] = []
        for rank, (distance, size) in enumerate(zip(old_d[first:], old_s[first:],
                                                    strict=True)):
            fate = uniforms[rank]
            if fate < P_CANCEL:
                continue  # ... unless cancelled, or resized towards their depth's mean
            rest_d.append(distance)
            if fate < P_CANCEL + P_RESIZE:
                target = self._mean_sizes[rank + 1] * _lognormal(normals[rank])
                rest_s.append(self._lots(size ** (1 - RESIZE_REVERSION)
                                         * target ** RESIZE_REVERSION))
            else:
                rest_s.append(size)
        # The space between the touch and the resting levels fills at the usual spacing.
        bound = min(rest_d[0] if rest_d else touch + 1, limit + 1)
        new_d, new_s = [touch], [touch_size]
        price = touch
        for _ in range(n):
            price += next(gaps)
            if price >= bound:
                break
            new_d.append(price)
            new_s.append(math.nan)
        new_d += rest_d
        new_s += rest_s
        if uniforms[-2] < P_INSERT and len(new_d) > 1:
            price = touch + 1 + int(uniforms[-1] * (new_d[-1] - touch))
            at = bisect.bisect_left(new_d, price)
            if new_d[at] != price:
                new_d.insert(at, price)
                new_s.insert(at, math.nan)
        for _ in range(n - len(new_d)):
            price = new_d[-1] + next(gaps)
            if price > limit:
                break
            new_d.append(price)
            new_s.append(math.nan)
        del new_d[n:], new_s[n:]
        fresh = n
        for rank, size in enumerate(new_s):
            if math.isnan(size):  # a new level
                new_s[rank] = self._lots(self._mean_sizes[rank] * _lognormal(normals[fresh]))
                fresh += 1
        return new_d, new_s

    def _lots(self, raw: float) -> float:
        """Round a size to whole lots, at least one lot."""
        return round(max(round(raw / self._lot), 1) * self._lot, self._size_decimals)

    def _levels(self, side: int, distances: list[int], sizes: list[float]) -> Levels:
        """Turn one side's distances and sizes into price levels.

        Prices are rounded exactly as numpy.round rounds the quotes (scale, round half to even,
        unscale), so the touch is the tick's bid or ask to the bit.
        """
        sign, tick, scale = (-1 if side == 0 else 1), self._tick, self._scale
        return np.array([(round(sign * d * tick * scale) / scale, size)
                         for d, size in zip(distances, sizes, strict=True)], dtype=LEVEL_DTYPE)

    def _changes(self, side: int, old_d: list[int], old_s: list[float], new_d: list[int],
                 new_s: list[float]) -> Levels:
        """Return the levels whose size differs between old and new, new size (0: gone)."""
        before = dict(zip(old_d, old_s, strict=True))
        after = dict(zip(new_d, new_s, strict=True))
        changed = sorted({d for d, size in after.items() if before.get(d) != size}
                         | (before.keys() - after.keys()))
        return self._levels(side, changed, [after.get(d, 0.0) for d in changed])


def _lognormal(z: float) -> float:
    """A log-normal factor with mean 1 from a standard normal draw."""
    return math.exp(SIZE_SIGMA * z - SIZE_SIGMA**2 / 2)
