"""OHLCV candles built from trades, their packed storage form, and rolling statistics over them.

Pure and deterministic: no I/O, no clock. The bridge aggregates the ticks it receives and stores
the candles (``bridge.candles``); the API reads them back and summarises them.

- **Intervals** 1s, 1m, 5m, 15m, 1h, 4h and 1d, aligned to the Unix epoch in UTC: a candle's
  open time is a multiple of its interval (a 4h candle opens at 00:00, 04:00, ... UTC; a 1d
  candle at midnight UTC).
- **Trades only.** A candle is built from the ticks carrying FLAG_TRADE: open, high, low and
  close of their price (``last``), ``volume`` the sum of their sizes (``last_size``, base units),
  ``quote_volume`` the sum of price * size, ``trades`` how many trade ticks (a tick's trades
  print at one price and are reported as one), the seq of the first and last of them, and the
  feed session of the last. Quotes alone never make or move a candle.
- **No trades, no candle**, as on exchanges: an interval without trades has no candle at all
  (not a flat one repeating the previous close). Readers must not assume consecutive candles.
- **Split-invariant.** Aggregating ticks batch by batch gives exactly, bit for bit, what
  aggregating them all at once gives: sums are accumulated strictly in trade order (a left fold:
  ``np.cumsum``, or plain float additions for a few trades, never numpy's pairwise sums), and
  the open candle of each interval carries the running state from one batch to the next.
- **Vectorised per batch.** A batch's trade columns are extracted once for all intervals; when
  its trades fall in one candle (the common case: a flush covers a few ms) whole-batch
  reductions give the candle, and the sums of every such interval are folded in one
  ``cumsum`` (a column pair per interval); otherwise trades are grouped by bucket
  (``ts_ns // interval``) with ``reduceat``.
- **Time never goes backwards.** Within one (symbol, interval) a trade stamped before the open
  candle (a feed restarted with a clock behind the old one) counts in the open candle rather
  than reopening a candle already closed.
- **Feed restarts and replays.** A trade whose (session, seq) is not after the open candle's
  last trade is one already counted (a replay, or ticks seen again after a bridge restart) and
  is skipped; a new session starts its seqs from 1 again and is always new.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from marketdata import wire

NS_PER_MS = 1_000_000
SECOND_NS = 1_000_000_000


@dataclass(frozen=True)
class Interval:
    """A candle length, aligned to the Unix epoch."""

    name: str
    ns: int

    @property
    def ms(self) -> int:
        """The length in milliseconds."""
        return self.ns // NS_PER_MS

    def open_ns(self, ts_ns: int) -> int:
        """Return the open time of the candle holding `ts_ns`."""
        return ts_ns - ts_ns % self.ns


INTERVALS: tuple[Interval, ...] = (
    Interval("1s", SECOND_NS),
    Interval("1m", 60 * SECOND_NS),
    Interval("5m", 300 * SECOND_NS),
    Interval("15m", 900 * SECOND_NS),
    Interval("1h", 3_600 * SECOND_NS),
    Interval("4h", 14_400 * SECOND_NS),
    Interval("1d", 86_400 * SECOND_NS),
)
BY_NAME: dict[str, Interval] = {i.name: i for i in INTERVALS}
ONE_MINUTE = BY_NAME["1m"]
DAY_NS = 86_400 * SECOND_NS


@dataclass(frozen=True)
class Candle:
    """One interval of one symbol's trades."""

    symbol: str
    interval: Interval
    open_ns: int
    """Start of the interval, ns since the epoch (a multiple of interval.ns)."""
    open: float
    high: float
    low: float
    close: float
    volume: float
    """Sum of the trade sizes, base units."""
    quote_volume: float
    """Sum of price * size, quote units."""
    trades: int
    first_seq: int
    last_seq: int
    session: int
    """The feed session of the last trade (with last_seq, what has been counted already)."""

    @property
    def close_ns(self) -> int:
        """The last ns of the interval."""
        return self.open_ns + self.interval.ns - 1

    def is_closed(self, now_ns: int) -> bool:
        """Tell whether the interval has ended by `now_ns`."""
        return now_ns > self.close_ns


SMALL_FOLD = 32
"""Up to this many trades, sums are folded in Python (the same IEEE additions, less overhead)."""


class _Trades:
    """The columns of some trade ticks, extracted once and shared by every interval."""

    def __init__(self, trades: wire.Ticks) -> None:
        self.ts = trades["ts_ns"].astype(np.int64)
        self.price = trades["last"].astype(np.float64)
        self.size = trades["last_size"].astype(np.float64)
        self.quote = self.price * self.size
        self.seq = trades["seq"].astype(np.uint64)
        self.n = len(trades)
        if self.n:
            self.ts_first, self.ts_max = int(self.ts[0]), int(self.ts.max())
            self.high, self.low = float(self.price.max()), float(self.price.min())
            self.first_seq, self.last_seq = int(self.seq[0]), int(self.seq[-1])


def _fold(volume: float, quote_volume: float, size: npt.NDArray[np.float64],
          quote: npt.NDArray[np.float64], small: int = SMALL_FOLD) -> tuple[float, float]:
    """Add sizes and price * size to running sums strictly in order (a left fold).

    Up to `small` trades in Python, beyond with numpy: the same additions either way.
    """
    if len(size) <= small:
        for a, b in zip(size.tolist(), quote.tolist(), strict=True):
            volume += a
            quote_volume += b
        return volume, quote_volume
    # cumsum is sequential too (never pairwise), so both ways give the same bits.
    sums = np.cumsum(np.vstack(([volume, quote_volume], np.column_stack((size, quote)))),
                     axis=0)[-1]
    return float(sums[0]), float(sums[1])


def _folds(bases: Sequence[tuple[float, float]], size: npt.NDArray[np.float64],
           quote: npt.NDArray[np.float64], small: int = SMALL_FOLD) -> list[tuple[float, float]]:
    """Do `_fold` from each of several starting sums: in one cumsum, a column pair per start.

    Each column is still its own left fold, so every result has the bits `_fold` gives it.
    """
    if len(size) * len(bases) <= small:
        return [_fold(volume, quote_volume, size, quote, small) for volume, quote_volume in bases]
    table = np.empty((len(size) + 1, 2 * len(bases)))
    table[0] = np.ravel(bases)
    table[1:, 0::2] = size[:, None]
    table[1:, 1::2] = quote[:, None]
    sums = np.cumsum(table, axis=0)[-1].tolist()
    return list(zip(sums[0::2], sums[1::2], strict=True))


def aggregate(symbol: str, interval: Interval, session: int, trades: wire.Ticks,
              current: Candle | None) -> list[Candle]:
    """Fold `trades` (trade ticks in feed order) into `current`, the open candle, if any.

    Return every candle the trades created or changed, oldest first; the last one is the new
    open candle, the others are closed (a later trade exists). Empty when nothing changed.
    """
    return _aggregate(symbol, interval, session, trades, _Trades(trades), current)


def _one_candle(interval: Interval, session: int, t: _Trades, current: Candle | None
                ) -> int | None:
    """Return the open time of the one candle all of `t` fall in (none counted already), or
    None when `_aggregate`'s general path is needed (several candles, or trades to skip)."""
    if not t.n or (current is not None and current.session == session
                   and t.first_seq <= current.last_seq):
        return None
    ns = interval.ns
    first = t.ts_first // ns
    if current is not None:
        first = max(first, current.open_ns // ns)
    return first * ns if max(t.ts_max // ns, first) == first else None


def _aggregate(symbol: str, interval: Interval, session: int, records: wire.Ticks,
               t: _Trades, current: Candle | None) -> list[Candle]:
    """Do what aggregate() does, from columns already extracted (`t`) of `records`."""
    if (current is not None and current.session == session and t.n
            and t.first_seq <= current.last_seq):
        # Trades counted already (a replay, or seen again after a restart) are skipped.
        records = records[t.seq > current.last_seq]
        t = _Trades(records)
    if not t.n:
        return []
    open_ns = _one_candle(interval, session, t, current)
    if open_ns is not None:
        # The common case: every trade falls in one candle. Whole-batch reductions suffice.
        return [_candle(symbol, interval, session, open_ns, _continued(current, open_ns),
                        t.price[0], t.high, t.low, t.price[-1], t.size, t.quote, t.first_seq,
                        t.last_seq)]
    ns = interval.ns
    buckets = t.ts // ns
    if current is not None:
        np.maximum(buckets, current.open_ns // ns, out=buckets)
    np.maximum.accumulate(buckets, out=buckets)
    starts = np.concatenate(([0], np.flatnonzero(np.diff(buckets)) + 1))
    ends = np.append(starts[1:], t.n)
    highs = np.maximum.reduceat(t.price, starts).tolist()
    lows = np.minimum.reduceat(t.price, starts).tolist()
    opens = t.price[starts].tolist()
    closes = t.price[ends - 1].tolist()
    first_seqs = t.seq[starts].tolist()
    last_seqs = t.seq[ends - 1].tolist()
    open_times = (buckets[starts] * ns).tolist()
    out: list[Candle] = []
    for g, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        out.append(_candle(symbol, interval, session, open_times[g],
                           _continued(current, open_times[0]) if g == 0 else None, opens[g],
                           highs[g], lows[g], closes[g], t.size[a:b], t.quote[a:b],
                           first_seqs[g], last_seqs[g]))
    return out


def _candle(symbol: str, interval: Interval, session: int, open_ns: int, base: Candle | None,
            open_: float, high: float, low: float, close: float, size: npt.NDArray[np.float64],
            quote: npt.NDArray[np.float64], first_seq: int, last_seq: int) -> Candle:
    """Return the candle at `open_ns`: `base` (its state so far, if any) plus these trades."""
    volume, quote_volume = _fold(*_start(base), size, quote)
    return _built(symbol, interval, session, open_ns, base, open_, high, low, close, len(size),
                  volume, quote_volume, first_seq, last_seq)


def _continued(current: Candle | None, open_ns: int) -> Candle | None:
    """Return the open candle when trades at `open_ns` continue it, else None (a new one)."""
    return current if current is not None and current.open_ns == open_ns else None


def _start(base: Candle | None) -> tuple[float, float]:
    """The running (volume, quote_volume) a candle's new trades are added to."""
    return (0.0, 0.0) if base is None else (base.volume, base.quote_volume)


def _built(symbol: str, interval: Interval, session: int, open_ns: int, base: Candle | None,
           open_: float, high: float, low: float, close: float, trades: int, volume: float,
           quote_volume: float, first_seq: int, last_seq: int) -> Candle:
    """Return `base` (if any) updated with `trades` more trades whose sums are already folded."""
    if base is None:
        return Candle(symbol, interval, open_ns, float(open_), float(high), float(low),
                      float(close), volume, quote_volume, trades, int(first_seq),
                      int(last_seq), session)
    return Candle(symbol, interval, open_ns, base.open, max(base.high, float(high)),
                  min(base.low, float(low)), float(close), volume, quote_volume,
                  base.trades + trades, base.first_seq, int(last_seq), session)


class CandleAggregator:
    """Keeps the open candle of every (symbol, interval) and folds tick batches into them."""

    def __init__(self, intervals: Sequence[Interval] = INTERVALS) -> None:
        self.intervals = tuple(intervals)
        self._open: dict[tuple[str, str], Candle] = {}

    def add(self, batch: wire.TickBatch) -> list[Candle]:
        """Fold a batch of consecutive ticks into the candles; return those created or changed.

        Per interval, oldest first; each interval's last one is its open candle.
        """
        ticks = batch.ticks
        if not len(ticks):
            return []
        trades = trades_of(ticks)
        if not len(trades):
            return []
        t = _Trades(trades)
        symbol, session = batch.symbol, batch.session
        changed: dict[str, list[Candle]] = {}
        # The common case: no trade counted already and all of them in one candle of the
        # interval. Those intervals' sums are folded together (one cumsum for all, not one each).
        simple: list[tuple[Interval, int, Candle | None]] = []
        for interval in self.intervals:
            current = self._open.get((symbol, interval.name))
            open_ns = _one_candle(interval, session, t, current)
            if open_ns is None:
                changed[interval.name] = _aggregate(symbol, interval, session, trades, t, current)
            else:
                simple.append((interval, open_ns, _continued(current, open_ns)))
        sums = _folds([_start(base) for _, _, base in simple], t.size, t.quote)
        for (interval, open_ns, base), (volume, quote_volume) in zip(simple, sums, strict=True):
            changed[interval.name] = [_built(symbol, interval, session, open_ns, base,
                                             t.price[0], t.high, t.low, t.price[-1], t.n,
                                             volume, quote_volume, t.first_seq, t.last_seq)]
        out: list[Candle] = []
        for interval in self.intervals:  # per interval, oldest first
            candles = changed[interval.name]
            if candles:
                self._open[(symbol, interval.name)] = candles[-1]
                out.extend(candles)
        return out

    def restore(self, candle: Candle) -> None:
        """Continue from a stored candle (the latest of its symbol and interval) after a restart.

        Ignored when a later candle is open already.
        """
        key = (candle.symbol, candle.interval.name)
        current = self._open.get(key)
        if current is None or candle.open_ns >= current.open_ns:
            self._open[key] = candle

    def open_candle(self, symbol: str, interval: Interval) -> Candle | None:
        """Return the open candle of `symbol` and `interval` (the one with its latest trade)."""
        return self._open.get((symbol, interval.name))

    def open_candles(self) -> list[Candle]:
        """Return every open candle."""
        return list(self._open.values())


# -- storage form ------------------------------------------------------------------------------

PACK_VERSION = 1
_PACKED = struct.Struct("<B7xQqddddddQQQ")
PACKED_SIZE = _PACKED.size
"""96 bytes: version u8, 7 pad, trades u64, open_ns i64, open, high, low, close, volume,
quote_volume f64, first_seq, last_seq, session u64; little-endian. Readers take the first
PACKED_SIZE bytes of a longer value, so fields can be appended."""


def pack(candle: Candle) -> bytes:
    """Return the storage form of `candle` (symbol and interval are the key's, not packed)."""
    return _PACKED.pack(PACK_VERSION, candle.trades, candle.open_ns, candle.open, candle.high,
                        candle.low, candle.close, candle.volume, candle.quote_volume,
                        candle.first_seq, candle.last_seq, candle.session)


def unpack(symbol: str, interval: Interval, data: bytes) -> Candle:
    """Read a packed candle; raise ValueError when `data` is not one."""
    if len(data) < PACKED_SIZE:
        raise ValueError(f"packed candle is {len(data)} bytes, shorter than {PACKED_SIZE}")
    (version, trades, open_ns, open_, high, low, close, volume, quote_volume, first_seq,
     last_seq, session) = _PACKED.unpack_from(data)
    if version != PACK_VERSION:
        raise ValueError(f"packed candle version {version}; this reader knows {PACK_VERSION}")
    return Candle(symbol, interval, open_ns, open_, high, low, close, volume, quote_volume,
                  trades, first_seq, last_seq, session)


# -- selection and statistics ------------------------------------------------------------------


def select(candles: Iterable[Candle], start_ns: int | None, end_ns: int | None,
           limit: int) -> list[Candle]:
    """Apply the history semantics to candles by open time (the reference for every store).

    Candles with start_ns <= open_ns <= end_ns, oldest first: with a start the first `limit`,
    without it the last `limit`. A missing bound is open.
    """
    if limit <= 0:
        return []
    chosen = sorted((c for c in candles
                     if (start_ns is None or c.open_ns >= start_ns)
                     and (end_ns is None or c.open_ns <= end_ns)), key=lambda c: c.open_ns)
    return chosen[:limit] if start_ns is not None else chosen[max(len(chosen) - limit, 0):]


def rolling_window_start(now_ns: int, span_ns: int = DAY_NS,
                         interval: Interval = ONE_MINUTE) -> int:
    """Return the open time of the first candle of the rolling window that ends at `now_ns`.

    The window is made of whole candles: the current one and those before it, back to
    span_ns in all (for 24 h of 1m candles: the current minute and the 1,439 before it).
    """
    return interval.open_ns(now_ns) - span_ns + interval.ns


@dataclass(frozen=True)
class Summary:
    """Statistics over consecutive candles of one symbol (e.g. the rolling 24 hours)."""

    open: float
    high: float
    low: float
    last: float
    volume: float
    quote_volume: float
    trades: int

    @property
    def change(self) -> float:
        """last - open."""
        return self.last - self.open

    @property
    def change_percent(self) -> float | None:
        """The change as a percentage of open (None when open is 0)."""
        return self.change / self.open * 100.0 if self.open else None


def summarize(candles: Sequence[Candle]) -> Summary | None:
    """Summarise candles given oldest first; None when there are none (no trades)."""
    if not candles:
        return None
    return Summary(
        open=candles[0].open,
        high=max(c.high for c in candles),
        low=min(c.low for c in candles),
        last=candles[-1].close,
        volume=math.fsum(c.volume for c in candles),
        quote_volume=math.fsum(c.quote_volume for c in candles),
        trades=sum(c.trades for c in candles),
    )


def trades_of(ticks: wire.Ticks) -> wire.Ticks:
    """Return the ticks that carry a trade."""
    traded: wire.Ticks = ticks[(ticks["flags"] & wire.FLAG_TRADE) != 0]
    return traded

