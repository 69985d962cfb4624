"""Candles and 24-hour statistics end to end: feedsim -> bridge -> Redis -> REST, with a restart."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.system import System, running, wait_for

pytestmark = pytest.mark.integration

SYMBOL = "BTC-USD"
SIZE_DECIMALS = 5  # BTC-USD's lot size, 0.00001


def get(system: System, path: str) -> Any:
    """GET `path` and return the JSON body of its 200 answer."""
    status, body = system.http(path)
    assert 200 == status, body
    return body


def trades_by_second(ticks: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Group the trade ticks of a history answer by the second they fall in (epoch ms)."""
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for tick in ticks:
        if tick["flags"] & 2:
            out[tick["timestamp_ms"] // 1000 * 1000].append(tick)
    return out


def assert_candle_is_its_trades(candle: dict[str, Any], trades: list[dict[str, Any]]) -> None:
    """Check one candle against the trade ticks of its interval, oldest first."""
    assert candle["trades"] == len(trades), candle
    prices = [t["last"] for t in trades]
    assert (candle["open"], candle["close"]) == (prices[0], prices[-1])
    assert (candle["high"], candle["low"]) == (max(prices), min(prices))
    assert candle["volume"] == round(math.fsum(t["last_size"] for t in trades), SIZE_DECIMALS)


def test_candles_and_24h_stats_follow_the_trades_in_history(tmp_path: Path,
                                                            redis_url: str) -> None:
    with running(tmp_path, redis_url, ("feedsim", "bridge", "api"),
                 FEED_TICK_RATE="200") as system:
        candles_path = f"/api/v1/candles/{SYMBOL}?interval=1s&limit=10000"

        def closed_seconds() -> list[dict[str, Any]] | None:
            # Seconds that ended a while ago: the bridge has written all of their trades.
            now_ms = time.time_ns() // 1_000_000
            found = [c for c in get(system, candles_path)["candles"]
                     if c["closed"] and c["close_time_ms"] < now_ms - 200]
            return found or None

        seconds = wait_for("a closed 1s candle", closed_seconds, 15)
        start, end = seconds[0]["open_time_ms"], seconds[-1]["close_time_ms"]
        history = get(system, f"/api/v1/prices/{SYMBOL}/history?start={start}&end={end}"
                              "&limit=10000")
        by_second = trades_by_second(history["ticks"])
        assert sorted(by_second) == [c["open_time_ms"] for c in seconds]  # no trades, no candle
        for candle in seconds:
            assert candle["close_time_ms"] == candle["open_time_ms"] + 999
            assert_candle_is_its_trades(candle, by_second[candle["open_time_ms"]])

        # A restarted bridge reloads the open candles and carries on with them.
        assert 0 == system.stop("bridge")
        system.start("bridge")
        system.wait_grpc_serving()
        restarted_at = get(system, f"/api/v1/prices/{SYMBOL}/current")["seq"]
        wait_for("trades after the restart",
                 lambda: get(system, f"/api/v1/prices/{SYMBOL}/current")["seq"]
                 > restarted_at + 50, 10)
        assert 0 == system.stop("feedsim")
        time.sleep(0.2)  # the bridge writes what it received within a few ms

        # Now nothing moves: every candle must equal the trades history holds.
        history = get(system, f"/api/v1/prices/{SYMBOL}/history?limit=10000")
        by_second = trades_by_second(history["ticks"])
        seconds = get(system, candles_path)["candles"]
        assert [c["open_time_ms"] for c in seconds] == sorted(by_second)
        for candle in seconds:
            assert_candle_is_its_trades(candle, by_second[candle["open_time_ms"]])
        minutes = get(system, f"/api/v1/candles/{SYMBOL}?interval=1m")["candles"]
        all_trades = [t for second in sorted(by_second) for t in by_second[second]]
        assert sum(c["trades"] for c in minutes) == len(all_trades)
        for minute in minutes:
            inside = [t for t in all_trades
                      if minute["open_time_ms"] <= t["timestamp_ms"] <= minute["close_time_ms"]]
            assert_candle_is_its_trades(minute, inside)

        stats = get(system, f"/api/v1/stats/{SYMBOL}/24h")
        assert stats["symbol"] == SYMBOL
        assert stats["trades"] == sum(c["trades"] for c in minutes)
        assert (stats["open"], stats["last"]) == (minutes[0]["open"], minutes[-1]["close"])
        assert stats["high"] == max(c["high"] for c in minutes)
        assert stats["low"] == min(c["low"] for c in minutes)
        assert stats["volume"] == round(math.fsum(c["volume"] for c in minutes), SIZE_DECIMALS)
        assert math.isclose(stats["quote_volume"],
                            math.fsum(c["quote_volume"] for c in minutes), rel_tol=1e-9)
        assert stats["change"] == round(stats["last"] - stats["open"], 2)
        assert stats["open_time"] < minutes[0]["open_time"] < stats["close_time"]
