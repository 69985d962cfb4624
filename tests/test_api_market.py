"""Order books, trades and correlations through falcon's test client, over a MemoryStore."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from falcon import testing

from api.views import BOOK_FIELDS, TRADE_FIELDS
from marketdata import wire
from marketdata.candles import ONE_MINUTE
from marketdata.store import MemoryStore
from marketdata.symbols import Instrument
from tests.test_api import (
    BTC,
    ETH,
    MS,
    NOW,
    SOL,
    T0,
    assert_error,
    make_client,
    make_ticks,
    unreachable_store,
)

USDT = Instrument("USDT-USD", "USDT", "USD", 0.0001, 0.01, 0.5, 2.0)


def make_book(levels: int = 25, symbol: str = "BTC-USD") -> wire.BookSnapshot:
    """Return a book of `levels` a side whose touch is 65000.01 / 65000.02, with unrounded sizes."""
    bids = np.zeros(levels, dtype=wire.LEVEL_DTYPE)
    asks = np.zeros(levels, dtype=wire.LEVEL_DTYPE)
    bids["price"] = 65_000.01 - np.arange(levels) * 0.01
    asks["price"] = 65_000.02 + np.arange(levels) * 0.01
    bids["size"] = 1.23456789 + np.arange(levels)
    asks["size"] = 2.5 + np.arange(levels)
    return wire.BookSnapshot(symbol, 11, 42, 19, T0 + 1_900 * MS, bids, asks)


def book_store(levels: int = 25) -> MemoryStore:
    """Return a store with instruments, BTC ticks and trades, and a BTC book; no ETH book."""
    store = MemoryStore([BTC, ETH])
    ticks = make_ticks([T0 + i * 100 * MS for i in range(20)])
    ticks["flags"][::2] = wire.FLAG_TRADE  # even ticks: the seller hit the bid
    ticks["flags"][5] = 0  # a quote
    ticks["last"] = 65_000.0 + np.arange(20) * 0.125
    ticks["last_size"] = 0.0123456 * (1 + np.arange(20))
    store.add(wire.TickBatch("BTC-USD", 11, ticks[:8]))
    store.add(wire.TickBatch("BTC-USD", 11, ticks[8:]))
    quotes = make_ticks([T0], 3200.01, 3200.04)
    quotes["flags"] = 0
    store.add(wire.TickBatch("ETH-USD", 11, quotes))
    store.add_book(make_book(levels))
    return store


@pytest.fixture
def client() -> testing.TestClient:
    return make_client(book_store())


# -- order book --------------------------------------------------------------------------------


def test_orderbook_shape_and_values(client: testing.TestClient) -> None:
    result = client.simulate_get("/api/v1/orderbook/BTC-USD", params={"depth": "3"})
    assert result.status_code == 200, result.text
    body = result.json
    assert list(body) == list(BOOK_FIELDS)
    assert body == {
        "symbol": "BTC-USD", "session": 11, "book_seq": 42, "tick_seq": 19,
        "timestamp": "2025-11-25T08:44:40.900000Z", "timestamp_ms": (T0 + 1_900 * MS) // MS,
        "ts_ns": T0 + 1_900 * MS, "age_ms": 100.0, "depth": 3,
        "bids": [[65000.01, 1.23457], [65000.0, 2.23457], [64999.99, 3.23457]],
        "asks": [[65000.02, 2.5], [65000.03, 3.5], [65000.04, 4.5]],
    }


def test_orderbook_depth_defaults_to_20_and_reaches_every_level_held(
        client: testing.TestClient) -> None:
    body = client.simulate_get("/api/v1/orderbook/BTC-USD").json
    assert (body["depth"], len(body["bids"]), len(body["asks"])) == (20, 20, 20)
    body = client.simulate_get("/api/v1/orderbook/btc-usd", params={"depth": "25"}).json
    assert (body["depth"], len(body["bids"]), len(body["asks"])) == (25, 25, 25)
    assert body["asks"][-1] == [65000.26, 26.5]


def test_orderbook_of_a_shallow_book_defaults_to_what_it_holds() -> None:
    body = make_client(book_store(levels=4)).simulate_get("/api/v1/orderbook/BTC-USD").json
    assert (body["depth"], len(body["bids"])) == (4, 4)


@pytest.mark.parametrize("path", ["/api/v1/orderbook/BTC/USD", "/api/v1/orderbook/BTC%2FUSD",
                                  "/api/v1/orderbook/btcusd"])
def test_orderbook_symbol_spellings(client: testing.TestClient, path: str) -> None:
    result = client.simulate_get(path)
    assert result.status_code == 200, result.text
    assert result.json["symbol"] == "BTC-USD"


@pytest.mark.parametrize(("query", "text"), [
    ("depth=0", "depth: '0' is not an integer from 1 to the levels held per side"),
    ("depth=26", "depth: 26 is not an integer from 1 to 25, the levels held per side"),
    ("depth=-1", "depth: '-1' is not an integer from 1 to the levels held per side"),
    ("depth=abc", "depth: 'abc' is not an integer from 1 to the levels held per side"),
    ("depth=999999999999999999999",
     "depth: '999999999999999999999' is not an integer from 1 to the levels held per side"),
    ("depth=", "depth: '' is not an integer from 1 to the levels held per side"),
    ("depth=1&depth=2", "depth: is given more than once"),
    ("levels=3", "levels: is not a parameter of this route; accepted: depth"),
])
def test_orderbook_bad_parameters(client: testing.TestClient, query: str, text: str) -> None:
    result = client.simulate_get("/api/v1/orderbook/BTC-USD", query_string=query)
    assert text == assert_error(result, 400, "invalid_parameter")


def test_orderbook_errors(client: testing.TestClient) -> None:
    assert_error(client.simulate_get("/api/v1/orderbook/ETH-USD"), 503, "unavailable",
                 "no order book of ETH-USD yet")
    assert_error(client.simulate_get("/api/v1/orderbook/XYZ-USD"), 404, "unknown_symbol",
                 "XYZ-USD")
    assert_error(client.simulate_get("/api/v1/orderbook/!!"), 400, "invalid_symbol")
    # A malformed or non-positive depth is a 400 even before the first book.
    assert_error(client.simulate_get("/api/v1/orderbook/ETH-USD", query_string="depth=x"), 400,
                 "invalid_parameter", "depth")
    assert_error(client.simulate_get("/api/v1/orderbook/ETH-USD", query_string="depth=0"), 400,
                 "invalid_parameter", "depth: '0' is not an integer from 1")


# -- trades ------------------------------------------------------------------------------------


def test_trades_newest_first_with_their_side(client: testing.TestClient) -> None:
    result = client.simulate_get("/api/v1/trades/BTC-USD", params={"limit": "3"})
    assert result.status_code == 200, result.text
    body = result.json
    assert list(body) == ["symbol", "count", "trades"]
    assert (body["symbol"], body["count"]) == ("BTC-USD", 3)
    assert [list(t) for t in body["trades"]] == [list(TRADE_FIELDS)] * 3
    first = body["trades"][0]
    assert first == {
        "price": 65002.38, "size": 0.24691, "side": "buy", "seq": 20, "session": 11,
        "timestamp": "2025-11-25T08:44:40.900000Z", "timestamp_ms": (T0 + 1_900 * MS) // MS,
        "ts_ns": T0 + 1_900 * MS,
    }
    assert [(t["seq"], t["side"]) for t in body["trades"]] == [(20, "buy"), (19, "sell"),
                                                               (18, "buy")]


def test_trades_leave_out_quotes_and_default_to_100(client: testing.TestClient) -> None:
    body = client.simulate_get("/api/v1/trades/btc/usd").json
    assert [t["seq"] for t in body["trades"]] == [s for s in range(20, 0, -1) if s != 6]
    assert body["count"] == 19


def test_trades_of_a_symbol_without_any_is_an_empty_list(client: testing.TestClient) -> None:
    assert client.simulate_get("/api/v1/trades/ETH-USD").json == {
        "symbol": "ETH-USD", "count": 0, "trades": []}


@pytest.mark.parametrize(("query", "text"), [
    ("limit=0", "limit: 0 is not an integer from 1 to 1000"),
    ("limit=1001", "limit: 1001 is not an integer from 1 to 1000"),
    ("limit=ten", "limit: 'ten' is not an integer from 1 to 1000"),
    ("since=1", "since: is not a parameter of this route; accepted: limit"),
])
def test_trades_bad_parameters(client: testing.TestClient, query: str, text: str) -> None:
    result = client.simulate_get("/api/v1/trades/BTC-USD", query_string=query)
    assert text == assert_error(result, 400, "invalid_parameter")


def test_trades_limit_1000_is_accepted(client: testing.TestClient) -> None:
    result = client.simulate_get("/api/v1/trades/BTC-USD", params={"limit": "1000"})
    assert result.status_code == 200
    assert result.json["count"] == 19


# -- correlations ------------------------------------------------------------------------------

BASE = ONE_MINUTE.open_ns(T0) + ONE_MINUTE.ns  # 08:45:00
MINUTES = 31
CORR_NOW = BASE + MINUTES * ONE_MINUTE.ns + 500 * MS  # minute 30 has just closed


def minute_store(closes: dict[Instrument, Sequence[float | None]]) -> MemoryStore:
    """Return a store where each instrument trades once a minute from BASE at the given prices
    (None: no trade that minute); the first-listed instruments are published in that order."""
    store = MemoryStore(list(closes))
    for instrument, prices in closes.items():
        times = [BASE + m * ONE_MINUTE.ns + 1_000 * MS for m, p in enumerate(prices)
                 if p is not None]
        ticks = make_ticks(times)
        ticks["last"] = [p for p in prices if p is not None]
        ticks["flags"] = wire.FLAG_TRADE
        store.add(wire.TickBatch(instrument.symbol, 11, ticks))
    return store


def correlations(store: MemoryStore, query: str = "", now_ns: int = CORR_NOW) -> dict[str, Any]:
    result = make_client(store, now_ns=now_ns).simulate_get("/api/v1/correlations",
                                                            query_string=query)
    assert result.status_code == 200, result.text
    return dict(result.json)


def random_walk(seed: int, n: int = MINUTES, start: float = 100.0) -> list[float]:
    return (start * np.exp(np.cumsum(np.random.default_rng(seed).normal(0, 0.01, n)))).tolist()


def test_correlations_of_exactly_related_prices() -> None:
    btc = random_walk(1, start=65_000.0)
    eth = [p * p / 1e6 for p in btc]  # log returns twice BTC's: +1
    sol = [1e7 / p for p in btc]  # log returns minus BTC's: -1
    body = correlations(minute_store({BTC: btc, ETH: eth, SOL: sol}), "window=30")
    assert list(body) == ["symbols", "interval", "window", "start", "end", "returns", "matrix",
                          "reason"]
    assert body["symbols"] == ["BTC-USD", "ETH-USD", "SOL-USD"]  # default: all, in order
    assert (body["interval"], body["window"], body["returns"], body["reason"]) == (
        "1m", 30, 30, None)
    assert (body["start"], body["end"]) == ("2025-11-25T08:45:00.000000Z",
                                            "2025-11-25T09:15:59.999999Z")
    assert body["matrix"] == [[1.0, 1.0, -1.0], [1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]]


def test_correlations_equal_numpy_on_the_aligned_log_returns() -> None:
    btc, eth = random_walk(2, start=65_000.0), random_walk(3, start=3_000.0)
    eth_gaps: list[float | None] = list(eth)
    eth_gaps[10] = None  # no ETH trade that minute: the returns into and out of it are dropped
    body = correlations(minute_store({BTC: btc, ETH: eth_gaps}),
                        "symbols=eth-usd,BTC/USD&window=30")
    assert body["symbols"] == ["ETH-USD", "BTC-USD"]
    keep = [i for i in range(30) if i not in (9, 10)]
    r_btc = np.diff(np.log(btc))[keep]
    r_eth = np.diff(np.log(eth))[keep]
    expected = round(float(np.corrcoef(r_eth, r_btc)[0, 1]), 6)
    assert body["returns"] == 28
    assert body["matrix"] == [[1.0, expected], [expected, 1.0]]


def test_correlations_use_only_closed_candles_of_the_window() -> None:
    btc, eth = random_walk(4), random_walk(5)
    # Minute 30 is still open at 09:15:30: the grid ends with minute 29.
    body = correlations(minute_store({BTC: btc, ETH: eth}), "window=10",
                        now_ns=BASE + 30 * ONE_MINUTE.ns + 30_000 * MS)
    r_btc, r_eth = np.diff(np.log(btc[19:30])), np.diff(np.log(eth[19:30]))
    assert body["returns"] == 10
    assert body["end"] == "2025-11-25T09:14:59.999999Z"
    assert body["matrix"][0][1] == round(float(np.corrcoef(r_btc, r_eth)[0, 1]), 6)


def test_correlations_of_a_flat_price_are_null_with_a_reason() -> None:
    body = correlations(minute_store({BTC: random_walk(6), USDT: [1.0] * MINUTES}), "window=30")
    assert body["matrix"] == [[1.0, None], [None, None]]
    assert body["reason"] == "the close of USDT-USD did not change over the aligned returns"


def test_correlations_with_too_few_aligned_returns_are_null_with_a_reason() -> None:
    btc: list[float | None] = list(random_walk(7))
    for minute in range(0, MINUTES, 2):
        btc[minute] = None  # every other minute: never two consecutive candles
    body = correlations(minute_store({BTC: btc, ETH: random_walk(8)}), "window=30")
    assert body["returns"] == 0
    assert body["matrix"] == [[None, None], [None, None]]
    assert "only 0 aligned returns in the window (at least 3 needed)" in body["reason"]
    # Far in the future, nothing at all is in the window: the same answer.
    far = correlations(minute_store({BTC: random_walk(7), ETH: random_walk(8)}),
                       now_ns=CORR_NOW + 86_400 * 10**9)
    assert (far["returns"], far["window"], far["interval"]) == (0, 60, "1m")


@pytest.mark.parametrize(("query", "status", "code", "text"), [
    ("symbols=BTC-USD", 400, "invalid_parameter", "symbols: give at least two symbols"),
    ("symbols=", 400, "invalid_parameter", "symbols: '' has an empty name"),
    ("symbols=BTC-USD,,ETH-USD", 400, "invalid_parameter", "has an empty name"),
    ("symbols=BTC-USD,btcusd", 400, "invalid_parameter", "symbols: 'btcusd' is BTC-USD again"),
    ("symbols=BTC-USD,XYZ-USD", 404, "unknown_symbol", "unknown symbol 'XYZ-USD'"),
    ("symbols=BTC-USD,!!", 400, "invalid_symbol", "'!!'"),
    ("interval=2m", 400, "invalid_parameter", "interval: '2m' is not an interval; accepted: 1s"),
    ("window=2", 400, "invalid_parameter", "window: 2 is not an integer from 3 to 1440"),
    ("window=1441", 400, "invalid_parameter", "window: 1441 is not an integer from 3 to 1440"),
    ("window=x", 400, "invalid_parameter", "window: 'x' is not an integer from 3 to 1440"),
    ("limit=3", 400, "invalid_parameter", "limit: is not a parameter of this route"),
])
def test_correlations_bad_requests(query: str, status: int, code: str, text: str) -> None:
    client = make_client(minute_store({BTC: random_walk(1), ETH: random_walk(2)}))
    result = client.simulate_get("/api/v1/correlations", query_string=query)
    assert_error(result, status, code, text)


def test_correlations_need_two_published_symbols() -> None:
    result = make_client(minute_store({BTC: random_walk(1)})).simulate_get("/api/v1/correlations")
    assert_error(result, 503, "unavailable", "fewer than two symbols")


# -- the store unreachable ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/orderbook/BTC-USD", "/api/v1/trades/BTC-USD",
                                  "/api/v1/correlations"])
def test_new_routes_answer_503_when_redis_is_unreachable(path: str) -> None:
    store = unreachable_store()
    try:
        assert_error(make_client(store).simulate_get(path), 503, "unavailable")
    finally:
        store.client.close()


def test_orderbook_age_follows_the_clock() -> None:
    body = make_client(book_store(), now_ns=NOW + 1_000 * MS).simulate_get(
        "/api/v1/orderbook/BTC-USD").json
    assert body["age_ms"] == 1_100.0
