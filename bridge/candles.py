"""Candles in Redis: the key layout, retention, and the bridge's coalescing candle writer.

Layout, under the same prefix as history (``bridge.history``)::

    {prefix}candles:{SYMBOL}:{interval}   sorted set, one member per candle (1s, 1m, ... 1d)
                                          score  = the candle's open time, ms since the epoch
                                          member = the packed candle (marketdata.candles.pack:
                                                   96 bytes, OHLC, volumes, trades, seqs)

Why one sorted set per (symbol, interval), scored by open time:

- every read is a time range ("the last 500 1m candles up to T", "1s candles from T"): one
  ZRANGEBYSCORE or ZREVRANGEBYSCORE with LIMIT, O(log n + limit), in either direction;
- retention is by candle time and differs per interval: one ZREMRANGEBYSCORE below a cut;
- the value is the member itself, so a read is one command (an index plus a hash would need two
  round trips, or a script, and trimming would have to keep them in step);
- only the newest member changes (the open candle, until a later trade opens the next one). An
  upsert removes the member at that score and adds the new one; both run in one Lua script
  (EVAL, so a flushed Redis script cache never fails a write) for all the candles of a flush, so
  a reader never sees a candle missing or doubled, and the intervals of one trade move together.
  (A script over several keys needs a single Redis, not a cluster.)

Retention, by candle open time, per interval (CANDLE_RETENTION_S overrides any of them):
1s one day (about 86,400 candles, some 17 MB a symbol), 1m seven days, 5m and 15m 30 days,
1h and 4h a year, 1d five years. The 24-hour statistics read the 1m candles, so 1m keeps at least
a day.

The writer never blocks the feed: ``add`` only appends the batch to a list. About every
CANDLE_WRITE_INTERVAL_S (50 ms), a history flush (same cycle, same pipeline) puts the pending
batches through the aggregator and writes the latest state of each candle they changed: a
candle's trades reach Redis within about 50 ms, and the feed's many small batches cost one
aggregation and one script call per 50 ms, not one per flush (which at 100,000 ticks/s cost the
bridge half as much CPU again as history itself). While Redis is unreachable, candles
keep being built in memory and a long outage costs one pending upsert per candle, not per trade
(at most MAX_PENDING_CANDLES; beyond that the least recently changed are dropped and counted). On
start the bridge reloads the newest candle of each (symbol, interval), so an interval the bridge
was restarted in continues instead of starting over.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter, Gauge

from bridge.config import DEFAULT_CANDLE_RETENTION_S
from bridge.history import Cadence
from marketdata import candles, wire
from marketdata.candles import Candle, CandleAggregator
from marketdata.layout import Keys

log = logging.getLogger(__name__)

MAX_PENDING_CANDLES = 100_000
CANDLE_WRITE_INTERVAL_S = 0.05
CANDLES_PER_FLUSH = 5_000  # bounds one script call (about 0.5 MB, a few ms of Redis time)

UPSERT_SCRIPT = """
local a = 1
for k = 1, #KEYS do
  local n = tonumber(ARGV[a])
  local cut = ARGV[a + 1]
  a = a + 2
  for i = 1, n do
    redis.call('ZREMRANGEBYSCORE', KEYS[k], ARGV[a], ARGV[a])
    redis.call('ZADD', KEYS[k], ARGV[a], ARGV[a + 1])
    a = a + 2
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', '(' .. cut)
end
return #KEYS
"""
"""KEYS: the candle sets; ARGV, per key in order: n, the retention cut (scores below it go),
then n pairs of (open ms, packed candle), each replacing whatever that score held."""

CandleKey = tuple[str, str, int]
"""(symbol, interval name, open_ns): one candle's identity."""


class CandleMetrics:
    """The candle writer's Prometheus metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.written = Counter("bridge_candles_written_total",
                               "Candle upserts written to Redis", registry=registry)
        self.dropped = Counter("bridge_candles_dropped_total",
                               "Candle upserts dropped because Redis was unreachable too long",
                               registry=registry)
        self.pending = Gauge("bridge_candles_pending", "Candle upserts waiting to be written",
                             registry=registry)


class CandleWriter:
    """Builds candles from received ticks and queues their upserts for the history flush."""

    def __init__(self, keys: Keys, metrics: CandleMetrics,
                 retention_s: Mapping[str, int] | None = None, *,
                 aggregator: CandleAggregator | None = None,
                 max_pending: int = MAX_PENDING_CANDLES,
                 write_interval_s: float = CANDLE_WRITE_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.keys = keys
        self.metrics = metrics
        self.aggregator = aggregator if aggregator is not None else CandleAggregator()
        retention = {**DEFAULT_CANDLE_RETENTION_S, **(retention_s or {})}
        self.retention_ms = {name: seconds * 1000 for name, seconds in retention.items()}
        self.max_pending = max_pending
        self.cadence = Cadence(write_interval_s, clock)
        self._batches: list[wire.TickBatch] = []
        self._upserts: OrderedDict[CandleKey, Candle] = OrderedDict()

    @property
    def pending(self) -> int:
        """Batches not yet aggregated plus candle upserts not yet written."""
        return len(self._batches) + len(self._upserts)

    def due_in(self) -> float | None:
        """Return the seconds until pending work is due (0.0: now), or None when nothing is."""
        if not self.pending:
            return None
        return self.cadence.due_in()

    def add(self, batch: wire.TickBatch) -> None:
        """Queue a batch of fresh ticks for aggregation (never blocks)."""
        self._batches.append(batch)

    def aggregate(self) -> None:
        """Fold every queued batch into the candles and queue the latest state of each change."""
        batches, self._batches = self._batches, []
        for run in _runs(batches):
            for candle in self.aggregator.add(run):
                key = (candle.symbol, candle.interval.name, candle.open_ns)
                self._upserts[key] = candle
                self._upserts.move_to_end(key)
        self._drop_beyond_limit()

    def take(self, budget: int = CANDLES_PER_FLUSH, *, force: bool = True) -> list[Candle]:
        """Aggregate, then remove and return up to `budget` upserts, least recently changed first.

        Without `force`, only when the cadence says a write is due.
        """
        if not self.pending or not self.cadence.take(force=force):
            return []
        self.aggregate()
        taken: list[Candle] = []
        while self._upserts and len(taken) < budget:
            taken.append(self._upserts.popitem(last=False)[1])
        self.metrics.pending.set(len(self._upserts))
        return taken

    def requeue(self, taken: Sequence[Candle]) -> None:
        """Put back upserts that were not written, unless a newer state is already pending."""
        for candle in reversed(taken):
            key = (candle.symbol, candle.interval.name, candle.open_ns)
            if key not in self._upserts:
                self._upserts[key] = candle
                self._upserts.move_to_end(key, last=False)
        self._drop_beyond_limit()
        self.metrics.pending.set(len(self._upserts))

    async def prepare(self, client: aioredis.Redis, taken: list[Candle]) -> list[Candle]:
        """Nothing to check: an upsert applied twice leaves the same candle."""
        return taken

    def reset(self) -> None:
        """Nothing is assumed about Redis."""

    def queue_write(self, pipe: Any, taken: Sequence[Candle]) -> int:
        """Add the upserts of `taken` to `pipe` (a redis pipeline) as one script call; return 1."""
        by_key: dict[str, list[Candle]] = {}
        for candle in taken:
            by_key.setdefault(self.keys.candles(candle.symbol, candle.interval.name),
                              []).append(candle)
        args: list[bytes | int] = []
        for group in by_key.values():
            newest_ms = max(c.open_ns for c in group) // candles.NS_PER_MS
            args += [len(group), newest_ms - self.retention_ms[group[0].interval.name]]
            for candle in group:
                args += [candle.open_ns // candles.NS_PER_MS, candles.pack(candle)]
        pipe.eval(UPSERT_SCRIPT, len(by_key), *by_key, *args)
        return 1

    def written(self, taken: Sequence[Candle]) -> None:
        """Count upserts Redis accepted."""
        self.metrics.written.inc(len(taken))

    async def restore(self, client: aioredis.Redis, symbols: Sequence[str]) -> int:
        """Reload the newest stored candle of every (symbol, interval); return how many.

        Raise ValueError for a stored value that is not a candle, RedisError when Redis fails.
        """
        pairs = [(s, i) for s in symbols for i in self.aggregator.intervals]
        if not pairs:
            return 0
        pipe = client.pipeline(transaction=False)
        for symbol, interval in pairs:
            pipe.zrange(self.keys.candles(symbol, interval.name), -1, -1)
        results = await pipe.execute()
        restored = 0
        for (symbol, interval), members in zip(pairs, results, strict=True):
            if members:
                self.aggregator.restore(candles.unpack(symbol, interval, bytes(members[0])))
                restored += 1
        return restored

    def _drop_beyond_limit(self) -> None:
        dropped = 0
        while len(self._upserts) > self.max_pending:
            self._upserts.popitem(last=False)
            dropped += 1
        if dropped:
            self.metrics.dropped.inc(dropped)
            log.warning("candle buffer full; dropped the least recently changed candles",
                        extra={"dropped": dropped, "max_pending": self.max_pending})


def _runs(batches: Sequence[wire.TickBatch]) -> list[wire.TickBatch]:
    """Join each symbol's consecutive batches of one session into one (aggregated at once)."""
    parts: dict[str, list[wire.TickBatch]] = {}
    out: list[wire.TickBatch] = []

    def close(symbol: str) -> None:
        group = parts.pop(symbol)
        out.append(wire.TickBatch(symbol, group[0].session,
                                  wire.concat([b.ticks for b in group])))

    for batch in batches:
        group = parts.get(batch.symbol)
        if group is not None and group[-1].session != batch.session:
            close(batch.symbol)
        parts.setdefault(batch.symbol, []).append(batch)
    for symbol in list(parts):
        close(symbol)
    return out
