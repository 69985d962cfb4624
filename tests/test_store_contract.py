"""One contract for both stores: RedisStore (written by the real bridge writer) and MemoryStore."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import orjson
import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from redis.backoff import NoBackoff
from redis.retry import Retry

from bridge.candles import CandleMetrics, CandleWriter
from bridge.history import HistoryMetrics, HistoryWriter
from bridge.recent import BookWriter, TradeWriter
from marketdata import trades as mdtrades
from marketdata import wire
from marketdata.candles import BY_NAME, INTERVALS, Candle, CandleAggregator, Interval, pack
from marketdata.layout import Keys
from marketdata.store import MemoryStore, RedisStore, Store, StoreError, StoreUnavailable
from marketdata.symbols import Instrument
from tests.conftest import free_port

BTC = Instrument("BTC-USD", "BTC", "USD", 0.01, 0.00001, 1.0, 10_000_000.0)
ETH = Instrument("ETH-USD", "ETH", "USD", 0.01, 0.0001, 0.1, 1_000_000.0)
T0 = 1_764_060_279_000_000_000  # a whole millisecond
STEP = 400_000  # 0.4 ms between ticks, so entries start and end inside milliseconds


def make_ticks(ts_ns: Sequence[int], first_seq: int = 1) -> wire.Ticks:
    """Return ticks at `ts_ns` with consecutive seqs and prices that tell them apart."""
    ticks = wire.empty_ticks(len(ts_ns))
    ticks["seq"] = np.arange(first_seq, first_seq + len(ts_ns))
    ticks["ts_ns"] = ts_ns
    ticks["bid"] = 65_000.0 + ticks["seq"] * 0.01
    ticks["ask"] = ticks["bid"] + 0.01
    ticks["last"] = ticks["bid"]
    ticks["bid_size"] = 1.5
    ticks["ask_size"] = 2.5
    ticks["last_size"] = 0.01
    ticks["volume"] = ticks["seq"] * 0.01
    ticks["flags"] = wire.FLAG_TRADE
    return ticks


def split(symbol: str, ticks: wire.Ticks, cuts: Sequence[int],
          session: int = 7) -> list[wire.TickBatch]:
    """Cut `ticks` at the indexes `cuts` into batches (each written as one entry)."""
    bounds = [0, *sorted(set(cuts) - {0, len(ticks)}), len(ticks)]
    return [wire.TickBatch(symbol, session, ticks[a:b]) for a, b in pairwise(bounds)]


@dataclass
class Backend:
    """A store and the way to fill it that production uses for it."""

    store: Store
    write: Callable[[Sequence[wire.TickBatch]], None]
    set_instruments: Callable[[Sequence[Instrument]], None]
    write_books: Callable[[Sequence[wire.BookSnapshot]], None]


def memory_backend() -> Backend:
    """Return a MemoryStore, filled one entry per batch."""
    store = MemoryStore()

    def write(batches: Sequence[wire.TickBatch]) -> None:
        for batch in batches:
            store.add(batch)

    def write_books(books: Sequence[wire.BookSnapshot]) -> None:
        for book in books:
            store.add_book(book)

    return Backend(store, write, store.set_instruments, write_books)


@dataclass
class RedisBackends:
    """Makes RedisStores under fresh sub-prefixes of the test's prefix, written by the bridge."""

    url: str
    prefix: str
    clients: list[redis.Redis] = field(default_factory=list)

    def new(self) -> Backend:
        """Return a RedisStore over an empty key space."""
        keys = Keys(f"{self.prefix}{uuid.uuid4().hex[:8]}:")
        client = redis.Redis.from_url(self.url, socket_timeout=2)
        self.clients.append(client)

        def write(batches: Sequence[wire.TickBatch]) -> None:
            asyncio.run(write_history(self.url, keys, batches))

        def write_books(books: Sequence[wire.BookSnapshot]) -> None:
            asyncio.run(write_history(self.url, keys, [], books))

        def set_instruments(instruments: Sequence[Instrument]) -> None:
            client.set(keys.instruments, orjson.dumps([i.to_dict() for i in instruments]))

        return Backend(RedisStore(client, keys), write, set_instruments, write_books)

    def close(self) -> None:
        """Close every client made."""
        for client in self.clients:
            client.close()


async def write_history(url: str, keys: Keys, batches: Sequence[wire.TickBatch],
                        books: Sequence[wire.BookSnapshot] = ()) -> None:
    """Write each batch as one stream entry (with its candles and trades), then each book,
    through the bridge's writers."""
    client = aioredis.Redis.from_url(url)
    try:
        candles = CandleWriter(keys, CandleMetrics(CollectorRegistry()),
                               {i.name: 10**8 for i in INTERVALS})
        writer = HistoryWriter(client, keys, HistoryMetrics(CollectorRegistry()),
                               retention_ms=10**13, flush_interval_s=0.0,
                               max_pending_ticks=10**7, candles=candles,
                               trades=TradeWriter(keys), books=BookWriter(keys))
        for batch in batches:
            writer.add(batch)
            await writer.flush()
        for book in books:
            writer.add_book(book)
            await writer.flush()
    finally:
        await client.aclose()


@pytest.fixture(params=["memory", "redis"])
def new_backend(request: pytest.FixtureRequest) -> Iterator[Callable[[], Backend]]:
    """A factory of empty backends of one kind (a fresh one per hypothesis example)."""
    if request.param == "memory":
        yield memory_backend
        return
    backends = RedisBackends(request.getfixturevalue("redis_url"),
                             request.getfixturevalue("redis_prefix"))
    try:
        yield backends.new
    finally:
        backends.close()


@pytest.fixture
def backend(new_backend: Callable[[], Backend]) -> Backend:
    """One empty backend."""
    return new_backend()


# 30 BTC ticks 0.4 ms apart in 4 entries: [0:7] [7:8] [8:20] [20:30]; tick i has seq i + 1.
TS = [T0 + i * STEP for i in range(30)]
CUTS = [7, 8, 20]


@pytest.fixture
def filled(backend: Backend) -> Backend:
    """A backend holding the 30 BTC ticks above, two ETH ticks, and both instruments."""
    backend.set_instruments([BTC, ETH])
    backend.write(split("BTC-USD", make_ticks(TS), CUTS))
    backend.write([wire.TickBatch("ETH-USD", 9, make_ticks([T0 + 5, T0 + 6_000_000], 41))])
    return backend


def seqs(ticks: wire.Ticks) -> list[int]:
    """Return the seqs of `ticks`, as Python ints."""
    return [int(s) for s in ticks["seq"]]


def test_instruments_round_trip(backend: Backend) -> None:
    assert backend.store.instruments() is None
    backend.set_instruments([ETH, BTC])
    instruments = backend.store.instruments()
    assert instruments is not None
    assert instruments.symbols == ("ETH-USD", "BTC-USD")
    assert list(instruments) == [ETH, BTC]
    assert instruments.resolve("btc/usd") == BTC


def test_ping_answers(backend: Backend) -> None:
    backend.store.ping()


def test_latest_per_symbol(filled: Backend) -> None:
    latest = filled.store.latest(["BTC-USD", "ETH-USD", "SOL-USD"])
    assert set(latest) == {"BTC-USD", "ETH-USD", "SOL-USD"}
    btc, eth = latest["BTC-USD"], latest["ETH-USD"]
    assert btc is not None and eth is not None
    assert (btc.symbol, btc.session, btc.seq, btc.ts_ns) == ("BTC-USD", 7, 30, TS[-1])
    assert (eth.symbol, eth.session, eth.seq, eth.ts_ns) == ("ETH-USD", 9, 42, T0 + 6_000_000)
    assert len(btc.record) == 1
    assert btc.record.dtype == wire.TICK_DTYPE
    assert wire.as_dicts(btc.record) == wire.as_dicts(make_ticks(TS)[-1:])
    assert latest["SOL-USD"] is None
    assert filled.store.latest([]) == {}


def test_latest_follows_a_new_session(filled: Backend) -> None:
    filled.write([wire.TickBatch("BTC-USD", 8, make_ticks([T0 + 50_000_000]))])
    latest = filled.store.latest(["BTC-USD"])["BTC-USD"]
    assert latest is not None
    assert (latest.session, latest.seq) == (8, 1)


@pytest.mark.parametrize(
    ("start", "end", "limit", "expected"),
    [
        pytest.param(None, None, 100, list(range(1, 31)), id="neither"),
        pytest.param(None, None, 5, list(range(26, 31)), id="neither-limit-keeps-latest"),
        pytest.param(TS[10], None, 100, list(range(11, 31)), id="start-only"),
        pytest.param(TS[10], None, 5, list(range(11, 16)), id="start-only-limit-keeps-first"),
        pytest.param(TS[10] + 1, None, 5, list(range(12, 17)), id="start-between-ticks"),
        pytest.param(None, TS[10], 100, list(range(1, 12)), id="end-only"),
        pytest.param(None, TS[10], 3, [9, 10, 11], id="end-only-limit-keeps-latest"),
        pytest.param(None, TS[10] - 1, 3, [8, 9, 10], id="end-between-ticks"),
        pytest.param(TS[5], TS[12], 100, list(range(6, 14)), id="both"),
        pytest.param(TS[5], TS[12], 3, [6, 7, 8], id="both-limit-keeps-first"),
        pytest.param(TS[15], TS[15], 10, [16], id="single-instant"),
        pytest.param(TS[18], TS[19], 10, [19, 20], id="inside-the-entry-before-start"),
        pytest.param(TS[6], TS[8], 10, [7, 8, 9], id="across-three-entries"),
        pytest.param(TS[-1] + 1, None, 10, [], id="start-after-everything"),
        pytest.param(None, TS[0] - 1, 10, [], id="end-before-everything"),
        pytest.param(0, TS[1], 10, [1, 2], id="start-at-epoch"),
        pytest.param(TS[20], TS[10], 10, [], id="start-after-end"),
        pytest.param(None, None, 1, [30], id="limit-one"),
    ],
)
def test_history_ranges(filled: Backend, start: int | None, end: int | None, limit: int,
                        expected: list[int]) -> None:
    ticks = filled.store.history("BTC-USD", start, end, limit)
    assert ticks.dtype == wire.TICK_DTYPE
    assert seqs(ticks) == expected
    assert [int(t) for t in ticks["ts_ns"]] == [TS[s - 1] for s in expected]


def test_history_keeps_every_field(filled: Backend) -> None:
    ticks = filled.store.history("BTC-USD", None, None, 100)
    assert wire.as_dicts(ticks) == wire.as_dicts(make_ticks(TS))


@pytest.mark.parametrize("symbol", ["SOL-USD", "", "btc-usd"])
def test_history_of_a_symbol_without_ticks_is_empty(filled: Backend, symbol: str) -> None:
    assert len(filled.store.history(symbol, None, None, 10)) == 0
    assert len(filled.store.history(symbol, T0, None, 10)) == 0
    assert filled.store.latest([symbol]) == {symbol: None}


def test_history_over_many_entries(backend: Backend) -> None:
    # 400 entries of 1 to 3 ticks: more entries than one read fetches, in either direction.
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 4, size=400)
    ts = (T0 + np.cumsum(rng.integers(1, 3 * STEP, size=int(sizes.sum())))).tolist()
    ticks = make_ticks(ts)
    backend.write(split("BTC-USD", ticks, np.cumsum(sizes)[:-1].tolist()))
    n = len(ticks)
    assert seqs(backend.store.history("BTC-USD", None, None, n + 10)) == list(range(1, n + 1))
    assert seqs(backend.store.history("BTC-USD", ts[3], None, 500)) == list(range(4, 504))
    assert seqs(backend.store.history("BTC-USD", None, ts[-4], 500)) == list(
        range(n - 502, n - 2))
    assert seqs(backend.store.history("BTC-USD", ts[100], ts[700], 10_000)) == list(
        range(101, 702))


gaps = st.lists(st.sampled_from([1, 250_000, STEP, 999_999, 1_000_000, 3_000_001, 50_000_000]),
                min_size=1, max_size=40)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gaps=gaps, data=st.data())
def test_history_equals_a_brute_force_filter(new_backend: Callable[[], Backend],
                                             gaps: list[int], data: st.DataObject) -> None:
    ts = (T0 + np.cumsum(gaps)).tolist()
    cuts = data.draw(st.lists(st.integers(1, len(ts) - 1), max_size=10) if len(ts) > 1
                     else st.just([]), label="cuts")
    bound = st.none() | st.integers(T0 - 2_000_000, ts[-1] + 2_000_000)
    start = data.draw(bound, label="start")
    end = data.draw(bound, label="end")
    limit = data.draw(st.integers(1, len(ts) + 2), label="limit")
    backend = new_backend()
    backend.write(split("BTC-USD", make_ticks(ts), cuts))

    inside = [i + 1 for i, t in enumerate(ts)
              if (start is None or t >= start) and (end is None or t <= end)]
    expected = inside[:limit] if start is not None else inside[max(len(inside) - limit, 0):]
    assert seqs(backend.store.history("BTC-USD", start, end, limit)) == expected


# -- candles -----------------------------------------------------------------------------------

SEC, MIN = BY_NAME["1s"], BY_NAME["1m"]
S = 1_000_000_000
# 40 ticks 250 ms apart from T0 (08:44:39, a whole second), all trades but one: ten 1s candles
# and one of every longer interval.
CANDLE_TS = [T0 + i * 250_000_000 for i in range(40)]


def candle_ticks() -> wire.Ticks:
    """Return the 40 ticks with varied prices and sizes; tick 5 is a quote, not a trade."""
    ticks = make_ticks(CANDLE_TS)
    ticks["last"] = 65_000.0 + (np.arange(40) % 7) * 0.5
    ticks["last_size"] = 0.001 * (1 + np.arange(40) % 3)
    ticks["flags"][5] = 0
    return ticks


def open_seconds(candles: Sequence[Candle]) -> list[int]:
    """Return the candles' open times as whole seconds after T0."""
    return [(c.open_ns - T0) // S for c in candles]


@pytest.fixture
def with_candles(backend: Backend) -> Backend:
    """A backend holding candle_ticks() of BTC-USD, written in five batches."""
    backend.write(split("BTC-USD", candle_ticks(), [3, 17, 18, 33]))
    return backend


def reference_candles(interval: Interval) -> list[Candle]:
    """Aggregate the with_candles ticks in memory in one go."""
    latest = {c.open_ns: c for c in CandleAggregator([interval]).add(
        wire.TickBatch("BTC-USD", 7, candle_ticks()))}
    return [latest[k] for k in sorted(latest)]


def test_candles_are_built_from_the_trades_written(with_candles: Backend) -> None:
    for interval in INTERVALS:
        got = with_candles.store.candles("BTC-USD", interval, None, None, 1000)
        assert got == reference_candles(interval)
    seconds = with_candles.store.candles("BTC-USD", SEC, None, None, 1000)
    assert open_seconds(seconds) == list(range(10))
    assert [c.trades for c in seconds] == [4, 3, 4, 4, 4, 4, 4, 4, 4, 4]
    minutes = with_candles.store.candles("BTC-USD", MIN, None, None, 1000)
    assert [(c.trades, c.first_seq, c.last_seq) for c in minutes] == [(39, 1, 40)]


@pytest.mark.parametrize(
    ("start", "end", "limit", "expected"),
    [
        pytest.param(None, None, 100, list(range(10)), id="neither"),
        pytest.param(None, None, 3, [7, 8, 9], id="neither-limit-keeps-latest"),
        pytest.param(2 * S, None, 3, [2, 3, 4], id="start-limit-keeps-first"),
        pytest.param(2 * S + 1, None, 2, [3, 4], id="start-after-an-open-time"),
        pytest.param(None, 4 * S, 2, [3, 4], id="end-limit-keeps-latest"),
        pytest.param(None, 4 * S - 1, 2, [2, 3], id="end-before-an-open-time"),
        pytest.param(2 * S, 5 * S, 100, [2, 3, 4, 5], id="both"),
        pytest.param(6 * S, 6 * S, 100, [6], id="single-instant"),
        pytest.param(10 * S, None, 100, [], id="start-after-everything"),
        pytest.param(None, -1, 100, [], id="end-before-everything"),
        pytest.param(5 * S, 2 * S, 100, [], id="start-after-end"),
    ],
)
def test_candle_ranges_by_open_time(with_candles: Backend, start: int | None, end: int | None,
                                    limit: int, expected: list[int]) -> None:
    got = with_candles.store.candles("BTC-USD", SEC, None if start is None else T0 + start,
                                     None if end is None else T0 + end, limit)
    assert open_seconds(got) == expected


def test_candles_from_the_epoch_and_of_nothing(with_candles: Backend) -> None:
    assert open_seconds(with_candles.store.candles("BTC-USD", SEC, 0, T0 + S, 10)) == [0, 1]
    assert with_candles.store.candles("ETH-USD", SEC, None, None, 10) == []
    assert with_candles.store.candles("btc-usd", SEC, None, None, 10) == []
    assert with_candles.store.candles("BTC-USD", SEC, None, None, 0) == []


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gaps=st.lists(st.sampled_from([1, 300_000_000, S, 4 * S, 61 * S]), min_size=1,
                     max_size=30), data=st.data())
def test_candles_equal_a_brute_force_filter(new_backend: Callable[[], Backend], gaps: list[int],
                                            data: st.DataObject) -> None:
    ts = (T0 + np.cumsum(gaps)).tolist()
    cuts = data.draw(st.lists(st.integers(1, len(ts) - 1), max_size=6) if len(ts) > 1
                     else st.just([]), label="cuts")
    interval = data.draw(st.sampled_from([SEC, MIN]), label="interval")
    bound = st.none() | st.integers(T0 - 2 * S, ts[-1] + 2 * S)
    start, end = data.draw(bound, label="start"), data.draw(bound, label="end")
    limit = data.draw(st.integers(1, len(ts) + 2), label="limit")
    backend = new_backend()
    ticks = make_ticks(ts)
    backend.write(split("BTC-USD", ticks, cuts))

    latest = {c.open_ns: c for c in CandleAggregator([interval]).add(
        wire.TickBatch("BTC-USD", 7, ticks))}
    inside = [latest[k] for k in sorted(latest)
              if (start is None or k >= start) and (end is None or k <= end)]
    wanted = inside[:limit] if start is not None else inside[max(len(inside) - limit, 0):]
    assert backend.store.candles("BTC-USD", interval, start, end, limit) == wanted


def test_redis_store_unreachable_raises_store_unavailable() -> None:
    client = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5,
                         socket_timeout=0.5, retry=Retry(NoBackoff(), 0))
    store = RedisStore(client, Keys("mds-test-unreachable:"))
    try:
        with pytest.raises(StoreUnavailable):
            store.ping()
        with pytest.raises(StoreUnavailable):
            store.instruments()
        with pytest.raises(StoreUnavailable):
            store.latest(["BTC-USD"])
        with pytest.raises(StoreUnavailable):
            store.history("BTC-USD", None, None, 10)
        with pytest.raises(StoreUnavailable):
            store.candles("BTC-USD", SEC, None, None, 10)
        with pytest.raises(StoreUnavailable):
            store.book("BTC-USD")
        with pytest.raises(StoreUnavailable):
            store.trades("BTC-USD", 10)
    finally:
        client.close()


def test_redis_store_reports_corrupt_data(redis_client: redis.Redis, redis_prefix: str) -> None:
    keys = Keys(redis_prefix)
    store = RedisStore(redis_client, keys)
    redis_client.xadd(keys.ticks("BTC-USD"), {"d": b"not a wire body"}, id="1-0")
    redis_client.set(keys.instruments, b"{not json")
    with pytest.raises(StoreError, match="ticks:BTC-USD"):
        store.latest(["BTC-USD"])
    with pytest.raises(StoreError, match="instruments"):
        store.instruments()
    assert not isinstance(StoreError("x"), StoreUnavailable)


def test_redis_store_reports_a_corrupt_candle(redis_client: redis.Redis,
                                              redis_prefix: str) -> None:
    keys = Keys(redis_prefix)
    store = RedisStore(redis_client, keys)
    good = Candle("BTC-USD", SEC, T0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1, 1, 1, 1)
    redis_client.zadd(keys.candles("BTC-USD", "1s"), {pack(good): T0 // 1_000_000,
                                                       b"short": T0 // 1_000_000 + 1000})
    assert store.candles("BTC-USD", SEC, None, T0, 10) == [good]
    with pytest.raises(StoreError, match="candles:BTC-USD:1s"):
        store.candles("BTC-USD", SEC, None, None, 10)


def test_redis_store_rereads_instruments_once_they_are_a_ttl_old(
        redis_url: str, redis_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = Keys(redis_prefix)
    now = [100.0]
    store = RedisStore(client, keys, instruments_ttl_s=1.0, clock=lambda: now[0])
    client.set(keys.instruments, orjson.dumps([BTC.to_dict()]))
    assert ("BTC-USD",) == store.instruments().symbols  # type: ignore[union-attr]
    client.set(keys.instruments, orjson.dumps([BTC.to_dict(), ETH.to_dict()]))
    now[0] += 0.5
    assert ("BTC-USD",) == store.instruments().symbols  # type: ignore[union-attr]
    now[0] += 0.6
    assert ("BTC-USD", "ETH-USD") == store.instruments().symbols  # type: ignore[union-attr]
    client.close()


# -- order books and trades --------------------------------------------------------------------

def make_book(book_seq: int, levels: int = 20, symbol: str = "BTC-USD") -> wire.BookSnapshot:
    """Return a book whose touch is tick book_seq's quote (make_ticks) and sizes grow with depth."""
    bids = np.zeros(levels, dtype=wire.LEVEL_DTYPE)
    asks = np.zeros(levels, dtype=wire.LEVEL_DTYPE)
    bids["price"] = 65_000.0 + book_seq * 0.01 - np.arange(levels) * 0.01
    asks["price"] = bids["price"][0] + 0.01 + np.arange(levels) * 0.01
    bids["size"] = 1.5 + np.arange(levels)
    asks["size"] = 2.5 + np.arange(levels)
    return wire.BookSnapshot(symbol, 7, book_seq, book_seq, TS[book_seq - 1], bids, asks)


def assert_same_book(got: wire.BookSnapshot | None, expected: wire.BookSnapshot) -> None:
    assert got is not None
    assert (got.symbol, got.session, got.book_seq, got.tick_seq, got.ts_ns) == (
        expected.symbol, expected.session, expected.book_seq, expected.tick_seq,
        expected.ts_ns)
    assert got.bids.dtype == wire.LEVEL_DTYPE and got.asks.dtype == wire.LEVEL_DTYPE
    assert got.bids.tolist() == expected.bids.tolist()
    assert got.asks.tolist() == expected.asks.tolist()


def test_book_is_none_before_the_first(filled: Backend) -> None:
    assert filled.store.book("BTC-USD") is None


def test_the_latest_book_replaces_the_previous(filled: Backend) -> None:
    filled.write_books([make_book(3), make_book(4, levels=5), make_book(2, symbol="ETH-USD")])
    assert_same_book(filled.store.book("BTC-USD"), make_book(4, levels=5))
    assert_same_book(filled.store.book("ETH-USD"), make_book(2, symbol="ETH-USD"))
    assert filled.store.book("SOL-USD") is None


def test_trades_are_the_trade_ticks_newest_first(backend: Backend) -> None:
    ticks = make_ticks(TS)
    ticks["flags"][::3] = 0  # quotes
    ticks["flags"][1::3] |= wire.FLAG_BUYER_AGGRESSOR
    ticks["last"] = 64_000.0 + np.arange(30)
    backend.write(split("BTC-USD", ticks, CUTS))
    trades = backend.store.trades("BTC-USD", 100)
    expected = [i + 1 for i in range(29, -1, -1) if i % 3]
    assert trades.dtype == mdtrades.TRADE_DTYPE
    assert seqs(trades) == expected
    assert trades["price"].tolist() == [64_000.0 + s - 1 for s in expected]
    assert trades["size"].tolist() == [0.01] * len(expected)
    assert trades["ts_ns"].tolist() == [TS[s - 1] for s in expected]
    assert set(trades["session"].tolist()) == {7}
    assert mdtrades.sides(trades) == ["sell" if (s - 1) % 3 == 2 else "buy" for s in expected]
    assert seqs(backend.store.trades("BTC-USD", 3)) == expected[:3]


def test_trades_of_nothing(filled: Backend) -> None:
    assert len(filled.store.trades("SOL-USD", 10)) == 0
    assert len(filled.store.trades("BTC-USD", 0)) == 0


def test_only_the_newest_thousand_trades_are_kept(backend: Backend) -> None:
    ts = [T0 + i * STEP for i in range(1_500)]
    backend.write(split("BTC-USD", make_ticks(ts), [400, 401, 1_200]))
    assert seqs(backend.store.trades("BTC-USD", 1_000)) == list(range(1_500, 500, -1))
    assert seqs(backend.store.trades("BTC-USD", 5_000)) == list(range(1_500, 500, -1))


def test_trades_follow_a_new_session(filled: Backend) -> None:
    filled.write([wire.TickBatch("BTC-USD", 8, make_ticks([T0 + 50_000_000]))])
    trades = filled.store.trades("BTC-USD", 3)
    assert [(int(t["session"]), int(t["seq"])) for t in trades] == [(8, 1), (7, 30), (7, 29)]


def test_redis_store_reports_a_corrupt_book_or_trade(redis_client: redis.Redis,
                                                     redis_prefix: str) -> None:
    keys = Keys(redis_prefix)
    store = RedisStore(redis_client, keys)
    redis_client.set(keys.book("BTC-USD"), b"not a book")
    redis_client.rpush(keys.trades("BTC-USD"), b"short")
    with pytest.raises(StoreError, match="book:BTC-USD"):
        store.book("BTC-USD")
    with pytest.raises(StoreError, match="trades:BTC-USD"):
        store.trades("BTC-USD", 10)
