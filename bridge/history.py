"""Tick history in Redis: the key layout, and the bridge's batched, pipelined writer.

Layout, every key under a configurable prefix (REDIS_PREFIX, default ``mds:``)::

    {prefix}instruments        string  JSON list of instruments, in publication order
    {prefix}ticks:{SYMBOL}     stream  one entry per write batch of that symbol:
                                       id  = "<ms of the entry's first tick>-<n>"
                                       d   = a wire body (marketdata.wire): header + tick records

An entry holds the consecutive ticks of one symbol that arrived during one flush; entries never
overlap in time, so a time range is an XRANGE plus the one entry before it. Stream ids follow tick
time, so ``XRANGE`` by milliseconds is a query by tick time. Streams are trimmed by tick time to
HISTORY_RETENTION_S (``MINID ~``; ``MAXLEN ~`` on Redis older than 6.2).

The writer never blocks the feed: ``add`` only appends to memory; one task flushes everything
pending in one pipeline, as soon as the previous flush is done but at most every
HISTORY_FLUSH_INTERVAL_MS. Each flush first awaits ``before_flush`` (in the bridge: until no gRPC
stream is writing, at most 2 ms), so the flush's CPU lands in the gap after a batch was sent
rather than in front of the streams' writes. While Redis is down it keeps up to
HISTORY_MAX_PENDING_TICKS ticks, retrying with backoff, and drops (and counts) the oldest beyond
that. On shutdown it flushes what it has received.

Candles (``bridge.candles``) ride on the same cycle: given a CandleWriter, a flush about every
CANDLE_WRITE_INTERVAL_S (50 ms; ``Cadence``) folds the batches received since the last one into
the candles and writes the changed candles in the same pipeline as the ticks (a timer makes that
flush when no tick comes to trigger it). A failed candle write is retried with the same backoff
and never causes ticks already written to be written again.

The latest order books (``bridge.recent``) ride along with every flush that has a new one; the
recent trades about every 50 ms too, half way between the candles' flushes (``Cadence``), since
every command a flush carries costs the loop ~45 us whatever it holds. Candles, trades and books
are the writer's companions (``Companion``): each is taken, written in the pipeline after the
ticks, and put back when its part of the write fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from redis.exceptions import RedisError

from marketdata import wire
from marketdata.errors import WireError
from marketdata.layout import Keys, parse_id

if TYPE_CHECKING:
    from bridge.candles import CandleWriter
    from bridge.recent import BookWriter, TradeWriter

log = logging.getLogger(__name__)

StreamRows = list[tuple[bytes, dict[bytes, bytes]]]
"""What XRANGE/XREVRANGE return with a client that does not decode responses."""

ENTRY_MAX_TICKS = 4096  # keeps one stream entry (and one XRANGE row) small
DROP_LOG_INTERVAL_S = 5.0
FLUSH_MAX_TICKS = 200_000  # bounds one pipeline (about 16 MB) and the time it holds the loop


class HistoryMetrics:
    """The writer's Prometheus metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.written = Counter("bridge_history_ticks_written_total",
                               "Ticks written to Redis history", registry=registry)
        self.entries = Counter("bridge_history_entries_written_total",
                               "Stream entries written to Redis history", registry=registry)
        self.dropped = Counter("bridge_history_ticks_dropped_total",
                               "Ticks dropped because Redis was unreachable too long",
                               registry=registry)
        self.errors = Counter("bridge_history_write_errors_total", "Failed history flushes",
                              registry=registry)
        self.pending = Gauge("bridge_history_pending_ticks", "Ticks waiting to be written",
                             registry=registry)
        self.flush_seconds = Histogram(
            "bridge_history_flush_seconds", "Time to write one flush to Redis",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0),
            registry=registry)


class Companion(Protocol):
    """Data written along with the ticks, in the same pipeline: candles, trades, books.

    ``take`` returns what to write (empty: nothing); after the write, each taken value goes to
    ``written`` when its commands succeeded, else back through ``requeue`` (and ``reset`` forgets
    whatever the companion assumed about Redis, since a failed pipeline may be applied in part).
    """

    def due_in(self) -> float | None:
        """Seconds until pending data is due (0.0: now), or None when nothing is pending."""

    def take(self, *, force: bool) -> Any:
        """Remove and return what to write now (all of it when `force`)."""

    async def prepare(self, client: aioredis.Redis, taken: Any) -> Any:
        """Return `taken` less what Redis already holds (read before the write)."""

    def queue_write(self, pipe: Any, taken: Any) -> int:
        """Add the write of `taken` to `pipe`; return how many commands were added."""

    def requeue(self, taken: Any) -> None:
        """Put back what was not written."""

    def written(self, taken: Any) -> None:
        """Note what Redis accepted."""

    def reset(self) -> None:
        """Forget what was assumed about Redis (after a failed write)."""


class Cadence:
    """When a companion's pending data is next due: on a grid of slots `interval_s` apart,
    offset by `phase`, and never sooner than 0.8 `interval_s` after the previous write.

    Candles and trades are written on a cadence rather than with every flush: each write costs
    the flush a command or two (about 45 us of redis-py packing and parsing each) whatever it
    carries, so at 200 flushes a second writing them every time cost the bridge more CPU than
    the ticks themselves. The grid keeps companions with different phases in different flushes
    (trades half an interval after candles), so no flush carries both folds.
    """

    MIN_SPACING = 0.8  # of the interval: a write that came late does not pull the next one in

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic,
                 phase: float = 0.0) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self.phase = phase
        self._next = -math.inf

    def due_in(self) -> float:
        """Return the seconds until the next write is due (0.0: now)."""
        return max(0.0, self._next - self.clock())

    def take(self, *, force: bool) -> bool:
        """Tell whether pending data goes now (when due, or whenever `force`); note it if so."""
        if force or not self.due_in():
            self.mark()
            return True
        return False

    def mark(self) -> None:
        """Note a write taken now: the next is due at the first slot far enough ahead (with no
        interval, at once: every flush)."""
        if self.interval_s <= 0:
            return
        earliest = self.clock() + self.MIN_SPACING * self.interval_s
        slots = math.ceil((earliest - self.phase) / self.interval_s)
        self._next = self.phase + slots * self.interval_s


@dataclass
class _Pending:
    batches: deque[wire.TickBatch] = field(default_factory=deque)
    ticks: int = 0


class HistoryWriter:
    """Buffers tick batches and writes them to Redis streams in pipelined flushes."""

    def __init__(self, client: aioredis.Redis, keys: Keys, metrics: HistoryMetrics, *,
                 retention_ms: int, flush_interval_s: float, max_pending_ticks: int,
                 max_entries: int = 1_000_000, candles: CandleWriter | None = None,
                 trades: TradeWriter | None = None, books: BookWriter | None = None,
                 before_flush: Callable[[], Awaitable[object]] | None = None) -> None:
        self.client = client
        self.before_flush = before_flush
        self.keys = keys
        self.metrics = metrics
        self.retention_ms = retention_ms
        self.flush_interval_s = flush_interval_s
        self.max_pending_ticks = max_pending_ticks
        self.max_entries = max_entries
        self.candles = candles
        self.trades = trades
        self.books = books
        self.companions: list[Companion] = [c for c in (candles, trades, books) if c is not None]
        self._pending: dict[str, _Pending] = {}
        self._pending_ticks = 0
        self._last_ids: dict[str, tuple[int, int]] = {}
        self._wakeup = asyncio.Event()
        self._use_minid: bool | None = None
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self._last_drop_log = float("-inf")
        self._dropped_since_log = 0

    @property
    def pending_ticks(self) -> int:
        """Ticks received and not yet written."""
        return self._pending_ticks

    def add(self, batch: wire.TickBatch) -> None:
        """Queue a batch for writing (never blocks; drops the oldest beyond the limit)."""
        pending = self._pending.get(batch.symbol)  # runs per message: no throwaway _Pending
        if pending is None:
            pending = self._pending[batch.symbol] = _Pending()
        n = len(batch.ticks)
        pending.batches.append(batch)
        pending.ticks += n
        self._pending_ticks += n
        if self._pending_ticks > self.max_pending_ticks:
            self._drop_oldest()
        if self.candles is not None:
            self.candles.add(batch)
        if self.trades is not None:
            self.trades.add(batch)
        self._wakeup.set()

    def add_book(self, book: wire.BookSnapshot) -> None:
        """Queue the latest order book of a symbol for the next flush (never blocks)."""
        if self.books is not None:
            self.books.add(book)
            self._wakeup.set()

    async def run(self) -> None:
        """Flush until stop() is called, then flush what is left (bounded by the caller)."""
        backoff = 0.05
        loop = asyncio.get_running_loop()
        while True:
            await self._next_work()
            self._wakeup.clear()
            # Let the streams woken by the same ticks send first: history is not latency-bound.
            await asyncio.sleep(0)
            if self.before_flush is not None:
                await self.before_flush()
            started = loop.time()
            try:
                await self.flush(all_candles=self._stopping)
                backoff = 0.05
            except (RedisError, OSError) as exc:
                self.metrics.errors.inc()
                log.warning("history write failed; will retry",
                            extra={"error": str(exc), "pending_ticks": self._pending_ticks,
                                   "retry_in_s": backoff})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                self._wakeup.set()
                continue
            waiting = bool(self._pending_ticks) or self._companions_due()
            if waiting and (self._stopping or self._pending_ticks >= FLUSH_MAX_TICKS):
                # What is left after a bounded flush (a backlog), or at stop: at once, letting
                # the feed run in between.
                self._wakeup.set()
                await asyncio.sleep(0)
                continue
            if self._stopping:
                return
            if waiting:
                self._wakeup.set()
            # At most one flush per interval while ticks keep coming: each flush costs a
            # round trip and a pass over the companions whatever it carries, so flushing
            # again as soon as the last one returned cost the bridge's loop most of its time.
            rest = self.flush_interval_s - (loop.time() - started)
            if rest > 0:
                with contextlib.suppress(TimeoutError):  # stop() ends the pause
                    await asyncio.wait_for(self._stop_requested.wait(), rest)

    def stop(self) -> None:
        """Ask run() to return once everything received so far is written."""
        self._stopping = True
        self._stop_requested.set()
        self._wakeup.set()

    def _due_in(self) -> float | None:
        """Return the seconds until the first companion's data is due, None when none waits."""
        waits = [d for d in (c.due_in() for c in self.companions) if d is not None]
        return min(waits) if waits else None

    def _companions_due(self) -> bool:
        """Tell whether companion data waits to be written now (at once when stopping)."""
        due_in = self._due_in()
        return due_in is not None and (due_in == 0.0 or self._stopping)

    async def _next_work(self) -> None:
        """Wait for new ticks, or for the moment pending companion data is due."""
        due_in = self._due_in()
        if due_in is None or self._wakeup.is_set():
            await self._wakeup.wait()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), due_in)

    async def flush(self, *, all_candles: bool = True) -> int:
        """Write up to FLUSH_MAX_TICKS pending ticks (and the companions' data) in one pipeline.

        Return how many ticks were written. Candles and trades go along when `all_candles` or
        when they are due (run() passes False until it stops); books with every flush. The bound
        keeps one flush from holding the event loop (and Redis) for long after a backlog; run()
        flushes again at once while anything is pending. On failure nothing is lost: the batches
        go back to the front of the queue, and each companion's data back to its own.

        The loop runs other callbacks between a flush's parts (the takes, where candles are
        folded; the ticks' commands; each companion's commands), so a tick that arrives
        mid-flush waits for one part, not the whole flush.
        """
        taken = self._take(FLUSH_MAX_TICKS) if self._pending_ticks else {}
        extras: list[tuple[Companion, Any]] = []
        try:
            # Every companion is taken before the first yield: what arrives in between (ticks,
            # and so trades and books) goes to the next flush together, never the trades alone.
            for companion in self.companions:
                data = companion.take(force=all_candles)
                if len(data):
                    extras.append((companion, data))
            if not taken and not extras:
                return 0
            await asyncio.sleep(0)  # after the candles' fold: ticks that came meanwhile go first
            written, errors = await self._write(taken, extras)
        except BaseException:
            # Part of the pipeline may have been applied (a timeout says nothing about what
            # Redis did): re-read each stream's end before the retry and skip what is there.
            self._last_ids.clear()
            self._requeue(taken)
            for companion, data in extras:
                companion.requeue(data)
                companion.reset()
            raise
        self.metrics.pending.set(self._pending_ticks)
        failed: Exception | None = None
        for (companion, data), error in zip(extras, errors, strict=True):
            if error is None:
                companion.written(data)
            else:
                # The ticks are in Redis: only this data goes back; run() retries with backoff.
                companion.requeue(data)
                companion.reset()
                failed = failed or error
        if failed is not None:
            raise failed
        return written

    def _take(self, budget: int) -> dict[str, _Pending]:
        """Remove the oldest pending batches, about `budget` ticks, fairly across symbols."""
        taken: dict[str, _Pending] = {}
        share = max(budget // max(len(self._pending), 1), 1)
        for symbol, pending in self._pending.items():
            out = _Pending()
            while pending.batches and out.ticks < share:
                batch = pending.batches.popleft()
                out.batches.append(batch)
                out.ticks += len(batch)
            if out.ticks:
                pending.ticks -= out.ticks
                self._pending_ticks -= out.ticks
                taken[symbol] = out
        return taken

    async def _write(self, taken: dict[str, _Pending], extras: list[tuple[Companion, Any]]
                     ) -> tuple[int, list[Exception | None]]:
        """Write ticks and the companions' data in one pipeline.

        Return (ticks written, each companion's first error or None). A tick write error raises,
        leaving the writer's state (stream ids) as it was; a companion's error is returned, since
        the ticks were written all the same.
        """
        if self._use_minid is None:
            self._use_minid = await self._supports_minid()
        for symbol in list(taken):
            if symbol not in self._last_ids:
                self._last_ids[symbol], stored = await self._stream_end(symbol)
                if stored is not None and not _drop_stored(taken[symbol], *stored):
                    del taken[symbol]
        started = asyncio.get_running_loop().time()
        new_ids = dict(self._last_ids)
        pipe = self.client.pipeline(transaction=False)
        entries = written = 0
        for symbol, pending in taken.items():
            key = self.keys.ticks(symbol)
            for session, ticks in _entries(pending.batches):
                first_ms = int(ticks["ts_ns"][0]) // 1_000_000
                last_ms, last_n = new_ids[symbol]
                entry_id = (first_ms, 0) if first_ms > last_ms else (last_ms, last_n + 1)
                new_ids[symbol] = entry_id
                trim = (
                    {"minid": max(first_ms - self.retention_ms, 0), "approximate": True}
                    if self._use_minid else {"maxlen": self.max_entries, "approximate": True}
                )
                pipe.xadd(key, {"d": wire.encode_body(ticks, session)},
                          id=f"{entry_id[0]}-{entry_id[1]}", **trim)  # type: ignore[arg-type]
                entries += 1
                written += len(ticks)
        spans: list[tuple[int, int]] = []
        commands = entries
        await asyncio.sleep(0)  # see flush()
        for i, (companion, data) in enumerate(extras):
            fresh = await companion.prepare(self.client, data)
            extras[i] = (companion, fresh)  # what flush() notes as written or puts back
            added = companion.queue_write(pipe, fresh) if len(fresh) else 0
            spans.append((commands, commands + added))
            commands += added
            await asyncio.sleep(0)
        results = await pipe.execute(raise_on_error=False)
        errors = [r for r in results[:entries] if isinstance(r, Exception)]
        if errors:
            raise errors[0]
        self._last_ids = new_ids
        self.metrics.flush_seconds.observe(asyncio.get_running_loop().time() - started)
        self.metrics.entries.inc(entries)
        self.metrics.written.inc(written)
        companion_errors = [next((r for r in results[a:b] if isinstance(r, Exception)), None)
                            for a, b in spans]
        return written, companion_errors

    async def _stream_end(self, symbol: str) -> tuple[tuple[int, int], tuple[int, int] | None]:
        """Return the stream's last id and the (session, seq) of its last stored tick."""
        rows = cast(StreamRows, await self.client.xrevrange(self.keys.ticks(symbol), count=1))
        if not rows:
            return (0, 0), None
        try:
            session, ticks = wire.decode_body(rows[0][1][b"d"])
        except (KeyError, WireError):
            return parse_id(rows[0][0]), None
        return parse_id(rows[0][0]), (session, int(ticks["seq"][-1]))

    async def _supports_minid(self) -> bool:
        info = await self.client.info("server")
        version = tuple(int(p) for p in str(info.get("redis_version", "0")).split(".")[:2])
        if version < (6, 2):
            log.warning("Redis is older than 6.2: history is capped by entry count, not time",
                        extra={"redis_version": info.get("redis_version")})
        return version >= (6, 2)

    def _requeue(self, taken: dict[str, _Pending]) -> None:
        for symbol, old in taken.items():
            newer = self._pending.get(symbol)
            if newer is not None:
                old.batches.extend(newer.batches)
                old.ticks += newer.ticks
            self._pending[symbol] = old
        self._pending_ticks = sum(p.ticks for p in self._pending.values())
        if self._pending_ticks > self.max_pending_ticks:
            self._drop_oldest()
        self.metrics.pending.set(self._pending_ticks)

    def _drop_oldest(self) -> None:
        dropped = 0
        while self._pending_ticks > self.max_pending_ticks:
            pending = max(self._pending.values(), key=lambda p: p.ticks)
            batch = pending.batches.popleft()
            pending.ticks -= len(batch)
            self._pending_ticks -= len(batch)
            dropped += len(batch)
        self.metrics.dropped.inc(dropped)
        self._dropped_since_log += dropped
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_INTERVAL_S:  # one line, not one per batch
            log.warning("history buffer full; dropped oldest ticks",
                        extra={"max_pending_ticks": self.max_pending_ticks,
                               "dropped": self._dropped_since_log})
            self._last_drop_log, self._dropped_since_log = now, 0


def _entries(batches: deque[wire.TickBatch]) -> list[tuple[int, wire.Ticks]]:
    """Group consecutive batches of one session into entries of at most ENTRY_MAX_TICKS."""
    out: list[tuple[int, wire.Ticks]] = []
    group: list[wire.Ticks] = []
    size = 0
    session = batches[0].session if batches else 0
    for batch in batches:
        if batch.session != session or (size + len(batch) > ENTRY_MAX_TICKS and group):
            out.append((session, wire.concat(group)))
            group, size, session = [], 0, batch.session
        group.append(batch.ticks)
        size += len(batch)
    if group:
        out.append((session, wire.concat(group)))
    return out


def _drop_stored(pending: _Pending, session: int, seq: int) -> int:
    """Remove from `pending` the ticks of `session` up to `seq` (already in Redis); return the rest.

    After a failed or timed-out write, some of its entries may have been stored; without this a
    retry would store them a second time under new ids.
    """
    kept: deque[wire.TickBatch] = deque()
    for batch in pending.batches:
        fresh = batch
        if batch.session == session and len(batch) and int(batch.ticks["seq"][0]) <= seq:
            fresh = wire.TickBatch(batch.symbol, batch.session,
                                   batch.ticks[batch.ticks["seq"] > seq])
        if len(fresh):
            kept.append(fresh)
    pending.batches = kept
    pending.ticks = sum(len(b) for b in kept)
    return pending.ticks
