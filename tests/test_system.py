"""The whole system end to end: feedsim -> bridge -> gRPC and Redis -> REST, as users see it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from marketdata import marketdata_pb2 as pb
from tests.system import DEFAULT_SYMBOLS, ROOT, System, running, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[System]:
    with running(tmp_path_factory.mktemp("system"), redis_url, ("feedsim", "bridge", "api"),
                 FEED_TICK_RATE="20") as started:
        with started.channel() as channel:  # the README's client reads the book first
            stub = started.stub(channel)
            wait_for("BTC-USD's first order book", lambda: stub.GetOrderBook(
                pb.GetOrderBookRequest(symbol="BTC-USD"), timeout=5))
        yield started


class StreamRecorder:
    """Reads a StreamPrices call on a thread, keeping every update by (symbol, seq)."""

    def __init__(self, system: System, symbols: list[str]) -> None:
        self.channel = system.channel()
        self.call = system.stub(self.channel).StreamPrices(
            pb.StreamPricesRequest(symbols=symbols), timeout=60)
        self.updates: dict[tuple[str, int], pb.PriceUpdate] = {}
        self.order: list[pb.PriceUpdate] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for update in self.call:
                self.updates[(update.symbol, update.seq)] = update
                self.order.append(update)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise

    def close(self) -> None:
        self.call.cancel()
        self.thread.join(5)
        self.channel.close()


def test_rest_current_price_moves_and_matches_the_grpc_tick_with_the_same_seq(
        system: System) -> None:
    recorder = StreamRecorder(system, ["BTC-USD"])
    try:
        # Compare only ticks the stream can have: REST (Redis) may answer a tick published
        # before the stream joined, which it never sees.
        first = wait_for("the stream's first update",
                         lambda: recorder.order[0].seq if recorder.order else None)

        def rest_seq() -> int | None:
            status, body = system.http("/api/v1/prices/BTC-USD/current")
            return body["seq"] if status == 200 and body["seq"] >= first else None

        wait_for("REST to reach the stream's first tick", rest_seq)
        answers = []
        for _ in range(5):
            status, body = system.http("/api/v1/prices/btc-usd/current")
            assert 200 == status
            answers.append(body)
            time.sleep(0.15)
        assert len({a["seq"] for a in answers}) > 1, "the price did not move between calls"
        for answer in answers:
            update = wait_for(f"gRPC tick seq {answer['seq']}",
                              lambda a=answer: recorder.updates.get(("BTC-USD", a["seq"])), 5)
            assert (answer["bid"], answer["ask"], answer["last"]) == (
                update.bid, update.ask, update.last)
            assert answer["ts_ns"] == update.ts_ns
            assert answer["timestamp_ms"] == update.timestamp
            assert answer["timestamp"].endswith("Z")
    finally:
        recorder.close()


def test_risk_monitor_sees_every_update_within_the_rest_spread_for_the_same_seq(
        system: System) -> None:
    """Plays the risk monitor: gRPC updates for two symbols, checked against REST history."""
    recorder = StreamRecorder(system, ["BTC-USD", "ETH-USD"])
    try:
        wait_for("40 updates", lambda: len(recorder.order) >= 40, 15)
    finally:
        recorder.close()
    updates = recorder.order[:40]
    for symbol in ("BTC-USD", "ETH-USD"):
        seqs = [u.seq for u in updates if u.symbol == symbol]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{symbol} gap: {seqs}"
        start, end = (min(u.timestamp for u in updates if u.symbol == symbol),
                      max(u.timestamp for u in updates if u.symbol == symbol))
        path = f"/api/v1/prices/{symbol}/history?start={start}&end={end}&limit=10000"

        def history_through(path: str = path, last: int = seqs[-1]) -> dict[int, Any] | None:
            status, history = system.http(path)
            assert 200 == status, history
            by_seq = {t["seq"]: t for t in history["ticks"]}
            return by_seq if last in by_seq else None  # the bridge may not have flushed yet

        by_seq = wait_for(f"{symbol} history through seq {seqs[-1]}", history_through, 5)
        for update in (u for u in updates if u.symbol == symbol):
            rest = by_seq[update.seq]
            assert rest["bid"] <= update.price <= rest["ask"]
            assert (rest["bid"], rest["ask"]) == (update.bid, update.ask)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timer slack is Linux's")
def test_feedsim_sleeps_between_turns_with_1_ns_timer_slack(system: System) -> None:
    """With Linux's default 50 us slack every sub-millisecond sleep, and so every tick of the
    turn after it, ended ~50 us later than asked."""
    pid = system.procs["feedsim"].pid
    assert Path(f"/proc/{pid}/timerslack_ns").read_text().strip() == "1"


def test_all_prices_and_symbols_in_canonical_form(system: System) -> None:
    status, body = system.http("/api/v1/prices")
    assert 200 == status
    assert DEFAULT_SYMBOLS == [p["symbol"] for p in body["prices"]]
    for price in body["prices"]:
        assert price["bid"] < price["mid"] < price["ask"]
        assert price["age_ms"] < 5000
    status, body = system.http("/api/v1/symbols")
    assert DEFAULT_SYMBOLS == [s["symbol"] for s in body["symbols"]]


@pytest.mark.parametrize(("path", "status", "code", "text"), [
    ("/api/v1/prices/XYZ-USD/current", 404, "unknown_symbol", "XYZ-USD"),
    ("/api/v1/prices/%21%21/current", 400, "invalid_symbol", "not a symbol"),
    ("/api/v1/prices/BTC-USD/history?limit=0", 400, "invalid_parameter", "limit"),
    ("/api/v1/prices/BTC-USD/history?start=yesterday", 400, "invalid_parameter", "start"),
    ("/api/v1/prices/BTC-USD/history?start=2000&end=1000", 400, "invalid_parameter", "start"),
    ("/api/v1/prices/BTC-USD/history?colour=red", 400, "invalid_parameter", "colour"),
    ("/api/v1/nowhere", 404, "not_found", ""),
])
def test_bad_input_gets_a_clear_json_error(system: System, path: str, status: int, code: str,
                                           text: str) -> None:
    got_status, body = system.http(path)
    assert (status, code) == (got_status, body["error"]["code"])
    assert text in body["error"]["message"]


def test_readme_zmq_example_receives_and_decodes_ticks(system: System) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "zmq_subscriber.py"),
         system.env["FEED_PUB_ENDPOINT"], "btc/usd", "5"],  # any separated spelling
        capture_output=True, text=True, timeout=30, check=True)
    lines = result.stdout.strip().splitlines()
    assert len(lines) >= 5
    assert all(line.startswith("BTC-USD seq=") for line in lines)


def test_readme_grpc_example_streams_prices(system: System) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "grpc_client.py"), system.grpc_target, "3"],
        check=False, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "BTC-USD" in result.stdout and "ETH-USD" in result.stdout


def test_readme_examples_exist_and_are_short() -> None:
    example = (ROOT / "examples" / "zmq_subscriber.py").read_text().splitlines()
    code = [line for line in example if line.strip() and not line.lstrip().startswith("#")]
    assert len(code) <= 25
    assert Path(ROOT / "README.md").read_text().count("examples/zmq_subscriber.py") >= 1
