"""Candles and 24-hour statistics through falcon's test client, over a MemoryStore."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from falcon import testing
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from api.config import ApiConfig
from api.views import CANDLE_FIELDS, STATS_FIELDS
from marketdata import wire
from marketdata.store import MemoryStore
from marketdata.symbols import Instrument
from tests.test_api import (
    BTC,
    ETH,
    MS,
    SOL,
    T0,
    assert_error,
    make_client,
    make_ticks,
    unreachable_store,
)

S = 1_000 * MS
MINUTE = 60 * S
# T0 is 08:44:39. BTC trades: minute 08:44 (3 trades over seconds 39 and 40), then 08:46 (2).
TRADES = [(T0, 65_000.5, 0.1), (T0 + 500 * MS, 65_010.25, 0.2), (T0 + S, 64_990.0, 0.05),
          (T0 + 81 * S, 65_100.0, 1.0), (T0 + 81 * S + 1, 65_050.0, 0.5)]
NOW = T0 + 81_500 * MS  # 08:46:00.5, inside the last trade's second


def trade_store(instruments: Sequence[Instrument] = (BTC, ETH)) -> MemoryStore:
    """Return a store holding TRADES of BTC-USD and one quote between them; ETH has no trades."""
    store = MemoryStore(instruments)
    rows = [*TRADES[:3], (T0 + 30 * S, 64_990.0, 0.05), *TRADES[3:]]
    ticks = make_ticks([t for t, _, _ in rows])
    ticks["last"] = [p for _, p, _ in rows]
    ticks["last_size"] = [q for _, _, q in rows]
    ticks["flags"][3] = 0  # a quote (its last and last_size are the previous trade's)
    store.add(wire.TickBatch("BTC-USD", 11, ticks[:2]))
    store.add(wire.TickBatch("BTC-USD", 11, ticks[2:]))
    eth = make_ticks([T0])
    eth["flags"] = 0
    store.add(wire.TickBatch("ETH-USD", 11, eth))
    return store


@pytest.fixture
def client() -> testing.TestClient:
    """A client over trade_store() at NOW."""
    return make_client(trade_store(), now_ns=NOW)


def candles(client: testing.TestClient, symbol: str = "BTC-USD",
            **params: str) -> list[dict[str, Any]]:
    """GET candles with `params`; return them after checking the answer is a 200."""
    result = client.simulate_get(f"/api/v1/candles/{symbol}", params=params)
    assert result.status_code == 200, result.text
    return list(result.json["candles"])


def test_candles_shape_and_values(client: testing.TestClient) -> None:
    result = client.simulate_get("/api/v1/candles/BTC-USD", params={"interval": "1s"})
    assert result.status_code == 200
    body = result.json
    assert list(body) == ["symbol", "interval", "candles"]
    assert (body["symbol"], body["interval"]) == ("BTC-USD", "1s")
    first = body["candles"][0]
    assert list(first) == list(CANDLE_FIELDS)
    assert first == {
        "open_time": "2025-11-25T08:44:39.000000Z", "open_time_ms": T0 // MS,
        "close_time_ms": T0 // MS + 999, "open": 65000.5, "high": 65010.25, "low": 65000.5,
        "close": 65010.25, "volume": 0.3, "quote_volume": round(6500.05 + 13002.05, 7),
        "trades": 2, "closed": True,
    }
    assert [c["open_time_ms"] for c in body["candles"]] == [
        T0 // MS, T0 // MS + 1000, T0 // MS + 81_000]  # no trades in between: no candles
    assert [c["closed"] for c in body["candles"]] == [True, True, False]


def test_interval_defaults_to_one_minute(client: testing.TestClient) -> None:
    result = client.simulate_get("/api/v1/candles/btc-usd")
    assert result.json["interval"] == "1m"
    minutes = result.json["candles"]
    assert [(c["open_time"], c["trades"], c["closed"]) for c in minutes] == [
        ("2025-11-25T08:44:00.000000Z", 3, True), ("2025-11-25T08:46:00.000000Z", 2, False)]
    assert minutes[0]["close_time_ms"] - minutes[0]["open_time_ms"] == 59_999
    assert (minutes[0]["open"], minutes[0]["high"], minutes[0]["low"], minutes[0]["close"]) == (
        65000.5, 65010.25, 64990.0, 64990.0)
    assert minutes[0]["volume"] == 0.35


@pytest.mark.parametrize(("interval", "count"), [("1s", 3), ("1m", 2), ("5m", 2), ("15m", 2),
                                                 ("1h", 1), ("4h", 1), ("1d", 1)])
def test_every_interval(client: testing.TestClient, interval: str, count: int) -> None:
    found = candles(client, interval=interval)
    assert len(found) == count
    assert sum(c["trades"] for c in found) == 5
    assert round(sum(c["volume"] for c in found), 5) == 1.85


@pytest.mark.parametrize(
    ("params", "expected_seconds"),
    [
        pytest.param({"limit": "2"}, [1, 81], id="limit-keeps-the-latest"),
        pytest.param({"start": str(T0 // MS + 1)}, [1, 81], id="start-after-an-open-time"),
        pytest.param({"start": str(T0 // MS), "limit": "2"}, [0, 1], id="start-limit-first"),
        pytest.param({"end": str(T0 // MS + 1000)}, [0, 1], id="end-includes-its-ms"),
        pytest.param({"end": "2025-11-25T08:44:40Z"}, [0, 1], id="end-rfc3339"),
        pytest.param({"start": "2025-11-25T08:44:39.5Z", "end": "2025-11-25T08:45:59Z"}, [1],
                     id="both"),
        pytest.param({"start": "2025-11-25T08:44:39.5Z", "end": "2025-11-25T08:46:00Z"},
                     [1, 81], id="end-covers-its-second"),
        pytest.param({"start": str(T0 // MS + 81_001)}, [], id="start-after-everything"),
    ],
)
def test_candle_ranges_follow_history_semantics_by_open_time(
        client: testing.TestClient, params: dict[str, str], expected_seconds: list[int]) -> None:
    found = candles(client, interval="1s", **params)
    assert [(c["open_time_ms"] - T0 // MS) // 1000 for c in found] == expected_seconds


def test_closed_follows_the_clock() -> None:
    store = trade_store()
    end = str(T0 // MS + 100_000)  # end may be after now: these clocks lag the trades
    open_minute = make_client(store, now_ns=T0 + 21 * S - 1)  # 08:44:59.999999999
    assert [c["closed"] for c in candles(open_minute, end=end)] == [False, False]
    later = make_client(store, now_ns=T0 + 21 * S)  # 08:45:00
    assert [c["closed"] for c in candles(later, end=end)] == [True, False]


@pytest.mark.parametrize(("query", "parameter", "text"), [
    ("interval=2m", "interval", "accepted: 1s, 1m, 5m, 15m, 1h, 4h, 1d"),
    ("interval=1M", "interval", "not an interval"),
    ("interval=", "interval", "not an interval"),
    ("interval=1m&interval=1s", "interval", "more than once"),
    ("limit=0", "limit", "1 to 10000"),
    ("start=yesterday", "start", "RFC 3339"),
    (f"start={T0 // MS + 10}&end={T0 // MS}", "start", "after end"),
    ("colour=red", "colour", "accepted: interval, start, end, limit"),
])
def test_bad_candle_parameters_400_name_them(client: testing.TestClient, query: str,
                                             parameter: str, text: str) -> None:
    result = client.simulate_get("/api/v1/candles/BTC-USD", query_string=query)
    message = assert_error(result, 400, "invalid_parameter", text)
    assert message.startswith(f"{parameter}: "), message


@pytest.mark.parametrize("spelling", ["BTC-USD", "BTC%2FUSD", "BTC/USD", "btcusd", "BTC_USD"])
def test_candles_and_stats_accept_every_symbol_spelling(client: testing.TestClient,
                                                        spelling: str) -> None:
    for path in (f"/api/v1/candles/{spelling}", f"/api/v1/stats/{spelling}/24h"):
        result = client.simulate_get(path)
        assert result.status_code == 200, result.text
        assert result.json["symbol"] == "BTC-USD"


@pytest.mark.parametrize("path", ["/api/v1/candles/XYZ-USD", "/api/v1/stats/XYZ-USD/24h"])
def test_unknown_symbol_404(client: testing.TestClient, path: str) -> None:
    assert_error(client.simulate_get(path), 404, "unknown_symbol", "'XYZ-USD'")


def test_a_symbol_without_trades_has_no_candles(client: testing.TestClient) -> None:
    assert candles(client, "ETH-USD", interval="1s") == []


@pytest.mark.parametrize("path", ["/api/v1/candles/BTC-USD", "/api/v1/stats/BTC-USD/24h"])
def test_503_before_instruments_and_when_redis_is_unreachable(path: str) -> None:
    assert_error(make_client(MemoryStore()).simulate_get(path), 503, "unavailable",
                 "no instruments yet")
    store = unreachable_store()
    try:
        message = assert_error(make_client(store).simulate_get(path), 503, "unavailable")
    finally:
        store.client.close()
    assert "127.0.0.1" not in message


# -- 24-hour statistics ------------------------------------------------------------------------


def test_stats_shape_and_values(client: testing.TestClient) -> None:
    result = client.simulate_get("/api/v1/stats/BTC-USD/24h")
    assert result.status_code == 200, result.text
    body = result.json
    assert list(body) == list(STATS_FIELDS)
    assert body == {
        "symbol": "BTC-USD", "open": 65000.5, "high": 65100.0, "low": 64990.0, "last": 65050.0,
        "volume": 1.85, "quote_volume": round(6500.05 + 13002.05 + 3249.5 + 65100.0 + 32525.0, 7),
        "change": 49.5, "change_percent": round(49.5 / 65000.5 * 100, 3), "trades": 5,
        "open_time": "2025-11-24T08:47:00.000000Z", "close_time": "2025-11-25T08:46:00.500000Z",
    }


def test_stats_match_the_one_minute_candles(client: testing.TestClient) -> None:
    minutes = candles(client, interval="1m")
    stats = client.simulate_get("/api/v1/stats/BTC-USD/24h").json
    assert stats["open"] == minutes[0]["open"]
    assert stats["last"] == minutes[-1]["close"]
    assert stats["high"] == max(c["high"] for c in minutes)
    assert stats["low"] == min(c["low"] for c in minutes)
    assert stats["trades"] == sum(c["trades"] for c in minutes)


def test_stats_roll_minute_by_minute() -> None:
    store = trade_store()
    # 24 h after the first minute (08:44), that minute is out of the window: 2 trades are left.
    late = make_client(store, now_ns=T0 - 39 * S + 24 * 60 * MINUTE)
    body = late.simulate_get("/api/v1/stats/BTC-USD/24h").json
    assert (body["trades"], body["open"], body["open_time"]) == (
        2, 65100.0, "2025-11-25T08:45:00.000000Z")
    just_before = make_client(store, now_ns=T0 - 39 * S + 24 * 60 * MINUTE - 1)
    assert just_before.simulate_get("/api/v1/stats/BTC-USD/24h").json["trades"] == 5
    gone = make_client(store, now_ns=T0 + 3 * 24 * 60 * MINUTE)
    assert_error(gone.simulate_get("/api/v1/stats/BTC-USD/24h"), 503, "unavailable",
                 "no trades of BTC-USD in the last 24 hours")


def test_stats_503_without_trades() -> None:
    client = make_client(trade_store((BTC, ETH, SOL)), now_ns=NOW)
    for symbol in ("ETH-USD", "SOL-USD"):
        assert_error(client.simulate_get(f"/api/v1/stats/{symbol}/24h"), 503, "unavailable",
                     f"no trades of {symbol}")


def test_stats_take_no_parameters(client: testing.TestClient) -> None:
    message = assert_error(client.simulate_get("/api/v1/stats/BTC-USD/24h",
                                               query_string="window=1h"),
                           400, "invalid_parameter", "takes none")
    assert message.startswith("window: ")


def test_metrics_label_candle_and_stats_routes_by_template() -> None:
    registry = CollectorRegistry()
    client = make_client(trade_store(), now_ns=NOW, registry=registry)
    client.simulate_get("/api/v1/candles/BTC%2FUSD")
    client.simulate_get("/api/v1/candles/btc-usd")
    client.simulate_get("/api/v1/stats/BTC/USD/24h")
    text = client.simulate_get("/metrics").text
    assert ('api_requests_total{method="GET",route="/api/v1/candles/{symbol}",status="200"} 2.0'
            in text)
    assert ('api_requests_total{method="GET",route="/api/v1/stats/{symbol}/24h",status="200"} '
            '1.0' in text)


def test_candle_limit_is_capped_like_history() -> None:
    client = make_client(trade_store(), now_ns=NOW, config=ApiConfig(history_max_limit=2))
    assert len(candles(client, interval="1s")) == 2
    assert_error(client.simulate_get("/api/v1/candles/BTC-USD", params={"limit": "3"}), 400,
                 "invalid_parameter", "limit")


@settings(max_examples=30, deadline=None)
@given(st.text(max_size=30))
def test_garbage_candle_parameters_never_500(text: str) -> None:
    client = make_client(trade_store(), now_ns=NOW)
    for name in ("interval", "start", "end", "limit"):
        result = client.simulate_get("/api/v1/candles/BTC-USD",
                                     query_string=f"{name}={quote(text)}")
        assert result.status_code in (200, 400), result.text
    result = client.simulate_get(f"/api/v1/stats/{quote(text, safe='')}/24h")
    assert result.status_code in (200, 400, 404), result.text


def test_rounding_of_volumes_to_the_instrument() -> None:
    store = MemoryStore([SOL])
    ticks = make_ticks([T0, T0 + 1], 0.1 + 0.2, 0.304)
    ticks["last"] = [0.1 + 0.2, 0.3]
    ticks["last_size"] = [0.1 + 0.2, 0.01]
    store.add(wire.TickBatch("SOL-USD", 1, ticks))
    (candle,) = candles(make_client(store, now_ns=NOW), "SOL-USD", interval="1s")
    assert (candle["open"], candle["volume"], candle["quote_volume"]) == (0.3, 0.31, 0.093)
    assert np.isclose(candle["quote_volume"], 0.3 * 0.3 + 0.3 * 0.01)
