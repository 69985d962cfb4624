"""The bridge process: one asyncio loop with the ZeroMQ subscription, gRPC server and history.

Lifecycle: ``Bridge.start()`` binds the gRPC port and starts the tasks; ``serve()`` runs until
``stop()``; ``stop()`` drains: the health status goes NOT_SERVING, streams end with UNAVAILABLE,
the gRPC server stops with a grace period, the subscription closes, and history flushes every
tick already received before Redis is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import grpc
import orjson
import redis
import redis.asyncio as aioredis
import zmq
import zmq.asyncio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from redis.exceptions import RedisError

from bridge import FeedUnavailable, handlers
from bridge.candles import CandleMetrics, CandleWriter
from bridge.config import BridgeConfig
from bridge.fanout import Hub
from bridge.feed import ControlClient, FeedState, TickSubscription
from bridge.history import HistoryMetrics, HistoryWriter, StreamRows
from bridge.recent import BookWriter, TradeWriter
from bridge.service import MarketDataService, StreamMetrics
from marketdata import logs, wire
from marketdata import marketdata_pb2 as pb
from marketdata.errors import ConfigError, WireError
from marketdata.layout import Keys
from marketdata.sequence import SequenceTracker
from marketdata.settings import check_listen_address, environ
from marketdata.store import RedisStore
from marketdata.symbols import Instrument, Instruments

log = logging.getLogger(__name__)

INSTRUMENTS_REWRITE_S = 5.0
# Health: every FEED_CHECK_S, a feed that sent no tick since the last check is pinged on the
# control socket; no answer within the same time turns the service NOT_SERVING until it is back.
FEED_CHECK_S = 1.0
RETRY_MIN_S = 0.1  # the shortest pause between two attempts to fetch the instruments
BAD_REASONS = ("undecodable", "unknown_symbol", "future_timestamp")
STORE_READERS = 2
"""Threads reading Redis for the history, candle and trade RPCs (bounds their share of the CPU)."""
STREAMS_QUIET_WAIT_S = 0.002
"""How long a history flush waits for the streams' writes of the latest batch to finish."""
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["MarketDataService"].full_name


class FeedMetrics:
    """What the bridge counts about the feed it receives."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.ticks = Counter("bridge_ticks_received_total", "New ticks received from feedsim",
                             ["symbol"], registry=registry)
        self.missed = Counter("bridge_ticks_missed_total",
                              "Ticks skipped in the feed's sequence (gaps)", ["symbol"],
                              registry=registry)
        self.restarts = Counter("bridge_feed_restarts_total", "Feed sessions that changed",
                                registry=registry)
        self.bad = Counter("bridge_bad_messages_total",
                           "Messages dropped: undecodable, a symbol the feed does not publish, "
                           "or ticks stamped in the future", ["reason"], registry=registry)
        self.bad_children = {reason: self.bad.labels(reason) for reason in BAD_REASONS}
        self.stale = Counter("bridge_ticks_stale_total",
                             "Ticks dropped as already seen that were no last-value replay: "
                             "the feed's seq went back", ["symbol"], registry=registry)
        self.books = Counter("bridge_books_received_total",
                             "Full order books taken (snapshots, and books rebuilt from diffs)",
                             ["symbol"], registry=registry)
        self.book_gaps = Counter("bridge_book_gaps_total",
                                 "Order book diffs that did not follow the book held (updates "
                                 "missed, or a feed restart): the book resyncs from a snapshot",
                                 ["symbol"], registry=registry)
        self.book_resyncs = Counter("bridge_book_resyncs_total",
                                    "Order books fetched from feedsim's control socket",
                                    ["symbol"], registry=registry)
        self.last_tick = Gauge("bridge_last_tick_timestamp_seconds",
                               "Tick time of the latest tick received", ["symbol"],
                               registry=registry)
        self._received: dict[str, tuple[Counter, Gauge]] = {}

    def received(self, symbol: str, ticks: int, last_ts_ns: int) -> None:
        """Count new ticks of `symbol` (labels() is looked up once per symbol: hot path)."""
        children = self._received.get(symbol)
        if children is None:
            children = self._received[symbol] = (self.ticks.labels(symbol),
                                                 self.last_tick.labels(symbol))
        children[0].inc(ticks)
        children[1].set(last_ts_ns / 1e9)


class Bridge:
    """Wires the feed subscription, the hub, history and the gRPC server together."""

    def __init__(self, config: BridgeConfig, registry: CollectorRegistry) -> None:
        self.config = config
        self.context = zmq.asyncio.Context()
        self.redis = aioredis.Redis.from_url(config.redis_url, socket_timeout=2.0,
                                             socket_connect_timeout=2.0)
        self.keys = Keys(config.redis_prefix)
        self.state = FeedState()
        self.tracker = SequenceTracker()
        self.hub = Hub()
        self.feed_metrics = FeedMetrics(registry)
        self.stream_metrics = StreamMetrics(registry)
        self.candles = CandleWriter(self.keys, CandleMetrics(registry),
                                    dict(config.candle_retention))
        self.history = HistoryWriter(
            self.redis, self.keys, HistoryMetrics(registry),
            retention_ms=config.history_retention_ms,
            flush_interval_s=config.history_flush_interval_s,
            max_pending_ticks=config.history_max_pending_ticks,
            candles=self.candles,
            trades=TradeWriter(self.keys),
            books=BookWriter(self.keys),
            before_flush=lambda: self.hub.quiet(STREAMS_QUIET_WAIT_S),
        )
        # ZeroMQ judges an endpoint when a socket connects to it: one it refuses is a bad
        # setting, named, not a ZMQError traceback.
        with _zmq_endpoint("FEED_CONTROL_ENDPOINT", config.feed_control_endpoint):
            self.control = ControlClient(self.context, config.feed_control_endpoint)
        with _zmq_endpoint("FEED_PUB_ENDPOINT", config.feed_pub_endpoint):
            self.subscription = TickSubscription(self.context, config.feed_pub_endpoint,
                                                 self._on_batch, self._on_book,
                                                 self._on_bad_message,
                                                 on_book_gap=self._on_book_gap,
                                                 on_drain=self.hub.new_drain)
        # The RPCs that read Redis reuse the API's synchronous reader (one implementation of the
        # layout) on a few threads of their own, with their own client: never on the loop.
        self.store = RedisStore(redis.Redis.from_url(config.redis_url, socket_timeout=2.0,
                                                     socket_connect_timeout=2.0), self.keys)
        self.readers = ThreadPoolExecutor(STORE_READERS, thread_name_prefix="store-reader")
        self.service = MarketDataService(self.state, self.hub, self.stream_metrics,
                                         config.instance_name, config.stream_queue_ticks,
                                         self.store, self.readers,
                                         history_max_limit=config.history_max_limit)
        self.health = health.aio.HealthServicer()
        self.server = grpc.aio.server(options=[
            ("grpc.so_reuseport", 0),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.http2.max_pings_without_data", 0),
        ])
        handlers.add_service(self.service, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server)
        self.grpc_port = 0
        self._instruments_wanted = asyncio.Event()
        self._feed_back = asyncio.Event()  # ticks came after a second or more of silence
        self._last_batch_at = -FEED_CHECK_S  # time.monotonic() of the latest tick batch
        self._max_ahead_ns = int(config.max_tick_ahead_s * 1e9)  # per batch: computed once
        self._feed_alive = False
        self._serving = False  # what health says
        self._counted_session = 0  # the latest feed session counted in bridge_feed_restarts
        self._stale_symbols: set[str] = set()  # sending ticks behind their last seq
        self._books_wanted: set[str] = set()
        self._books_wanted_event = asyncio.Event()
        self._stopped = asyncio.Event()
        self._stopping = False
        self.failed = False
        self._stop_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Bind the gRPC port, pick up where history left off, start every task."""
        host, port = self.config.grpc_host, self.config.grpc_port
        address = f"{host}:{port}"
        check_listen_address(host, port, host_name="GRPC_HOST", port_name="GRPC_PORT",
                             what="grpc")
        try:
            self.grpc_port = self.server.add_insecure_port(address)
        except RuntimeError as exc:  # grpc raises RuntimeError("Failed to bind ...")
            raise ConfigError(f"GRPC_HOST, GRPC_PORT: gRPC cannot listen on {address}: "
                              f"{exc}") from None
        if not self.grpc_port:
            raise ConfigError(f"GRPC_HOST, GRPC_PORT: gRPC cannot listen on {address}")
        await self._resume_from_history()
        await self.server.start()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self._instruments_wanted.set()
        self._tasks = [
            asyncio.create_task(self.subscription.run(), name="subscription"),
            asyncio.create_task(self.history.run(), name="history"),
            asyncio.create_task(self._keep_instruments(), name="instruments"),
            asyncio.create_task(self._resync_books(), name="books"),
            asyncio.create_task(self._watch_feed(), name="feed-watch"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._task_done)
        # Everything allocated so far (modules, grpc, protobuf, reloaded candles) lives as long as
        # the process. Frozen, the collector no longer walks it: a full collection of ~50k objects
        # otherwise stalled the loop for 20-50 ms every few seconds, the tail of stream latency.
        gc.collect()
        gc.freeze()
        log.info("bridge started", extra={
            "grpc_port": self.grpc_port, "feed": self.config.feed_pub_endpoint,
            "control": self.config.feed_control_endpoint,
            "redis": _redacted(self.config.redis_url), "prefix": self.config.redis_prefix,
        })

    async def serve(self) -> None:
        """Run until stop() completes."""
        await self._stopped.wait()

    async def stop(self) -> None:
        """Drain and close everything, in reverse order of start (idempotent)."""
        if self._stopping:
            return  # a second signal while draining changes nothing
        self._stopping = True
        log.info("bridge stopping", extra={"streams": len(self.hub)})
        await self.health.enter_graceful_shutdown()
        self.hub.close_all("shutdown")
        await self.server.stop(self.config.shutdown_grace_s)
        for task in self._tasks:
            if task.get_name() != "history":
                task.cancel()
        self.subscription.close()
        self.control.close()
        self.history.stop()
        history_task = next((t for t in self._tasks if t.get_name() == "history"), None)
        if history_task is not None:
            try:
                await asyncio.wait_for(history_task, timeout=5.0)
            except TimeoutError:
                log.error("history not flushed at shutdown",
                          extra={"pending_ticks": self.history.pending_ticks})
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.redis.aclose()
        self.readers.shutdown(wait=False, cancel_futures=True)
        self.store.client.close()
        self.context.term()
        log.info("bridge stopped", extra={"unflushed_ticks": self.history.pending_ticks})
        self._stopped.set()

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """A task that ends by itself, other than at stop, is a bug: stop, so supervisord restarts.

        Without this the process would stay up and report SERVING with, say, no subscription.
        """
        if task.cancelled() or self._stopping:
            return
        self.failed = True
        log.error("bridge task ended unexpectedly; stopping", extra={"task": task.get_name()},
                  exc_info=task.exception())
        self.request_stop()

    def request_stop(self) -> None:
        """Start stop() in the background (once); for signal handlers and callbacks."""
        if self._stop_task is None:  # the loop keeps tasks only weakly: hold this one
            self._stop_task = asyncio.get_running_loop().create_task(self.stop())

    def _on_batch(self, batch: wire.TickBatch) -> None:
        now = time.monotonic()
        if now - self._last_batch_at >= FEED_CHECK_S:
            self._feed_back.set()  # the feed is back: a fetch waiting to retry goes now
        self._last_batch_at = now
        checked = self._checked(batch)
        if checked is None:
            return
        batch = checked
        observation = self.tracker.observe(batch)
        if observation.stale:
            self.feed_metrics.stale.labels(batch.symbol).inc(observation.stale)
            if batch.symbol not in self._stale_symbols:  # said once until fresh ticks come
                self._stale_symbols.add(batch.symbol)
                log.warning("ticks behind the last seq seen, not replays: dropped", extra={
                    "symbol": batch.symbol, "seq": int(batch.ticks["seq"][0]),
                    "last_seq": (self.tracker.last(batch.symbol) or (0, 0))[1]})
        elif observation.fresh is not None and self._stale_symbols:
            self._stale_symbols.discard(batch.symbol)
        if observation.restarted:
            if batch.session != self._counted_session:  # once a restart, not once a symbol
                self._counted_session = batch.session
                self.feed_metrics.restarts.inc()
                log.warning("feed session changed", extra={"symbol": batch.symbol,
                                                           "session": batch.session})
            self._instruments_wanted.set()
        if observation.missed:
            self.feed_metrics.missed.labels(batch.symbol).inc(observation.missed)
            log.warning("sequence gap", extra={"symbol": batch.symbol,
                                               "missed": observation.missed})
        fresh = observation.fresh
        if fresh is None:
            return
        if self.state.instruments is not None and batch.symbol not in self.state.instruments:
            self._instruments_wanted.set()
        self.state.update(fresh)
        self.hub.publish(fresh)
        self.history.add(fresh)
        self.feed_metrics.received(batch.symbol, len(fresh), int(fresh.ticks["ts_ns"][-1]))

    def _checked(self, batch: wire.TickBatch) -> wire.TickBatch | None:
        """`batch` without what must not be taken (None if that is all of it), counted.

        A symbol missing from the instruments of the batch's own session is junk (a new
        session's symbols are fetched, and its ticks kept, as a restart's are). Ticks stamped
        more than BRIDGE_MAX_TICK_AHEAD_S ahead are dropped one by one (a batch can be a drain's
        join of several messages, the others good): one would file every later history entry
        under its time and trim the real ones away as too old.
        """
        instruments = self.state.instruments
        if (instruments is not None and batch.session == self.state.instruments_session
                and batch.symbol not in instruments):
            self._reject("unknown_symbol", f"{batch.symbol!r} is not published in feed session "
                                           f"{batch.session}")
            return None
        ts_ns = batch.ticks["ts_ns"]
        limit_ns = time.time_ns() + self._max_ahead_ns
        if len(ts_ns) and int(ts_ns.max()) > limit_ns:
            ahead = ts_ns > limit_ns
            self._reject("future_timestamp", f"{int(ahead.sum())} {batch.symbol} tick(s) stamped "
                                             f"more than {self.config.max_tick_ahead_s:g} s "
                                             "ahead of this host's clock "
                                             "(BRIDGE_MAX_TICK_AHEAD_S)")
            if ahead.all():
                return None
            return wire.TickBatch(batch.symbol, batch.session, batch.ticks[~ahead])
        return batch

    def _reject(self, reason: str, error: str) -> None:
        self.feed_metrics.bad_children[reason].inc()
        log.warning("bad message from feed", extra={"reason": reason, "error": error})

    def _on_book(self, book: wire.BookSnapshot) -> None:
        self.state.books[book.symbol] = book
        self.history.add_book(book)
        self.feed_metrics.books.labels(book.symbol).inc()

    def _on_book_gap(self, symbol: str, missed: int) -> None:
        if missed:
            self.feed_metrics.book_gaps.labels(symbol).inc()
            log.warning("order book gap; resyncing", extra={"symbol": symbol, "missed": missed})
        self._books_wanted.add(symbol)
        self._books_wanted_event.set()

    async def _resync_books(self) -> None:
        """Fetch the full book of every symbol whose diffs stopped applying (the clone pattern).

        Diffs that arrive while the request is out are kept by the OrderBook and applied on top
        of the answer. If feedsim does not answer, the next periodic snapshot resyncs the book.
        """
        while True:
            await self._books_wanted_event.wait()
            self._books_wanted_event.clear()
            for symbol in sorted(self._books_wanted):
                self._books_wanted.discard(symbol)
                book = self.subscription.books.get(symbol)
                if book is not None and book.synced:
                    continue  # a periodic snapshot got there first
                try:
                    snapshot = await self.control.book(symbol)
                except FeedUnavailable as exc:
                    log.warning("order book not fetched; waiting for a periodic snapshot",
                                extra={"symbol": symbol, "error": str(exc)})
                    continue
                self.feed_metrics.book_resyncs.labels(symbol).inc()
                self.subscription.apply_snapshot(snapshot)

    def _on_bad_message(self, error: WireError) -> None:
        self._reject("undecodable", str(error))

    async def _keep_instruments(self) -> None:
        """Fetch instruments from feedsim whenever wanted; keep them written in Redis.

        Serving gRPC needs only the feed, so health turns SERVING as soon as feedsim answers,
        whatever Redis does. The Redis copy is rewritten every INSTRUMENTS_REWRITE_S, so the REST
        API recovers by itself after Redis restarts empty.
        """
        delay = 0.1
        while True:
            try:
                if self._instruments_wanted.is_set() or self.state.instruments is None:
                    session, instruments = await self.control.instruments()
                    self.state.instruments = Instruments(instruments)
                    self.state.instruments_session = session
                    self._instruments_wanted.clear()
                    self._feed_alive = True
                    await self._update_health()
                    log.info("instruments loaded", extra={
                        "session": session, "symbols": [i.symbol for i in instruments]})
                await self.redis.set(self.keys.instruments, orjson.dumps(
                    [i.to_dict() for i in self.state.instruments]))
            except (FeedUnavailable, RedisError, OSError) as exc:
                log.warning("instruments not refreshed; retrying",
                            extra={"error": str(exc), "retry_in_s": delay})
                if isinstance(exc, FeedUnavailable):
                    await self._until_feed_back(delay)
                else:
                    await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._instruments_wanted.wait(), INSTRUMENTS_REWRITE_S)

    async def _until_feed_back(self, delay_s: float) -> None:
        """Wait `delay_s` before asking feedsim again, or less: ticks after a silence end the
        wait (after RETRY_MIN_S), so the instruments come as soon as the feed is back, not up
        to a backoff later. Ticks that keep flowing do not: a feedsim that answers badly is
        asked again at the backoff's pace."""
        self._feed_back.clear()
        await asyncio.sleep(min(RETRY_MIN_S, delay_s))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._feed_back.wait(), max(delay_s - RETRY_MIN_S, 0.0))

    async def _watch_feed(self) -> None:
        """Keep health in step with the feed: NOT_SERVING while feedsim neither sends ticks
        nor answers a ping, SERVING again once it does (and the instruments are known)."""
        while True:
            await asyncio.sleep(FEED_CHECK_S)
            alive = self._ticking()
            if not alive:
                try:
                    await self.control.request("ping", FEED_CHECK_S)
                    alive = True
                except FeedUnavailable:
                    alive = self._ticking()  # ticks came back while the ping was out
            if alive != self._feed_alive:
                self._feed_alive = alive
                if alive:
                    log.info("feed back")
                else:
                    log.warning("feed lost: no tick and no answer to a ping",
                                extra={"waited_s": 2 * FEED_CHECK_S})
                await self._update_health()

    def _ticking(self) -> bool:
        """Whether a tick batch came within the last FEED_CHECK_S."""
        return time.monotonic() - self._last_batch_at < FEED_CHECK_S

    async def _update_health(self) -> None:
        """SERVING while the instruments are known and the feed is alive, else NOT_SERVING."""
        serving = self.state.instruments is not None and self._feed_alive
        if serving == self._serving:
            return
        self._serving = serving
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def _resume_from_history(self) -> None:
        """Seed sequence tracking from the last tick in history, so replays are not re-stored.

        Reload each symbol's newest candles too, so the intervals in progress continue.
        """
        symbols: list[str] = []
        try:
            raw = await self.redis.get(self.keys.instruments)
            if raw:
                # Until feedsim answers: so the history RPCs serve what Redis holds even when
                # the bridge starts while the feed is down.
                self.state.instruments = Instruments(Instrument.from_dict(d)
                                                     for d in orjson.loads(raw))
                symbols = list(self.state.instruments.symbols)
            for symbol in symbols:
                rows = cast(StreamRows, await self.redis.xrevrange(self.keys.ticks(symbol),
                                                                   count=1))
                if rows:
                    session, ticks = wire.decode_body(rows[0][1][b"d"])
                    self.tracker.seed(symbol, session, int(ticks["seq"][-1]))
                    self.state.update(wire.TickBatch(symbol, session, ticks))
        except (RedisError, OSError, WireError, orjson.JSONDecodeError, KeyError, TypeError,
                ValueError) as exc:
            log.warning("could not resume from history", extra={"error": str(exc)})
        try:
            restored = await self.candles.restore(self.redis, symbols)
        except (RedisError, OSError, ValueError) as exc:
            log.warning("could not reload the open candles; intervals in progress start over",
                        extra={"error": str(exc)})
        else:
            log.info("open candles reloaded", extra={"candles": restored})


def _serve_metrics(port: int, registry: CollectorRegistry) -> None:
    """Serve `registry` on 127.0.0.1:`port`; a port that cannot be had is a bad setting."""
    try:
        start_http_server(port, addr="127.0.0.1", registry=registry)
    except OSError as exc:
        raise ConfigError(f"BRIDGE_METRICS_PORT={port}: cannot listen on 127.0.0.1:{port}: "
                          f"{exc.strerror or exc}") from None


@contextlib.contextmanager
def _zmq_endpoint(name: str, endpoint: str) -> Iterator[None]:
    """Turn ZeroMQ's refusal of `endpoint` (the setting `name`) into a ConfigError naming it."""
    try:
        yield
    except zmq.ZMQError as exc:
        raise ConfigError(f"{name}={endpoint!r} is not an endpoint ZeroMQ can connect to "
                          f"(tcp://host:port, ipc://path): {exc}") from None


def _redacted(url: str) -> str:
    """Hide a password in a Redis URL for logging."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


async def run(config: BridgeConfig, registry: CollectorRegistry) -> None:
    """Start the bridge and serve until SIGTERM or SIGINT."""
    bridge = Bridge(config, registry)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, functools.partial(_on_signal, bridge, signum))
    await bridge.start()
    await bridge.serve()
    if bridge.failed:
        raise SystemExit(1)


def _on_signal(bridge: Bridge, signum: int) -> None:
    log.info("signal received", extra={"signal": signal.Signals(signum).name})
    bridge.request_stop()


def main() -> None:
    """Entry point: read config and run the bridge."""
    env = environ()
    try:
        config = BridgeConfig.from_env(env)
    except ConfigError as exc:
        logs.configure_for_error(env, "bridge")
        log.error("bad configuration", extra={"error": str(exc)})
        raise SystemExit(2) from None
    logs.configure(config.service_name, config.log_level, config.instance_name)
    registry = CollectorRegistry()
    started = time.monotonic()
    try:
        if config.metrics_port:
            _serve_metrics(config.metrics_port, registry)
        asyncio.run(run(config, registry))
    except ConfigError as exc:  # found at start-up: a setting the bridge cannot work with
        log.error("bad configuration", extra={"error": str(exc)})
        raise SystemExit(2) from None
    except OSError as exc:
        log.error("bridge failed", extra={"error": str(exc)})
        raise SystemExit(1) from None
    log.info("bridge exited", extra={"uptime_s": round(time.monotonic() - started, 3)})
