"""Candles written by the bridge's history flush, against the real Redis: layout, upserts,
retention, restart, outages."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import numpy as np
import pytest
import redis
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from bridge.candles import CandleMetrics, CandleWriter
from bridge.history import HistoryMetrics, HistoryWriter
from marketdata import wire
from marketdata.candles import BY_NAME, INTERVALS, Candle, CandleAggregator, unpack
from marketdata.layout import Keys
from tests.test_candles import T0, S, ticks_at
from tests.test_history_writer import stored

SEC, MIN = BY_NAME["1s"], BY_NAME["1m"]


def make_writer(url: str, prefix: str, retention_s: dict[str, int] | None = None,
                **kwargs: object) -> tuple[HistoryWriter, aioredis.Redis]:
    """Return a history writer that also writes candles, and its client."""
    client = aioredis.Redis.from_url(url)
    candles = CandleWriter(Keys(prefix), CandleMetrics(CollectorRegistry()), retention_s)
    options: dict[str, object] = {"retention_ms": 10**13, "flush_interval_s": 0.0,
                                  "max_pending_ticks": 10**7}
    options.update(kwargs)
    return HistoryWriter(client, Keys(prefix), HistoryMetrics(CollectorRegistry()),
                         candles=candles, **options), client  # type: ignore[arg-type]


def stored_candles(client: redis.Redis, prefix: str, symbol: str = "A",
                   interval: str = "1s") -> list[tuple[int, Candle]]:
    """Return (score, candle) of every member of a candle set, by score."""
    key = Keys(prefix).candles(symbol, interval)
    return [(int(score), unpack(symbol, BY_NAME[interval], member))
            for member, score in client.zrange(key, 0, -1, withscores=True)]


def expected(batches: Sequence[wire.TickBatch], interval: str = "1s") -> list[Candle]:
    """Aggregate `batches` in memory in one go: what Redis must end up holding."""
    latest: dict[int, Candle] = {}
    for candle in CandleAggregator([BY_NAME[interval]]).add(
            wire.TickBatch(batches[0].symbol, batches[0].session,
                           wire.concat([b.ticks for b in batches]))):
        latest[candle.open_ns] = candle
    return [latest[k] for k in sorted(latest)]


def test_one_sorted_set_per_symbol_and_interval_scored_by_open_ms(
        redis_url: str, redis_prefix: str, redis_client: redis.Redis) -> None:
    ticks = ticks_at([T0 + i * 300_000_000 for i in range(10)])
    batches = [wire.TickBatch("A", 1, ticks[i:i + 2]) for i in range(0, 10, 2)]

    async def scenario() -> None:
        w, client = make_writer(redis_url, redis_prefix)
        for batch in batches:  # a flush after every batch: the open candle is upserted in place
            w.add(batch)
            await w.flush()
        await client.aclose()

    asyncio.run(scenario())
    rows = stored_candles(redis_client, redis_prefix)
    assert [score for score, _ in rows] == [(T0 + i * S) // 1_000_000 for i in range(3)]
    assert [c for _, c in rows] == expected(batches)
    for interval in INTERVALS:
        assert redis_client.type(Keys(redis_prefix).candles("A", interval.name)) == b"zset"
    assert [c for _, c in stored_candles(redis_client, redis_prefix, interval="1d")] == expected(
        batches, "1d")


def test_a_flush_writes_only_the_latest_state_of_each_candle(
        redis_url: str, redis_prefix: str, redis_client: redis.Redis) -> None:
    ticks = ticks_at([T0 + i * 10_000_000 for i in range(300)])  # 3 s of trades

    async def scenario() -> CandleWriter:
        w, client = make_writer(redis_url, redis_prefix)
        for i in range(300):
            w.add(wire.TickBatch("A", 1, ticks[i:i + 1]))
        await w.flush()
        await client.aclose()
        assert w.candles is not None
        return w.candles

    candles = asyncio.run(scenario())
    # 3 one-second candles and one of every longer interval: 9 upserts for 300 trades.
    assert candles.metrics.written._value.get() == 3 + 6
    assert [c for _, c in stored_candles(redis_client, redis_prefix)] == expected(
        [wire.TickBatch("A", 1, ticks)])


def test_candles_are_trimmed_by_open_time_per_interval(
        redis_url: str, redis_prefix: str, redis_client: redis.Redis) -> None:
    async def scenario() -> None:
        w, client = make_writer(redis_url, redis_prefix, {"1s": 3})
        for i in range(10):
            w.add(wire.TickBatch("A", 1, ticks_at([T0 + i * S], first_seq=i + 1)))
            await w.flush()
        await client.aclose()

    asyncio.run(scenario())
    assert [score for score, _ in stored_candles(redis_client, redis_prefix)] == [
        (T0 + i * S) // 1_000_000 for i in (6, 7, 8, 9)]
    assert len(stored_candles(redis_client, redis_prefix, interval="1m")) == 1


def test_a_restarted_bridge_continues_the_intervals_in_progress(
        redis_url: str, redis_prefix: str, redis_client: redis.Redis) -> None:
    ticks = ticks_at([T0 + i * 150_000_000 for i in range(20)])

    async def scenario() -> int:
        first, client = make_writer(redis_url, redis_prefix)
        first.add(wire.TickBatch("A", 1, ticks[:9]))
        first.add(wire.TickBatch("B", 1, ticks[:1]))
        await first.flush()
        await client.aclose()
        second, client = make_writer(redis_url, redis_prefix)
        assert second.candles is not None
        restored = await second.candles.restore(client, ["A", "B", "C"])
        # The feed replays the latest tick, which the first bridge had counted.
        second.add(wire.TickBatch("A", 1, ticks[8:]))
        await second.flush()
        await client.aclose()
        return restored

    assert asyncio.run(scenario()) == 2 * len(INTERVALS)
    assert [c for _, c in stored_candles(redis_client, redis_prefix)] == expected(
        [wire.TickBatch("A", 1, ticks)])
    assert [c for _, c in stored_candles(redis_client, redis_prefix, interval="1m")] == expected(
        [wire.TickBatch("A", 1, ticks)], "1m")


def test_candles_keep_building_while_redis_is_unreachable(
        redis_url: str, redis_prefix: str, redis_client: redis.Redis) -> None:
    ticks = ticks_at([T0 + i * 400_000_000 for i in range(10)])

    async def scenario() -> None:
        w, client = make_writer("redis://127.0.0.1:1/0", redis_prefix)
        for i in range(0, 10, 2):
            w.add(wire.TickBatch("A", 1, ticks[i:i + 2]))
            with contextlib.suppress(redis.RedisError, OSError):
                await w.flush()
        assert w.candles is not None
        assert w.candles.pending == 4 + 6  # one upsert per candle, however many flushes failed
        await client.aclose()
        w.client = aioredis.Redis.from_url(redis_url)
        await w.flush()
        assert w.candles.pending == 0
        await w.client.aclose()

    asyncio.run(scenario())
    assert [c for _, c in stored_candles(redis_client, redis_prefix)] == expected(
        [wire.TickBatch("A", 1, ticks)])


def test_a_failed_candle_write_is_retried_without_writing_ticks_twice(
        redis_url: str, redis_prefix: str, redis_client: redis.Redis) -> None:
    key = Keys(redis_prefix).candles("A", "1m")
    redis_client.set(key, b"not a sorted set")
    ticks = ticks_at([T0 + i * 100_000_000 for i in range(6)])

    async def scenario() -> None:
        w, client = make_writer(redis_url, redis_prefix)
        w.add(wire.TickBatch("A", 1, ticks[:3]))
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            await w.flush()
        assert w.pending_ticks == 0
        redis_client.delete(key)
        w.add(wire.TickBatch("A", 1, ticks[3:]))
        await w.flush()
        await client.aclose()

    asyncio.run(scenario())
    _, history = stored(redis_client, Keys(redis_prefix).ticks("A"))
    assert history["seq"].tolist() == list(range(1, 7))
    assert [c for _, c in stored_candles(redis_client, redis_prefix, interval="1m")] == expected(
        [wire.TickBatch("A", 1, ticks)], "1m")


def test_stop_writes_every_candle_received(
        redis_url: str, redis_prefix: str, redis_client: redis.Redis) -> None:
    ticks = ticks_at((T0 + np.arange(200) * 20_000_000).tolist())

    async def scenario() -> None:
        w, client = make_writer(redis_url, redis_prefix, flush_interval_s=0.05)
        task = asyncio.create_task(w.run())
        for i in range(0, 200, 10):
            w.add(wire.TickBatch("A", 1, ticks[i:i + 10]))
            await asyncio.sleep(0)
        w.stop()
        await asyncio.wait_for(task, 5)
        await client.aclose()

    asyncio.run(scenario())
    assert [c for _, c in stored_candles(redis_client, redis_prefix)] == expected(
        [wire.TickBatch("A", 1, ticks)])


def test_beyond_the_pending_limit_the_least_recently_changed_are_dropped() -> None:
    candles = CandleWriter(Keys("x:"), CandleMetrics(CollectorRegistry()), max_pending=10)
    candles.aggregator = CandleAggregator([SEC])
    for i in range(15):
        candles.add(wire.TickBatch("A", 1, ticks_at([T0 + i * S], first_seq=i + 1)))
    candles.aggregate()
    assert candles.pending == 10
    assert candles.metrics.dropped._value.get() == 5
    assert [c.open_ns for c in candles.take()] == [T0 + i * S for i in range(5, 15)]


def test_candles_are_written_at_most_every_interval_and_without_new_ticks(
        redis_url: str, redis_prefix: str, redis_client: redis.Redis) -> None:
    ticks = ticks_at([T0, T0 + 1, T0 + 2])
    key = Keys(redis_prefix).ticks("A")

    async def scenario() -> None:
        w, client = make_writer(redis_url, redis_prefix)
        assert w.candles is not None
        w.candles.cadence.interval_s = 0.3
        task = asyncio.create_task(w.run())
        w.add(wire.TickBatch("A", 1, ticks[:1]))
        while not redis_client.exists(key):
            await asyncio.sleep(0.005)
        assert [c.trades for _, c in stored_candles(redis_client, redis_prefix)] == [1]
        w.add(wire.TickBatch("A", 1, ticks[1:]))
        while redis_client.xlen(key) < 2:  # the ticks go at once; the candle is not due yet
            await asyncio.sleep(0.005)
        assert [c.trades for _, c in stored_candles(redis_client, redis_prefix)] == [1]
        for _ in range(400):  # no tick comes: the writer's timer writes the candle
            if [c.trades for _, c in stored_candles(redis_client, redis_prefix)] == [3]:
                break
            await asyncio.sleep(0.005)
        assert [c.trades for _, c in stored_candles(redis_client, redis_prefix)] == [3]
        w.stop()
        await asyncio.wait_for(task, 5)
        await client.aclose()

    asyncio.run(scenario())
