"""Building the falcon app: routes, JSON handling, errors, middleware; and gunicorn's entry point.

``create_app`` wires any Store (tests pass a MemoryStore). ``get_app`` is what gunicorn calls
(``'api.app:get_app()'``, no preload), so each worker builds its own Redis client after the fork.
"""

from __future__ import annotations

import logging
import time

import falcon
import falcon.media
import orjson
import redis
from prometheus_client import CollectorRegistry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from api import errors, resources
from api.config import ApiConfig
from api.middleware import RequestMetrics, RequestMiddleware
from api.params import KnownParameters
from marketdata import logs
from marketdata.layout import Keys
from marketdata.settings import environ
from marketdata.store import RedisStore, Store

log = logging.getLogger(__name__)

WsgiApp = falcon.App[falcon.Request, falcon.Response]

PREFIX = "/api/v1"
SYMBOL_ROUTES = ("current", "history")
"""Routes under /prices/{symbol}/, also mounted as /prices/{symbol}/{quote}/ for BTC/USD."""
CANDLES_ROUTE = f"{PREFIX}/candles/{{symbol}}"
STATS_ROUTE = f"{PREFIX}/stats/{{symbol}}/24h"
ORDERBOOK_ROUTE = f"{PREFIX}/orderbook/{{symbol}}"
TRADES_ROUTE = f"{PREFIX}/trades/{{symbol}}"


def create_app(store: Store, config: ApiConfig, registry: CollectorRegistry | None = None,
               clock: resources.Clock = time.time_ns) -> WsgiApp:
    """Return the API app reading `store`, with its metrics on `registry` (a new one if None)."""
    registry = registry if registry is not None else CollectorRegistry()
    route_labels = {f"{PREFIX}/prices/{{symbol}}/{{quote}}/{name}":
                    f"{PREFIX}/prices/{{symbol}}/{name}" for name in SYMBOL_ROUTES}
    route_labels[f"{CANDLES_ROUTE}/{{quote}}"] = CANDLES_ROUTE
    route_labels[f"{PREFIX}/stats/{{symbol}}/{{quote}}/24h"] = STATS_ROUTE
    route_labels[f"{ORDERBOOK_ROUTE}/{{quote}}"] = ORDERBOOK_ROUTE
    route_labels[f"{TRADES_ROUTE}/{{quote}}"] = TRADES_ROUTE
    app = falcon.App(middleware=[RequestMiddleware(RequestMetrics(registry), route_labels)])
    app.add_middleware(KnownParameters())
    json_handler = falcon.media.JSONHandler(dumps=orjson.dumps, loads=orjson.loads)
    app.req_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    errors.install(app)

    ctx = resources.Context(store, config, clock)
    app.add_route(f"{PREFIX}/health", resources.Health(ctx))
    app.add_route(f"{PREFIX}/ready", resources.Ready(ctx))
    app.add_route(f"{PREFIX}/symbols", resources.Symbols(ctx))
    app.add_route(f"{PREFIX}/prices", resources.Prices(ctx))
    current = resources.CurrentPrice(ctx)
    history = resources.PriceHistory(ctx)
    for template_base in (f"{PREFIX}/prices/{{symbol}}", f"{PREFIX}/prices/{{symbol}}/{{quote}}"):
        app.add_route(f"{template_base}/current", current)
        app.add_route(f"{template_base}/history", history)
    stats = resources.Stats24h(ctx)
    app.add_route(STATS_ROUTE, stats)
    app.add_route(f"{PREFIX}/stats/{{symbol}}/{{quote}}/24h", stats)
    for route, resource in ((ORDERBOOK_ROUTE, resources.OrderBook(ctx)),
                            (TRADES_ROUTE, resources.Trades(ctx)),
                            (CANDLES_ROUTE, resources.Candles(ctx))):
        app.add_route(route, resource)
        app.add_route(f"{route}/{{quote}}", resource)
    app.add_route(f"{PREFIX}/correlations", resources.Correlations(ctx))
    app.add_route("/metrics", resources.Metrics(registry, config.prometheus_multiproc_dir))
    return app


def get_app() -> WsgiApp:
    """Build the app from the environment with one Redis client (called once per worker)."""
    config = ApiConfig.from_env(environ())
    logs.configure(config.service_name, config.log_level, config.instance_name)
    client = redis.Redis.from_url(
        config.redis_url,
        socket_timeout=config.redis_socket_timeout_s,
        socket_connect_timeout=config.redis_socket_timeout_s,
        health_check_interval=30,
        # One quick retry rides over a dropped idle connection without stalling the request.
        retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), retries=1),
    )
    log.info("api worker starting", extra={"redis_prefix": config.redis_prefix,
                                           "multiproc": bool(config.prometheus_multiproc_dir)})
    return create_app(RedisStore(client, Keys(config.redis_prefix)), config)
