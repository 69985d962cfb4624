"""The history writer against the real Redis: layout, batching, ids, retention, outages."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import numpy as np
import redis
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from bridge.candles import CandleMetrics, CandleWriter
from bridge.history import Cadence, HistoryMetrics, HistoryWriter
from bridge.recent import TradeWriter
from marketdata import wire
from marketdata.layout import Keys, parse_id


def batch(symbol: str, first: int, n: int, t0_ms: int, session: int = 1) -> wire.TickBatch:
    ticks = wire.empty_ticks(n)
    ticks["seq"] = np.arange(first, first + n)
    ticks["ts_ns"] = (t0_ms + np.arange(n)) * 1_000_000
    ticks["bid"] = 100.0 + np.arange(n)
    ticks["ask"] = ticks["bid"] + 1
    return wire.TickBatch(symbol, session, ticks)


def stored(client: redis.Redis, key: str) -> tuple[list[tuple[int, int]], wire.Ticks]:
    rows = client.xrange(key)
    ids = [parse_id(entry_id) for entry_id, _ in rows]
    ticks = wire.concat([wire.decode_body(fields[b"d"])[1] for _, fields in rows])
    return ids, ticks


def writer(url: str, prefix: str, **kwargs: object) -> tuple[HistoryWriter, aioredis.Redis]:
    client = aioredis.Redis.from_url(url)
    options: dict[str, object] = {"retention_ms": 3_600_000, "flush_interval_s": 0.0,
                                  "max_pending_ticks": 1_000_000}
    options.update(kwargs)
    return HistoryWriter(client, Keys(prefix), HistoryMetrics(CollectorRegistry()),
                         **options), client  # type: ignore[arg-type]


def test_flush_writes_one_entry_per_symbol_keyed_by_tick_time(
        redis_url: str, redis_prefix: str, redis_client: redis.Redis) -> None:
    async def scenario() -> None:
        w, client = writer(redis_url, redis_prefix)
        w.add(batch("BTC-USD", 1, 3, t0_ms=1_000))
        w.add(batch("BTC-USD", 4, 2, t0_ms=1_003))
        w.add(batch("ETH-USD", 1, 1, t0_ms=1_000))
        assert 6 == await w.flush()
        w.add(batch("BTC-USD", 6, 1, t0_ms=1_003))  # same ms as the previous entry's start
        assert 1 == await w.flush()
        await client.aclose()

    asyncio.run(scenario())
    ids, ticks = stored(redis_client, f"{redis_prefix}ticks:BTC-USD")
    assert [(1_000, 0), (1_003, 0)] == ids
    assert list(range(1, 7)) == ticks["seq"].tolist()
    assert 1 == redis_client.xlen(f"{redis_prefix}ticks:ETH-USD")


def test_ids_stay_increasing_across_writer_restarts_and_clock_repeats(
        redis_url: str, redis_prefix: str, redis_client: redis.Redis) -> None:
    async def scenario() -> None:
        for first in (1, 3):
            w, client = writer(redis_url, redis_prefix)
            w.add(batch("A", first, 2, t0_ms=5_000))  # the same tick time twice
            await w.flush()
            await client.aclose()

    asyncio.run(scenario())
    ids, ticks = stored(redis_client, f"{redis_prefix}ticks:A")
    assert [(5_000, 0), (5_000, 1)] == ids
    assert [1, 2, 3, 4] == ticks["seq"].tolist()


def test_nothing_is_lost_while_redis_is_unreachable(
        redis_url: str, redis_prefix: str, redis_client: redis.Redis) -> None:
    async def scenario() -> None:
        w, client = writer("redis://127.0.0.1:1/0", redis_prefix)
        w.add(batch("A", 1, 5, t0_ms=1))
        with contextlib.suppress(redis.RedisError, OSError):
            await w.flush()
        assert 5 == w.pending_ticks
        await client.aclose()
        w.client = aioredis.Redis.from_url(redis_url)
        w.add(batch("A", 6, 5, t0_ms=6))
        assert 10 == await w.flush()
        await w.client.aclose()

    asyncio.run(scenario())
    _, ticks = stored(redis_client, f"{redis_prefix}ticks:A")
    assert list(range(1, 11)) == ticks["seq"].tolist()


def test_beyond_the_buffer_limit_the_oldest_ticks_are_dropped_and_counted(
        redis_url: str, redis_prefix: str) -> None:
    w, _ = writer(redis_url, redis_prefix, max_pending_ticks=10)
    for i in range(5):
        w.add(batch("A", 1 + 4 * i, 4, t0_ms=i))
    assert w.pending_ticks <= 10
    assert 12 == w.metrics.dropped._value.get()


def test_stop_flushes_everything_received(
        redis_url: str, redis_prefix: str, redis_client: redis.Redis) -> None:
    async def scenario() -> None:
        w, client = writer(redis_url, redis_prefix, flush_interval_s=0.05)
        task = asyncio.create_task(w.run())
        for i in range(50):
            w.add(batch("A", 1 + i * 10, 10, t0_ms=i * 10))
            await asyncio.sleep(0)
        w.stop()
        await asyncio.wait_for(task, 5)
        await client.aclose()

    asyncio.run(scenario())
    _, ticks = stored(redis_client, f"{redis_prefix}ticks:A")
    assert list(range(1, 501)) == ticks["seq"].tolist()


def test_old_entries_are_trimmed_by_tick_time(
        redis_url: str, redis_prefix: str, redis_client: redis.Redis) -> None:
    async def scenario() -> None:
        w, client = writer(redis_url, redis_prefix, retention_ms=1_000)
        for i in range(300):  # 300 entries, 100 ms apart: only the last ~1 s is kept
            w.add(batch("A", i + 1, 1, t0_ms=i * 100))
            await w.flush()
        await client.aclose()

    asyncio.run(scenario())
    ids, _ = stored(redis_client, f"{redis_prefix}ticks:A")
    assert 300 > len(ids)
    assert ids[-1] == (29_900, 0)


def test_a_retry_after_a_partly_applied_write_stores_nothing_twice(
        redis_url: str, redis_prefix: str, redis_client: redis.Redis) -> None:
    """A timeout says nothing of what Redis applied: the retry skips what is already stored."""
    async def scenario() -> None:
        w, client = writer(redis_url, redis_prefix)
        w.add(batch("A", 1, 5, t0_ms=1))
        assert 5 == await w.flush()
        # As if that flush had timed out after Redis applied it: the same ticks come back.
        w._last_ids.clear()
        w.add(batch("A", 1, 5, t0_ms=1))
        w.add(batch("A", 6, 3, t0_ms=6))
        assert 3 == await w.flush()
        await client.aclose()

    asyncio.run(scenario())
    _, ticks = stored(redis_client, f"{redis_prefix}ticks:A")
    assert list(range(1, 9)) == ticks["seq"].tolist()


def test_flushes_at_most_once_per_interval_while_ticks_keep_coming(
        redis_url: str, redis_prefix: str, redis_client: redis.Redis) -> None:
    """Ticks arriving during a flush wait for the next interval instead of making the writer
    flush again at once (which kept the bridge's loop busy flushing a few ticks at a time)."""
    interval_s, duration_s = 0.05, 0.5

    async def scenario() -> None:
        w, client = writer(redis_url, redis_prefix, flush_interval_s=interval_s)
        task = asyncio.create_task(w.run())
        seq, loop = 1, asyncio.get_running_loop()
        end = loop.time() + duration_s
        while loop.time() < end:
            w.add(batch("BTC-USD", seq, 2, t0_ms=1_000 + seq))
            seq += 2
            await asyncio.sleep(0)  # a tick between any two steps of a flush
        w.stop()
        await asyncio.wait_for(task, 5.0)
        await client.aclose()
        flushes.append(next(sample.value for metric in w.metrics.flush_seconds.collect()
                            for sample in metric.samples if sample.name.endswith("_count")))

    flushes: list[float] = []
    asyncio.run(scenario())
    _, ticks = stored(redis_client, f"{redis_prefix}ticks:BTC-USD")
    assert ticks["seq"].tolist() == list(range(1, len(ticks) + 1)) and len(ticks) > 0
    # At most one flush per interval, plus the first and the one at stop.
    assert 1 <= flushes[0] <= duration_s / interval_s + 2


def test_each_flush_waits_for_before_flush(
        redis_url: str, redis_prefix: str, redis_client: redis.Redis) -> None:
    """The bridge passes a wait for its streams' writes, so flushes go out in the gap after a
    batch was sent, not in front of its writes."""
    key = f"{redis_prefix}ticks:BTC-USD"

    async def scenario() -> None:
        streams_done = asyncio.Event()
        waits = 0

        async def before_flush() -> None:
            nonlocal waits
            waits += 1
            await streams_done.wait()

        w, client = writer(redis_url, redis_prefix, before_flush=before_flush)
        task = asyncio.create_task(w.run())
        w.add(batch("BTC-USD", 1, 3, t0_ms=1_000))
        await asyncio.sleep(0.05)
        assert 1 == waits and 0 == redis_client.exists(key) and 3 == w.pending_ticks
        streams_done.set()
        while w.pending_ticks:
            await asyncio.sleep(0.01)
        w.stop()
        await asyncio.wait_for(task, 5.0)
        await client.aclose()

    asyncio.run(scenario())
    assert [1, 2, 3] == stored(redis_client, key)[1]["seq"].tolist()


def test_stop_ends_the_pause_between_flushes_and_writes_everything(
        redis_url: str, redis_prefix: str, redis_client: redis.Redis) -> None:
    """With a long flush interval, ticks received during the pause are written at stop without
    waiting the interval out (the bridge gives history 5 s at shutdown)."""
    async def scenario() -> None:
        w, client = writer(redis_url, redis_prefix, flush_interval_s=60.0)
        task = asyncio.create_task(w.run())
        w.add(batch("BTC-USD", 1, 3, t0_ms=1_000))
        while w.pending_ticks:  # the first flush goes out at once, then the pause starts
            await asyncio.sleep(0.01)
        w.add(batch("BTC-USD", 4, 2, t0_ms=1_010))
        await asyncio.sleep(0.05)
        w.stop()
        await asyncio.wait_for(task, 10.0)  # far below the 60 s pause
        await client.aclose()

    asyncio.run(scenario())
    _, ticks = stored(redis_client, f"{redis_prefix}ticks:BTC-USD")
    assert [1, 2, 3, 4, 5] == ticks["seq"].tolist()


def test_a_cadence_without_an_interval_is_due_at_every_flush() -> None:
    cadence = Cadence(0.0, lambda: 5.0, phase=0.0)
    for _ in range(3):
        assert cadence.due_in() == 0.0
        cadence.mark()


def test_cadences_with_different_phases_never_share_a_flush() -> None:
    """Candles (phase 0) and trades (half an interval later), each taken at the first flush
    (every 5 ms, some late) once due: after the first flush they alternate, ~50 ms apart each."""
    now = [1000.013]
    candles = Cadence(0.05, lambda: now[0])
    trades = Cadence(0.05, lambda: now[0], phase=0.025)
    taken: dict[str, list[float]] = {"candles": [], "trades": []}
    rng = np.random.default_rng(3)
    for _ in range(2000):  # 10 s of flushes
        for name, cadence in (("candles", candles), ("trades", trades)):
            if cadence.due_in() == 0.0:
                cadence.mark()
                taken[name].append(now[0])
        now[0] += 0.005 + (0.004 if rng.random() < 0.05 else 0.0)
    assert taken["candles"][0] == taken["trades"][0] == 1000.013  # both due at once at first
    assert not set(taken["candles"][1:]) & set(taken["trades"][1:])
    for times in taken.values():
        gaps = np.diff(times)
        assert gaps.min() >= 0.04 - 1e-9  # never sooner than 0.8 of the interval
        assert np.median(gaps) < 0.056  # and about every interval
        assert len(times) >= 170


def trades_batch(first: int, n: int, t0_ms: int) -> wire.TickBatch:
    """A batch whose every tick is a trade, so the candles have something to fold."""
    b = batch("BTC-USD", first, n, t0_ms)
    b.ticks["last"] = b.ticks["bid"]
    b.ticks["last_size"] = 1.0
    b.ticks["flags"] = wire.FLAG_TRADE
    return b


def companions_writer(url: str, prefix: str) -> tuple[HistoryWriter, aioredis.Redis]:
    keys = Keys(prefix)
    return writer(url, prefix, candles=CandleWriter(keys, CandleMetrics(CollectorRegistry())),
                  trades=TradeWriter(keys))


def test_a_callback_ready_when_a_flush_starts_runs_before_its_write(
        redis_url: str, redis_prefix: str, redis_client: redis.Redis) -> None:
    """A flush lets the loop run between its parts (the candles' fold, the commands), so a tick
    that arrives mid-flush is handled then, not after the whole flush."""
    order: list[str] = []

    async def scenario() -> None:
        w, client = companions_writer(redis_url, redis_prefix)
        w.add(trades_batch(1, 3, t0_ms=1_000))
        await w.flush()  # reads the stream's end and the server's version: none of that now
        pipeline = client.pipeline

        def spied(*args: Any, **kwargs: Any) -> Any:
            pipe = pipeline(*args, **kwargs)
            execute = pipe.execute

            async def recorded(*a: Any, **k: Any) -> Any:
                order.append("write")
                return await execute(*a, **k)

            pipe.execute = recorded  # type: ignore[method-assign]
            return pipe

        client.pipeline = spied  # type: ignore[method-assign]
        w.add(trades_batch(4, 500, t0_ms=2_000))
        asyncio.get_running_loop().call_soon(order.append, "tick")
        assert 500 == await w.flush(all_candles=True)
        await client.aclose()

    asyncio.run(scenario())
    assert ["tick", "write"] == order
    assert 503 == len(stored(redis_client, f"{redis_prefix}ticks:BTC-USD")[1])
    assert redis_client.exists(f"{redis_prefix}candles:BTC-USD:1s")


def test_ticks_that_arrive_mid_flush_go_out_with_their_trades_in_the_next_one(
        redis_url: str, redis_prefix: str, redis_client: redis.Redis) -> None:
    """Trades are written with or after their ticks, never ahead of them, even when ticks
    arrive while a flush yields."""
    keys = Keys(redis_prefix)

    def stored_state() -> tuple[int, int]:
        return (int(stored(redis_client, keys.ticks("BTC-USD"))[1]["seq"][-1]),
                int(redis_client.llen(keys.trades("BTC-USD"))))

    async def scenario() -> list[tuple[int, int]]:
        w, client = companions_writer(redis_url, redis_prefix)
        w.add(trades_batch(1, 3, t0_ms=1_000))
        await w.flush(all_candles=True)
        w.add(trades_batch(4, 3, t0_ms=2_000))
        asyncio.get_running_loop().call_soon(w.add, trades_batch(7, 3, t0_ms=3_000))
        await w.flush(all_candles=True)
        after_first = stored_state()
        await w.flush(all_candles=True)
        await client.aclose()
        return [after_first, stored_state()]

    assert [(6, 6), (9, 9)] == asyncio.run(scenario())
