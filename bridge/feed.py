"""The bridge's side of feedsim: the tick subscription, the control client, and feed state."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any

import orjson
import zmq
import zmq.asyncio

from bridge import FeedUnavailable
from marketdata import wire
from marketdata.errors import WireError
from marketdata.symbols import Instrument, Instruments

log = logging.getLogger(__name__)


class FeedState:
    """What the bridge knows of the feed: instruments and the latest tick of each symbol."""

    def __init__(self) -> None:
        self.instruments: Instruments | None = None
        self.latest: dict[str, tuple[int, wire.Ticks]] = {}  # symbol -> (session, 1 record)
        self.books: dict[str, wire.BookSnapshot] = {}  # symbol -> latest order book

    def update(self, batch: wire.TickBatch) -> None:
        """Remember the last tick of `batch`."""
        self.latest[batch.symbol] = (batch.session, batch.ticks[-1:])


class ControlClient:
    """Requests to feedsim's control socket (JSON over a DEALER socket), with a timeout."""

    def __init__(self, context: zmq.asyncio.Context, endpoint: str) -> None:
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    async def request(self, cmd: str, timeout_s: float = 1.0, **fields: Any) -> dict[str, Any]:
        """Send one command and return the reply; raise FeedUnavailable on timeout or error."""
        async with self._lock:
            request_id = next(self._ids)
            await self.socket.send(orjson.dumps({"cmd": cmd, "id": request_id, **fields}))
            deadline = asyncio.get_running_loop().time() + timeout_s
            while True:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0 or not await self.socket.poll(remaining * 1000):
                    raise FeedUnavailable(f"feedsim did not answer '{cmd}' within {timeout_s} s")
                reply = orjson.loads(await self.socket.recv())
                if reply.get("id") != request_id:
                    continue  # the late answer to a request that timed out
                if not reply.get("ok"):
                    raise FeedUnavailable(f"feedsim refused '{cmd}': {reply.get('error')}")
                return dict(reply)

    async def instruments(self, timeout_s: float = 1.0) -> tuple[int, list[Instrument]]:
        """Return (session, instruments) from feedsim."""
        reply = await self.request("instruments", timeout_s)
        return int(reply["session"]), [Instrument.from_dict(d) for d in reply["instruments"]]

    def close(self) -> None:
        """Close the socket."""
        self.socket.close(linger=0)


class TickSubscription:
    """The SUB socket on feedsim's PUB endpoint; hands every decoded batch to `on_batch`."""

    def __init__(self, context: zmq.asyncio.Context, endpoint: str,
                 on_batch: Callable[[wire.TickBatch], None],
                 on_book: Callable[[wire.BookSnapshot], None],
                 on_bad_message: Callable[[WireError], None], rcvhwm: int = 1_000_000) -> None:
        self.socket = context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RCVHWM, rcvhwm)
        self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        self.socket.connect(endpoint)
        self.on_batch = on_batch
        self.on_book = on_book
        self.on_bad_message = on_bad_message

    async def run(self) -> None:
        """Receive until cancelled. A malformed message is reported and skipped."""
        while True:
            frames = await self.socket.recv_multipart(copy=False)
            self._handle([f.buffer for f in frames])
            # Drain what is already queued without going back to the event loop each time.
            for _ in range(1000):
                try:
                    frames = await self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self._handle([f.buffer for f in frames])

    def _handle(self, frames: list[memoryview]) -> None:
        try:
            if frames and bytes(frames[0]).endswith(wire.BOOK_KIND_SUFFIX):
                self.on_book(wire.decode_book(frames))
                return
            batch = wire.decode(frames)
        except WireError as exc:
            self.on_bad_message(exc)
            return
        self.on_batch(batch)

    def close(self) -> None:
        """Close the socket."""
        self.socket.close(linger=0)
