"""Historical replay end to end: real feedsim at speed max -> bridge -> Redis -> REST candles.

The source is the real Bitstamp slice in tests/data (500 hourly bars, from the shared data; see
tests/data/README.md). The 1h candles the bridge rebuilds from the replayed trades must equal
the bars the importer read from the file, bar for bar.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import zmq

from calibration.importer import parse_ohlcv
from feedsim.replay import ticks_per_bar
from marketdata import wire
from tests.system import System, running, wait_for

pytestmark = pytest.mark.integration

DATA = Path(__file__).parent / "data"
SOURCE = DATA / "bitstamp_btcusd_1h_slice.csv"
RATE = 0.02  # ticks per replayed second: 72 a bar, 36,000 in all
HOUR_MS = 3_600_000


def control(system: System, cmd: str) -> dict[str, Any]:
    """Send one control request to feedsim and return its reply."""
    socket = zmq.Context.instance().socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVTIMEO, 5000)
    try:
        socket.connect(system.env["FEED_CONTROL_ENDPOINT"])
        socket.send(orjson.dumps({"cmd": cmd}))
        reply: dict[str, Any] = orjson.loads(socket.recv())
        return reply
    finally:
        socket.close()


def test_a_replay_at_max_speed_rebuilds_the_source_bars_as_candles(tmp_path: Path,
                                                                    redis_url: str) -> None:
    bars, _ = parse_ohlcv(SOURCE.read_text(), source=str(SOURCE))
    per_bar = ticks_per_bar(bars.interval_ns, RATE)
    with running(tmp_path, redis_url, ("feedsim", "bridge", "api"),
                 FEED_REPLAY_FILE=str(SOURCE), FEED_REPLAY_SPEED="max",
                 FEED_TICK_RATE=str(RATE),
                 # Replayed ticks carry their 2020 times: /ready must accept their age.
                 READY_MAX_TICK_AGE_S="1e10") as system:

        def finished() -> dict[str, Any] | None:
            replay = control(system, "status")["replay"]
            return replay if replay["finished"] else None

        replay = wait_for("the replay to finish", finished, 60)
        btc = replay["symbols"]["BTC-USD"]
        assert btc["published"] == btc["ticks"] == len(bars) * per_bar
        assert replay["started"] and replay["speed"] == "max"
        assert any(line["event"].startswith("replay finished") for line in system.logs("feedsim"))

        first_ms, last_ms = int(bars.time_ns[0]) // 10**6, int(bars.time_ns[-1]) // 10**6
        path = (f"/api/v1/candles/BTC-USD?interval=1h&start={first_ms}&end={last_ms}"
                f"&limit={len(bars) + 10}")

        def all_candles() -> list[dict[str, Any]] | None:
            status, body = system.http(path)
            assert 200 == status, body
            candles: list[dict[str, Any]] = body["candles"]
            done = len(candles) == len(bars) and candles[-1]["trades"] > 0
            # The last candle is complete once its trades stop changing (the bridge writes
            # candles every 50 ms); compare its close to the file's.
            return candles if done and candles[-1]["close"] == bars.close[-1] else None

        candles = wait_for("every 1h candle", all_candles, 30)
        lots = 0.00001
        for i, candle in enumerate(candles):
            assert candle["open_time_ms"] == int(bars.time_ns[i]) // 10**6
            assert candle["close_time_ms"] == candle["open_time_ms"] + HOUR_MS - 1
            expected = (bars.open[i], bars.high[i], bars.low[i], bars.close[i],
                        round(round(bars.volume_base[i] / lots) * lots, 5))
            got = (candle["open"], candle["high"], candle["low"], candle["close"],
                   candle["volume"])
            assert got == expected, f"bar {i} (line {int(bars.lines[i])})"  # type: ignore[index]

        # The feed is still up, publishing nothing more; the API serves the replayed prices.
        assert control(system, "ping")["ok"]
        status, current = system.http("/api/v1/prices/BTC-USD/current")
        assert 200 == status and current["last"] == bars.close[-1]
        assert system.http("/api/v1/ready")[0] == 200


def test_a_late_joiner_during_a_lossless_replay_sends_no_snapshot_ahead_of_queued_ticks(
        tmp_path: Path, redis_url: str) -> None:
    # At speed max feedsim queues what a full subscriber refused; a last-value replay sent to
    # a new subscriber then must not overtake that queue on the way to the others. The race
    # is narrow (room must open in the slow queue just as the subscription arrives), so this
    # checks the ordering a lossless replay promises more than it provokes the race.
    with (running(tmp_path, redis_url, ("feedsim",), FEED_REPLAY_FILE=str(SOURCE),
                  FEED_REPLAY_SPEED="max", FEED_TICK_RATE=str(RATE)) as system,
          zmq.Context() as context):
        slow = context.socket(zmq.SUB)
        slow.setsockopt(zmq.RCVHWM, 10)
        slow.setsockopt(zmq.SUBSCRIBE, b"BTC-USD:tick")
        slow.connect(system.env["FEED_PUB_ENDPOINT"])
        seen: list[tuple[int, bool]] = []  # (seq, snapshot flag) in arrival order

        def read(n: int) -> None:
            for _ in range(n):
                if not slow.poll(2000):
                    return  # the replay is over
                ticks = wire.decode(slow.recv_multipart()).ticks
                seen.extend(zip(ticks["seq"].tolist(),
                                (ticks["flags"] & wire.FLAG_SNAPSHOT).astype(bool).tolist(),
                                strict=True))
                time.sleep(0.001)  # slower than feedsim: its queue to us stays full

        # The slow subscriber must be the replay's first: the late one's subscription could
        # otherwise reach a feedsim still starting up first, and the slow one join mid-replay.
        assert slow.poll(30_000), "feedsim published nothing within 30 s"
        read(50)
        assert seen and not seen[0][1], f"the first subscriber began with {seen[:1]}"
        late = context.socket(zmq.SUB)
        late.setsockopt(zmq.SUBSCRIBE, b"BTC-USD:tick")
        late.connect(system.env["FEED_PUB_ENDPOINT"])  # the replay waits for it too: drain it
        stop = threading.Event()

        def drain() -> None:
            while not stop.is_set():
                if late.poll(50):
                    late.recv_multipart()

        drainer = threading.Thread(target=drain)
        drainer.start()
        try:
            read(100_000)
        finally:
            stop.set()
            drainer.join()
            late.close(linger=0)
            slow.close(linger=0)
    bars, _ = parse_ohlcv(SOURCE.read_text(), source=str(SOURCE))
    assert len(bars) * ticks_per_bar(bars.interval_ns, RATE) == max(s for s, _ in seen)
    highest = 0
    for seq, snapshot in seen:
        if snapshot:
            assert seq <= highest, f"a snapshot of seq {seq} came before seq {highest + 1}"
        else:
            assert seq == highest + 1, f"seq {seq} after {highest}"
            highest = seq
