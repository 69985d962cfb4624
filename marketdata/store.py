"""The read side of price history: latest ticks and time ranges, from Redis or from memory.

The Redis layout is the bridge's (``bridge.history``): ``{prefix}instruments`` holds the JSON list
of instruments and ``{prefix}ticks:{SYMBOL}`` is a stream whose entries each hold consecutive
ticks in one wire body, with id ``<ms of the entry's first tick>-<n>``. Entries never overlap in
time, so the ticks at or after a time T are in the entries with ids from T's millisecond on, plus
possibly the one entry before it. Every range is cut precisely by ``ts_ns`` after decoding.

Candles (``bridge.candles``) are sorted sets ``{prefix}candles:{SYMBOL}:{interval}`` scored by
open time in ms, one packed candle per member; a range of open times is one ZRANGEBYSCORE (or
ZREVRANGEBYSCORE for the latest ones) with LIMIT.

The latest order book (``{prefix}book:{SYMBOL}``, one GET) and the recent trades
(``{prefix}trades:{SYMBOL}``, newest first, one LRANGE) are laid out in ``bridge.recent``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import orjson
import redis
import redis.exceptions

from marketdata import candles as mdcandles
from marketdata import trades as mdtrades
from marketdata import wire
from marketdata.candles import Candle, CandleAggregator, Interval
from marketdata.errors import MarketDataError, WireError
from marketdata.layout import Keys, parse_id, unpack_book
from marketdata.queries import MAX_TRADES_LIMIT
from marketdata.symbols import Instrument, Instruments

MAX_SEQ = 2**64 - 1  # the largest sequence part of a stream id
MAX_ENTRIES_PER_CALL = 1024
FIRST_ENTRIES_PER_CALL = 64


class StoreError(MarketDataError):
    """Reading history failed in a way a retry will not fix (e.g. a corrupt entry)."""


class StoreUnavailable(StoreError):
    """The store cannot be reached right now (Redis down, or a timeout)."""


@dataclass(frozen=True, eq=False)
class LatestTick:
    """The most recent tick of a symbol and the feed session it came from."""

    symbol: str
    session: int
    record: wire.Ticks
    """Exactly one TICK_DTYPE record."""

    @property
    def ts_ns(self) -> int:
        """Generation time of the tick, ns since the epoch."""
        return int(self.record["ts_ns"][0])

    @property
    def seq(self) -> int:
        """Sequence number of the tick within its session."""
        return int(self.record["seq"][0])


class Store(Protocol):
    """Read access to instruments and tick history (Redis in production, memory in tests)."""

    def ping(self) -> None:
        """Check the store answers; raise StoreUnavailable when it does not."""

    def instruments(self) -> Instruments | None:
        """Return the published instruments, or None when the bridge has not written them."""

    def latest(self, symbols: Sequence[str]) -> dict[str, LatestTick | None]:
        """Return each canonical symbol's latest tick (None when it has none)."""

    def history(self, symbol: str, start_ns: int | None, end_ns: int | None,
                limit: int) -> wire.Ticks:
        """Return ticks with start_ns <= ts_ns <= end_ns in ascending order, at most `limit`.

        With a start, the first `limit` ticks from it; without, the last `limit` up to end.
        A missing bound is open.
        """

    def candles(self, symbol: str, interval: Interval, start_ns: int | None,
                end_ns: int | None, limit: int) -> list[Candle]:
        """Return candles with start_ns <= open_ns <= end_ns, oldest first, at most `limit`.

        The same semantics as history, by open time (marketdata.candles.select).
        """

    def book(self, symbol: str) -> wire.BookSnapshot | None:
        """Return the symbol's latest order book, or None before the first."""

    def trades(self, symbol: str, limit: int) -> mdtrades.Trades:
        """Return the symbol's most recent trades, newest first, at most `limit`."""


def select(ticks: wire.Ticks, start_ns: int | None, end_ns: int | None,
           limit: int) -> wire.Ticks:
    """Apply the history semantics to ascending `ticks` held in memory (the reference)."""
    if limit <= 0:
        return wire.empty_ticks()
    mask = np.ones(len(ticks), dtype=bool)
    if start_ns is not None:
        mask &= ticks["ts_ns"] >= start_ns
    if end_ns is not None:
        mask &= ticks["ts_ns"] <= end_ns
    chosen = ticks[mask]
    return chosen[:limit] if start_ns is not None else chosen[-limit:]


class MemoryStore:
    """A Store kept in this process, filled by tests through add() and set_instruments()."""

    def __init__(self, instruments: Sequence[Instrument] | None = None) -> None:
        self._instruments = Instruments(instruments) if instruments is not None else None
        self._ticks: dict[str, list[wire.Ticks]] = {}
        self._sessions: dict[str, int] = {}
        self._aggregator = CandleAggregator()
        self._candles: dict[tuple[str, str], dict[int, Candle]] = {}
        self._books: dict[str, wire.BookSnapshot] = {}
        self._trades: dict[str, mdtrades.Trades] = {}

    def set_instruments(self, instruments: Sequence[Instrument]) -> None:
        """Publish `instruments`, in order, as the bridge would."""
        self._instruments = Instruments(instruments)

    def add(self, batch: wire.TickBatch) -> None:
        """Append a batch of consecutive ticks, as one history entry, and fold it into candles.

        Candles are built as the bridge builds them (marketdata.candles.CandleAggregator), and
        the newest MAX_TRADES_LIMIT trades kept as the bridge keeps them.
        """
        if len(batch):
            self._ticks.setdefault(batch.symbol, []).append(np.array(batch.ticks))
            self._sessions[batch.symbol] = batch.session
            found = mdtrades.from_ticks(batch.ticks, batch.session)
            kept = self._trades.get(batch.symbol, mdtrades.empty())
            self._trades[batch.symbol] = mdtrades.concat([kept, found])[-MAX_TRADES_LIMIT:]
            for candle in self._aggregator.add(batch):
                self._candles.setdefault((candle.symbol, candle.interval.name),
                                         {})[candle.open_ns] = candle

    def ping(self) -> None:
        """Memory always answers."""

    def instruments(self) -> Instruments | None:
        """Return what set_instruments stored, or None."""
        return self._instruments

    def latest(self, symbols: Sequence[str]) -> dict[str, LatestTick | None]:
        """Return the last tick added for each symbol."""
        out: dict[str, LatestTick | None] = {}
        for symbol in symbols:
            batches = self._ticks.get(symbol)
            out[symbol] = (LatestTick(symbol, self._sessions[symbol], batches[-1][-1:])
                           if batches else None)
        return out

    def history(self, symbol: str, start_ns: int | None, end_ns: int | None,
                limit: int) -> wire.Ticks:
        """Filter everything added for `symbol` (see Store.history)."""
        return select(wire.concat(self._ticks.get(symbol, [])), start_ns, end_ns, limit)

    def candles(self, symbol: str, interval: Interval, start_ns: int | None,
                end_ns: int | None, limit: int) -> list[Candle]:
        """Filter the candles built from everything added (see Store.candles)."""
        stored = self._candles.get((symbol, interval.name), {})
        return mdcandles.select(stored.values(), start_ns, end_ns, limit)

    def add_book(self, book: wire.BookSnapshot) -> None:
        """Store `book` as its symbol's latest, as the bridge does."""
        self._books[book.symbol] = book

    def book(self, symbol: str) -> wire.BookSnapshot | None:
        """Return the last book added for `symbol`."""
        return self._books.get(symbol)

    def trades(self, symbol: str, limit: int) -> mdtrades.Trades:
        """Return the newest `limit` trades added, newest first."""
        kept = self._trades.get(symbol, mdtrades.empty())
        newest: mdtrades.Trades = kept[::-1][:max(limit, 0)]
        return newest


class RedisStore:
    """A Store reading the bridge's Redis layout with a synchronous client.

    The client must return bytes (no ``decode_responses``): entries hold binary wire bodies.
    """

    def __init__(self, client: redis.Redis, keys: Keys, instruments_ttl_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.keys = keys
        self.instruments_ttl_s = instruments_ttl_s
        self.clock = clock
        self._instruments: tuple[float, Instruments] | None = None

    def ping(self) -> None:
        """Send PING; raise StoreUnavailable when Redis does not answer."""
        with _translated():
            self.client.ping()

    def instruments(self) -> Instruments | None:
        """Read and parse ``{prefix}instruments``, at most once per `instruments_ttl_s`.

        The list changes only when the feed restarts, and re-reading it cost a round trip and a
        parse on every request (a fifth of a worker's time under load).
        """
        now = self.clock()
        if self._instruments is not None and now - self._instruments[0] < self.instruments_ttl_s:
            return self._instruments[1]
        with _translated():
            raw = self.client.get(self.keys.instruments)
        if raw is None:
            return None
        try:
            data = orjson.loads(raw)
            instruments = Instruments(Instrument.from_dict(item) for item in data)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"{self.keys.instruments} is not a JSON list of instruments: "
                             f"{exc}") from exc
        self._instruments = (now, instruments)
        return instruments

    def latest(self, symbols: Sequence[str]) -> dict[str, LatestTick | None]:
        """Read every symbol's last stream entry in one pipelined round trip."""
        if not symbols:
            return {}
        with _translated():
            pipe = self.client.pipeline(transaction=False)
            for symbol in symbols:
                pipe.xrevrange(self.keys.ticks(symbol), "+", "-", count=1)
            results = pipe.execute()
        out: dict[str, LatestTick | None] = {}
        for symbol, rows in zip(symbols, results, strict=True):
            out[symbol] = None
            if rows:
                session, ticks = self._decode(symbol, rows[0])
                if len(ticks):
                    out[symbol] = LatestTick(symbol, session, ticks[-1:])
        return out

    def history(self, symbol: str, start_ns: int | None, end_ns: int | None,
                limit: int) -> wire.Ticks:
        """Read the entries that can hold the range, in chunks, until `limit` ticks are found."""
        if limit <= 0 or (end_ns is not None and end_ns < 0) or (
                start_ns is not None and end_ns is not None and start_ns > end_ns):
            return wire.empty_ticks()
        key = self.keys.ticks(symbol)
        with _translated():
            if start_ns is None:
                return self._backward(key, symbol, end_ns, limit)
            return self._forward(key, symbol, max(start_ns, 0), end_ns, limit)

    def _forward(self, key: str, symbol: str, start_ns: int, end_ns: int | None,
                 limit: int) -> wire.Ticks:
        start_ms = start_ns // 1_000_000
        found: list[wire.Ticks] = []
        total = 0
        if start_ms > 0:
            # The last entry that begins before start may still hold ticks at or after it.
            before = self.client.xrevrange(key, f"{start_ms - 1}-{MAX_SEQ}", "-", count=1)
            for row in before or []:
                ticks = _cut(self._decode(symbol, row)[1], start_ns, end_ns)
                found.append(ticks)
                total += len(ticks)
        low = f"{start_ms}-0"
        high = "+" if end_ns is None else f"{end_ns // 1_000_000}-{MAX_SEQ}"
        entries = 0
        count = FIRST_ENTRIES_PER_CALL
        while total < limit:
            rows = self.client.xrange(key, low, high, count=count) or []
            past_end = False
            for row in rows:
                raw = self._decode(symbol, row)[1]
                ticks = _cut(raw, start_ns, end_ns)
                found.append(ticks)
                total += len(ticks)
                entries += 1
                past_end = end_ns is not None and len(raw) > 0 and raw["ts_ns"][-1] > end_ns
            if len(rows) < count or past_end:
                break
            ms, n = _entry_id(rows[-1])
            low = f"{ms}-{n + 1}" if n < MAX_SEQ else f"{ms + 1}-0"
            count = _next_count(limit - total, total, entries)
        return wire.concat(found)[:limit]

    def _backward(self, key: str, symbol: str, end_ns: int | None, limit: int) -> wire.Ticks:
        high = "+" if end_ns is None else f"{end_ns // 1_000_000}-{MAX_SEQ}"
        found: list[wire.Ticks] = []  # newest first
        total = entries = 0
        count = FIRST_ENTRIES_PER_CALL
        while total < limit:
            rows = self.client.xrevrange(key, high, "-", count=count) or []
            for row in rows:
                ticks = _cut(self._decode(symbol, row)[1], None, end_ns)
                found.append(ticks)
                total += len(ticks)
                entries += 1
            if len(rows) < count:
                break
            previous = _previous_id(*_entry_id(rows[-1]))
            if previous is None:
                break
            high = previous
            count = _next_count(limit - total, total, entries)
        found.reverse()
        ticks = wire.concat(found)
        return ticks[max(len(ticks) - limit, 0):]

    def candles(self, symbol: str, interval: Interval, start_ns: int | None,
                end_ns: int | None, limit: int) -> list[Candle]:
        """Read a range of open times from the candle set with one command."""
        if limit <= 0 or (end_ns is not None and end_ns < 0) or (
                start_ns is not None and end_ns is not None and start_ns > end_ns):
            return []
        key = self.keys.candles(symbol, interval.name)
        high: int | str = "+inf" if end_ns is None else end_ns // mdcandles.NS_PER_MS
        with _translated():
            if start_ns is None:
                members = self.client.zrevrangebyscore(key, high, "-inf", start=0, num=limit)
            else:
                low = -(-max(start_ns, 0) // mdcandles.NS_PER_MS)  # open times are whole ms
                members = self.client.zrangebyscore(key, low, high, start=0, num=limit)
        out: list[Candle] = []
        for member in members or []:
            try:
                if not isinstance(member, bytes):
                    raise ValueError(f"unexpected reply {type(member).__name__}")
                out.append(mdcandles.unpack(symbol, interval, member))
            except ValueError as exc:
                raise StoreError(f"{key} holds a member that is not a candle: {exc}") from exc
        if start_ns is None:
            out.reverse()
        return out

    def book(self, symbol: str) -> wire.BookSnapshot | None:
        """Read and unpack the book string (one GET)."""
        key = self.keys.book(symbol)
        with _translated():
            data = self.client.get(key)
        if data is None:
            return None
        try:
            if not isinstance(data, bytes):
                raise ValueError(f"unexpected reply {type(data).__name__}")
            return unpack_book(symbol, data)
        except ValueError as exc:
            raise StoreError(f"{key} is not a stored order book: {exc}") from exc

    def trades(self, symbol: str, limit: int) -> mdtrades.Trades:
        """Read the newest `limit` members of the trade list (one LRANGE), newest first."""
        if limit <= 0:
            return mdtrades.empty()
        key = self.keys.trades(symbol)
        with _translated():
            members = self.client.lrange(key, 0, limit - 1)
        try:
            records = [m for m in members or [] if isinstance(m, bytes)]
            if len(records) != len(members or []):
                raise ValueError("unexpected reply type")
            return mdtrades.unpack(records)
        except ValueError as exc:
            raise StoreError(f"{key} holds a member that is not a trade: {exc}") from exc

    def _decode(self, symbol: str, row: Any) -> tuple[int, wire.Ticks]:
        entry_id, fields = row
        body = fields.get(b"d", fields.get("d")) if isinstance(fields, dict) else None
        if body is None:
            raise StoreError(f"{self.keys.ticks(symbol)} entry {entry_id!r} has no 'd' field")
        try:
            return wire.decode_body(body)
        except WireError as exc:
            raise StoreError(f"{self.keys.ticks(symbol)} entry {entry_id!r}: {exc}") from exc


def _entry_id(row: Any) -> tuple[int, int]:
    """Return the (ms, n) id of a stream row."""
    entry_id = row[0]
    if not isinstance(entry_id, bytes | str):
        raise StoreError(f"stream entry without an id: {row!r:.80}")
    return parse_id(entry_id)


def _cut(ticks: wire.Ticks, start_ns: int | None, end_ns: int | None) -> wire.Ticks:
    """Keep the ticks of one entry inside [start_ns, end_ns]."""
    if start_ns is not None and len(ticks) and ticks["ts_ns"][0] < start_ns:
        ticks = ticks[ticks["ts_ns"] >= start_ns]
    if end_ns is not None and len(ticks) and ticks["ts_ns"][-1] > end_ns:
        ticks = ticks[ticks["ts_ns"] <= end_ns]
    return ticks


def _next_count(needed: int, ticks_seen: int, entries_seen: int) -> int:
    """Estimate how many more entries hold `needed` ticks, from the average seen so far."""
    per_entry = ticks_seen / entries_seen if entries_seen and ticks_seen else 1.0
    return max(FIRST_ENTRIES_PER_CALL // 4, min(MAX_ENTRIES_PER_CALL,
                                                int(needed / per_entry) + 1))


def _previous_id(ms: int, n: int) -> str | None:
    """Return the stream id just before ms-n (None before the first possible id)."""
    if n > 0:
        return f"{ms}-{n - 1}"
    return f"{ms - 1}-{MAX_SEQ}" if ms > 0 else None


@contextmanager
def _translated() -> Iterator[None]:
    """Translate redis-py errors into store errors, in this one place.

    Connection failures and timeouts become StoreUnavailable; any other Redis error StoreError.
    """
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise StoreUnavailable(f"Redis unreachable: {exc}") from exc
    except redis.exceptions.RedisError as exc:
        raise StoreError(f"Redis error: {exc}") from exc
