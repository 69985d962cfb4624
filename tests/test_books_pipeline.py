"""Order books over the real sockets: snapshot + diffs rebuild feedsim's book, gaps resync."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
import zmq
from prometheus_client import CollectorRegistry

from bridge.config import BridgeConfig
from bridge.server import Bridge
from marketdata import wire
from marketdata.books import OrderBook, Status, book_from_dict
from tests.system import ROOT, System, running

pytestmark = pytest.mark.integration

SNAPSHOT_EVERY = 20  # book updates; at 200 ticks/s and 100 ms per update: every 2 s


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[System]:
    with running(tmp_path_factory.mktemp("books"), redis_url, ("feedsim", "bridge"),
                 FEED_TICK_RATE="200", FEED_BOOK_SNAPSHOT_EVERY=str(SNAPSHOT_EVERY)) as system:
        yield system


def same_book(a: wire.BookSnapshot, b: wire.BookSnapshot) -> bool:
    return ((a.symbol, a.session, a.book_seq, a.tick_seq, a.ts_ns)
            == (b.symbol, b.session, b.book_seq, b.tick_seq, b.ts_ns)
            and a.bids.tobytes() == b.bids.tobytes() and a.asks.tobytes() == b.asks.tobytes())


def test_a_subscriber_rebuilds_feedsims_book_from_snapshot_and_diffs(feed: System) -> None:
    """Late-join snapshot, then diffs: the book equals feedsim's 'book' answer at the same
    book_seq, every periodic snapshot after it, and its touch is the tick's bid/ask."""
    context = zmq.Context.instance()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVTIMEO, 5000)
    sub.setsockopt(zmq.SUBSCRIBE, wire.subscription("ETH-USD"))  # ticks, snapshots, diffs
    sub.connect(feed.env["FEED_PUB_ENDPOINT"])
    control = context.socket(zmq.DEALER)
    control.setsockopt(zmq.LINGER, 0)
    control.connect(feed.env["FEED_CONTROL_ENDPOINT"])
    reader = OrderBook("ETH-USD")
    ticks: dict[int, np.void] = {}
    history: dict[int, wire.BookSnapshot] = {}
    answer: wire.BookSnapshot | None = None
    statuses: list[Status] = []
    touches_checked = periodic = 0
    deadline = time.monotonic() + 30
    try:
        while (answer is None or reader.book_seq < answer.book_seq or periodic < 1
               or len(history) < 30):
            assert time.monotonic() < deadline, "timed out"
            message = wire.decode_message(sub.recv_multipart())
            if isinstance(message, wire.TickBatch):
                ticks.update((int(t["seq"]), t) for t in message.ticks)
                continue
            was_synced = reader.synced
            outcome = reader.apply(message)
            statuses.append(outcome.status)
            if isinstance(message, wire.BookSnapshot) and was_synced:
                assert Status.STALE == outcome.status  # periodic: the book we already hold
                assert same_book(history[message.book_seq], message)
                periodic += 1
            if outcome.status is not Status.APPLIED:
                continue
            history[reader.book_seq] = reader.snapshot()
            tick = ticks.get(reader.tick_seq)
            if tick is not None:  # the very first ticks may precede our subscription
                assert (reader.bids[0]["price"], reader.asks[0]["price"]) == (tick["bid"],
                                                                              tick["ask"])
                assert (reader.bids[0]["size"], reader.asks[0]["size"]) == (tick["bid_size"],
                                                                            tick["ask_size"])
                touches_checked += 1
            if len(history) == 10:
                control.send(orjson.dumps({"cmd": "book", "symbol": "ETH-USD"}))
            if answer is None and control.poll(0):
                reply = orjson.loads(control.recv())
                assert reply["ok"], reply
                answer = book_from_dict(reply)
    finally:
        sub.close()
        control.close()
    assert Status.GAP not in statuses
    assert isinstance(answer, wire.BookSnapshot)
    assert same_book(answer, history[answer.book_seq])
    assert touches_checked > 20
    assert 20 == len(answer.bids) == len(answer.asks)
    assert (answer.bids["price"][0] < answer.asks["price"][0])
    assert (np.diff(sorted(history)) == 1).all()  # every update, one by one


def bridge_config(system: System, redis_url: str, redis_prefix: str) -> BridgeConfig:
    return BridgeConfig.from_env({
        "GRPC_PORT": "0", "BRIDGE_METRICS_PORT": "0", "REDIS_URL": redis_url,
        "REDIS_PREFIX": redis_prefix, "SHUTDOWN_GRACE_S": "0",
        "FEED_PUB_ENDPOINT": system.env["FEED_PUB_ENDPOINT"],
        "FEED_CONTROL_ENDPOINT": system.env["FEED_CONTROL_ENDPOINT"],
    })


async def until(what: str, check: Any, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def test_the_bridge_detects_a_dropped_diff_and_resyncs_from_the_control_socket(
        feed: System, redis_url: str, redis_prefix: str) -> None:
    """Drop one diff on its way into the bridge: the gap is counted, the book is fetched with
    'book', and FeedState again holds feedsim's full book, diff after diff."""
    registry = CollectorRegistry()

    async def scenario() -> tuple[Bridge, int, dict[int, wire.BookSnapshot], wire.BookSnapshot]:
        bridge = Bridge(bridge_config(feed, redis_url, redis_prefix), registry)
        seen: dict[int, wire.BookSnapshot] = {}
        dropped: list[int] = []
        take_book, handle = bridge.subscription.on_book, bridge.subscription._handle

        def on_book(book: wire.BookSnapshot) -> None:
            take_book(book)
            if book.symbol == "ETH-USD":
                assert bridge.state.books["ETH-USD"] is book  # the full latest book
                seen[book.book_seq] = book

        def lossy(frames: list[memoryview]) -> int:
            if not dropped and seen and bytes(frames[0]) == b"ETH-USD:bookdiff":
                diff = wire.decode_book_diff(frames)
                # Far from a periodic snapshot, so the control socket is what resyncs.
                if diff.book_seq % SNAPSHOT_EVERY == 5:
                    dropped.append(diff.book_seq)
                    return 0
            return handle(frames)

        bridge.subscription.on_book = on_book
        bridge.subscription._handle = lossy  # type: ignore[method-assign]
        await bridge.start()
        try:
            await until("a dropped diff and ten books after it",
                        lambda: dropped and max(seen, default=0) > dropped[0] + 10)
            answer = await bridge.control.book("ETH-USD")
            await until("the bridge at feedsim's answer", lambda: max(seen) >= answer.book_seq)
        finally:
            await bridge.stop()
        return bridge, dropped[0], seen, answer

    bridge, lost, seen, answer = asyncio.run(scenario())
    assert lost not in seen  # never shown: the bridge never had that book
    assert 1 == registry.get_sample_value("bridge_book_gaps_total", {"symbol": "ETH-USD"})
    assert 1 <= (registry.get_sample_value("bridge_book_resyncs_total",
                                           {"symbol": "ETH-USD"}) or 0)
    assert same_book(answer, seen[answer.book_seq])
    after = sorted(s for s in seen if s > lost)
    assert after[0] <= lost + SNAPSHOT_EVERY - 5  # resynced before the periodic snapshot
    assert (np.diff(after) == 1).all()  # and then every update, one by one
    assert same_book(bridge.state.books["ETH-USD"], seen[max(seen)])


def test_the_bridge_process_takes_books_and_counts_no_gaps(feed: System) -> None:
    url = f"http://127.0.0.1:{feed.env['BRIDGE_METRICS_PORT']}/metrics"

    def metrics() -> str:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    deadline = time.monotonic() + 10
    while not re.search(r'^bridge_books_received_total\{symbol="ETH-USD"\} [1-9]', metrics(),
                        re.MULTILINE):
        assert time.monotonic() < deadline, "the bridge took no ETH-USD book"
        time.sleep(0.1)
    text = metrics()
    assert 'bridge_bad_messages_total{reason="undecodable"} 0.0' in text
    assert not re.search(r"^bridge_book_gaps_total\{[^}]*\} [1-9]", text, re.MULTILINE)


def test_feedsim_answers_book_for_any_spelling_and_refuses_unknown_symbols(feed: System
                                                                          ) -> None:
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVTIMEO, 5000)
    socket.connect(feed.env["FEED_CONTROL_ENDPOINT"])
    try:
        socket.send(b'{"cmd": "book", "symbol": "btcusd"}')
        good = orjson.loads(socket.recv())
        socket.send(b'{"cmd": "book", "symbol": "NOPE-USD", "id": 3}')
        bad = orjson.loads(socket.recv())
    finally:
        socket.close()
    book = book_from_dict(good)
    assert "BTC-USD" == book.symbol and book.book_seq > 0 and 20 == len(book.bids)
    assert (False, 3) == (bad["ok"], bad["id"]) and "unknown symbol 'NOPE-USD'" in bad["error"]


def test_readme_order_book_example_rebuilds_a_book(feed: System) -> None:
    example = ROOT / "examples" / "zmq_order_book.py"
    result = subprocess.run(
        [sys.executable, str(example), feed.env["FEED_PUB_ENDPOINT"], "SOL-USD", "12",
         feed.env["FEED_CONTROL_ENDPOINT"]],
        capture_output=True, text=True, timeout=30, check=True)
    lines = result.stdout.strip().splitlines()
    assert 12 == len(lines)
    seqs = [int(re.search(r"book_seq=(\d+)", line).group(1)) for line in lines]  # type: ignore[union-attr]
    assert seqs == list(range(seqs[0], seqs[0] + 12))
    assert all(line.endswith("(20x20 levels)") for line in lines)
    code = example.read_text().split('"""', 2)[2].strip()
    assert code in (ROOT / "README.md").read_text()  # the README shows it in full
