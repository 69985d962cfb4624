"""The Redis layout shared by its writer (the bridge) and its readers (the API, the bridge's RPCs).

Every key is under a configurable prefix (REDIS_PREFIX, default ``mds:``); ``Keys`` names them.
What each holds and why is told where it is written: ticks in ``bridge.history``, candles in
``bridge.candles``, the latest book and recent trades in ``bridge.recent``. Readers are in
``marketdata.store``. Stream ids are ``"<ms>-<n>"`` (``parse_id``).

A stored book, little-endian::

    offset size type  field
    0      4    bytes magic     b"BK1\\0"
    4      8    u64   session
    12     8    u64   book_seq
    20     8    u64   tick_seq  the tick whose touch the book shows
    28     8    i64   ts_ns     that tick's time
    36     4    u32   n_bids
    40     4    u32   n_asks
    44     16 * (n_bids + n_asks)  (price f64, size f64) levels: bids best first, then asks
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from marketdata import wire

BOOK_MAGIC = b"BK1\0"
_BOOK = struct.Struct("<4sQQQqII")
BOOK_HEADER_SIZE = _BOOK.size


@dataclass(frozen=True)
class Keys:
    """Redis key names under one prefix."""

    prefix: str

    @property
    def instruments(self) -> str:
        return f"{self.prefix}instruments"

    def ticks(self, symbol: str) -> str:
        return f"{self.prefix}ticks:{symbol}"

    def candles(self, symbol: str, interval: str) -> str:
        """The sorted set of `symbol`'s candles of `interval` (written by bridge.candles)."""
        return f"{self.prefix}candles:{symbol}:{interval}"

    def book(self, symbol: str) -> str:
        """The string holding `symbol`'s latest order book (written by bridge.recent)."""
        return f"{self.prefix}book:{symbol}"

    def trades(self, symbol: str) -> str:
        """The list of `symbol`'s recent trades, newest first (written by bridge.recent)."""
        return f"{self.prefix}trades:{symbol}"


def parse_id(entry_id: bytes | str) -> tuple[int, int]:
    """Split a stream id "ms-n" into integers."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, n = text.partition("-")
    return int(ms), int(n or 0)


def pack_book(book: wire.BookSnapshot) -> bytes:
    """Return the stored form of `book`."""
    header = _BOOK.pack(BOOK_MAGIC, book.session, book.book_seq, book.tick_seq, book.ts_ns,
                        len(book.bids), len(book.asks))
    return (header + book.bids.astype(wire.LEVEL_DTYPE, copy=False).tobytes()
            + book.asks.astype(wire.LEVEL_DTYPE, copy=False).tobytes())


def unpack_book(symbol: str, data: bytes) -> wire.BookSnapshot:
    """Return the book stored in `data`; raise ValueError if it is not one."""
    if len(data) < BOOK_HEADER_SIZE:
        raise ValueError(f"{len(data)} bytes is shorter than a book header")
    magic, session, book_seq, tick_seq, ts_ns, n_bids, n_asks = _BOOK.unpack_from(data)
    if magic != BOOK_MAGIC:
        raise ValueError(f"bad magic {magic!r}, expected {BOOK_MAGIC!r}")
    size = wire.LEVEL_DTYPE.itemsize
    if len(data) != BOOK_HEADER_SIZE + (n_bids + n_asks) * size:
        raise ValueError(f"{len(data)} bytes do not hold {n_bids} bids and {n_asks} asks")
    levels = np.frombuffer(data, dtype=wire.LEVEL_DTYPE, offset=BOOK_HEADER_SIZE).copy()
    return wire.BookSnapshot(symbol, session, book_seq, tick_seq, ts_ns, levels[:n_bids],
                             levels[n_bids:])
