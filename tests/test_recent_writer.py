"""The latest books and recent trades, written by the history flush into the real Redis."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from bridge.history import HistoryMetrics, HistoryWriter
from bridge.recent import BookWriter, TradeWriter
from marketdata import trades as mdtrades
from marketdata import wire
from marketdata.layout import Keys, pack_book, unpack_book


def batch(symbol: str, first: int, n: int, session: int = 1,
          trade_every: int = 1) -> wire.TickBatch:
    """Return `n` ticks from seq `first`; seqs divisible by `trade_every` trade, odd ones buy."""
    ticks = wire.empty_ticks(n)
    ticks["seq"] = np.arange(first, first + n)
    ticks["ts_ns"] = (1_000 + ticks["seq"].astype(np.int64)) * 1_000_000
    ticks["bid"] = 100.0 + ticks["seq"]
    ticks["ask"] = ticks["bid"] + 1
    ticks["last"] = ticks["bid"] + 0.5
    ticks["last_size"] = ticks["seq"] * 0.001
    is_trade = ticks["seq"] % trade_every == 0
    bought = ticks["seq"] % 2 == 1
    ticks["flags"] = (np.where(is_trade, wire.FLAG_TRADE, 0)
                      | np.where(is_trade & bought, wire.FLAG_BUYER_AGGRESSOR, 0))
    return wire.TickBatch(symbol, session, ticks)


def book(symbol: str, book_seq: int, levels: int = 20, session: int = 1) -> wire.BookSnapshot:
    """Return a book of `levels` a side around 100.0 whose sizes tell book_seq apart."""
    bids = np.zeros(levels, dtype=wire.LEVEL_DTYPE)
    asks = np.zeros(levels, dtype=wire.LEVEL_DTYPE)
    bids["price"] = 100.0 - np.arange(levels) * 0.01
    asks["price"] = 100.01 + np.arange(levels) * 0.01
    bids["size"] = book_seq + np.arange(levels)
    asks["size"] = book_seq + 0.5 + np.arange(levels)
    return wire.BookSnapshot(symbol, session, book_seq, 10 * book_seq, 5_000 + book_seq,
                             bids, asks)


def writer(url: str, prefix: str, kept: int = 1000) -> HistoryWriter:
    client = aioredis.Redis.from_url(url)
    keys = Keys(prefix)
    return HistoryWriter(client, keys, HistoryMetrics(CollectorRegistry()),
                         retention_ms=3_600_000, flush_interval_s=0.0,
                         max_pending_ticks=1_000_000, trades=TradeWriter(keys, kept),
                         books=BookWriter(keys))


def stored_trades(client: redis.Redis, prefix: str, symbol: str) -> mdtrades.Trades:
    return mdtrades.unpack(client.lrange(f"{prefix}trades:{symbol}", 0, -1))


def assert_books_equal(a: wire.BookSnapshot, b: wire.BookSnapshot) -> None:
    assert (a.symbol, a.session, a.book_seq, a.tick_seq, a.ts_ns) == (
        b.symbol, b.session, b.book_seq, b.tick_seq, b.ts_ns)
    assert a.bids.tobytes() == b.bids.tobytes()
    assert a.asks.tobytes() == b.asks.tobytes()


def test_trades_are_the_trade_ticks_newest_first(redis_url: str, redis_prefix: str,
                                                redis_client: redis.Redis) -> None:
    async def scenario() -> None:
        w = writer(redis_url, redis_prefix)
        w.add(batch("A", 1, 10, trade_every=3))
        w.add(batch("A", 11, 5, trade_every=3))
        w.add(batch("B", 1, 4, trade_every=5))  # no trade
        await w.flush()
        await w.client.aclose()

    asyncio.run(scenario())
    trades = stored_trades(redis_client, redis_prefix, "A")
    assert [15, 12, 9, 6, 3] == trades["seq"].tolist()
    assert [f + 100.5 for f in (15, 12, 9, 6, 3)] == trades["price"].tolist()
    assert ["buy", "sell", "buy", "sell", "buy"] == mdtrades.sides(trades)
    assert not redis_client.exists(f"{redis_prefix}trades:B")


def test_the_list_keeps_the_newest_trades_only(redis_url: str, redis_prefix: str,
                                               redis_client: redis.Redis) -> None:
    async def scenario() -> None:
        w = writer(redis_url, redis_prefix, kept=50)
        w.add(batch("A", 1, 120))  # more than kept in one flush
        await w.flush()
        for first in range(121, 200, 10):
            w.add(batch("A", first, 10))
            await w.flush()
        await w.client.aclose()

    asyncio.run(scenario())
    assert list(range(200, 150, -1)) == stored_trades(redis_client, redis_prefix,
                                                      "A")["seq"].tolist()


def test_trades_are_written_at_most_every_interval_and_without_new_ticks(
        redis_url: str, redis_prefix: str, redis_client: redis.Redis) -> None:
    ticks_key = Keys(redis_prefix).ticks("A")

    def seqs() -> list[int]:
        return stored_trades(redis_client, redis_prefix, "A")["seq"].tolist()

    async def scenario() -> None:
        w = writer(redis_url, redis_prefix)
        assert w.trades is not None
        w.trades.cadence.interval_s = 0.3
        task = asyncio.create_task(w.run())
        w.add(batch("A", 1, 2))
        while not redis_client.exists(ticks_key):
            await asyncio.sleep(0.005)
        assert seqs() == [2, 1]  # the first take is due at once
        w.add(batch("A", 3, 2))
        while redis_client.xlen(ticks_key) < 2:  # the ticks go at once; the trades wait
            await asyncio.sleep(0.005)
        assert seqs() == [2, 1]
        for _ in range(400):  # no tick comes: the writer's timer writes the trades
            if seqs() == [4, 3, 2, 1]:
                break
            await asyncio.sleep(0.005)
        assert seqs() == [4, 3, 2, 1]
        w.stop()
        await task
        await w.client.aclose()

    asyncio.run(scenario())


def test_a_retry_after_a_partly_applied_write_stores_no_trade_twice(
        redis_url: str, redis_prefix: str, redis_client: redis.Redis) -> None:
    async def scenario() -> None:
        w = writer(redis_url, redis_prefix)
        w.add(batch("A", 1, 5))
        await w.flush()
        # As if that flush had timed out after Redis applied it: the same ticks come back.
        assert w.trades is not None
        w.trades.reset()
        w._last_ids.clear()
        w.add(batch("A", 1, 5))
        w.add(batch("A", 6, 3))
        await w.flush()
        # A new feed session starts its seqs from 1 again: those are new trades.
        w.trades.reset()
        w.add(batch("A", 1, 2, session=2))
        await w.flush()
        await w.client.aclose()

    asyncio.run(scenario())
    trades = stored_trades(redis_client, redis_prefix, "A")
    assert [2, 1, 8, 7, 6, 5, 4, 3, 2, 1] == trades["seq"].tolist()
    assert [2, 2] + [1] * 8 == trades["session"].tolist()


def test_trades_and_books_wait_while_redis_is_unreachable(
        redis_url: str, redis_prefix: str, redis_client: redis.Redis) -> None:
    async def scenario() -> None:
        w = writer("redis://127.0.0.1:1/0", redis_prefix)
        w.add(batch("A", 1, 4))
        w.add_book(book("A", 1))
        with contextlib.suppress(redis.RedisError, OSError):
            await w.flush()
        w.add_book(book("A", 2))  # newer than the one that failed: this one is written
        w.add(batch("A", 5, 2))
        await w.client.aclose()
        w.client = aioredis.Redis.from_url(redis_url)
        await w.flush()
        await w.client.aclose()

    asyncio.run(scenario())
    assert [6, 5, 4, 3, 2, 1] == stored_trades(redis_client, redis_prefix, "A")["seq"].tolist()
    stored = redis_client.get(f"{redis_prefix}book:A")
    assert stored is not None
    assert_books_equal(book("A", 2), unpack_book("A", stored))


def test_a_long_outage_keeps_only_the_newest_trades_in_memory(
        redis_url: str, redis_prefix: str, redis_client: redis.Redis) -> None:
    async def scenario() -> None:
        w = writer("redis://127.0.0.1:1/0", redis_prefix, kept=20)
        assert w.trades is not None
        w.trades.COMPACT_TICKS = 30
        for first in range(1, 1000, 10):
            w.add(batch("A", first, 10))
            with contextlib.suppress(redis.RedisError, OSError):
                await w.flush()
            assert len(w.trades._trades.get("A", ())) <= 20
            assert w.trades._ticks.get("A", 0) < 30
        await w.client.aclose()
        w.client = aioredis.Redis.from_url(redis_url)
        await w.flush()
        await w.client.aclose()

    asyncio.run(scenario())
    assert list(range(1000, 980, -1)) == stored_trades(redis_client, redis_prefix,
                                                      "A")["seq"].tolist()


def test_books_are_written_alone_and_replaced_whole(redis_url: str, redis_prefix: str,
                                                    redis_client: redis.Redis) -> None:
    async def scenario() -> None:
        w = writer(redis_url, redis_prefix)
        w.add_book(book("A", 1))
        w.add_book(book("B", 1, levels=3))
        await w.flush()  # no ticks: the books go alone
        w.add_book(book("A", 2, levels=5))
        await w.flush()
        await w.client.aclose()

    asyncio.run(scenario())
    for symbol, expected in (("A", book("A", 2, levels=5)), ("B", book("B", 1, levels=3))):
        stored = redis_client.get(f"{redis_prefix}book:{symbol}")
        assert stored is not None
        assert_books_equal(expected, unpack_book(symbol, stored))


@given(bids=st.integers(0, 50), asks=st.integers(0, 50), seq=st.integers(0, 2**64 - 1),
       ts=st.integers(-(2**63), 2**63 - 1))
def test_book_packing_round_trips(bids: int, asks: int, seq: int, ts: int) -> None:
    original = book("X", 1, levels=max(bids, asks))
    original = wire.BookSnapshot("X", seq, seq, seq, ts, original.bids[:bids],
                                 original.asks[:asks])
    assert_books_equal(original, unpack_book("X", pack_book(original)))


@pytest.mark.parametrize(("data", "message"), [
    (b"", "shorter than a book header"),
    (b"XX" + pack_book(book("A", 1))[2:], "bad magic"),
    (pack_book(book("A", 1))[:-1], "do not hold 20 bids and 20 asks"),
])
def test_unpacking_a_corrupt_book_says_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        unpack_book("A", data)


def test_trade_records_round_trip() -> None:
    ticks = batch("A", 1, 6, session=9, trade_every=2)
    trades = mdtrades.from_ticks(ticks.ticks, ticks.session)
    assert [2, 4, 6] == trades["seq"].tolist()
    back = mdtrades.unpack(mdtrades.pack(trades))
    assert back.tobytes() == trades.tobytes()
    assert {9} == set(back["session"].tolist())
    with pytest.raises(ValueError, match="48 bytes, not 47"):
        mdtrades.unpack([b"x" * 47])
