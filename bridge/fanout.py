"""Fan-out of tick batches to gRPC streams, each behind its own bounded queue.

The feed never waits for a stream: ``Hub.publish`` only appends to each subscriber's queue.
Slow-consumer policy (documented in the README): a stream whose queue holds more than its limit
of ticks (STREAM_QUEUE_TICKS) is disconnected: its queue is dropped, its next read raises
SlowConsumer and the RPC ends with RESOURCE_EXHAUSTED, counted in
``bridge_stream_disconnects_total{reason="slow_consumer"}``. A client that reconnects starts from
the latest tick, and sees from the seq numbers what it missed. Nothing is silently skipped on a
stream that stays connected: it receives every tick in order.

A conflating subscriber (StreamPrices with an update interval) keeps only the latest tick per
symbol, so it can never overflow.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from bridge import SlowConsumer
from marketdata import wire


class Subscriber:
    """A stream's view of the feed: every batch of its symbols, in order, bounded."""

    def __init__(self, symbols: Iterable[str] | None, max_ticks: int) -> None:
        self.symbols = frozenset(symbols) if symbols is not None else None
        self.max_ticks = max_ticks
        self._queue: deque[wire.TickBatch] = deque()
        self._ticks = 0
        self._behind = False  # the queue held ticks when the feed's current drain began
        self._ready = asyncio.Event()
        self._closed = asyncio.Event()
        self._task: asyncio.Task[Any] | None = None
        self.closed: str | None = None

    def attach(self, task: asyncio.Task[Any] | None) -> None:
        """Name the task serving this subscriber; it is cancelled if the subscriber is too slow.

        A stalled client blocks its task in a flow-controlled write, where it would never see
        the overflow; cancelling it is what ends the call.
        """
        self._task = task

    def wants(self, symbol: str) -> bool:
        """Return whether this subscriber receives `symbol`."""
        return self.symbols is None or symbol in self.symbols

    def offer(self, batch: wire.TickBatch) -> bool:
        """Queue `batch`; return False (and close) when the queue would pass its limit.

        A queue that was empty when the feed's current drain began (``mark``) takes all of the
        drain's batches, however many ticks: one drain can bring more than the limit, and a
        client that had read everything is not behind.
        """
        if self.closed is not None:
            return False
        if self._behind and self._ticks + len(batch) > self.max_ticks:
            self.close("slow_consumer")
            if self._task is not None:
                self._task.cancel()
            return False
        self._queue.append(batch)
        self._ticks += len(batch)
        self._ready.set()
        return True

    def mark(self) -> None:
        """Note, as a drain of the feed begins, whether this subscriber is behind."""
        self._behind = self._ticks > 0

    def close(self, reason: str) -> None:
        """End the subscription; a waiting reader wakes up."""
        if self.closed is None:
            self.closed = reason
            self._queue.clear()
            self._ticks = 0
            self._ready.set()
            self._closed.set()

    async def pause(self, seconds: float) -> None:
        """Sleep `seconds` (a conflated stream's interval), or until the subscriber is closed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), seconds)

    def overflow_message(self) -> str:
        """Say why a slow subscriber was disconnected, for the client."""
        return (f"stream fell more than {self.max_ticks} ticks behind and was disconnected; "
                "reconnect to resume from the latest tick")

    async def next(self) -> list[wire.TickBatch]:
        """Wait for and return everything queued, oldest first.

        Raise SlowConsumer if the subscriber was disconnected for falling behind; return an empty
        list if it was closed for another reason (shutdown).
        """
        while not self._queue:
            if self.closed is not None:
                if self.closed == "slow_consumer":
                    raise SlowConsumer(self.overflow_message())
                return []
            self._ready.clear()
            await self._ready.wait()
        batches = list(self._queue)
        self._queue.clear()
        self._ticks = 0
        return batches


class ConflatingSubscriber(Subscriber):
    """Keeps only the latest tick of each symbol; read at the stream's own interval."""

    def __init__(self, symbols: Iterable[str] | None) -> None:
        super().__init__(symbols, max_ticks=0)
        self._latest: dict[str, wire.TickBatch] = {}

    def offer(self, batch: wire.TickBatch) -> bool:
        if self.closed is not None:
            return False
        self._latest[batch.symbol] = wire.TickBatch(batch.symbol, batch.session,
                                                    batch.ticks[-1:])
        self._ready.set()
        return True

    async def next(self) -> list[wire.TickBatch]:
        """Wait for at least one changed symbol and return the latest tick of each (nothing
        once closed)."""
        while not self._latest or self.closed is not None:
            if self.closed is not None:
                return []
            self._ready.clear()
            await self._ready.wait()
        latest = list(self._latest.values())
        self._latest.clear()
        return latest


class Hub:
    """The set of live subscribers; publish is synchronous and never blocks.

    The hub also knows when streams are writing (`writing`), so that work which can wait (history
    flushes) can start in the quiet gap after a batch went out instead of in front of its writes
    (`quiet`).
    """

    def __init__(self) -> None:
        self._subscribers: set[Subscriber] = set()
        self.slow_disconnects = 0
        self._writers = 0
        self._quiet = asyncio.Event()
        self._quiet.set()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Mark a stream as writing for the duration of the block."""
        self._writers += 1
        self._quiet.clear()
        try:
            yield
        finally:
            self._writers -= 1
            if not self._writers:
                self._quiet.set()

    async def quiet(self, timeout_s: float) -> bool:
        """Wait until no stream is writing, at most `timeout_s`; return whether it got quiet.

        The bound matters: a stalled client's write never ends.
        """
        if self._quiet.is_set():
            return True
        try:
            await asyncio.wait_for(self._quiet.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def __len__(self) -> int:
        return len(self._subscribers)

    def add(self, subscriber: Subscriber) -> None:
        """Start delivering to `subscriber`."""
        self._subscribers.add(subscriber)

    def remove(self, subscriber: Subscriber) -> None:
        """Stop delivering to `subscriber` (idempotent)."""
        self._subscribers.discard(subscriber)

    def new_drain(self) -> None:
        """Mark every subscriber before a drain's batches are published (Subscriber.offer)."""
        for subscriber in self._subscribers:
            subscriber.mark()

    def publish(self, batch: wire.TickBatch) -> list[Subscriber]:
        """Offer `batch` to every interested subscriber; return those disconnected as slow."""
        dropped: list[Subscriber] = []
        for subscriber in self._subscribers:
            if subscriber.wants(batch.symbol) and not subscriber.offer(batch):
                dropped.append(subscriber)
        for subscriber in dropped:
            self._subscribers.discard(subscriber)
        self.slow_disconnects += len(dropped)
        return dropped

    def close_all(self, reason: str) -> None:
        """Close every subscriber (at shutdown)."""
        for subscriber in self._subscribers:
            subscriber.close(reason)
        self._subscribers.clear()
