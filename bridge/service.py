"""The gRPC MarketDataService (grpc.aio), served from the bridge's feed state, hub and Redis.

Errors map to status codes: text that is not a symbol or a bad argument is INVALID_ARGUMENT
(naming the field), an unknown symbol NOT_FOUND, no data yet or Redis unreachable UNAVAILABLE, a
slow consumer RESOURCE_EXHAUSTED. Every stream starts with the latest tick of each requested
symbol (flag SNAPSHOT) and continues with every later tick in order, so a client never waits for
the next tick and never sees a gap that the bridge did not see.

History, candles and trades are read from Redis with the reader the API uses
(``marketdata.store``), so both front ends answer a request alike; their arguments go through the
same checks (``marketdata.queries``). That reader is synchronous, so it runs on a small thread
pool and never blocks the event loop that feeds the streams. The order book comes from the feed
state in memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any, NoReturn, TypeVar

import grpc
import numpy as np
import numpy.typing as npt
from google.protobuf.message import Message
from prometheus_client import CollectorRegistry, Counter, Gauge

from bridge import SlowConsumer
from bridge.fanout import ConflatingSubscriber, Hub, Subscriber
from bridge.feed import FeedState
from marketdata import logs, queries, wire
from marketdata import marketdata_pb2 as pb
from marketdata import marketdata_pb2_grpc as pb_grpc
from marketdata import trades as mdtrades
from marketdata.candles import Candle, Interval
from marketdata.errors import InvalidParameter, InvalidSymbol, UnknownSymbol
from marketdata.store import Store, StoreError, StoreUnavailable
from marketdata.symbols import Instrument, check_spelling

log = logging.getLogger(__name__)

MAX_UPDATE_INTERVAL_MS = 3_600_000
MAX_TICKS_PER_MESSAGE = 1000
UNROUNDED = 15  # decimals: past a double's precision, so round() leaves the value as it is
T = TypeVar("T")


class StreamMetrics:
    """Prometheus metrics of the gRPC streams."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.active = Gauge("bridge_streams_active", "Open gRPC streams", ["rpc"],
                            registry=registry)
        self.sent = Counter("bridge_stream_ticks_sent_total", "Ticks sent on gRPC streams",
                            ["rpc"], registry=registry)
        self.disconnects = Counter("bridge_stream_disconnects_total",
                                   "Streams ended by the bridge", ["reason"], registry=registry)


class MarketDataService(pb_grpc.MarketDataServiceServicer):
    """GetPrice, StreamPrices, StreamTicks, ListSymbols, and the history, candle, order book and
    trade snapshots."""

    def __init__(self, state: FeedState, hub: Hub, metrics: StreamMetrics, source: str,
                 queue_ticks: int, store: Store, executor: Executor,
                 clock: Callable[[], int] = time.time_ns,
                 history_max_limit: int = queries.MAX_HISTORY_LIMIT) -> None:
        self.state = state
        self.hub = hub
        self.metrics = metrics
        self.source = source
        self.queue_ticks = queue_ticks
        self.store = store
        self.executor = executor
        self.clock = clock
        self.limits = {"default_limit": min(queries.DEFAULT_HISTORY_LIMIT, history_max_limit),
                       "max_limit": history_max_limit}

    async def GetHistory(self, request: pb.GetHistoryRequest,
                         context: grpc.aio.ServicerContext[Any, Any]) -> pb.GetHistoryResponse:
        _start_call(context)
        symbol = (await self._resolve(context, [request.symbol]))[0]
        query = await _checked(context, lambda: queries.history_range(
            *_bounds(request), request.limit or None, self.clock(),
            names=("start_ns", "end_ns"), **self.limits))

        def answer() -> pb.GetHistoryResponse:  # read and render off the loop (10k ticks: ~10 ms)
            ticks = self.store.history(symbol, query.start_ns, query.end_ns, query.limit)
            return pb.GetHistoryResponse(
                symbol=symbol, end_ns=query.end_ns,
                ticks=pb.TickBatch(symbol=symbol, **{n: ticks[n].tolist() for n in wire.FIELDS}))

        return await self._read(context, answer)

    async def GetCandles(self, request: pb.GetCandlesRequest,
                         context: grpc.aio.ServicerContext[Any, Any]) -> pb.GetCandlesResponse:
        _start_call(context)
        symbol = (await self._resolve(context, [request.symbol]))[0]
        now_ns = self.clock()

        def check() -> tuple[Interval, queries.HistoryQuery]:
            interval = queries.interval(request.interval or queries.DEFAULT_INTERVAL)
            return interval, queries.history_range(*_bounds(request), request.limit or None,
                                                   now_ns, names=("start_ns", "end_ns"),
                                                   **self.limits)

        interval, query = await _checked(context, check)

        def answer() -> pb.GetCandlesResponse:  # off the loop: 10k candles take ~30 ms
            found = self.store.candles(symbol, interval, query.start_ns, query.end_ns,
                                       query.limit)
            return pb.GetCandlesResponse(symbol=symbol, interval=interval.name,
                                         candles=[_candle(c, now_ns) for c in found])

        return await self._read(context, answer)

    async def GetOrderBook(self, request: pb.GetOrderBookRequest,
                           context: grpc.aio.ServicerContext[Any, Any]) -> pb.OrderBook:
        _start_call(context)
        symbol = (await self._resolve(context, [request.symbol]))[0]
        book = self.state.books.get(symbol)
        if book is None:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, f"no order book of {symbol} yet")
        depth = await _checked(context, lambda: queries.book_depth(
            request.depth or None, max(len(book.bids), len(book.asks))))
        return pb.OrderBook(symbol=symbol, session=book.session, book_seq=book.book_seq,
                            tick_seq=book.tick_seq, ts_ns=book.ts_ns,
                            bids=_levels(book.bids[:depth]), asks=_levels(book.asks[:depth]))

    async def GetTrades(self, request: pb.GetTradesRequest,
                        context: grpc.aio.ServicerContext[Any, Any]) -> pb.GetTradesResponse:
        _start_call(context)
        symbol = (await self._resolve(context, [request.symbol]))[0]
        limit = await _checked(context, lambda: queries.trades_limit(request.limit or None))
        return await self._read(context, lambda: pb.GetTradesResponse(
            symbol=symbol, trades=_trades(self.store.trades(symbol, limit))))

    async def _read(self, context: grpc.aio.ServicerContext[Any, Any],
                    answer: Callable[[], T]) -> T:
        """Run `answer` (a store read and the rendering of its reply) on the thread pool, so the
        loop feeding the streams never builds a large message; abort UNAVAILABLE or INTERNAL on
        failure."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.executor, answer)
        except StoreUnavailable as exc:
            log.warning("store unreachable", extra={"error": str(exc)})
            await _abort(context, grpc.StatusCode.UNAVAILABLE,
                         "the history store is unreachable; try again shortly")
        except StoreError:
            log.exception("store read failed")
            await _abort(context, grpc.StatusCode.INTERNAL, "internal error")

    async def GetPrice(self, request: pb.GetPriceRequest,
                       context: grpc.aio.ServicerContext[Any, Any]) -> pb.GetPriceResponse:
        _start_call(context)
        symbol = (await self._resolve(context, [request.symbol]))[0]
        latest = self.state.latest.get(symbol)
        if latest is None:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, f"no tick of {symbol} yet")
        session, tick = latest
        instrument = self._instrument(symbol)
        bid, ask = float(tick["bid"][0]), float(tick["ask"][0])
        mid = float(_mids(instrument, tick)[0])
        spread_bps = instrument.spread_bps(bid, ask, mid) if instrument else None
        ts_ns = int(tick["ts_ns"][0])
        return pb.GetPriceResponse(
            symbol=symbol, price=mid, timestamp=ts_ns // 1_000_000,
            source=self.source, bid=bid, ask=ask, last=float(tick["last"][0]),
            seq=int(tick["seq"][0]), ts_ns=ts_ns, session=session,
            spread_bps=spread_bps or 0.0, age_ms=round((self.clock() - ts_ns) / 1e6, 3),
        )

    def _instrument(self, symbol: str) -> Instrument | None:
        """`symbol`'s instrument, to round as the REST API does; None if the instruments
        changed under a call (its values then go out as sent)."""
        instruments = self.state.instruments
        if instruments is None or symbol not in instruments:
            return None
        return instruments.resolve(symbol)

    async def ListSymbols(self, request: pb.ListSymbolsRequest,
                          context: grpc.aio.ServicerContext[Any, Any]) -> pb.ListSymbolsResponse:
        _start_call(context)
        instruments = self.state.instruments
        if instruments is None:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, "feed not connected yet")
        return pb.ListSymbolsResponse(symbols=[pb.Symbol(**i.to_dict()) for i in instruments])

    async def StreamPrices(self, request: pb.StreamPricesRequest,
                           context: grpc.aio.ServicerContext[Any, Any]) -> None:
        _start_call(context)
        symbols = await self._resolve(context, request.symbols)
        interval_ms = request.update_interval_ms
        if not 0 <= interval_ms <= MAX_UPDATE_INTERVAL_MS:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                         f"update_interval_ms: {interval_ms} is not an integer from 0 (every "
                         f"tick) to {MAX_UPDATE_INTERVAL_MS}")
        subscriber: Subscriber = (ConflatingSubscriber(symbols) if interval_ms
                                  else Subscriber(symbols, self.queue_ticks))
        previous: dict[str, float] = {}

        def render(batches: list[wire.TickBatch]) -> list[pb.PriceUpdate]:
            return [u for batch in batches for u in self._price_updates(batch, previous)]

        await self._stream(context, "StreamPrices", subscriber, symbols, render,
                           interval_ms / 1000)

    async def StreamTicks(self, request: pb.StreamTicksRequest,
                          context: grpc.aio.ServicerContext[Any, Any]) -> None:
        _start_call(context)
        symbols = await self._resolve(context, request.symbols)
        subscriber = Subscriber(symbols, self.queue_ticks)
        await self._stream(context, "StreamTicks", subscriber, symbols, _tick_batches, 0.0)

    async def _stream(self, context: grpc.aio.ServicerContext[Any, Any], rpc: str,
                      subscriber: Subscriber, symbols: Sequence[str],
                      render: Callable[[list[wire.TickBatch]], Sequence[Message]],
                      interval_s: float) -> None:
        """Send the snapshot, then queued batches until the client leaves or falls behind.

        Writes wait for HTTP/2 flow control, so a stalled client blocks only its own handler;
        when its queue overflows the hub cancels that write and the call ends with
        RESOURCE_EXHAUSTED.
        """
        # No await between reading the latest ticks and joining the hub: nothing is missed
        # and nothing is sent twice.
        snapshot = []
        for symbol in symbols:
            latest = self.state.latest.get(symbol)
            if latest is not None:
                tick = latest[1].copy()
                tick["flags"] |= wire.FLAG_SNAPSHOT
                snapshot.append(wire.TickBatch(symbol, latest[0], tick))
        subscriber.attach(asyncio.current_task())
        self.hub.add(subscriber)
        self.metrics.active.labels(rpc).inc()
        sent = self.metrics.sent.labels(rpc)
        log.info("stream opened", extra={"rpc": rpc, "symbols": list(symbols),
                                         "peer": context.peer()})
        reason = "client_left"
        try:
            batches = snapshot
            while True:
                with self.hub.writing():
                    for message in render(batches):
                        await context.write(message)
                sent.inc(sum(len(b) for b in batches))
                if interval_s:
                    await subscriber.pause(interval_s)
                batches = await subscriber.next()
                if not batches:
                    reason = subscriber.closed or "closed"
                    if reason == "shutdown":
                        await context.abort(grpc.StatusCode.UNAVAILABLE,
                                            "bridge is shutting down; reconnect")
                    return
        except asyncio.CancelledError:
            if subscriber.closed != "slow_consumer":
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            reason = "slow_consumer"
        except SlowConsumer:
            reason = "slow_consumer"
        finally:
            self.hub.remove(subscriber)
            self.metrics.active.labels(rpc).dec()
            log.info("stream closed", extra={"rpc": rpc, "reason": reason})
        self.metrics.disconnects.labels(reason).inc()
        log.warning("slow consumer disconnected", extra={"rpc": rpc, "peer": context.peer()})
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, subscriber.overflow_message())

    def _price_updates(self, batch: wire.TickBatch, previous: dict[str, float]
                       ) -> list[pb.PriceUpdate]:
        t = batch.ticks
        cols = {name: t[name].tolist() for name in wire.FIELDS}
        instrument = self._instrument(batch.symbol)
        mids = _mids(instrument, t).tolist()
        mid_decimals = instrument.price_decimals + 1 if instrument else UNROUNDED
        sizes = instrument.size_decimals if instrument else UNROUNDED
        updates = []
        prev = previous.get(batch.symbol)
        for i in range(len(t)):
            bid, ask, price = cols["bid"][i], cols["ask"][i], mids[i]
            change = None
            if prev is not None:
                delta = round(price - prev, mid_decimals)
                change = pb.PriceChange(previous_price=prev, change=delta,
                                        change_percent=100.0 * delta / prev if prev else 0.0)
            updates.append(pb.PriceUpdate(
                symbol=batch.symbol, price=price, volume=round(cols["volume"][i], sizes),
                timestamp=cols["ts_ns"][i] // 1_000_000, source=self.source, change_info=change,
                bid=bid, ask=ask, last=cols["last"][i], seq=cols["seq"][i],
                ts_ns=cols["ts_ns"][i], session=batch.session, bid_size=cols["bid_size"][i],
                ask_size=cols["ask_size"][i], last_size=cols["last_size"][i],
                flags=cols["flags"][i],
            ))
            prev = price
        if prev is not None:
            previous[batch.symbol] = prev
        return updates

    async def _resolve(self, context: grpc.aio.ServicerContext[Any, Any],
                       texts: Sequence[str]) -> list[str]:
        """Return canonical symbols for `texts` (all when empty) or abort the call."""
        for text in texts:  # malformed text is INVALID_ARGUMENT, with or without a feed
            try:
                check_spelling(text)
            except InvalidSymbol as exc:
                await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        instruments = self.state.instruments
        if instruments is None:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, "feed not connected yet")
        if not texts:
            return list(instruments.symbols)
        symbols: list[str] = []
        for text in texts:
            try:
                symbol = instruments.resolve(text).symbol
            except InvalidSymbol as exc:
                await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except UnknownSymbol as exc:
                await _abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
            if symbol not in symbols:
                symbols.append(symbol)
        return symbols


def _mids(instrument: Instrument | None, ticks: wire.Ticks) -> npt.NDArray[np.float64]:
    """The ticks' mids, rounded as every API rounds them when the instrument is known."""
    if instrument is None:
        return np.asarray((ticks["bid"] + ticks["ask"]) / 2.0, dtype=np.float64)
    return instrument.mids(ticks["bid"], ticks["ask"])


async def _checked(context: grpc.aio.ServicerContext[Any, Any], check: Callable[[], T]) -> T:
    """Return check(); abort INVALID_ARGUMENT with its message when an argument is bad."""
    try:
        return check()
    except InvalidParameter as exc:
        await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))


def _bounds(request: pb.GetHistoryRequest | pb.GetCandlesRequest) -> tuple[int | None, int | None]:
    """Return the request's (start_ns, end_ns), None for a field left unset."""
    return (request.start_ns if request.HasField("start_ns") else None,
            request.end_ns if request.HasField("end_ns") else None)


def _candle(candle: Candle, now_ns: int) -> pb.Candle:
    return pb.Candle(open_time_ms=candle.open_ns // 1_000_000,
                     close_time_ms=candle.close_ns // 1_000_000, open=candle.open,
                     high=candle.high, low=candle.low, close=candle.close,
                     volume=candle.volume, quote_volume=candle.quote_volume,
                     trades=candle.trades, closed=candle.is_closed(now_ns),
                     first_seq=candle.first_seq, last_seq=candle.last_seq,
                     session=candle.session)


def _levels(levels: wire.Levels) -> list[pb.PriceLevel]:
    return [pb.PriceLevel(price=p, size=q)
            for p, q in zip(levels["price"].tolist(), levels["size"].tolist(), strict=True)]


def _trades(found: mdtrades.Trades) -> list[pb.Trade]:
    sides = [pb.SIDE_BUY if side == mdtrades.BUY else pb.SIDE_SELL
             for side in mdtrades.sides(found)]
    columns = zip(found["price"].tolist(), found["size"].tolist(), sides, found["seq"].tolist(),
                  found["session"].tolist(), found["ts_ns"].tolist(), strict=True)
    return [pb.Trade(price=p, size=q, side=side, seq=seq, session=session, ts_ns=ts)
            for p, q, side, seq, session, ts in columns]


async def _abort(context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode,
                 message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("abort returned")  # pragma: no cover


def _start_call(context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """Take the caller's correlation id (x-request-id metadata, when valid) or make one."""
    metadata = dict(context.invocation_metadata() or ())
    incoming = metadata.get("x-request-id")
    logs.correlation_id.set(logs.request_id(incoming if isinstance(incoming, str) else None))


def _render(symbol: str, session: int, ticks: wire.Ticks) -> list[pb.TickBatch]:
    """Return `ticks` as columnar messages of at most MAX_TICKS_PER_MESSAGE ticks."""
    messages = []
    for start in range(0, len(ticks), MAX_TICKS_PER_MESSAGE):
        chunk = ticks[start:start + MAX_TICKS_PER_MESSAGE]
        messages.append(pb.TickBatch(symbol=symbol, session=session,
                                     **{n: chunk[n].tolist() for n in wire.FIELDS}))
    return messages


def _rendered(batch: wire.TickBatch) -> list[pb.TickBatch]:
    """Return `batch` rendered (``_render``) once and kept with the batch: every stream that
    sends it alone shares the messages."""
    messages: list[pb.TickBatch] | None = batch.memo.get("pb")
    if messages is None:
        messages = batch.memo["pb"] = _render(batch.symbol, batch.session, batch.ticks)
    return messages


def _tick_messages(batches: list[wire.TickBatch]) -> list[pb.TickBatch]:
    """Coalesce the queued batches of each symbol into as few messages as the size bound allows.

    gRPC's cost is per message (~85 us), so a stream that fell a little behind catches up in
    fewer, larger messages. A symbol with one batch queued sends that batch's shared rendering;
    several are joined as records and rendered once, which costs a half to a third of merging
    their rendered messages.
    """
    grouped: dict[tuple[str, int], list[wire.TickBatch]] = {}
    for batch in batches:
        grouped.setdefault((batch.symbol, batch.session), []).append(batch)
    messages: list[pb.TickBatch] = []
    for (symbol, session), group in grouped.items():
        if len(group) == 1:
            messages += _rendered(group[0])
        else:
            messages += _render(symbol, session, wire.concat([b.ticks for b in group]))
    return messages


def _tick_batches(batches: list[wire.TickBatch]) -> list[pb.TickBatches]:
    """Pack the coalesced per-symbol messages into as few multi-symbol messages as fit."""
    out: list[pb.TickBatches] = []
    current: list[pb.TickBatch] = []
    size = 0
    for message in _tick_messages(batches):
        if current and size + len(message.seq) > MAX_TICKS_PER_MESSAGE:
            out.append(pb.TickBatches(batches=current))
            current, size = [], 0
        current.append(message)
        size += len(message.seq)
    if current:
        out.append(pb.TickBatches(batches=current))
    return out


def ticks_from_message(message: pb.TickBatch) -> wire.Ticks:
    """Rebuild a TICK_DTYPE array from a columnar TickBatch (for Python clients and tests)."""
    ticks = wire.empty_ticks(len(message.seq))
    for name in wire.FIELDS:
        ticks[name] = np.asarray(getattr(message, name))
    return ticks
