"""Trades as records of their own: the ticks that carry one, and their packed stored form.

A trade is a tick with FLAG_TRADE: ``last_size`` base units printed at ``last``. Its aggressor
side is ``buy`` when FLAG_BUYER_AGGRESSOR is set (the buyer lifted the ask), else ``sell`` (the
seller hit the bid). Pure: no I/O, no clock.

A trade record (``TRADE_DTYPE``), little-endian, 48 bytes; one record is also one member of the
Redis list ``{prefix}trades:{SYMBOL}`` (``bridge.recent``)::

    offset size type  field
    0      8    u64   session    the feed session of the tick
    8      8    u64   seq        the tick's sequence number in that session
    16     8    i64   ts_ns      the tick's time, ns since the Unix epoch
    24     8    f64   price      the tick's last
    32     8    f64   size       the tick's last_size
    40     4    u32   flags      the tick's flags (2 trade, 4 buyer aggressor)
    44     4    u32   reserved   0
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from marketdata import wire

TRADE_DTYPE = np.dtype([
    ("session", "<u8"),
    ("seq", "<u8"),
    ("ts_ns", "<i8"),
    ("price", "<f8"),
    ("size", "<f8"),
    ("flags", "<u4"),
    ("reserved", "<u4"),
])
TRADE_SIZE = TRADE_DTYPE.itemsize
BUY = "buy"
SELL = "sell"

Trades = npt.NDArray[np.void]
"""A 1-d array of TRADE_DTYPE records."""

assert TRADE_SIZE == 48


def empty(n: int = 0) -> Trades:
    """Return a zeroed array of `n` trade records."""
    return np.zeros(n, dtype=TRADE_DTYPE)


def from_ticks(ticks: wire.Ticks, session: int) -> Trades:
    """Return the trades among `ticks` (those with FLAG_TRADE), in the ticks' order."""
    chosen = ticks[(ticks["flags"] & wire.FLAG_TRADE) != 0]
    trades = empty(len(chosen))
    trades["session"] = session
    trades["seq"] = chosen["seq"]
    trades["ts_ns"] = chosen["ts_ns"]
    trades["price"] = chosen["last"]
    trades["size"] = chosen["last_size"]
    trades["flags"] = chosen["flags"]
    return trades


def concat(parts: Sequence[Trades]) -> Trades:
    """Join trade arrays in order (by their bytes: np.concatenate of a structured dtype is
    many times slower, and this runs on the bridge's hot path)."""
    if len(parts) == 1:
        return parts[0]
    return np.frombuffer(b"".join(p.tobytes() for p in parts), dtype=TRADE_DTYPE)


def sides(trades: Trades) -> list[str]:
    """Return the aggressor side of each trade, ``buy`` or ``sell``."""
    buyer = (trades["flags"] & wire.FLAG_BUYER_AGGRESSOR) != 0
    return [BUY if b else SELL for b in buyer.tolist()]


def pack(trades: Trades) -> list[bytes]:
    """Return each trade's 48-byte record."""
    raw = np.ascontiguousarray(trades, dtype=TRADE_DTYPE).tobytes()
    return [raw[i:i + TRADE_SIZE] for i in range(0, len(raw), TRADE_SIZE)]


def unpack(members: Sequence[bytes]) -> Trades:
    """Return the trades packed in `members`, in order; raise ValueError for a wrong size."""
    for member in members:
        if len(member) != TRADE_SIZE:
            raise ValueError(f"a trade record is {TRADE_SIZE} bytes, not {len(member)}")
    return np.frombuffer(b"".join(members), dtype=TRADE_DTYPE).copy()


def after(trades: Trades, session: int, seq: int) -> Trades:
    """Drop the trades of `session` up to `seq` (already stored); keep every other session's."""
    kept: Trades = trades[(trades["session"] != session) | (trades["seq"] > seq)]
    return kept
