"""The bridge's SUB socket on the event loop's reader, against a real ZeroMQ PUB socket."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator

import numpy as np
import pytest
import zmq
import zmq.asyncio

from bridge.feed import TickSubscription
from marketdata import wire
from marketdata.errors import WireError
from tests.conftest import free_port

SESSION = 1_700_000_000_000_000_000


def message(seq: int, symbol: str = "BTC-USD", n: int = 1) -> list[bytes]:
    """`n` ticks of `symbol` from `seq` on, as feedsim frames them."""
    ticks = wire.empty_ticks(n)
    ticks["seq"] = np.arange(seq, seq + n)
    ticks["ts_ns"] = SESSION + ticks["seq"]
    ticks["bid"], ticks["ask"], ticks["last"] = 100.0, 100.5, 100.25
    return [bytes(f) for f in wire.encode(wire.TickBatch(symbol, SESSION, ticks))]


@pytest.fixture
def pub() -> Iterator[tuple[zmq.Socket[bytes], str]]:
    context = zmq.Context()
    socket = context.socket(zmq.PUB)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SNDHWM, 0)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    socket.bind(endpoint)
    yield socket, endpoint
    socket.close()
    context.term()


class Seen:
    """What the subscription passed on."""

    def __init__(self) -> None:
        self.seqs: list[int] = []  # every seq but the probes' 0
        self.probes = 0
        self.drains = 0
        self.bad: list[WireError] = []

    def batch(self, batch: wire.TickBatch) -> None:
        self.probes += int((batch.ticks["seq"] == 0).sum())
        self.seqs.extend(int(s) for s in batch.ticks["seq"] if s)

    def drain(self) -> None:
        self.drains += 1


@contextlib.asynccontextmanager
async def reading(pub: zmq.Socket[bytes], endpoint: str, seen: Seen,
                  on_batch: Callable[[wire.TickBatch], None] | None = None, *,
                  join: bool = True) -> AsyncIterator[tuple[TickSubscription, asyncio.Task[None]]]:
    """A TickSubscription running on this loop (joined to `pub` unless `join` is False); after
    the block its task is cancelled and awaited, the socket closed and the context ended."""
    context = zmq.asyncio.Context()
    sub = TickSubscription(context, endpoint, on_batch or seen.batch, lambda book: None,
                           seen.bad.append, on_drain=seen.drain)
    task = asyncio.create_task(sub.run())
    try:
        if join:
            await joined_by(pub, seen)
        yield sub, task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sub.close()
        context.term()


async def until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def joined_by(pub: zmq.Socket[bytes], seen: Seen, timeout_s: float = 10.0) -> None:
    """Publish probes (seq 0, not counted as ticks) until one arrives: the SUB has joined."""
    deadline = time.monotonic() + timeout_s
    while not seen.probes:
        assert time.monotonic() < deadline, "the SUB socket never joined"
        pub.send_multipart(message(0))
        await asyncio.sleep(0.02)


def test_a_backlog_beyond_one_drain_arrives_whole_and_in_order_then_live_ticks_follow(
        pub: tuple[zmq.Socket[bytes], str]) -> None:
    socket, endpoint = pub
    backlog = 3 * TickSubscription.DRAIN_MAX + 7
    seen = Seen()

    async def scenario() -> None:
        async with reading(socket, endpoint, seen):
            drains = seen.drains
            # All of it queued at once: one callback may take DRAIN_MAX; the rest must follow
            # without a new signal from the socket.
            for seq in range(1, backlog + 1):
                socket.send_multipart(message(seq))
            await until(lambda: len(seen.seqs) == backlog)
            socket.send_multipart(message(backlog + 1))  # and the reader still reads
            await until(lambda: len(seen.seqs) == backlog + 1)
            seen.drains -= drains

    asyncio.run(scenario())
    assert seen.seqs == list(range(1, backlog + 2))
    assert seen.drains >= 4  # the backlog in at least 4 (1,000 messages at most), then 1 more
    assert not seen.bad


def test_a_backlog_of_large_messages_is_handed_on_in_parts(
        pub: tuple[zmq.Socket[bytes], str]) -> None:
    """A feed at full speed sends ~1,000 ticks a message: 1,000 such messages in one callback
    held the loop for seconds, and history flushes starved (2x1M/s: 24k ticks/s written)."""
    socket, endpoint = pub
    per_message, messages = 10_000, 10
    total = per_message * messages
    seen = Seen()

    async def scenario() -> None:
        async with reading(socket, endpoint, seen):
            drains = seen.drains
            for i in range(messages):
                socket.send_multipart(message(1 + i * per_message, n=per_message))
            await until(lambda: len(seen.seqs) == total)
            seen.drains -= drains

    asyncio.run(scenario())
    assert seen.seqs == list(range(1, total + 1))
    assert seen.drains >= total // TickSubscription.DRAIN_MAX_TICKS


def test_a_malformed_message_is_reported_and_the_next_one_still_arrives(
        pub: tuple[zmq.Socket[bytes], str]) -> None:
    socket, endpoint = pub
    seen = Seen()

    async def scenario() -> None:
        async with reading(socket, endpoint, seen):
            socket.send_multipart([b"BTC-USD:tick", b"\x00garbage"])
            socket.send_multipart(message(5))
            await until(lambda: 5 in seen.seqs)

    asyncio.run(scenario())
    assert len(seen.bad) == 1


def test_an_error_in_a_callback_ends_the_run_with_it(
        pub: tuple[zmq.Socket[bytes], str]) -> None:
    socket, endpoint = pub

    def broken(batch: wire.TickBatch) -> None:
        raise RuntimeError("downstream bug")

    async def scenario() -> None:
        async with reading(socket, endpoint, Seen(), broken, join=False) as (_, task):
            deadline = time.monotonic() + 10
            while not task.done():
                assert time.monotonic() < deadline, "the run did not end"
                socket.send_multipart(message(1))
                await asyncio.sleep(0.02)
            with pytest.raises(RuntimeError, match="downstream bug"):
                task.result()

    asyncio.run(scenario())


def test_closing_while_running_stops_reading(pub: tuple[zmq.Socket[bytes], str]) -> None:
    socket, endpoint = pub

    async def scenario() -> None:
        async with reading(socket, endpoint, Seen()) as (sub, task):
            fd = sub.socket.fileno()
            # The bridge's stop(): cancel the task, close the socket at once, then wait.
            task.cancel()
            sub.close()
            # No reader left on the fd: a later socket given the same number would never be
            # read (asyncio would only replace the handle, never registering it with epoll).
            assert not asyncio.get_running_loop().remove_reader(fd)
            await asyncio.gather(task, return_exceptions=True)
            assert task.cancelled()

    asyncio.run(scenario())


def test_closing_without_cancelling_ends_the_run(pub: tuple[zmq.Socket[bytes], str]) -> None:
    socket, endpoint = pub

    async def scenario() -> None:
        async with reading(socket, endpoint, Seen()) as (sub, task):
            sub.close()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
