"""L2 order books around each tick's touch: pure and seeded by the tick's sequence number.

The best level on each side is the tick's own bid/ask and size; deeper levels step away from it
by one tick or more (gaps drawn per level) with sizes that grow with distance, as resting
liquidity does on a real venue. A book is a function of (seed, symbol, tick seq) alone, drawn
from a counter-based generator (Philox keyed by the symbol, counter = seq), so which ticks get a
published book never changes any book's contents, and a run stays reproducible.
"""

from __future__ import annotations

import zlib

import numpy as np

from feedsim.models import MarketParams
from marketdata.symbols import Instrument
from marketdata.wire import LEVEL_DTYPE, Levels

DEPTH_GROWTH = 0.35  # mean size at level i is mean_quote_size * (1 + DEPTH_GROWTH * i)
GAP_EXTRA_TICKS = 0.6  # mean extra ticks between adjacent levels, beyond the one required


class BookMaker:
    """Builds the L2 book of one symbol for any of its ticks."""

    def __init__(self, instrument: Instrument, market: MarketParams, seed: int,
                 levels: int = 20) -> None:
        self.levels = levels
        self._tick = instrument.tick_size
        self._lot = instrument.lot_size
        self._price_decimals = instrument.price_decimals
        self._size_decimals = instrument.size_decimals
        self._mean_size = market.mean_quote_size
        self._key = [seed & 0xFFFFFFFFFFFFFFFF, zlib.crc32(instrument.symbol.encode())]

    def book(self, tick: np.void) -> tuple[Levels, Levels]:
        """Return (bids best first, asks best first) for one tick record."""
        rng = np.random.Generator(np.random.Philox(key=self._key, counter=[int(tick["seq"]), 0,
                                                                             0, 0]))
        depth = self.levels - 1
        gaps = 1 + rng.poisson(GAP_EXTRA_TICKS, (2, depth))
        growth = 1 + DEPTH_GROWTH * np.arange(1, self.levels)
        sizes = self._mean_size * growth * rng.lognormal(-0.18, 0.6, (2, depth))
        lots = np.maximum(np.round(sizes / self._lot), 1.0) * self._lot
        bids = np.empty(self.levels, dtype=LEVEL_DTYPE)
        asks = np.empty(self.levels, dtype=LEVEL_DTYPE)
        bid, ask = float(tick["bid"]), float(tick["ask"])
        bids["price"][0], asks["price"][0] = bid, ask
        bids["size"][0], asks["size"][0] = float(tick["bid_size"]), float(tick["ask_size"])
        bids["price"][1:] = np.round(bid - np.cumsum(gaps[0]) * self._tick, self._price_decimals)
        asks["price"][1:] = np.round(ask + np.cumsum(gaps[1]) * self._tick, self._price_decimals)
        bids["size"][1:] = np.round(lots[0], self._size_decimals)
        asks["size"][1:] = np.round(lots[1], self._size_decimals)
        return bids[bids["price"] > 0], asks
