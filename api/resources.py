"""The REST resources: health, readiness, symbols, prices, history, candles, statistics, order
books, trades, correlations, metrics.

Symbol path segments accept every spelling ``marketdata.symbols`` does (``BTC-USD``, ``btc-usd``,
``BTCUSD``, ``BTC_USD``, ``BTC/USD``); answers use the canonical ``BTC-USD``. A slash, even
encoded as ``%2F``, reaches the router decoded (WSGI servers decode PATH_INFO), so the symbol
routes are also mounted as ``{symbol}/{quote}`` and joined back here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import falcon
import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from api import views
from api.config import ApiConfig
from api.errors import Unavailable
from api.params import (
    CANDLE_PARAMETERS,
    CORRELATION_PARAMETERS,
    HISTORY_PARAMETERS,
    ORDERBOOK_PARAMETERS,
    TRADES_PARAMETERS,
    candle_query,
    correlation_query,
    depth_query,
    history_query,
    trades_query,
)
from marketdata import candles, correlations
from marketdata.errors import InvalidParameter
from marketdata.queries import book_depth, check_depth
from marketdata.store import Store, StoreError, StoreUnavailable
from marketdata.symbols import Instrument, Instruments, check_spelling

log = logging.getLogger(__name__)

Clock = Callable[[], int]


@dataclass(frozen=True)
class Context:
    """What every resource reads from: the store, the settings and the clock (ns)."""

    store: Store
    config: ApiConfig
    clock: Clock

    def instruments(self) -> Instruments:
        """Return the published instruments; raise Unavailable before the bridge wrote them."""
        instruments = self.store.instruments()
        if instruments is None:
            raise Unavailable("no instruments yet: the bridge has not written the symbol list")
        return instruments

    def instrument(self, symbol: str, quote: str | None) -> Instrument:
        """Resolve a symbol path segment (or BASE and QUOTE segments) to its instrument.

        A malformed symbol is refused before the instruments are read: it is a 400 whether or not
        Redis answers. Responders parse their query parameters before calling this, for the same
        reason.
        """
        text = symbol if quote is None else f"{symbol}/{quote}"
        check_spelling(text)
        return self.instruments().resolve(text)


class Health:
    """Liveness: the process answers; Redis is not consulted."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer 200 with the service's name and instance."""
        resp.media = {"status": "ok", "service": self.ctx.config.service_name,
                      "instance": self.ctx.config.instance_name}

    on_head = on_get  # probes that use HEAD: the same status, no body


class Ready:
    """Readiness: Redis answers and every published symbol has a fresh tick."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer 200 when ready, else 503 with the failing check saying why."""
        started = time.perf_counter()
        error = None
        try:
            self.ctx.store.ping()
        except StoreUnavailable as exc:
            log.warning("readiness: store unreachable", extra={"error": str(exc)})
            error = "redis unreachable"
        redis: dict[str, Any] = {"ok": error is None,
                                 "latency_ms": round((time.perf_counter() - started) * 1e3, 3)}
        if error:
            redis["error"] = error
        if redis["ok"]:
            ticks = self._ticks()
        else:
            ticks = {"ok": False, "max_age_s": self.ctx.config.ready_max_tick_age_s,
                     "symbols": {}, "error": "not checked: redis unreachable"}
        ready = redis["ok"] and ticks["ok"]
        resp.status = falcon.HTTP_200 if ready else falcon.HTTP_503
        resp.media = {"status": "ready" if ready else "not_ready",
                      "checks": {"redis": redis, "ticks": ticks}}

    on_head = on_get  # probes that use HEAD: the same status, no body

    def _ticks(self) -> dict[str, Any]:
        max_age_s = self.ctx.config.ready_max_tick_age_s
        check: dict[str, Any] = {"ok": False, "max_age_s": max_age_s, "symbols": {}}
        try:
            instruments = self.ctx.store.instruments()
            if instruments is None:
                check["error"] = "no instruments yet: the bridge has not written the symbol list"
                return check
            latest = self.ctx.store.latest(instruments.symbols)
        except StoreUnavailable as exc:
            log.warning("readiness: store unreachable", extra={"error": str(exc)})
            check["error"] = "redis unreachable"
            return check
        except StoreError:
            log.exception("readiness: store read failed")
            check["error"] = "the stored data could not be read"
            return check
        now_ns = self.ctx.clock()
        problems: list[str] = []
        for symbol in instruments.symbols:
            tick = latest.get(symbol)
            if tick is None:
                check["symbols"][symbol] = {"age_s": None}
                problems.append(f"{symbol} has no ticks yet")
                continue
            age_s = round((now_ns - tick.ts_ns) / 1e9, 3)
            check["symbols"][symbol] = {"age_s": age_s}
            if age_s > max_age_s:
                problems.append(f"{symbol} is stale by {round(age_s - max_age_s, 3)} s "
                                f"(last tick {age_s} s old, limit {max_age_s} s)")
        if not instruments.symbols:
            problems.append("the instrument list is empty")
        check["ok"] = not problems
        if problems:
            check["error"] = "; ".join(problems)
        return check


class Symbols:
    """The published instruments, in publication order."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer {"symbols": [instrument, ...]}."""
        resp.media = {"symbols": [i.to_dict() for i in self.ctx.instruments()]}


class Prices:
    """The current price of every symbol that has ticks."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer {"prices": [price, ...]} in publication order (symbols without ticks left out)."""
        instruments = self.ctx.instruments()
        latest = self.ctx.store.latest(instruments.symbols)
        now_ns = self.ctx.clock()
        resp.media = {"prices": [
            views.price_object(tick, instrument, now_ns)
            for instrument in instruments
            if (tick := latest.get(instrument.symbol)) is not None
        ]}


class CurrentPrice:
    """One symbol's current price: its latest tick."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, symbol: str,
               quote: str | None = None) -> None:
        """Answer the price object, or 503 when the symbol has no tick yet."""
        instrument = self.ctx.instrument(symbol, quote)
        tick = self.ctx.store.latest([instrument.symbol]).get(instrument.symbol)
        if tick is None:
            raise Unavailable(f"no ticks yet for {instrument.symbol}")
        resp.media = views.price_object(tick, instrument, self.ctx.clock())


class PriceHistory:
    """One symbol's ticks in a time range."""

    parameters = HISTORY_PARAMETERS

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, symbol: str,
               quote: str | None = None) -> None:
        """Answer the ticks with start <= time <= end (see the README for limit semantics)."""
        config = self.ctx.config
        query = history_query(req.params, self.ctx.clock(), config.history_default_limit,
                              config.history_max_limit)
        instrument = self.ctx.instrument(symbol, quote)
        ticks = self.ctx.store.history(instrument.symbol, query.start_ns, query.end_ns,
                                       query.limit)
        resp.media = {
            "symbol": instrument.symbol,
            "start": None if query.start_ns is None else views.rfc3339(query.start_ns),
            "end": views.rfc3339(query.end_ns),
            "count": len(ticks),
            "ticks": views.tick_objects(ticks, instrument),
        }


class Candles:
    """One symbol's OHLCV candles of one interval in a range of open times."""

    parameters = CANDLE_PARAMETERS

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, symbol: str,
               quote: str | None = None) -> None:
        """Answer the candles with start <= open time <= end, oldest first (history's limits)."""
        config = self.ctx.config
        now_ns = self.ctx.clock()
        query = candle_query(req.params, now_ns, config.history_default_limit,
                             config.history_max_limit)
        instrument = self.ctx.instrument(symbol, quote)
        found = self.ctx.store.candles(instrument.symbol, query.interval, query.start_ns,
                                       query.end_ns, query.limit)
        resp.media = {
            "symbol": instrument.symbol,
            "interval": query.interval.name,
            "candles": views.candle_objects(found, instrument, now_ns),
        }


class Stats24h:
    """One symbol's rolling 24-hour statistics, from its 1m candles."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, symbol: str,
               quote: str | None = None) -> None:
        """Answer the statistics of the current minute and the 1,439 before it; 503 if no trades.

        Rolling at minute resolution: the window moves on with each minute, so it spans between
        23 h 59 min and 24 h of trades.
        """
        instrument = self.ctx.instrument(symbol, quote)
        now_ns = self.ctx.clock()
        start_ns = candles.rolling_window_start(now_ns)
        minutes = candles.DAY_NS // candles.ONE_MINUTE.ns
        found = self.ctx.store.candles(instrument.symbol, candles.ONE_MINUTE, start_ns, now_ns,
                                       minutes)
        summary = candles.summarize(found)
        if summary is None:
            raise Unavailable(f"no trades of {instrument.symbol} in the last 24 hours")
        resp.media = views.stats_object(summary, instrument, start_ns, now_ns)


class OrderBook:
    """One symbol's latest L2 order book."""

    parameters = ORDERBOOK_PARAMETERS

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, symbol: str,
               quote: str | None = None) -> None:
        """Answer the top `depth` levels a side (default 20); 503 before the first book."""
        depth = check_depth(depth_query(req.params))
        instrument = self.ctx.instrument(symbol, quote)
        book = self.ctx.store.book(instrument.symbol)
        if book is None:
            raise Unavailable(f"no order book of {instrument.symbol} yet")
        depth = book_depth(depth, max(len(book.bids), len(book.asks)))
        resp.media = views.book_object(book, instrument, depth, self.ctx.clock())


class Trades:
    """One symbol's most recent trades, newest first."""

    parameters = TRADES_PARAMETERS

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, symbol: str,
               quote: str | None = None) -> None:
        """Answer up to `limit` trades (default 100, at most 1,000); none yet is an empty list."""
        limit = trades_query(req.params)
        instrument = self.ctx.instrument(symbol, quote)
        found = self.ctx.store.trades(instrument.symbol, limit)
        resp.media = {"symbol": instrument.symbol, "count": len(found),
                      "trades": views.trade_objects(found, instrument)}


class Correlations:
    """Pairwise correlation of symbols' log returns, from aligned closed candles."""

    parameters = CORRELATION_PARAMETERS

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer the matrix over the last `window` closed intervals (marketdata.correlations)."""
        query = correlation_query(req.params)
        for text in query.symbols or ():
            check_spelling(text)  # before Redis is read, as for a path's symbol
        instruments = self.ctx.instruments()
        if query.symbols is None:
            symbols = list(instruments.symbols)
            if len(symbols) < 2:
                raise Unavailable("fewer than two symbols are published")
        else:
            symbols = []
            for text in query.symbols:
                symbol = instruments.resolve(text).symbol
                if symbol in symbols:
                    raise InvalidParameter("symbols", f"{text!r} is {symbol} again; list each "
                                           "symbol once")
                symbols.append(symbol)
        grid = correlations.Grid.ending_before(query.interval, self.ctx.clock(), query.window)
        closes = np.array([
            grid.closes(self.ctx.store.candles(symbol, query.interval, grid.first_open_ns,
                                               grid.last_open_ns, query.window + 1))
            for symbol in symbols
        ])
        resp.media = views.correlation_object(correlations.correlate(symbols, closes), grid)


class Metrics:
    """Prometheus text exposition: this process's registry, or every worker's under gunicorn."""

    def __init__(self, registry: CollectorRegistry, multiproc_dir: str | None) -> None:
        self.registry = registry
        self.multiproc_dir = multiproc_dir

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer the metrics in the Prometheus text format."""
        registry = self.registry
        if self.multiproc_dir:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.multiproc_dir)  # type: ignore[no-untyped-call]
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest(registry)
