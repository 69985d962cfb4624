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

import zlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feedsim.models import MarketParams
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

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class BookChanges:
    """What one update changed: levels with their new size (0: removed), best first."""

    bids: Levels
    asks: Levels


class BookBuilder:
    """One symbol's order book, updated at ticks the caller chooses.

    Each side is held as distances and sizes, best first: a distance is the price in ticks,
    negated on the bid side so that both sides grow away from the mid.
    """

    def __init__(self, instrument: Instrument, market: MarketParams, seed: int,
                 levels: int = 20) -> None:
        self.levels = levels
        self._tick = instrument.tick_size
        self._lot = instrument.lot_size
        self._price_decimals = instrument.price_decimals
        self._size_decimals = instrument.size_decimals
        self._mean_size = market.mean_quote_size
        self._growth = 1 + DEPTH_GROWTH * np.arange(levels + 1, dtype=np.float64)
        self._rng = np.random.default_rng(np.random.SeedSequence(
            entropy=seed, spawn_key=(zlib.crc32(instrument.symbol.encode()), 0xB00C)))
        self._distances: list[Ints] = [np.zeros(0, np.int64), np.zeros(0, np.int64)]
        self._sizes: list[Floats] = [np.zeros(0), np.zeros(0)]

    def update(self, tick: np.void) -> BookChanges:
        """Move the book to `tick`'s touch and let it evolve; return the levels that changed."""
        bid, ask = float(tick["bid"]), float(tick["ask"])
        touches = (-round(bid / self._tick), round(ask / self._tick))
        touch_sizes = (float(tick["bid_size"]), float(tick["ask_size"]))
        mean_gap = max(MIN_MEAN_GAP_TICKS, GAP_SPREAD_FRACTION * (touches[1] + touches[0]))
        # A fixed number of draws per update, whatever happens in it: every update's randomness
        # depends only on how many updates came before.
        n = self.levels
        uniforms = self._rng.random((2, 3 * n + 2))
        normals = self._rng.standard_normal((2, 2 * n))
        # Geometric gaps (>= 1 tick, mean `mean_gap`) by inverting the CDF.
        gaps = 1 + np.floor(np.log1p(-uniforms[:, n:3 * n]) / np.log1p(-1 / mean_gap))
        sizes = np.exp(SIZE_SIGMA * normals - SIZE_SIGMA**2 / 2)
        # Bids stop at one tick: the grid holds no price at or below zero.
        limits = (-1, np.iinfo(np.int64).max)
        changes = []
        for side in (0, 1):
            old_d, old_s = self._distances[side], self._sizes[side]
            new_d, new_s = self._evolve(old_d, old_s, touches[side], touch_sizes[side],
                                        limits[side], uniforms[side], gaps[side].astype(np.int64),
                                        sizes[side])
            self._distances[side], self._sizes[side] = new_d, new_s
            changes.append(self._changes(side, old_d, old_s, new_d, new_s))
        return BookChanges(changes[0], changes[1])

    def book(self) -> tuple[Levels, Levels]:
        """Return the current (bids, asks), best first."""
        return (self._levels(0, self._distances[0], self._sizes[0]),
                self._levels(1, self._distances[1], self._sizes[1]))

    def _evolve(self, old_d: Ints, old_s: Floats, touch: int, touch_size: float, limit: int,
                uniforms: Floats, gaps: Ints, noise: Floats) -> tuple[Ints, Floats]:
        """Return one side's next (distances, sizes) with its touch at `touch`.

        `uniforms` holds levels fates, then (unused here) 2 * levels gap draws, then two for an
        inserted level; `gaps` are 2 * levels gaps in ticks; `noise` 2 * levels log-normal
        factors (mean 1) for resized levels, then for new ones.
        """
        n = self.levels
        first = int(np.searchsorted(old_d, touch, side="right"))
        d, s = old_d[first:], old_s[first:]  # the levels behind the new touch rest
        if len(d):
            fate = uniforms[:len(d)]
            resized = (fate >= P_CANCEL) & (fate < P_CANCEL + P_RESIZE)
            if resized.any():
                target = self._mean_size * self._growth[1:len(d) + 1] * noise[:len(d)]
                s = s.copy()
                s[resized] = self._lots(s[resized] ** (1 - RESIZE_REVERSION)
                                        * target[resized] ** RESIZE_REVERSION)
            kept = fate >= P_CANCEL
            d, s = d[kept], s[kept]
        # The space between the touch and the resting levels fills at the usual spacing.
        bound = min(int(d[0]) if len(d) else touch + 1, limit + 1)
        filled = touch + np.cumsum(gaps[:n])
        filled = filled[:int(np.searchsorted(filled, bound))]
        new_d = np.concatenate(([touch], filled, d)).astype(np.int64)
        new_s = np.concatenate(([touch_size], np.full(len(filled), np.nan), s))
        if uniforms[-2] < P_INSERT and len(new_d) > 1:
            price = touch + 1 + int(uniforms[-1] * (int(new_d[-1]) - touch))
            at = int(np.searchsorted(new_d, price))
            if new_d[at] != price:
                new_d, new_s = np.insert(new_d, at, price), np.insert(new_s, at, np.nan)
        missing = n - len(new_d)
        if missing > 0:
            deeper = new_d[-1] + np.cumsum(gaps[n:n + missing])
            deeper = deeper[:int(np.searchsorted(deeper, limit, side="right"))]
            new_d = np.concatenate((new_d, deeper))
            new_s = np.concatenate((new_s, np.full(len(deeper), np.nan)))
        new_d, new_s = new_d[:n], new_s[:n]
        fresh = np.isnan(new_s)
        if fresh.any():
            ranks = np.flatnonzero(fresh)
            new_s[fresh] = self._lots(self._mean_size * self._growth[ranks]
                                      * noise[n:n + len(ranks)])
        return new_d, new_s

    def _lots(self, raw: Floats) -> Floats:
        """Round sizes to whole lots, at least one lot."""
        lots = np.maximum(np.round(raw / self._lot), 1.0)
        return np.round(lots * self._lot, self._size_decimals)

    def _levels(self, side: int, distances: Ints, sizes: Floats) -> Levels:
        """Turn one side's distances and sizes into price levels."""
        out = np.empty(len(distances), dtype=LEVEL_DTYPE)
        ticks = -distances if side == 0 else distances
        out["price"] = np.round(ticks * self._tick, self._price_decimals)
        out["size"] = sizes
        return out

    def _changes(self, side: int, old_d: Ints, old_s: Floats, new_d: Ints, new_s: Floats
                 ) -> Levels:
        """Return the levels whose size differs between old and new, new size (0: gone)."""
        before = dict(zip(old_d.tolist(), old_s.tolist(), strict=True))
        after = dict(zip(new_d.tolist(), new_s.tolist(), strict=True))
        changed = sorted({d for d, size in after.items() if before.get(d) != size}
                         | (before.keys() - after.keys()))
        return self._levels(side, np.array(changed, dtype=np.int64),
                            np.array([after.get(d, 0.0) for d in changed], dtype=np.float64))
