"""feedsim -> ZeroMQ -> bridge -> gRPC + Redis, with the real processes and the real Redis."""

from __future__ import annotations

import itertools
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import orjson
import pytest
import redis
import zmq
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from bridge import handlers
from bridge.service import ticks_from_message
from marketdata import marketdata_pb2 as pb
from marketdata import wire
from marketdata.sequence import SequenceTracker
from tests.system import DEFAULT_SYMBOLS, System, running, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def feed_and_bridge(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[System]:
    with running(tmp_path_factory.mktemp("pipeline"), redis_url, ("feedsim", "bridge"),
                 FEED_TICK_RATE="200") as system:
        with system.channel() as channel:  # serving; now wait for every symbol's first tick
            stub = system.stub(channel)
            for symbol in DEFAULT_SYMBOLS:
                wait_for(f"the first {symbol} tick", lambda s=symbol: stub.GetPrice(  # type: ignore[misc]
                    pb.GetPriceRequest(symbol=s), timeout=5))
        yield system


def collect_ticks(system: System, symbols: list[str], per_symbol: int
                  ) -> dict[str, wire.Ticks]:
    """Stream until every symbol has `per_symbol` ticks; return them by symbol."""
    got: dict[str, list[wire.Ticks]] = {s: [] for s in symbols}
    with system.channel() as channel:
        for message in system.stub(channel).StreamTicks(pb.StreamTicksRequest(symbols=symbols),
                                                        timeout=30):
            for batch in message.batches:
                got[batch.symbol].append(ticks_from_message(batch))
            if all(sum(map(len, parts)) >= per_symbol for parts in got.values()):
                break
    return {s: np.concatenate(parts) for s, parts in got.items()}


def test_stream_ticks_delivers_every_tick_in_order(feed_and_bridge: System) -> None:
    ticks = collect_ticks(feed_and_bridge, ["BTC-USD", "ETH-USD"], 300)
    for symbol, t in ticks.items():
        seq = t["seq"].astype(np.int64)
        assert (np.diff(seq) == 1).all(), f"{symbol}: gap or reorder in {seq.tolist()}"
        assert (np.diff(t["ts_ns"]) > 0).all()
        assert (t["ask"] > t["bid"]).all()
        assert t["flags"][0] & wire.FLAG_SNAPSHOT  # the stream opens with the latest tick
        assert not (t["flags"][1:] & wire.FLAG_SNAPSHOT).any()


def test_stream_prices_keeps_the_original_contract(feed_and_bridge: System) -> None:
    updates: list[pb.PriceUpdate] = []
    with feed_and_bridge.channel() as channel:
        stream = feed_and_bridge.stub(channel).StreamPrices(
            pb.StreamPricesRequest(symbols=["btc/usd"]), timeout=30)
        for update in stream:
            updates.append(update)
            if len(updates) == 50:
                break
    assert {"BTC-USD"} == {u.symbol for u in updates}
    assert list(range(updates[0].seq, updates[0].seq + 50)) == [u.seq for u in updates]
    for previous, update in itertools.pairwise(updates):
        # BTC-USD's tick is 0.01 and its lot 0.00001: the REST API's rounding, not float noise
        assert update.price == round((update.bid + update.ask) / 2, 3)
        assert update.change_info.previous_price == previous.price
        assert update.change_info.change == round(update.price - previous.price, 3)
        assert update.volume == round(update.volume, 5)
        assert update.timestamp == update.ts_ns // 1_000_000
        assert update.source == "bridge-1"
        assert update.volume >= previous.volume


def test_stream_prices_conflates_at_the_requested_interval(feed_and_bridge: System) -> None:
    times: list[float] = []
    with feed_and_bridge.channel() as channel:
        stream = feed_and_bridge.stub(channel).StreamPrices(
            pb.StreamPricesRequest(symbols=["ETH-USD"], update_interval_ms=200), timeout=30)
        for _ in stream:
            times.append(time.monotonic())
            if len(times) == 6:
                break
    gaps = np.diff(times[1:])  # the first update is the snapshot
    assert gaps.min() > 0.15, gaps  # the feed ticks every 5 ms; the stream sends every 200 ms


def test_get_price_and_list_symbols(feed_and_bridge: System) -> None:
    with feed_and_bridge.channel() as channel:
        stub = feed_and_bridge.stub(channel)
        before = time.time_ns()
        price = stub.GetPrice(pb.GetPriceRequest(symbol="ethusd"), timeout=5)
        after = time.time_ns()
        symbols = stub.ListSymbols(pb.ListSymbolsRequest(), timeout=5)
    # the tick's age when answered: between the ages at the call's start and end
    assert (before - price.ts_ns) / 1e6 <= price.age_ms <= (after - price.ts_ns) / 1e6
    assert "ETH-USD" == price.symbol
    assert price.bid < price.price < price.ask
    assert price.price == round((price.bid + price.ask) / 2, 3)  # as REST rounds ETH-USD's mid
    assert price.spread_bps == round(round(price.ask - price.bid, 2) / price.price * 1e4, 3)
    assert abs(time.time_ns() - price.ts_ns) < 5e9
    assert DEFAULT_SYMBOLS == [s.symbol for s in symbols.symbols]
    assert 0.01 == symbols.symbols[0].tick_size


def test_unary_calls_are_logged_under_the_callers_request_id(feed_and_bridge: System) -> None:
    """A unary call leaves one "call" line with its RPC, status and the caller's x-request-id
    (a valid one; anything else is replaced, as the REST API does)."""
    with feed_and_bridge.channel() as channel:
        stub = feed_and_bridge.stub(channel)
        stub.GetPrice(pb.GetPriceRequest(symbol="BTC-USD"), timeout=5,
                      metadata=(("x-request-id", "risk-7.a:b_c"),))
        with pytest.raises(grpc.RpcError):
            stub.GetPrice(pb.GetPriceRequest(symbol="XYZ-USD"), timeout=5,
                          metadata=(("x-request-id", "risk-8"),))
        stub.ListSymbols(pb.ListSymbolsRequest(), timeout=5,
                         metadata=(("x-request-id", "bad id with spaces " + "x" * 200),))

    def calls() -> dict[str, dict[str, Any]] | None:
        lines = [line for line in feed_and_bridge.logs("bridge") if line["event"] == "call"]
        by_cid = {line["cid"]: line for line in lines}
        listed = [line for line in lines if line["rpc"] == "ListSymbols"]
        return (by_cid if {"risk-7.a:b_c", "risk-8"} <= set(by_cid) and listed
                else None)

    by_cid = wait_for("the calls' log lines", calls, 10)
    assert by_cid["risk-7.a:b_c"]["rpc"] == "GetPrice" and by_cid["risk-7.a:b_c"]["code"] == "OK"
    assert by_cid["risk-8"]["code"] == "NOT_FOUND" and by_cid["risk-8"]["level"] == "info"
    assert by_cid["risk-8"]["duration_ms"] >= 0
    listed = [line for line in by_cid.values() if line["rpc"] == "ListSymbols"]
    assert all(re.fullmatch(r"[0-9a-f]{32}", line["cid"]) for line in listed)


@pytest.mark.parametrize(("call", "code", "text"), [
    (lambda s: s.GetPrice(pb.GetPriceRequest(symbol="XYZ-USD"), timeout=5),
     grpc.StatusCode.NOT_FOUND, "unknown symbol 'XYZ-USD'"),
    (lambda s: s.GetPrice(pb.GetPriceRequest(symbol="!!"), timeout=5),
     grpc.StatusCode.INVALID_ARGUMENT, "not a symbol"),
    (lambda s: s.GetPrice(pb.GetPriceRequest(symbol=""), timeout=5),
     grpc.StatusCode.INVALID_ARGUMENT, "empty"),
    (lambda s: next(s.StreamPrices(pb.StreamPricesRequest(symbols=["BTC-USD"],
                                                          update_interval_ms=-5), timeout=5)),
     grpc.StatusCode.INVALID_ARGUMENT, "update_interval_ms"),
    (lambda s: next(s.StreamTicks(pb.StreamTicksRequest(symbols=["BTC-USD", "DOGE-USD"]),
                                  timeout=5)),
     grpc.StatusCode.NOT_FOUND, "DOGE-USD"),
])
def test_bad_requests_get_clear_status_codes(feed_and_bridge: System, call, code, text) -> None:  # type: ignore[no-untyped-def]
    with feed_and_bridge.channel() as channel, pytest.raises(grpc.RpcError) as info:
        call(feed_and_bridge.stub(channel))
    assert code == info.value.code()
    assert text in info.value.details()


MALFORMED = {"bad-tag": b"\xff\xff\xff", "truncated": b"\x0a\x05BT",
             "bad-utf8": b"\x0a\x02\xc3\x28"}  # field 1 (a string) is not UTF-8


@pytest.mark.parametrize(("rpc", "body"), [
    pytest.param(rpc, body, id=f"{rpc}-{name}")
    for rpc in (method.name for method in handlers.SERVICE.methods)
    for name, body in MALFORMED.items()
    if not (rpc == "ListSymbols" and name == "bad-utf8")  # no field 1: kept as unknown, valid
])
def test_malformed_protobuf_gets_invalid_argument(feed_and_bridge: System, rpc: str,
                                                  body: bytes) -> None:
    """Bytes that are not the request message: INVALID_ARGUMENT saying so, and the bridge
    carries on serving."""
    path = f"/marketdata.MarketDataService/{rpc}"
    with feed_and_bridge.channel() as channel:
        if handlers.SERVICE.methods_by_name[rpc].server_streaming:
            call = channel.unary_stream(path)(body, timeout=5)
            with pytest.raises(grpc.RpcError) as info:
                next(call)
        else:
            with pytest.raises(grpc.RpcError) as info:
                channel.unary_unary(path)(body, timeout=5)
        assert grpc.StatusCode.INVALID_ARGUMENT == info.value.code()
        assert f"{rpc}: the request is not a valid marketdata." in info.value.details()
        price = feed_and_bridge.stub(channel).GetPrice(pb.GetPriceRequest(symbol="BTC-USD"),
                                                        timeout=5)
    assert price.symbol == "BTC-USD"


def test_health_and_reflection_for_stock_tools(feed_and_bridge: System) -> None:
    with feed_and_bridge.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(service="marketdata.MarketDataService"),
                             timeout=5)
        assert health_pb2.HealthCheckResponse.SERVING == reply.status
        database = ProtoReflectionDescriptorDatabase(channel)
        services = database.get_services()
        assert "marketdata.MarketDataService" in services
        assert "grpc.health.v1.Health" in services
        method = database.FindFileContainingSymbol("marketdata.MarketDataService")
        assert "marketdata/marketdata.proto" == method.name


def test_history_in_redis_holds_what_was_streamed(feed_and_bridge: System,
                                                  redis_client: redis.Redis) -> None:
    streamed = collect_ticks(feed_and_bridge, ["BTC-USD"], 200)["BTC-USD"]
    key = f"{feed_and_bridge.env['REDIS_PREFIX']}ticks:BTC-USD"

    def stored_through_last() -> list[wire.Ticks] | None:
        rows = redis_client.xrange(key)
        ticks = wire.concat([wire.decode_body(f[b"d"])[1] for _, f in rows])
        return [ticks] if len(ticks) and ticks["seq"][-1] >= streamed["seq"][-1] else None

    (stored,) = wait_for("history to catch up", stored_through_last, 10)
    index = {int(s): i for i, s in enumerate(stored["seq"])}
    rows = stored[[index[int(s)] for s in streamed["seq"][1:]]]  # [0] is the snapshot
    for name in ("seq", "ts_ns", "bid", "ask", "last", "volume"):
        assert streamed[name][1:].tolist() == rows[name].tolist()
    assert (np.diff(stored["seq"].astype(np.int64)) == 1).all()


def test_zmq_subscriber_decodes_ticks_by_topic_prefix(feed_and_bridge: System) -> None:
    context = zmq.Context.instance()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVTIMEO, 5000)
    sub.setsockopt(zmq.SUBSCRIBE, wire.topic("BTC-USD"))
    sub.connect(feed_and_bridge.env["FEED_PUB_ENDPOINT"])
    try:
        batches = [wire.decode(sub.recv_multipart()) for _ in range(20)]
    finally:
        sub.close()
    assert {"BTC-USD"} == {b.symbol for b in batches}
    tracker = SequenceTracker()  # drops the last-value replay when a live tick came first
    fresh = [o.fresh for o in map(tracker.observe, batches) if o.fresh is not None]
    seq = np.concatenate([b.ticks["seq"] for b in fresh]).astype(np.int64)
    assert (np.diff(seq) == 1).all()
    assert len(seq) >= 19


def test_metrics_endpoints_count_the_feed(feed_and_bridge: System) -> None:
    for port_var, name in (("FEED_METRICS_PORT", "feedsim_ticks_total"),
                           ("BRIDGE_METRICS_PORT", "bridge_ticks_received_total")):
        url = f"http://127.0.0.1:{feed_and_bridge.env[port_var]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        match = re.search(rf'^{name}{{symbol="BTC-USD"}} (\S+)$', text, re.MULTILINE)
        assert match and float(match.group(1)) > 0, text[:500]


def test_late_joining_zmq_subscriber_gets_the_last_value_at_once(
        tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    """With a tick every 20 s, a new subscriber still gets the current state immediately."""
    system = System.configure(tmp_path, redis_url, redis_prefix, FEED_TICK_RATE="0.05",
                              FEED_START_WAIT_S="0")  # ticks from the start, without anyone
    system.start("feedsim")
    context = zmq.Context.instance()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVTIMEO, 3000)
    try:
        with context.socket(zmq.REQ) as control:
            control.setsockopt(zmq.LINGER, 0)
            control.setsockopt(zmq.RCVTIMEO, 30_000)  # feedsim may still be importing
            control.connect(system.env["FEED_CONTROL_ENDPOINT"])
            control.send(b'{"cmd": "snapshot"}')
            snapshot = __import__("orjson").loads(control.recv())
        assert snapshot["last"]["ETH-USD"]["seq"] == 1
        time.sleep(0.5)
        sub.setsockopt(zmq.SUBSCRIBE, wire.topic("ETH-USD"))
        sub.connect(system.env["FEED_PUB_ENDPOINT"])
        started = time.monotonic()
        batch = wire.decode(sub.recv_multipart())
        assert time.monotonic() - started < 2.0
        assert "ETH-USD" == batch.symbol
        assert [1] == batch.ticks["seq"].tolist()
        assert batch.ticks["flags"][0] & wire.FLAG_SNAPSHOT
        assert snapshot["last"]["ETH-USD"]["bid"] == batch.ticks["bid"][0]
    finally:
        sub.close()
        system.kill_all()


def test_a_stalled_stream_does_not_slow_a_healthy_one(
        tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    system = System.configure(tmp_path, redis_url, redis_prefix, FEED_TICK_RATE="10000",
                              STREAM_QUEUE_TICKS="20000")
    system.start("feedsim", "bridge")
    try:
        system.wait_grpc_serving()
        stalled_channel = system.channel()
        stalled = system.stub(stalled_channel).StreamTicks(pb.StreamTicksRequest(), timeout=60)
        next(stalled)  # opened, then never read again

        received: list[wire.Ticks] = []
        started = time.monotonic()
        with system.channel() as channel:
            for message in system.stub(channel).StreamTicks(
                    pb.StreamTicksRequest(symbols=["BTC-USD"]), timeout=60):
                received.extend(ticks_from_message(b) for b in message.batches)
                if time.monotonic() - started > 6:
                    break
        elapsed = time.monotonic() - started
        seq = np.concatenate(received)["seq"].astype(np.int64)
        assert len(seq) > 1000
        assert (np.diff(seq) == 1).all()
        assert len(seq) / elapsed > 0.8 * 10_000  # the healthy stream keeps the feed's pace

        metrics_url = f"http://127.0.0.1:{system.env['BRIDGE_METRICS_PORT']}/metrics"

        def disconnected() -> bool:
            with urllib.request.urlopen(metrics_url, timeout=5) as response:
                text = response.read().decode()
            return 'bridge_stream_disconnects_total{reason="slow_consumer"} 1.0' in text

        wait_for("the stalled stream to be disconnected", disconnected, 30)
        with pytest.raises(grpc.RpcError) as info:
            for _ in stalled:
                pass
        assert grpc.StatusCode.RESOURCE_EXHAUSTED == info.value.code()
        assert "fell more than 20000 ticks behind" in info.value.details()
        stalled_channel.close()
    finally:
        system.kill_all()


def test_sigterm_shuts_down_cleanly_and_flushes_history(
        tmp_path: Path, redis_url: str, redis_prefix: str, redis_client: redis.Redis) -> None:
    system = System.configure(tmp_path, redis_url, redis_prefix, FEED_TICK_RATE="2000")
    system.start("feedsim", "bridge")
    try:
        system.wait_grpc_serving()
        errors: list[grpc.RpcError] = []
        last_seq: list[int] = []

        def consume() -> None:
            with system.channel() as channel:
                try:
                    for m in system.stub(channel).StreamTicks(
                            pb.StreamTicksRequest(symbols=["BTC-USD"]), timeout=30):
                        last_seq.append(m.batches[-1].seq[-1])
                except grpc.RpcError as exc:
                    errors.append(exc)

        conflated: list[pb.PriceUpdate] = []

        def consume_conflated() -> None:  # sleeping a minute between updates at the stop
            with system.channel() as channel:
                try:
                    for u in system.stub(channel).StreamPrices(
                            pb.StreamPricesRequest(symbols=["ETH-USD"],
                                                   update_interval_ms=60_000), timeout=30):
                        conflated.append(u)
                except grpc.RpcError as exc:
                    errors.append(exc)

        with system.channel() as channel:  # so the conflated stream opens with a snapshot
            wait_for("the first ETH-USD tick", lambda: system.stub(channel).GetPrice(
                pb.GetPriceRequest(symbol="ETH-USD"), timeout=5))
        readers = [threading.Thread(target=consume), threading.Thread(target=consume_conflated)]
        for reader in readers:
            reader.start()
        wait_for("ticks on the streams", lambda: len(last_seq) > 10 and conflated, 10)
        assert 0 == system.stop("bridge")
        for reader in readers:
            reader.join(10)
        assert 2 == len(errors)
        for error in errors:  # both told why, not cut off after the grace period
            assert grpc.StatusCode.UNAVAILABLE == error.code()
            assert "bridge is shutting down; reconnect" == error.details()
        assert 0 == system.stop("feedsim")
    finally:
        system.kill_all()
    bridge_events = {line["event"]: line for line in system.logs("bridge")}
    assert 0 == bridge_events["bridge stopped"]["unflushed_ticks"]
    feed_events = {line["event"]: line for line in system.logs("feedsim")}
    assert "feedsim stopped" in feed_events
    rows = redis_client.xrevrange(f"{redis_prefix}ticks:BTC-USD", count=1)
    stored_last = int(wire.decode_body(rows[0][1][b"d"])[1]["seq"][-1])
    assert stored_last >= last_seq[-1]  # everything streamed before the stop is in history


def test_a_flood_of_control_requests_does_not_stop_the_ticks(
        tmp_path: Path, redis_url: str) -> None:
    with (running(tmp_path, redis_url, ("feedsim",)) as system, zmq.Context() as context,
          context.socket(zmq.SUB) as sub):
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, wire.topic("BTC-USD"))
        sub.connect(system.env["FEED_PUB_ENDPOINT"])
        wait_for("the first BTC-USD tick", lambda: sub.poll(1000))
        stop = threading.Event()

        def flood() -> None:
            with context.socket(zmq.DEALER) as dealer:
                dealer.setsockopt(zmq.LINGER, 0)
                dealer.setsockopt(zmq.SNDHWM, 0)
                dealer.connect(system.env["FEED_CONTROL_ENDPOINT"])
                while not stop.is_set():
                    for _ in range(1000):
                        dealer.send(b'{"cmd": "snapshot"}')

        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        try:
            time.sleep(0.5)  # the flood fills feedsim's control queue
            while sub.poll(0):
                sub.recv_multipart()  # what was published before
            seqs = []
            while len(seqs) < 10:  # the default 10 ticks a second keep coming
                assert sub.poll(5000), f"no tick within 5 s during the flood after {seqs}"
                seqs.extend(wire.decode(sub.recv_multipart()).ticks["seq"].tolist())
        finally:
            stop.set()
            flooder.join()


def test_health_follows_the_feed_and_a_restart_counts_once(
        tmp_path: Path, redis_url: str, redis_prefix: str, redis_client: redis.Redis) -> None:
    system = System.configure(tmp_path, redis_url, redis_prefix)
    system.start("feedsim", "bridge")
    metrics_url = f"http://127.0.0.1:{system.env['BRIDGE_METRICS_PORT']}/metrics"

    def restarts() -> float:
        with urllib.request.urlopen(metrics_url, timeout=5) as response:
            text = response.read().decode()
        match = re.search(r"^bridge_feed_restarts_total (\S+)$", text, re.MULTILINE)
        assert match, "no bridge_feed_restarts_total"
        return float(match.group(1))

    try:
        system.wait_grpc_serving()
        with system.channel() as channel:
            health = health_pb2_grpc.HealthStub(channel)
            stub = system.stub(channel)

            def status() -> int:
                request = health_pb2.HealthCheckRequest(service="marketdata.MarketDataService")
                return int(health.Check(request, timeout=5).status)

            session = wait_for("the first BTC-USD tick", lambda: stub.GetPrice(
                pb.GetPriceRequest(symbol="BTC-USD"), timeout=5)).session
            assert 0 == system.stop("feedsim")
            wait_for("NOT_SERVING without the feed",
                     lambda: status() == health_pb2.HealthCheckResponse.NOT_SERVING)
            system.start("feedsim")
            wait_for("SERVING with the feed back",
                     lambda: status() == health_pb2.HealthCheckResponse.SERVING)
            wait_for("the new session's ticks", lambda: stub.GetPrice(
                pb.GetPriceRequest(symbol="BTC-USD"), timeout=5).session != session)
            wait_for("every symbol's ticks of the new session", lambda: all(
                stub.GetPrice(pb.GetPriceRequest(symbol=s), timeout=5).session != session
                for s in DEFAULT_SYMBOLS))
        assert 1.0 == restarts()  # one feedsim restart, five symbols

        def new_session_seqs() -> list[int] | None:
            rows = redis_client.xrange(f"{redis_prefix}ticks:BTC-USD")
            bodies = [wire.decode_body(fields[b"d"]) for _, fields in rows]
            seqs = [int(q) for s, ticks in bodies if s != session for q in ticks["seq"]]
            return seqs if len(seqs) >= 3 else None

        # feedsim waited for the bridge to reconnect: history has the new session from seq 1
        assert [1, 2, 3] == wait_for("the new session in history", new_session_seqs)[:3]
    finally:
        system.kill_all()


def test_a_bridge_started_without_the_feed_serves_history_from_redis(
        tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    system = System.configure(tmp_path, redis_url, redis_prefix)
    system.start("feedsim", "bridge")
    try:
        system.wait_grpc_serving()
        with system.channel() as channel:
            stub = system.stub(channel)
            wait_for("ticks in history", lambda: len(stub.GetHistory(
                pb.GetHistoryRequest(symbol="BTC-USD"), timeout=5).ticks.seq) >= 5)
        assert 0 == system.stop("bridge")
        assert 0 == system.stop("feedsim")
        system.start("bridge")  # the feed stays down
        with system.channel() as channel:
            stub = system.stub(channel)
            history = wait_for("history from Redis", lambda: stub.GetHistory(
                pb.GetHistoryRequest(symbol="btc/usd"), timeout=5))
            assert len(history.ticks.seq) >= 5 and history.ticks.symbol == "BTC-USD"
            with pytest.raises(grpc.RpcError) as info:
                stub.GetPrice(pb.GetPriceRequest(symbol="B..D"), timeout=5)
            assert grpc.StatusCode.INVALID_ARGUMENT == info.value.code()
            time.sleep(2.5)  # two rounds of the feed watch: it must not call a dead feed alive
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="marketdata.MarketDataService"), timeout=5)
            assert health_pb2.HealthCheckResponse.NOT_SERVING == health.status
    finally:
        system.kill_all()


def test_a_subscriber_started_with_feedsim_sees_the_session_from_seq_1(
        tmp_path: Path, redis_url: str) -> None:
    with running(tmp_path, redis_url, ("feedsim",)) as system, zmq.Context() as context, \
            context.socket(zmq.SUB) as sub, context.socket(zmq.REQ) as control:
        control.setsockopt(zmq.LINGER, 0)
        control.setsockopt(zmq.RCVTIMEO, 30_000)  # feedsim may still be importing
        control.connect(system.env["FEED_CONTROL_ENDPOINT"])
        control.send(b'{"cmd": "ping"}')
        assert orjson.loads(control.recv())["ok"]  # feedsim is up and its clock runs
        time.sleep(0.5)  # 5 ticks' time at the default rate, had feedsim not waited
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, wire.topic("BTC-USD"))
        sub.connect(system.env["FEED_PUB_ENDPOINT"])
        assert sub.poll(10_000), "no tick"
        first = wire.decode(sub.recv_multipart()).ticks
        assert 1 == int(first["seq"][0]) and not first["flags"][0] & wire.FLAG_SNAPSHOT
    assert any(line["event"] == "first tick" and line["after"] == "first subscriber"
               for line in system.logs("feedsim"))


def test_a_feed_nobody_subscribes_to_starts_after_its_wait(tmp_path: Path, redis_url: str
                                                           ) -> None:
    with running(tmp_path, redis_url, ("feedsim",), FEED_START_WAIT_S="0.3") as system, \
            zmq.Context() as context, context.socket(zmq.REQ) as control:
        control.setsockopt(zmq.LINGER, 0)
        control.setsockopt(zmq.RCVTIMEO, 30_000)  # feedsim may still be importing
        control.connect(system.env["FEED_CONTROL_ENDPOINT"])

        def ticked() -> bool:
            control.send(b'{"cmd": "snapshot"}')
            return orjson.loads(control.recv())["last"]["BTC-USD"] is not None

        wait_for("feedsim's first tick with nobody subscribed", ticked)
    assert any(line["event"] == "first tick" and line["after"] == "0.3 s without a subscriber"
               for line in system.logs("feedsim"))
