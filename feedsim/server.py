"""The feedsim process: the single writer's loop, its sockets, signals and metrics.

One thread owns everything. Each turn of the loop answers pending control requests and new
subscriptions, then publishes every tick that is due, one frame per symbol. Publishing uses an
XPUB socket so late joiners can be served the last value of each symbol they subscribe to (zguide
"Last Value Caching"); those replays carry FLAG_SNAPSHOT and repeat a seq already published.
ZeroMQ drops messages for a subscriber whose queue reaches FEED_SEND_HWM; subscribers see that
as a gap in seq. A replay at speed max is the exception: it sets XPUB_NODROP, so a full queue
refuses the frame and feedsim waits and sends it again: the replay runs as fast as its slowest
subscriber reads, and loses nothing (and pauses while nobody subscribes). A replay at any speed
starts its clock at the first subscription, so a subscriber started after feedsim (the bridge,
under supervisord) sees it from its first bar. A live feed waits for its first subscriber too,
but at most FEED_START_WAIT_S: then it starts whoever listens.

Books go out as diffs after the ticks they belong to (one per book update), with a full snapshot
every FEED_BOOK_SNAPSHOT_EVERY updates and to every late joiner whose subscription covers the
book topic, so a subscriber can always start from a snapshot and then apply diffs. In a lossless
replay, refused book messages wait in the same queue as ticks, so they too arrive, in order.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import errno
import logging
import math
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from types import FrameType
from typing import NoReturn

import zmq
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from feedsim import control
from feedsim.config import FeedConfig
from feedsim.engine import Feed
from marketdata import logs, wire
from marketdata.errors import ConfigError
from marketdata.settings import environ

log = logging.getLogger(__name__)

Clock = Callable[[], int]
MAX_IDLE_WAIT_S = 0.1  # the loop wakes at least this often to notice a stop request
BACKPRESSURE_WAIT_S = 0.001  # how often a replay at max speed retries a frame a queue refused
MAX_SPEED_SEND_HWM = 1000  # messages: at max speed a subscriber's queue fills here, not in RAM
PR_SET_TIMERSLACK = 29  # <linux/prctl.h>
# Control requests (or subscription messages) handled per turn at most: the rest wait for the
# next turns, so a client flooding the control socket slows its own answers, never the ticks.
MAX_REQUESTS_PER_TURN = 64


FeedMessage = wire.TickBatch | wire.BookDiff | wire.BookSnapshot
ENDPOINT_FORM = "expected transport://address, such as tcp://127.0.0.1:5555 or ipc:///path"


class BindError(ConfigError):
    """An endpoint or port from the settings that feedsim cannot bind; the message names the
    variable and its value. A setting the process cannot use, like a malformed one: exit 2."""

    def __init__(self, variable: str, value: str, reason: str) -> None:
        self.variable = variable
        self.value = value
        super().__init__(f"{variable}={value!r}: {reason}")


def bind(socket: zmq.Socket[bytes], endpoint: str, variable: str) -> None:
    """Bind `socket` to `endpoint` (the value of `variable`); raise BindError saying why not."""
    try:
        socket.bind(endpoint)
    except zmq.ZMQError as exc:
        reason = f"cannot bind: {zmq.strerror(exc.errno) if exc.errno else exc}"
        if exc.errno in (errno.EINVAL, errno.EPROTONOSUPPORT):
            reason += f" ({ENDPOINT_FORM})"
        raise BindError(variable, endpoint, reason) from None


class FeedMetrics:
    """feedsim's Prometheus metrics, on the registry it is given."""

    def __init__(self, registry: CollectorRegistry, symbols: list[str]) -> None:
        self.ticks = Counter("feedsim_ticks_total", "Ticks published", ["symbol"],
                             registry=registry)
        self.frames = Counter("feedsim_frames_total", "Tick frames published", ["symbol"],
                              registry=registry)
        self.lag = Gauge("feedsim_schedule_lag_seconds",
                         "How late the oldest due tick was when the loop woke", registry=registry)
        self.reanchors = Counter("feedsim_schedule_reanchors_total",
                                 "Times a symbol's schedule was reset after a stall", ["symbol"],
                                 registry=registry)
        self.control = Counter("feedsim_control_requests_total", "Control requests answered",
                               ["cmd"], registry=registry)
        self.snapshots = Counter("feedsim_snapshots_sent_total",
                                 "Last-value ticks replayed to new subscribers", registry=registry)
        self.books = Counter("feedsim_books_total",
                             "Full order book snapshots published (periodic and late-join)",
                             ["symbol"], registry=registry)
        self.book_diffs = Counter("feedsim_book_diffs_total", "Order book diffs published",
                                  ["symbol"], registry=registry)
        self.replay_position = Gauge("feedsim_replay_position_seconds",
                                     "Historical time of the latest replayed tick (epoch s)",
                                     ["symbol"], registry=registry)
        self.tick_children = {s: self.ticks.labels(s) for s in symbols}
        self.book_children = {s: self.books.labels(s) for s in symbols}
        self.book_diff_children = {s: self.book_diffs.labels(s) for s in symbols}
        self.frame_children = {s: self.frames.labels(s) for s in symbols}


class FeedServer:
    """Runs the feed: publish due ticks, answer control requests, replay last values."""

    def __init__(self, config: FeedConfig, feed: Feed, context: zmq.Context[zmq.Socket[bytes]],
                 metrics: FeedMetrics, clock: Clock = time.time_ns) -> None:
        self.config = config
        self.feed = feed
        self.metrics = metrics
        self.clock = clock
        # A socket left open makes context.term() wait forever: when a bind fails, the sockets
        # made so far are closed before the error leaves (feedsim then exits instead of hanging).
        with contextlib.ExitStack() as undo:
            self.pub = context.socket(zmq.XPUB)
            undo.callback(self.pub.close, 0)
            self.control = context.socket(zmq.ROUTER)
            undo.callback(self.control.close, 0)
            self.pub.setsockopt(zmq.XPUB_VERBOSE, 1)  # see every subscribe, to replay last values
            self.lossless = feed.replaying and math.isinf(config.replay_speed)
            if feed.replaying:
                # Every unsubscribe too, so feedsim knows whether anyone still listens.
                self.pub.setsockopt(zmq.XPUB_VERBOSER, 1)
            if self.lossless:
                self.pub.setsockopt(zmq.XPUB_NODROP, 1)
                self.pub.setsockopt(zmq.SNDHWM, min(config.send_hwm or MAX_SPEED_SEND_HWM,
                                                    MAX_SPEED_SEND_HWM))
            else:
                self.pub.setsockopt(zmq.SNDHWM, config.send_hwm)
            self.pub.setsockopt(zmq.LINGER, 0)
            self.control.setsockopt(zmq.LINGER, 0)
            bind(self.pub, config.pub_endpoint, "FEED_PUB_ENDPOINT")
            bind(self.control, config.control_endpoint, "FEED_CONTROL_ENDPOINT")
            undo.pop_all()  # from here on, close() closes them
        self.poller = zmq.Poller()
        self.poller.register(self.pub, zmq.POLLIN)
        self.poller.register(self.control, zmq.POLLIN)
        self._running = False
        self._subscribed = False  # anyone subscribed yet
        self._replay_announced = False
        self._unsent: deque[FeedMessage] = deque()  # what a full queue refused (lossless)
        self._subscriptions: collections.Counter[bytes] = collections.Counter()  # live (replay)
        if feed.replaying:
            feed.hold_replay()  # until the first subscriber, so nobody misses the start

    @property
    def pub_address(self) -> str:
        """The bound publish endpoint (with the real port when bound to port 0 or *)."""
        return str(self.pub.getsockopt_string(zmq.LAST_ENDPOINT))

    @property
    def control_address(self) -> str:
        """The bound control endpoint."""
        return str(self.control.getsockopt_string(zmq.LAST_ENDPOINT))

    def run(self) -> None:
        """Serve until stop() is called (by a signal handler or another thread)."""
        self._running = True
        if not self.feed.replaying and self.config.start_wait_s > 0:
            self._await_first_subscriber(self.config.start_wait_s)
        min_interval = self.config.min_batch_interval_s
        max_lag_ns = int(self.config.max_lag_s * 1e9)
        last_step = 0.0
        while self._running:
            if self._unsent:
                self._serve_sockets(BACKPRESSURE_WAIT_S)
                self._send_unsent()
                continue
            if self.lossless and not self._subscriptions:
                self._serve_sockets(MAX_IDLE_WAIT_S)  # at max speed, pause while nobody listens
                continue
            now_ns = self.clock()
            wake_ns = self.feed.next_due_ns()
            wait_s = max((wake_ns - now_ns) / 1e9, last_step + min_interval - time.monotonic())
            self._serve_sockets(min(max(wait_s, 0.0), MAX_IDLE_WAIT_S))
            now_ns = self.clock()
            if now_ns < wake_ns:
                continue
            last_step = time.monotonic()
            self.metrics.lag.set(self.feed.lag_ns(now_ns) / 1e9)
            result = self.feed.step(now_ns, max_lag_ns, books=False)
            # Every symbol's ticks go out before any book is computed: subscribers get ticks
            # at once, and each symbol's diffs still follow its ticks.
            for batch in result.batches:
                self._publish_in_order(batch)
            if result.batches:
                hand_over()
            books = self.feed.update_books(result.batches)
            for batch in result.batches:
                self._publish_book(batch.symbol, books.get(batch.symbol, []))
            self.feed.top_up()  # values for the next steps, now that this one's are out
            for symbol in result.reanchored:
                self.metrics.reanchors.labels(symbol).inc()
                log.warning("schedule reset after a stall", extra={"symbol": symbol})
            if self.feed.replaying:
                self._track_replay(result.batches)

    def _await_first_subscriber(self, wait_s: float) -> None:
        """Hold the first tick until someone subscribes, at most `wait_s`, answering control
        requests meanwhile. A subscriber started with feedsim, or reconnecting after it
        restarts (ZeroMQ retries every 100 ms), then sees the session from seq 1."""
        deadline = time.monotonic() + wait_s
        while self._running and not self._subscribed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._serve_sockets(min(left, MAX_IDLE_WAIT_S))
        self.feed.start_live(self.clock())
        log.info("first tick", extra={"after": "first subscriber" if self._subscribed
                                      else f"{wait_s:g} s without a subscriber"})

    def _follow_subscription(self, subscribe: bool, prefix: bytes) -> None:
        """Count live subscriptions (XPUB_VERBOSER); the first one starts a held replay."""
        if subscribe:
            self._subscriptions[prefix] += 1
            if self.feed.start_replay(self.clock()):
                log.info("replay started: first subscriber", extra={
                    "speed": "max" if math.isinf(self.config.replay_speed)
                    else self.config.replay_speed})
        elif self._subscriptions[prefix] > 1:
            self._subscriptions[prefix] -= 1
        else:
            del self._subscriptions[prefix]

    def _track_replay(self, batches: list[wire.TickBatch]) -> None:
        """Follow the replay's position; say once, when the files are done, that it ended."""
        for batch in batches:
            self.metrics.replay_position.labels(batch.symbol).set(
                int(batch.ticks["ts_ns"][-1]) / 1e9)
        if self.feed.replay_finished and not self._replay_announced:
            self._replay_announced = True
            status = self.feed.replay_status(self.clock()) or {}
            log.info("replay finished: every bar published; the feed stays up, publishing "
                     "nothing more", extra={"symbols": {
                         s: {"ticks": v["published"], "bars": v["bars"], "file": v["file"]}
                         for s, v in status.get("symbols", {}).items()}})

    def stop(self) -> None:
        """Ask run() to return after its current turn."""
        self._running = False

    def close(self) -> None:
        """Close the sockets (idempotent)."""
        self.pub.close(linger=0)
        self.control.close(linger=0)

    def _publish(self, message: FeedMessage) -> bool:
        """Send one message; return False when a full queue refused it (only with XPUB_NODROP:
        plain PUB semantics drop silently at the HWM instead)."""
        if isinstance(message, wire.TickBatch):
            frames = wire.encode(message)
        elif isinstance(message, wire.BookDiff):
            frames = wire.encode_book_diff(message)
        else:
            frames = wire.encode_book(message)
        try:
            self.pub.send_multipart(frames, copy=False, flags=zmq.NOBLOCK)
        except zmq.Again:
            return False
        if isinstance(message, wire.TickBatch):
            self.metrics.tick_children[message.symbol].inc(len(message))
            self.metrics.frame_children[message.symbol].inc()
        elif isinstance(message, wire.BookDiff):
            self.metrics.book_diff_children[message.symbol].inc()
        else:
            self.metrics.book_children[message.symbol].inc()
        return True

    def _publish_in_order(self, message: FeedMessage) -> None:
        """Send `message`, or queue it behind earlier refused ones (a lossless replay)."""
        if self._unsent or not self._publish(message):
            self._unsent.append(message)

    def _send_unsent(self) -> None:
        """Send refused messages again, in order, until one is refused again."""
        while self._unsent and self._publish(self._unsent[0]):
            self._unsent.popleft()

    def _publish_book(self, symbol: str, diffs: list[wire.BookDiff]) -> None:
        """Publish `symbol`'s book diffs of this step, then a snapshot if one fell due.

        A snapshot is due when a diff's book_seq is a multiple of FEED_BOOK_SNAPSHOT_EVERY; it
        goes out after the step's last diff, with that diff's book_seq, so readers in sync see a
        book they already hold and late readers a book the next diff applies to. Both go in
        order after the step's ticks (queued with them when a lossless replay is held back).
        """
        every = self.config.book_snapshot_every
        for diff in diffs:
            self._publish_in_order(diff)
        if every and any(d.book_seq % every == 0 for d in diffs):
            self._publish_in_order(self.feed.book(symbol))

    def _send_book(self, symbol: str) -> None:
        """Publish `symbol`'s current book in full (nothing before its first update)."""
        book = self.feed.book(symbol)
        if not book.book_seq:
            return
        try:
            self.pub.send_multipart(wire.encode_book(book), flags=zmq.NOBLOCK)
        except zmq.Again:
            return
        self.metrics.book_children[symbol].inc()

    def _serve_sockets(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for socket events and handle them; sleep the sub-ms rest."""
        deadline = time.monotonic() + timeout_s
        timeout_ms = int(timeout_s * 1000)
        events = dict(self.poller.poll(timeout_ms))
        if self.control in events:
            self._answer_control()
        if self.pub in events:
            self._replay_last_values()
        rest = deadline - time.monotonic()
        if rest > 0 and not events:
            time.sleep(rest)

    def _answer_control(self) -> None:
        for _ in range(MAX_REQUESTS_PER_TURN):
            try:
                frames = self.control.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) < 2:
                continue  # not a routed request; nothing to answer
            envelope, payload = frames[:-1], frames[-1]
            cmd, reply = control.handle(self.feed, payload, self.clock())
            self.metrics.control.labels(cmd).inc()
            if cmd == "invalid":
                log.warning("bad control request", extra={"reply": reply.decode()[:200]})
            self.control.send_multipart([*envelope, reply])

    def _replay_last_values(self) -> None:
        for _ in range(MAX_REQUESTS_PER_TURN):
            try:
                message = self.pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if not message or message[0] not in (0, 1):
                continue
            prefix = message[1:]
            if self.feed.replaying:
                self._follow_subscription(message[0] == 1, prefix)
            if message[0] != 1:
                continue  # an unsubscribe
            self._subscribed = True
            for symbol in self.feed.symbols:
                last = self.feed.last(symbol)
                # While a lossless replay holds refused ticks, the last tick made is among
                # them: replayed now, it would reach the others ahead of the ticks before it.
                # The new subscriber gets those queued ticks soon enough instead.
                if (last is not None and not self._unsent
                        and wire.topic(symbol).startswith(prefix)):
                    replay = last.copy()
                    replay["flags"] |= wire.FLAG_SNAPSHOT
                    try:
                        # Lossless (XPUB_NODROP), a full queue would block the writer: skip.
                        self.pub.send_multipart(
                            wire.encode(wire.TickBatch(symbol, self.feed.session, replay)),
                            flags=zmq.NOBLOCK if self.lossless else 0)
                        self.metrics.snapshots.inc()
                    except zmq.Again:
                        pass  # the next ticks follow soon enough
                if wire.book_topic(symbol).startswith(prefix):
                    # The clone pattern: the book as of now; every later diff applies to it.
                    self._send_book(symbol)


def _log_replay(feed: Feed, config: FeedConfig) -> None:
    """Say what each replayed file holds and what the importer had to do with it."""
    status = feed.replay_status(time.time_ns())
    if status is None:
        return
    for s in config.symbols:
        bars = s.replay
        if bars is None:
            continue
        report = bars.report
        info = status["symbols"][s.instrument.symbol]
        log.info("replay loaded", extra={
            "symbol": s.instrument.symbol, "file": bars.source, "bars": len(bars),
            "interval_s": info["interval_s"], "first_bar_ns": info["first_bar_ns"],
            "last_bar_ns": info["last_bar_ns"], "ticks_per_bar": info["ticks_per_bar"],
            "speed": status["speed"], "prices_moved_to_tick_grid": bars.moved,
            "zero_volume_bars": bars.zero_volume, "low_volume_bars": bars.short_volume,
        })
        if report is not None and report.issues:
            log.warning("replay file had problems; dropped bars are not replayed", extra={
                "symbol": s.instrument.symbol, "file": bars.source, "dropped": report.dropped,
                "repaired": report.repaired, "missing_bars": report.missing_bars,
                "report": report.render(max_details=5)})


def hand_over() -> None:
    """Let ZeroMQ's I/O thread send what this turn queued before the turn's heavier work.

    Measured on a 2-vCPU VM at 10k ticks/s: the messages of turns followed by a refill of
    values (~0.2-0.5 ms of quoting) reached a subscriber 0.4-1.5 ms after the send, as the
    I/O thread waited for this CPU; yielding took the send -> receipt p99 from ~1.0 ms to
    ~0.3 ms. It costs a syscall per turn, and the turn's books and refill may wait while
    other runnable threads on this CPU go first (the ticks are out by then). A no-op where
    the OS has no sched_yield.
    """
    if hasattr(os, "sched_yield"):
        os.sched_yield()


def precise_sleeps() -> None:
    """Ask Linux for 1 ns of timer slack on this thread (a warning if it is refused).

    The loop sleeps between sub-millisecond turns. With the default 50 us slack a 0.4 ms sleep
    ended ~80 us late at the median (p99 ~130 us), and every tick of the turn carried that lag;
    with 1 ns slack it ends ~25 us late (p99 ~50 us). Elsewhere a no-op.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        granted = ctypes.CDLL(None).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        granted = False
    if not granted:
        log.warning("timer slack not lowered; sleeps may end up to 50 us late")


def cannot_bind(exc: BindError) -> NoReturn:
    """Say which setting cannot be bound, in one line, and exit 2 (a setting it cannot use:
    supervisord does not restart feedsim into the same failure)."""
    log.error("cannot bind", extra={"error": str(exc), "variable": exc.variable,
                                    "value": exc.value})
    raise SystemExit(2) from None


def main() -> None:
    """Entry point: read config, build the feed, serve until SIGTERM or SIGINT."""
    env = environ()
    try:
        config = FeedConfig.from_env(env)
    except ConfigError as exc:
        logs.configure_for_error(env, "feedsim")
        log.error("bad configuration", extra={"error": str(exc)})
        raise SystemExit(2) from None
    logs.configure(config.service_name, config.log_level, config.instance_name)
    if env.get("FEED_REPLAY_SPEED", "").strip() and not config.replaying:
        log.warning("FEED_REPLAY_SPEED is set but nothing replays (no FEED_REPLAY_FILE, no "
                    "[symbol.replay] table): ignored", extra={
                        "FEED_REPLAY_SPEED": env["FEED_REPLAY_SPEED"]})
    registry = CollectorRegistry()
    metrics = FeedMetrics(registry, [s.instrument.symbol for s in config.symbols])
    if config.metrics_port:
        try:
            start_http_server(config.metrics_port, addr="127.0.0.1", registry=registry)
        except OSError as exc:
            cannot_bind(BindError("FEED_METRICS_PORT", str(config.metrics_port),
                                  f"cannot serve metrics on 127.0.0.1:{config.metrics_port}: "
                                  f"{exc.strerror or exc}"))
    feed = Feed(config.symbols, config.seed, time.time_ns(), ahead_s=config.ahead_s,
                step_s=config.universe.step_s, correlations=config.universe.correlations,
                book_levels=config.book_levels, book_interval_s=config.book_interval_s,
                replay_speed=config.replay_speed)
    _log_replay(feed, config)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        server = FeedServer(config, feed, context, metrics)
    except BindError as exc:
        context.term()
        cannot_bind(exc)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        server.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    precise_sleeps()
    log.info("feedsim started", extra={
        "pub": server.pub_address, "control": server.control_address, "seed": config.seed,
        "session": feed.session, "symbols": {s.instrument.symbol: s.market.rate
                                             for s in config.symbols},
        "metrics_port": config.metrics_port,
    })
    try:
        server.run()
    finally:
        server.close()
        context.term()
        log.info("feedsim stopped", extra={"session": feed.session,
                                           "seq": {s: f.seq for s, f in feed.symbols.items()}})
