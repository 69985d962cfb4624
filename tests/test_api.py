"""The REST API through falcon's test client, over a MemoryStore and an injected clock."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
import redis
from falcon import testing
from falcon.inspect import inspect_routes
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from redis.backoff import NoBackoff
from redis.retry import Retry

from api.app import create_app
from api.config import ApiConfig
from api.errors import InvalidParameter
from api.params import MAX_EPOCH_MS, parse_timestamp
from api.views import rfc3339
from marketdata import wire
from marketdata.errors import ConfigError
from marketdata.layout import Keys
from marketdata.store import LatestTick, MemoryStore, RedisStore, Store
from marketdata.symbols import Instrument
from tests.conftest import free_port

BTC = Instrument("BTC-USD", "BTC", "USD", 0.01, 0.00001, 1.0, 10_000_000.0)
ETH = Instrument("ETH-USD", "ETH", "USD", 0.01, 0.0001, 0.1, 1_000_000.0)
SOL = Instrument("SOL-USD", "SOL", "USD", 0.001, 0.01, 0.01, 100_000.0)
T0 = 1_764_060_279_000_000_000  # 2025-11-25T08:44:39Z
NOW = T0 + 2_000_000_000  # the injected clock: 2 s after the first tick
MS = 1_000_000
CONFIG = ApiConfig(service_name="api", instance_name="api-test", ready_max_tick_age_s=5.0)
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
PRICE_KEYS = {"symbol", "bid", "ask", "mid", "last", "last_size", "bid_size", "ask_size",
              "spread", "spread_bps", "volume", "seq", "session", "timestamp", "timestamp_ms",
              "ts_ns", "age_ms", "flags"}
TICK_KEYS = ["seq", "ts_ns", "timestamp", "timestamp_ms", "bid", "ask", "mid", "last",
             "bid_size", "ask_size", "last_size", "volume", "flags"]


def make_ticks(ts_ns: Sequence[int], bid: float = 65_000.01, ask: float = 65_000.02,
               first_seq: int = 1) -> wire.Ticks:
    """Return ticks at `ts_ns` with consecutive seqs and the given quote."""
    ticks = wire.empty_ticks(len(ts_ns))
    ticks["seq"] = range(first_seq, first_seq + len(ts_ns))
    ticks["ts_ns"] = ts_ns
    ticks["bid"] = bid
    ticks["ask"] = ask
    ticks["last"] = bid
    ticks["bid_size"] = 1.23456789
    ticks["ask_size"] = 2.5
    ticks["last_size"] = 0.05
    ticks["volume"] = ticks["seq"] * 0.1
    ticks["flags"] = wire.FLAG_TRADE | wire.FLAG_BUYER_AGGRESSOR
    return ticks


# BTC: 20 ticks, 100 ms apart from T0, in two entries. ETH: one tick 1 s after T0.
BTC_TS = [T0 + i * 100 * MS for i in range(20)]


def filled_store(instruments: Sequence[Instrument] = (BTC, ETH)) -> MemoryStore:
    """Return a store with BTC and ETH ticks (and `instruments` published)."""
    store = MemoryStore(instruments)
    ticks = make_ticks(BTC_TS)
    store.add(wire.TickBatch("BTC-USD", 11, ticks[:8]))
    store.add(wire.TickBatch("BTC-USD", 11, ticks[8:]))
    store.add(wire.TickBatch("ETH-USD", 11, make_ticks([T0 + 1000 * MS], 3200.01, 3200.04)))
    return store


def make_client(store: Store, now_ns: int = NOW, config: ApiConfig = CONFIG,
                registry: CollectorRegistry | None = None) -> testing.TestClient:
    """Return a test client of an app over `store` whose clock says `now_ns`."""
    app = create_app(store, config, registry or CollectorRegistry(), clock=lambda: now_ns)
    return testing.TestClient(app)


@pytest.fixture
def client() -> testing.TestClient:
    """A client of an app over filled_store() at NOW."""
    return make_client(filled_store())


def assert_error(result: testing.Result, status: int, code: str, *in_message: str) -> str:
    """Check `result` is an error in the one JSON shape; return its message."""
    assert result.status_code == status, result.text
    assert result.headers["content-type"] == "application/json"
    assert set(result.json) == {"error"}
    error = result.json["error"]
    assert set(error) == {"status", "code", "message"}
    assert error["status"] == status
    assert error["code"] == code
    for text in in_message:
        assert text in error["message"]
    return str(error["message"])


class BrokenStore(MemoryStore):
    """A store whose latest() fails with an unexpected error (to check 500 answers)."""

    def latest(self, symbols: Sequence[str]) -> dict[str, LatestTick | None]:
        raise RuntimeError("secret internal detail")


# -- health and readiness ----------------------------------------------------------------------


def test_health(client: testing.TestClient) -> None:
    result = client.simulate_get("/api/v1/health")
    assert result.status_code == 200
    assert result.headers["content-type"] == "application/json"
    assert result.json == {"status": "ok", "service": "api", "instance": "api-test"}


def test_probes_may_use_head(client: testing.TestClient) -> None:
    for path in ("/api/v1/health", "/api/v1/ready"):
        result = client.simulate_head(path)
        assert (result.status_code, result.content) == (200, b""), path
    down = make_client(unreachable_store()).simulate_head("/api/v1/ready")
    assert (down.status_code, down.content) == (503, b"")


def test_health_does_not_need_redis() -> None:
    result = make_client(unreachable_store()).simulate_get("/api/v1/health")
    assert result.status_code == 200


def test_ready_when_every_symbol_is_fresh(client: testing.TestClient) -> None:
    result = client.simulate_get("/api/v1/ready")
    assert result.status_code == 200, result.text
    body = result.json
    assert body["status"] == "ready"
    assert body["checks"]["redis"]["ok"] is True
    assert isinstance(body["checks"]["redis"]["latency_ms"], float)
    assert body["checks"]["ticks"] == {
        "ok": True, "max_age_s": 5.0,
        "symbols": {"BTC-USD": {"age_s": 0.1}, "ETH-USD": {"age_s": 1.0}},
    }


def test_ready_503_when_a_symbol_is_stale() -> None:
    result = make_client(filled_store(), now_ns=T0 + 6_500 * MS).simulate_get("/api/v1/ready")
    assert result.status_code == 503
    body = result.json
    assert body["status"] == "not_ready"
    assert body["checks"]["redis"]["ok"] is True
    ticks = body["checks"]["ticks"]
    assert ticks["ok"] is False
    assert ticks["symbols"] == {"BTC-USD": {"age_s": 4.6}, "ETH-USD": {"age_s": 5.5}}
    assert "ETH-USD is stale by 0.5 s" in ticks["error"]
    assert "BTC-USD" not in ticks["error"]


def test_ready_503_when_a_symbol_has_no_ticks() -> None:
    result = make_client(filled_store((BTC, ETH, SOL))).simulate_get("/api/v1/ready")
    assert result.status_code == 503
    ticks = result.json["checks"]["ticks"]
    assert ticks["symbols"]["SOL-USD"] == {"age_s": None}
    assert "SOL-USD has no ticks yet" in ticks["error"]


def test_ready_503_before_instruments() -> None:
    result = make_client(MemoryStore()).simulate_get("/api/v1/ready")
    assert result.status_code == 503
    assert result.json["status"] == "not_ready"
    assert "no instruments yet" in result.json["checks"]["ticks"]["error"]


def unreachable_store() -> RedisStore:
    """Return a RedisStore pointed at a port nobody listens on."""
    client = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5,
                         socket_timeout=0.5, retry=Retry(NoBackoff(), 0))
    return RedisStore(client, Keys("mds-test-unreachable:"))


def test_ready_503_when_redis_is_unreachable() -> None:
    store = unreachable_store()
    try:
        result = make_client(store).simulate_get("/api/v1/ready")
    finally:
        store.client.close()
    assert result.status_code == 503
    checks = result.json["checks"]
    assert checks["redis"]["ok"] is False
    assert checks["redis"]["error"] == "redis unreachable"
    assert isinstance(checks["redis"]["latency_ms"], float)
    assert checks["ticks"]["ok"] is False


@pytest.mark.parametrize("path", ["/api/v1/symbols", "/api/v1/prices",
                                  "/api/v1/prices/BTC-USD/current",
                                  "/api/v1/prices/BTC-USD/history"])
def test_unreachable_redis_answers_503_without_internals(path: str) -> None:
    store = unreachable_store()
    try:
        result = make_client(store).simulate_get(path)
    finally:
        store.client.close()
    message = assert_error(result, 503, "unavailable")
    assert "127.0.0.1" not in message


def symbol_routes(symbol: str) -> list[str]:
    """Return the path of every GET route that takes a symbol, with `symbol` in it."""
    app = create_app(MemoryStore(), CONFIG, CollectorRegistry())
    return [route.path.replace("{symbol}/{quote}", f"{symbol}/USD").replace("{symbol}", symbol)
            for route in inspect_routes(app) if "{symbol}" in route.path]


@pytest.mark.parametrize(("path", "query", "code"), [
    *((path, "", "invalid_symbol") for path in symbol_routes("B..D")),
    ("/api/v1/prices/BTC-USD/history", "limit=0", "invalid_parameter"),
    ("/api/v1/candles/BTC-USD", "interval=7m", "invalid_parameter"),
    ("/api/v1/orderbook/BTC-USD", "depth=0", "invalid_parameter"),
    ("/api/v1/trades/BTC-USD", "limit=0", "invalid_parameter"),
    ("/api/v1/correlations", "window=1", "invalid_parameter"),
    ("/api/v1/correlations", "symbols=BTC-USD,B..D", "invalid_symbol"),
])
def test_malformed_input_is_400_before_redis_is_read(path: str, query: str, code: str) -> None:
    """Input that is wrong whatever Redis holds is refused even while Redis is unreachable."""
    store = unreachable_store()
    try:
        result = make_client(store).simulate_get(path, query_string=query)
    finally:
        store.client.close()
    assert_error(result, 400, code)


# -- symbols and prices ------------------------------------------------------------------------


def test_symbols_in_publication_order() -> None:
    result = make_client(filled_store((ETH, SOL, BTC))).simulate_get("/api/v1/symbols")
    assert result.status_code == 200
    assert result.json == {"symbols": [ETH.to_dict(), SOL.to_dict(), BTC.to_dict()]}


@pytest.mark.parametrize("path", ["/api/v1/symbols", "/api/v1/prices",
                                  "/api/v1/prices/BTC-USD/current",
                                  "/api/v1/prices/BTC-USD/history"])
def test_503_before_the_bridge_wrote_instruments(path: str) -> None:
    assert_error(make_client(MemoryStore()).simulate_get(path), 503, "unavailable",
                 "no instruments yet")


def test_prices_lists_every_symbol_with_ticks() -> None:
    result = make_client(filled_store((BTC, SOL, ETH))).simulate_get("/api/v1/prices")
    assert result.status_code == 200
    prices = result.json["prices"]
    assert [p["symbol"] for p in prices] == ["BTC-USD", "ETH-USD"]
    assert all(set(p) == PRICE_KEYS for p in prices)
    assert prices[1]["mid"] == 3200.025


def test_current_price_object(client: testing.TestClient) -> None:
    result = client.simulate_get("/api/v1/prices/BTC-USD/current")
    assert result.status_code == 200
    assert result.headers["content-type"] == "application/json"
    last = BTC_TS[-1]
    assert result.json == {
        "symbol": "BTC-USD", "bid": 65000.01, "ask": 65000.02, "mid": 65000.015,
        "last": 65000.01, "last_size": 0.05, "bid_size": 1.23457, "ask_size": 2.5,
        "spread": 0.01, "spread_bps": 0.002, "volume": 2.0, "seq": 20, "session": 11,
        "timestamp": "2025-11-25T08:44:40.900000Z", "timestamp_ms": last // MS, "ts_ns": last,
        "age_ms": 100.0, "flags": wire.FLAG_TRADE | wire.FLAG_BUYER_AGGRESSOR,
    }


@pytest.mark.parametrize("spelling", ["BTC-USD", "BTC%2FUSD", "BTC%2fUSD", "BTC/USD", "BTCUSD",
                                      "btc-usd", "btcusd", "btc%2Fusd", "BTC_USD"])
@pytest.mark.parametrize("route", ["current", "history"])
def test_every_symbol_spelling(client: testing.TestClient, spelling: str, route: str) -> None:
    result = client.simulate_get(f"/api/v1/prices/{spelling}/{route}")
    assert result.status_code == 200, result.text
    assert result.json["symbol"] == "BTC-USD"


def test_rounding_to_the_instrument_decimals() -> None:
    store = MemoryStore([SOL])
    store.add(wire.TickBatch("SOL-USD", 1, make_ticks([T0], 0.1 + 0.2, 0.304)))
    body = make_client(store).simulate_get("/api/v1/prices/sol-usd/current").json
    assert (body["bid"], body["ask"], body["mid"], body["spread"]) == (0.3, 0.304, 0.302, 0.004)
    assert body["spread_bps"] == 132.45
    assert body["bid_size"] == 1.23


def test_current_503_when_the_symbol_has_no_tick_yet() -> None:
    result = make_client(filled_store((BTC, SOL))).simulate_get("/api/v1/prices/SOL-USD/current")
    assert_error(result, 503, "unavailable", "no ticks yet for SOL-USD")


@pytest.mark.parametrize("route", ["current", "history"])
@pytest.mark.parametrize(("spelling", "canonical"),
                         [("XYZ-USD", "XYZ-USD"), ("xyz%2Fusd", "XYZ-USD"),
                          ("DOGEUSDT", "DOGE-USDT"), ("btc-eur", "BTC-EUR")])
def test_unknown_symbol_404_names_it(client: testing.TestClient, route: str, spelling: str,
                                     canonical: str) -> None:
    result = client.simulate_get(f"/api/v1/prices/{spelling}/{route}")
    message = assert_error(result, 404, "unknown_symbol", f"'{canonical}'")
    assert message == f"unknown symbol '{canonical}'; known symbols: BTC-USD, ETH-USD"


@pytest.mark.parametrize("spelling", ["B$C", "BTC-USD-EUR", "BTC%20USD", "X" * 41, "-USD",
                                      "%E2%82%BF-USD", "BTC%2F"])
def test_invalid_symbol_400(client: testing.TestClient, spelling: str) -> None:
    assert_error(client.simulate_get(f"/api/v1/prices/{spelling}/current"), 400,
                 "invalid_symbol")


# -- history -----------------------------------------------------------------------------------


def history(client: testing.TestClient, symbol: str = "BTC-USD",
            **params: str) -> testing.Result:
    """GET the history of `symbol` with query `params`."""
    return client.simulate_get(f"/api/v1/prices/{symbol}/history", params=params)


def history_seqs(result: testing.Result) -> list[int]:
    """Return the seqs of a history answer, after checking it is a 200."""
    assert result.status_code == 200, result.text
    return [t["seq"] for t in result.json["ticks"]]


def test_history_shape(client: testing.TestClient) -> None:
    body = history(client, start=str(T0 // MS + 100), end=str(T0 // MS + 200)).json
    assert list(body) == ["symbol", "start", "end", "count", "ticks"]
    assert body["symbol"] == "BTC-USD"
    assert body["start"] == "2025-11-25T08:44:39.100000Z"
    assert body["end"] == "2025-11-25T08:44:39.200999Z"  # end covers its whole millisecond
    assert body["count"] == 2
    first = body["ticks"][0]
    assert list(first) == TICK_KEYS
    assert first == {
        "seq": 2, "ts_ns": BTC_TS[1], "timestamp": "2025-11-25T08:44:39.100000Z",
        "timestamp_ms": BTC_TS[1] // MS, "bid": 65000.01, "ask": 65000.02, "mid": 65000.015,
        "last": 65000.01, "bid_size": 1.23457, "ask_size": 2.5, "last_size": 0.05,
        "volume": 0.2, "flags": 6,
    }


def test_history_without_parameters_is_the_latest_up_to_now(client: testing.TestClient) -> None:
    body = history(client).json
    assert body["start"] is None
    assert body["end"] == rfc3339(NOW)
    assert [t["seq"] for t in body["ticks"]] == list(range(1, 21))


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({"limit": "3"}, [18, 19, 20], id="limit-keeps-the-latest"),
        pytest.param({"start": str(T0 // MS + 500)}, list(range(6, 21)), id="start-ms"),
        pytest.param({"start": str(T0 // MS + 500), "limit": "2"}, [6, 7],
                     id="start-limit-keeps-the-first"),
        pytest.param({"end": str(T0 // MS + 500), "limit": "2"}, [5, 6],
                     id="end-limit-keeps-the-latest"),
        pytest.param({"start": "2025-11-25T08:44:39.5Z", "end": "2025-11-25T08:44:39.7Z"},
                     [6, 7, 8], id="rfc3339-z"),
        pytest.param({"start": "2025-11-25T09:44:39.5+01:00", "end": "2025-11-25T08:44:39.7"},
                     [6, 7, 8], id="offset-and-naive-utc"),
        pytest.param({"start": "2025-11-25t08:44:40.850z"}, [20], id="lower-case"),
        pytest.param({"start": "2025-11-25T08:44:40.850000001Z"}, [20], id="nanoseconds"),
        pytest.param({"start": str(T0 // MS + 1950)}, [], id="start-after-the-last-tick"),
    ],
)
def test_history_ranges(client: testing.TestClient, params: dict[str, str],
                        expected: list[int]) -> None:
    assert history_seqs(history(client, **params)) == expected


def test_history_offset_plus_sent_unencoded(client: testing.TestClient) -> None:
    # A raw "+" in a query string means a space; the API reads " 01:00" back as "+01:00".
    result = client.simulate_get("/api/v1/prices/BTC-USD/history",
                                 query_string="start=2025-11-25T09:44:40.8+01:00")
    assert history_seqs(result) == [19, 20]


def test_history_limit_may_reach_the_maximum() -> None:
    config = ApiConfig(history_max_limit=5)
    client = make_client(filled_store(), config=config)
    assert history_seqs(history(client, limit="5")) == [16, 17, 18, 19, 20]
    assert history_seqs(history(client)) == [16, 17, 18, 19, 20]  # the default is capped too
    assert_error(history(client, limit="6"), 400, "invalid_parameter", "limit", "1 to 5")


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("start=yesterday", "start"),
        ("end=2025-13-01T00:00:00Z", "end"),
        ("start=", "start"),
        ("end=%20", "end"),
        ("start=-5", "start"),
        ("start=99999999999999999999", "start"),
        ("start=1.5", "start"),
        ("end=9999-12-31T00:00:00Z", "end"),
        ("start=1969-12-31T23:59:59Z", "start"),
        ("start=9223372036855", "start"),
        ("start=" + "1" * 70, "start"),
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("limit=ten", "limit"),
        ("limit=1.5", "limit"),
        ("limit=-1", "limit"),
        ("limit=", "limit"),
        ("limit=99999999999999999999999", "limit"),
        ("since=1", "since"),
        ("start=1&start=2", "start"),
        (f"start={T0 // MS + 10}&end={T0 // MS}", "start"),
        (f"start={NOW // MS + 1}", "start"),
    ],
)
def test_history_bad_parameter_400_names_it(client: testing.TestClient, query: str,
                                            parameter: str) -> None:
    result = client.simulate_get("/api/v1/prices/BTC-USD/history", query_string=query)
    message = assert_error(result, 400, "invalid_parameter")
    assert message.startswith(f"{parameter}: "), message


# -- errors, routing, request ids, metrics ------------------------------------------------------


def every_route() -> list[tuple[str, str]]:
    """Return (method, path) for every route and method the app serves, symbols filled in."""
    app = create_app(MemoryStore(), CONFIG, CollectorRegistry())
    return [(method.method, route.path.replace("{symbol}/{quote}", "BTC/USD")
             .replace("{symbol}", "BTC-USD"))
            for route in inspect_routes(app) for method in route.methods if not method.internal]


@pytest.mark.parametrize(("query", "name"), [("foo=1", "foo"), ("x", "x")])
@pytest.mark.parametrize(("method", "path"), every_route())
def test_every_route_refuses_an_unknown_parameter(client: testing.TestClient, method: str,
                                                  path: str, query: str, name: str) -> None:
    result = client.simulate_request(method, path, query_string=query)
    if method == "HEAD":  # no body to read the error from
        assert 400 == result.status_code
        return
    message = assert_error(result, 400, "invalid_parameter")
    assert message.startswith(f"{name}: is not a parameter of this route"), message


def test_no_route_or_method_comes_before_an_unknown_parameter(
        client: testing.TestClient) -> None:
    assert_error(client.simulate_get("/api/v1/nope", query_string="foo=1"), 404, "not_found")
    assert_error(client.simulate_post("/api/v1/health", query_string="foo=1"), 405,
                 "method_not_allowed")


@pytest.mark.parametrize("path", ["/", "/api/v1", "/api/v1/nope", "/api/v1/prices/BTC-USD",
                                  "/api/v1/prices/BTC-USD/latest", "/api/v2/health",
                                  "/api/v1/prices/a/b/c/current"])
def test_unknown_route_404_in_the_json_shape(client: testing.TestClient, path: str) -> None:
    assert_error(client.simulate_get(path), 404, "not_found", path)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_method_not_allowed_405_in_the_json_shape(client: testing.TestClient,
                                                  method: str) -> None:
    result = client.simulate_request(method, "/api/v1/prices/BTC-USD/current")
    assert_error(result, 405, "method_not_allowed", method, "GET")
    assert "GET" in result.headers["allow"]


@pytest.mark.parametrize("path", ["/api/v1/prices/BTC-USD/current", "/api/v1/health"])
def test_options_lists_the_methods_a_405_lists(client: testing.TestClient, path: str) -> None:
    """OPTIONS and a 405 on the same route name the same methods (falcon left OPTIONS out of
    its own OPTIONS answer)."""
    options = client.simulate_options(path)
    refused = client.simulate_post(path)
    assert options.status_code == 200
    assert 405 == refused.status_code
    assert options.headers["allow"] == refused.headers["allow"]
    assert "OPTIONS" in options.headers["allow"]
    assert options.content == b""


def test_unexpected_error_500_hides_internals(caplog: pytest.LogCaptureFixture) -> None:
    store = BrokenStore([BTC])
    with caplog.at_level(logging.INFO):
        result = make_client(store).simulate_get("/api/v1/prices",
                                                 headers={"X-Request-ID": "req-500"})
    message = assert_error(result, 500, "internal")
    assert "secret" not in message
    logged = [r for r in caplog.records if r.exc_info]
    assert logged
    assert "secret internal detail" in str(logged[0].exc_info)


def test_request_id_is_echoed(client: testing.TestClient) -> None:
    result = client.simulate_get("/api/v1/health", headers={"X-Request-ID": "abc-123.x:y_z"})
    assert result.headers["x-request-id"] == "abc-123.x:y_z"


@pytest.mark.parametrize("incoming", [None, "", "has space", "x" * 129, "semi;colon"])
def test_request_id_is_made_when_missing_or_unsafe(client: testing.TestClient,
                                                   incoming: str | None) -> None:
    headers = {} if incoming is None else {"X-Request-ID": incoming}
    result = client.simulate_get("/api/v1/nope", headers=headers)
    assert re.fullmatch(r"[0-9a-f]{32}", result.headers["x-request-id"])


def test_one_canonical_log_line_per_request(client: testing.TestClient,
                                            caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="api.request"):
        client.simulate_get("/api/v1/prices/BTC%2FUSD/current", headers={"X-Request-ID": "r1"})
    lines = [r for r in caplog.records if r.name == "api.request"]
    assert len(lines) == 1
    fields = vars(lines[0])
    assert lines[0].getMessage() == "request"
    assert fields["method"] == "GET"
    assert fields["path"] == "/api/v1/prices/BTC/USD/current"
    assert fields["route"] == "/api/v1/prices/{symbol}/current"
    assert fields["status"] == 200
    assert isinstance(fields["duration_ms"], float)


def test_metrics_count_requests_by_route_template() -> None:
    registry = CollectorRegistry()
    client = make_client(filled_store(), registry=registry)
    client.simulate_get("/api/v1/prices/BTC%2FUSD/current")
    client.simulate_get("/api/v1/prices/eth-usd/current")
    client.simulate_get("/api/v1/prices/XYZ-USD/current")
    client.simulate_get("/no/such/route")
    result = client.simulate_get("/metrics")
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("text/plain")
    text = result.text
    current = 'route="/api/v1/prices/{symbol}/current"'
    assert f'api_requests_total{{method="GET",{current},status="200"}} 2.0' in text
    assert f'api_requests_total{{method="GET",{current},status="404"}} 1.0' in text
    assert 'api_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert f'api_request_duration_seconds_count{{method="GET",{current}}} 3.0' in text
    assert "BTC" not in text


# -- timestamps and config ---------------------------------------------------------------------


@settings(max_examples=200)
@given(st.integers(0, MAX_EPOCH_MS))
def test_timestamp_round_trip_epoch_ms_and_rfc3339(ms: int) -> None:
    ns = ms * MS
    assert parse_timestamp("start", str(ms)) == ns
    text = rfc3339(ns)
    assert RFC3339.fullmatch(text)
    assert parse_timestamp("start", text) == ns
    expected = datetime.fromtimestamp(ms / 1000, UTC).replace(microsecond=(ms % 1000) * 1000)
    assert datetime.fromisoformat(text) == expected


@settings(max_examples=300)
@given(st.text(max_size=80) | st.from_regex(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d{1,12})?)?"
                                             r"(Z|[+-]\d\d:?\d\d| \d\d:\d\d)?", fullmatch=True))
def test_timestamp_parser_only_raises_invalid_parameter(text: str) -> None:
    try:
        value = parse_timestamp("end", text)
    except InvalidParameter as exc:
        assert exc.parameter == "end"
        assert str(exc).startswith("end: ")
    else:
        assert isinstance(value, int)


@settings(max_examples=30, deadline=None)
@given(st.text(max_size=30))
def test_garbage_history_parameters_never_500(text: str) -> None:
    client = make_client(filled_store())
    for name in ("start", "end", "limit"):
        result = client.simulate_get("/api/v1/prices/BTC-USD/history",
                                     query_string=f"{name}={quote(text)}")
        assert result.status_code in (200, 400), result.text
    result = client.simulate_get(f"/api/v1/prices/{quote(text, safe='')}/current")
    assert result.status_code in (200, 400, 404), result.text


def test_config_defaults() -> None:
    config = ApiConfig.from_env({})
    assert config == ApiConfig(redis_url="redis://127.0.0.1:6379/0", redis_prefix="mds:",
                               redis_socket_timeout_s=2.0, ready_max_tick_age_s=5.0,
                               history_max_limit=10_000, log_level="INFO", service_name="api",
                               instance_name="api-1", prometheus_multiproc_dir=None)
    assert config.history_default_limit == 1000


def test_config_from_env() -> None:
    config = ApiConfig.from_env({
        "REDIS_URL": "redis://redis:6380/2", "REDIS_PREFIX": "x:", "READY_MAX_TICK_AGE_S": "1.5",
        "HISTORY_MAX_LIMIT": "50", "LOG_LEVEL": "debug", "SERVICE_NAME": "rest",
        "REDIS_SOCKET_TIMEOUT_S": "0.5", "PROMETHEUS_MULTIPROC_DIR": "/tmp/m",
    })
    assert config == ApiConfig(redis_url="redis://redis:6380/2", redis_prefix="x:",
                               redis_socket_timeout_s=0.5, ready_max_tick_age_s=1.5,
                               history_max_limit=50, log_level="DEBUG", service_name="rest",
                               instance_name="rest-1", prometheus_multiproc_dir="/tmp/m")
    assert config.history_default_limit == 50


@pytest.mark.parametrize(("env", "name"), [
    ({"REDIS_URL": "http://x"}, "REDIS_URL"),
    ({"REDIS_URL": "redis://[bad"}, "REDIS_URL"),
    ({"REDIS_URL": "redis://127.0.0.1:port/0"}, "REDIS_URL"),
    ({"REDIS_URL": "redis://127.0.0.1/0?socket_timeout=soon"}, "REDIS_URL"),
    ({"READY_MAX_TICK_AGE_S": "soon"}, "READY_MAX_TICK_AGE_S"),
    ({"READY_MAX_TICK_AGE_S": "0"}, "READY_MAX_TICK_AGE_S"),
    ({"HISTORY_MAX_LIMIT": "0"}, "HISTORY_MAX_LIMIT"),
    ({"HISTORY_MAX_LIMIT": "many"}, "HISTORY_MAX_LIMIT"),
    ({"REDIS_SOCKET_TIMEOUT_S": "-1"}, "REDIS_SOCKET_TIMEOUT_S"),
    ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
])
def test_config_errors_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        ApiConfig.from_env(env)


@pytest.mark.parametrize(("text", "expected_ns"), [
    ("1764060279123", 1764060279123_999_999),
    ("2026-11-25T08:44:39Z", 1795596279_999_999_999),
    ("2026-11-25T08:44:39.5Z", 1795596279_599_999_999),
    ("2026-11-25T08:44:39.123456Z", 1795596279_123_456_999),
    ("2026-11-25T08:44Z", 1795596240_000_000_000 + 60 * 10**9 - 1),
    ("2026-11-25T08Z", 1795593600_000_000_000 + 3600 * 10**9 - 1),
    ("2026-11-25", 1795564800_000_000_000 + 86_400 * 10**9 - 1),
])
def test_end_covers_the_whole_unit_it_is_written_in(text: str, expected_ns: int) -> None:
    """A tick's own timestamp_ms (or timestamp) used as `end` includes that tick."""
    assert expected_ns == parse_timestamp("end", text, through=True)
    assert parse_timestamp("start", text) <= expected_ns


@pytest.mark.parametrize("url", ["http://user:s3cret@host:6379/0", "user:s3cret@host:6379",
                                 "redis://user:s3cret@[bad"])
def test_a_refused_redis_url_is_not_echoed_with_its_password(url: str) -> None:
    with pytest.raises(ConfigError, match="REDIS_URL") as info:
        ApiConfig.from_env({"REDIS_URL": url})
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize("url", ["redis://:abc/def@host/0", "redis://:p#ss?w@host:6379/0",
                                 "rediss://host/0?ssl_cert_reqs=bogus"])
def test_a_url_redis_py_refuses_is_one_error_without_its_secret(url: str) -> None:
    """redis-py's own message may quote part of a password it took for the port; its
    RedisError (a bad TLS option) is a bad setting too, not a traceback."""
    with pytest.raises(ConfigError, match="REDIS_URL is not a URL redis-py accepts") as info:
        ApiConfig.from_env({"REDIS_URL": url})
    assert not {"abc", "def", "p#ss", "ss?w"} & set(str(info.value).replace(":", " ").split())
    assert "abc" not in str(info.value) and "p#ss" not in str(info.value)
