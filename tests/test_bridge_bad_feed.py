"""A real bridge fed by a misbehaving publisher: real ZeroMQ PUB and ROUTER sockets standing in
for feedsim, the real Redis. Bad ticks are dropped or recovered from; nothing else is lost."""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
import redis
import zmq

from bridge.config import BridgeConfig
from marketdata import wire
from marketdata.errors import ConfigError
from marketdata.layout import Keys
from marketdata.symbols import Instrument
from tests.system import System, running, wait_for

pytestmark = pytest.mark.integration

SESSION = 1_700_000_000_000_000_000
INSTRUMENTS = [Instrument(s, s[:3], "USD", 0.01, 0.0001, 1.0, 1e7)
               for s in ("BTC-USD", "ETH-USD", "SOL-USD", "ADA-USD")]  # a symbol a test


class Publisher:
    """feedsim's two sockets, driven by the test: ticks on PUB, instruments on ROUTER."""

    def __init__(self, pub_endpoint: str, control_endpoint: str) -> None:
        self.context = zmq.Context()
        self.pub = self.context.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.bind(pub_endpoint)
        self.control = self.context.socket(zmq.ROUTER)
        self.control.setsockopt(zmq.LINGER, 0)
        self.control.bind(control_endpoint)
        self._running = True
        self.garbled = False  # answer `instruments` with a reply missing its fields
        self.asked: list[str] = []  # the commands received
        self._thread = threading.Thread(target=self._answer, daemon=True)
        self._thread.start()

    def _answer(self) -> None:
        while self._running:
            if not self.control.poll(50):
                continue
            *envelope, payload = self.control.recv_multipart()
            request = orjson.loads(payload)
            self.asked.append(request["cmd"])
            instruments = ([{"symbol": "BTC-USD"}] if self.garbled
                           else [i.to_dict() for i in INSTRUMENTS])
            reply = ({"ok": True, "session": SESSION, "instruments": instruments}
                     if request["cmd"] == "instruments" else {"ok": True})
            self.control.send_multipart([*envelope, orjson.dumps({**reply,
                                                                  "id": request.get("id")})])

    def send(self, symbol: str, seqs: list[int], ts_ns: int | None = None) -> None:
        ticks = wire.empty_ticks(len(seqs))
        ticks["seq"] = seqs
        ticks["ts_ns"] = (time.time_ns() if ts_ns is None else ts_ns) + np.arange(len(seqs))
        ticks["bid"], ticks["ask"], ticks["last"] = 99.99, 100.01, 100.0
        self.pub.send_multipart(wire.encode(wire.TickBatch(symbol, SESSION, ticks)))

    def close(self) -> None:
        self._running = False
        self._thread.join()
        self.pub.close()
        self.control.close()
        self.context.term()


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory, redis_url: str
        ) -> Iterator[tuple[System, Publisher]]:
    with running(tmp_path_factory.mktemp("bad-feed"), redis_url, ()) as system:
        publisher = Publisher(system.env["FEED_PUB_ENDPOINT"],
                              system.env["FEED_CONTROL_ENDPOINT"])
        try:
            system.start("bridge")
            system.wait_grpc_serving()
            # The SUB socket joins a moment after the bridge serves: send until one is stored.
            client = redis.Redis.from_url(redis_url)
            seq = iter(range(1, 1000))

            def joined() -> bool:
                publisher.send("BTC-USD", [next(seq)])
                return bool(client.xlen(Keys(system.env["REDIS_PREFIX"]).ticks("BTC-USD")))

            wait_for("the bridge's subscription", joined)
            client.close()
            yield system, publisher
        finally:
            system.kill_all()
            publisher.close()


def stored(system: System, client: redis.Redis, symbol: str) -> list[int]:
    rows = client.xrange(Keys(system.env["REDIS_PREFIX"]).ticks(symbol))
    return [int(s) for _, f in rows for s in wire.decode_body(f[b"d"])[1]["seq"]]


def metric(system: System, line: str) -> float:
    url = f"http://127.0.0.1:{system.env['BRIDGE_METRICS_PORT']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    match = re.search(rf"^{re.escape(line)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_ticks_of_symbols_the_feed_does_not_publish_are_dropped(
        fed: tuple[System, Publisher], redis_client: redis.Redis) -> None:
    system, publisher = fed
    for i in range(200):
        publisher.send(f"JUNK{i}-USD", [1])
    publisher.send("ETH-USD", [1, 2, 3])
    wait_for("ETH-USD's ticks", lambda: stored(system, redis_client, "ETH-USD") == [1, 2, 3])
    wait_for("the junk counted",
             lambda: metric(system, 'bridge_bad_messages_total{reason="unknown_symbol"}') == 200)
    assert not list(redis_client.scan_iter(match=f"{system.env['REDIS_PREFIX']}*JUNK*"))


def test_a_tick_stamped_in_the_future_is_dropped_and_history_goes_on(
        fed: tuple[System, Publisher], redis_client: redis.Redis) -> None:
    system, publisher = fed
    publisher.send("SOL-USD", [1, 2])  # in one drain of the bridge's socket or several
    publisher.send("SOL-USD", [3], ts_ns=4_000_000_000_000_000_000)  # the year 2096
    publisher.send("SOL-USD", [4, 5])
    wait_for("SOL-USD's ticks but the future one",
             lambda: stored(system, redis_client, "SOL-USD") == [1, 2, 4, 5])
    assert 1 == metric(system, 'bridge_bad_messages_total{reason="future_timestamp"}')
    last_id = redis_client.xrevrange(Keys(system.env["REDIS_PREFIX"]).ticks("SOL-USD"), count=1)
    assert int(last_id[0][0].split(b"-")[0]) < time.time() * 1000 + 1000  # filed under now


def test_ticks_behind_a_corrupt_seq_are_counted_stale_not_dropped_in_silence(
        fed: tuple[System, Publisher], redis_client: redis.Redis) -> None:
    system, publisher = fed
    publisher.send("ADA-USD", [1, 2])
    publisher.send("ADA-USD", [2**62])
    publisher.send("ADA-USD", [3, 4])
    publisher.send("ADA-USD", [5])
    wait_for("the stale ticks counted",
             lambda: metric(system, 'bridge_ticks_stale_total{symbol="ADA-USD"}') == 3)
    wait_for("history", lambda: stored(system, redis_client, "ADA-USD") == [1, 2, 2**62])
    warnings = [line for line in system.logs("bridge")
                if line["event"].startswith("ticks behind the last seq")]
    assert 1 == len(warnings) and warnings[0]["last_seq"] == 2**62  # once, not per batch


def test_the_bridge_is_still_up(fed: tuple[System, Publisher]) -> None:
    system, _ = fed
    assert system.procs["bridge"].poll() is None


def test_a_feed_answering_badly_is_asked_again_at_the_backoffs_pace_while_ticks_flow(
        tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    system = System.configure(tmp_path, redis_url, redis_prefix)
    publisher = Publisher(system.env["FEED_PUB_ENDPOINT"], system.env["FEED_CONTROL_ENDPOINT"])
    publisher.garbled = True
    system.start("bridge")
    try:
        wait_for("the first instruments request", lambda: "instruments" in publisher.asked)
        for seq in range(1, 301):  # 3 s of ticks: each could cut a retry's wait short
            publisher.send("BTC-USD", [seq])
            time.sleep(0.01)
        # The backoff (0.1 s doubling to 2 s) allows about 6 requests in 3 s; waking at
        # every tick would make about 30.
        assert publisher.asked.count("instruments") <= 12, publisher.asked
        assert system.procs["bridge"].poll() is None
    finally:
        system.kill_all()
        publisher.close()


@pytest.mark.parametrize(("value", "expected"), [(None, 60.0), ("3600", 3600.0), ("0", 0.0)])
def test_the_future_limit_is_configurable(value: str | None, expected: float) -> None:
    env = {} if value is None else {"BRIDGE_MAX_TICK_AHEAD_S": value}
    assert expected == BridgeConfig.from_env(env).max_tick_ahead_s


@pytest.mark.parametrize("value", ["-1", "an hour", "nan"])
def test_a_bad_future_limit_is_refused_by_name(value: str) -> None:
    with pytest.raises(ConfigError, match="BRIDGE_MAX_TICK_AHEAD_S"):
        BridgeConfig.from_env({"BRIDGE_MAX_TICK_AHEAD_S": value})
