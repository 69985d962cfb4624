"""Order books, trades, candles, history and correlations end to end, over REST and gRPC.

feedsim -> bridge -> Redis -> REST, and the bridge's gRPC snapshots, with the real processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from bridge.service import ticks_from_message
from marketdata import marketdata_pb2 as pb
from marketdata import wire
from tests.system import System, running, wait_for

pytestmark = pytest.mark.integration

SYMBOL = "BTC-USD"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[System]:
    with running(tmp_path_factory.mktemp("market"), redis_url, ("feedsim", "bridge", "api"),
                 FEED_TICK_RATE="200", HISTORY_MAX_LIMIT="12000") as started:
        yield started


def get(system: System, path: str) -> Any:
    """GET `path` and return the JSON body of its 200 answer."""
    status, body = system.http(path)
    assert 200 == status, body
    return body


def rest_tick(system: System, seq: int, ts_ms: int) -> dict[str, Any] | None:
    """Return the history tick `seq` of SYMBOL, stamped in millisecond ts_ms, once stored."""
    ticks = get(system, f"/api/v1/prices/{SYMBOL}/history?start={ts_ms}&end={ts_ms}")["ticks"]
    return next((t for t in ticks if t["seq"] == seq), None)


def test_rest_orderbook_touch_is_the_published_tick(system: System) -> None:
    def book_of_a_stored_tick() -> bool:
        status, book = system.http(f"/api/v1/orderbook/{SYMBOL}")
        return status == 200 and rest_tick(system, book["tick_seq"],
                                           book["timestamp_ms"]) is not None

    # The book a late-joining bridge gets first may name a tick published before it subscribed
    # (never in its history); from the next update on, every book names a tick it received.
    wait_for("a book of a tick in history", book_of_a_stored_tick)
    for _ in range(5):  # several books, each against the tick it names
        book = get(system, f"/api/v1/orderbook/{SYMBOL}?depth=20")
        tick = wait_for("the book's tick in history",
                        lambda b=book: rest_tick(system, b["tick_seq"], b["timestamp_ms"]))
        assert book["bids"][0] == [tick["bid"], tick["bid_size"]]
        assert book["asks"][0] == [tick["ask"], tick["ask_size"]]
        assert book["ts_ns"] == tick["ts_ns"]
        bids = np.array(book["bids"])
        asks = np.array(book["asks"])
        assert (len(bids), len(asks)) == (20, 20)
        assert (np.diff(bids[:, 0]) < 0).all() and (np.diff(asks[:, 0]) > 0).all()
        assert (bids[:, 1] > 0).all() and (asks[:, 1] > 0).all()
        assert bids[0, 0] < asks[0, 0]
        time.sleep(0.15)  # the next book
    assert 400 == system.http(f"/api/v1/orderbook/{SYMBOL}?depth=21")[0]


def assert_trades_are_the_trade_ticks(trades: list[dict[str, Any]],
                                      ticks: list[dict[str, Any]]) -> None:
    """Check trades (newest first) are exactly the trade ticks among `ticks` (oldest first)."""
    trade_ticks = [t for t in ticks if t["flags"] & wire.FLAG_TRADE][::-1]
    assert [t["seq"] for t in trades] == [t["seq"] for t in trade_ticks]
    for trade, tick in zip(trades, trade_ticks, strict=True):
        assert (trade["price"], trade["size"], trade["ts_ns"]) == (
            tick["last"], tick["last_size"], tick["ts_ns"])
        assert trade["side"] == ("buy" if tick["flags"] & wire.FLAG_BUYER_AGGRESSOR else "sell")


def test_rest_trades_are_the_trade_ticks_of_history(system: System) -> None:
    trades = wait_for("200 trades", lambda: (
        found if len(found := get(system, f"/api/v1/trades/{SYMBOL}?limit=1000")["trades"])
        >= 200 else None))
    assert len(trades) <= 1000
    first, last = trades[-1]["timestamp_ms"], trades[0]["timestamp_ms"]
    history = get(system, f"/api/v1/prices/{SYMBOL}/history?start={first}&end={last}"
                          "&limit=10000")["ticks"]
    # Ticks of the oldest and newest trades' milliseconds that lie outside the trades' span.
    inside = [t for t in history if trades[-1]["ts_ns"] <= t["ts_ns"] <= trades[0]["ts_ns"]]
    assert_trades_are_the_trade_ticks(trades, inside)
    assert {"buy", "sell"} == {t["side"] for t in trades}


def test_rest_correlations_of_live_candles(system: System) -> None:
    def computed() -> dict[str, Any] | None:
        body = get(system, "/api/v1/correlations?symbols=BTC-USD,ETH-USD,SOL-USD&interval=1s"
                           "&window=3")
        return body if body["returns"] == 3 else None

    body = wait_for("three aligned 1s returns", computed, 15)
    matrix = np.array(body["matrix"], dtype=float)
    assert body["reason"] is None
    assert (np.diag(matrix) == 1.0).all()
    assert (matrix == matrix.T).all()
    assert (np.abs(matrix) <= 1.0).all()


# -- gRPC --------------------------------------------------------------------------------------


def call(system: System, rpc: Callable[[Any], Any]) -> Any:
    with system.channel() as channel:
        return rpc(system.stub(channel))


def test_grpc_order_book_touch_is_the_published_tick(system: System) -> None:
    book = wait_for("a book", lambda: call(system, lambda s: s.GetOrderBook(
        pb.GetOrderBookRequest(symbol="btc/usd", depth=5), timeout=5)))
    assert (book.symbol, len(book.bids), len(book.asks)) == (SYMBOL, 5, 5)
    history = wait_for("the book's tick in history", lambda: (
        reply if len((reply := call(system, lambda s: s.GetHistory(pb.GetHistoryRequest(
            symbol=SYMBOL, start_ns=book.ts_ns, end_ns=book.ts_ns), timeout=5))).ticks.seq)
        else None))
    ticks = ticks_from_message(history.ticks)
    tick = ticks[ticks["seq"] == book.tick_seq]
    assert len(tick) == 1
    assert (book.bids[0].price, book.bids[0].size) == (tick["bid"][0], tick["bid_size"][0])
    assert (book.asks[0].price, book.asks[0].size) == (tick["ask"][0], tick["ask_size"][0])
    full = call(system, lambda s: s.GetOrderBook(pb.GetOrderBookRequest(symbol=SYMBOL),
                                                 timeout=5))
    assert (len(full.bids), len(full.asks)) == (20, 20)


def test_grpc_trades_and_history_agree(system: System) -> None:
    reply = wait_for("100 trades", lambda: (
        r if len((r := call(system, lambda s: s.GetTrades(
            pb.GetTradesRequest(symbol=SYMBOL, limit=100), timeout=5))).trades) == 100
        else None))
    trades = list(reply.trades)
    history = call(system, lambda s: s.GetHistory(pb.GetHistoryRequest(
        symbol=SYMBOL, start_ns=trades[-1].ts_ns, end_ns=trades[0].ts_ns, limit=10_000),
        timeout=5))
    ticks = ticks_from_message(history.ticks)
    assert history.end_ns == trades[0].ts_ns
    trade_ticks = ticks[(ticks["flags"] & wire.FLAG_TRADE) != 0][::-1]
    assert [t.seq for t in trades] == trade_ticks["seq"].tolist()
    assert [t.price for t in trades] == trade_ticks["last"].tolist()
    assert [t.size for t in trades] == trade_ticks["last_size"].tolist()
    buyer = (trade_ticks["flags"] & wire.FLAG_BUYER_AGGRESSOR) != 0
    assert [t.side for t in trades] == [pb.SIDE_BUY if b else pb.SIDE_SELL for b in buyer]
    default = call(system, lambda s: s.GetTrades(pb.GetTradesRequest(symbol=SYMBOL), timeout=5))
    assert len(default.trades) == 100


def test_grpc_history_without_start_is_the_latest_ticks(system: System) -> None:
    reply = call(system, lambda s: s.GetHistory(pb.GetHistoryRequest(symbol="ethusd", limit=50),
                                                timeout=5))
    ticks = ticks_from_message(reply.ticks)
    assert (reply.symbol, reply.ticks.symbol, len(ticks)) == ("ETH-USD", "ETH-USD", 50)
    assert (np.diff(ticks["seq"].astype(np.int64)) == 1).all()
    assert abs(time.time_ns() - reply.end_ns) < 5e9
    # The default limit is 1000: ask once history holds more than that (the bridge may have
    # joined the feed after its first ticks, so count what is stored, not the latest seq).
    wait_for("over 1000 ticks in history", lambda: len(call(system, lambda s: s.GetHistory(
        pb.GetHistoryRequest(symbol="ETH-USD", limit=1001), timeout=5)).ticks.seq) > 1000)
    default = call(system, lambda s: s.GetHistory(pb.GetHistoryRequest(symbol="ETH-USD"),
                                                  timeout=5))
    latest = ticks_from_message(default.ticks)
    assert len(latest) == 1000
    assert (np.diff(latest["seq"].astype(np.int64)) == 1).all()


def test_grpc_candles_equal_rest_candles(system: System) -> None:
    def closed() -> list[dict[str, Any]] | None:
        found = [c for c in get(system, f"/api/v1/candles/{SYMBOL}?interval=1s")["candles"]
                 if c["closed"] and c["close_time_ms"] < time.time_ns() // 1_000_000 - 200]
        return found[-3:] if len(found) >= 3 else None

    rest = wait_for("three closed 1s candles", closed, 15)
    start_ns = rest[0]["open_time_ms"] * 1_000_000
    end_ns = rest[-1]["open_time_ms"] * 1_000_000
    reply = call(system, lambda s: s.GetCandles(pb.GetCandlesRequest(
        symbol=SYMBOL, interval="1s", start_ns=start_ns, end_ns=end_ns), timeout=5))
    assert (reply.symbol, reply.interval) == (SYMBOL, "1s")
    assert [c.open_time_ms for c in reply.candles] == [c["open_time_ms"] for c in rest]
    for got, expected in zip(reply.candles, rest, strict=True):
        assert got.close_time_ms == expected["close_time_ms"]
        assert (round(got.open, 2), round(got.high, 2), round(got.low, 2),
                round(got.close, 2)) == (expected["open"], expected["high"], expected["low"],
                                         expected["close"])
        assert (got.trades, got.closed) == (expected["trades"], True)
        assert round(got.volume, 5) == expected["volume"]
        assert got.first_seq <= got.last_seq
    minutes = call(system, lambda s: s.GetCandles(pb.GetCandlesRequest(symbol=SYMBOL),
                                                  timeout=5))
    assert minutes.interval == "1m" and len(minutes.candles) >= 1


@pytest.mark.parametrize(("rpc", "code", "text"), [
    # HISTORY_MAX_LIMIT (12,000 here) bounds gRPC as it bounds REST
    (lambda s: s.GetHistory(pb.GetHistoryRequest(symbol=SYMBOL, limit=12_001), timeout=5),
     grpc.StatusCode.INVALID_ARGUMENT, "limit: 12001 is not an integer from 1 to 12000"),
    (lambda s: s.GetCandles(pb.GetCandlesRequest(symbol=SYMBOL, limit=12_001), timeout=5),
     grpc.StatusCode.INVALID_ARGUMENT, "limit: 12001 is not an integer from 1 to 12000"),
    (lambda s: s.GetHistory(pb.GetHistoryRequest(symbol=SYMBOL, start_ns=-1), timeout=5),
     grpc.StatusCode.INVALID_ARGUMENT, "start_ns: -1 is outside the times supported"),
    (lambda s: s.GetHistory(pb.GetHistoryRequest(symbol=SYMBOL, start_ns=5, end_ns=4),
                            timeout=5),
     grpc.StatusCode.INVALID_ARGUMENT, "start_ns: is after end_ns"),
    (lambda s: s.GetHistory(pb.GetHistoryRequest(symbol=SYMBOL, start_ns=2**62), timeout=5),
     grpc.StatusCode.INVALID_ARGUMENT, "start_ns: is in the future (end_ns defaults to now)"),
    (lambda s: s.GetHistory(pb.GetHistoryRequest(symbol="XYZ-USD"), timeout=5),
     grpc.StatusCode.NOT_FOUND, "unknown symbol 'XYZ-USD'"),
    (lambda s: s.GetCandles(pb.GetCandlesRequest(symbol=SYMBOL, interval="2m"), timeout=5),
     grpc.StatusCode.INVALID_ARGUMENT, "interval: '2m' is not an interval; accepted: 1s, 1m"),
    (lambda s: s.GetCandles(pb.GetCandlesRequest(symbol="!!"), timeout=5),
     grpc.StatusCode.INVALID_ARGUMENT, "not a symbol"),
    (lambda s: s.GetOrderBook(pb.GetOrderBookRequest(symbol=SYMBOL, depth=21), timeout=5),
     grpc.StatusCode.INVALID_ARGUMENT, "depth: 21 is not an integer from 1 to 20"),
    (lambda s: s.GetOrderBook(pb.GetOrderBookRequest(symbol="DOGE-USD"), timeout=5),
     grpc.StatusCode.NOT_FOUND, "DOGE-USD"),
    (lambda s: s.GetTrades(pb.GetTradesRequest(symbol=SYMBOL, limit=1001), timeout=5),
     grpc.StatusCode.INVALID_ARGUMENT, "limit: 1001 is not an integer from 1 to 1000"),
])
def test_grpc_bad_requests_name_the_field(system: System, rpc: Callable[[Any], Any],
                                          code: grpc.StatusCode, text: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call(system, rpc)
    assert code == info.value.code()
    assert text in info.value.details()


def test_grpc_snapshots_are_unavailable_before_the_feed(tmp_path: Path, redis_url: str,
                                                        redis_prefix: str) -> None:
    lonely = System.configure(tmp_path, redis_url, redis_prefix)
    lonely.start("bridge")  # no feedsim: no instruments, no book
    try:
        for rpc in (lambda s: s.GetOrderBook(pb.GetOrderBookRequest(symbol=SYMBOL), timeout=5),
                    lambda s: s.GetHistory(pb.GetHistoryRequest(symbol=SYMBOL), timeout=5),
                    lambda s: s.GetTrades(pb.GetTradesRequest(symbol=SYMBOL), timeout=5)):
            def unavailable(rpc: Callable[[Any], Any] = rpc) -> grpc.RpcError | None:
                try:
                    call(lonely, rpc)
                except grpc.RpcError as exc:
                    if exc.code() == grpc.StatusCode.UNAVAILABLE and "feed" in exc.details():
                        return exc
                    raise
                return None

            wait_for("UNAVAILABLE", unavailable, 10)
    finally:
        assert 0 == lonely.stop("bridge")
