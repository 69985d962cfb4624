"""The bridge's configuration, read once from the environment (names and defaults in README)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from marketdata.candles import BY_NAME
from marketdata.errors import ConfigError
from marketdata.queries import MAX_HISTORY_LIMIT
from marketdata.settings import env_float, env_int, env_log_level, env_redis_url, env_str

# How long candles are kept, by interval (the reasons are in bridge.candles).
DEFAULT_CANDLE_RETENTION_S: dict[str, int] = {
    "1s": 86_400, "1m": 7 * 86_400, "5m": 30 * 86_400, "15m": 30 * 86_400,
    "1h": 365 * 86_400, "4h": 365 * 86_400, "1d": 5 * 365 * 86_400,
}
MIN_1M_RETENTION_S = 86_400  # the rolling 24-hour statistics are read from the 1m candles


@dataclass(frozen=True)
class BridgeConfig:
    """Everything the bridge needs."""

    feed_pub_endpoint: str
    feed_control_endpoint: str
    grpc_host: str
    grpc_port: int
    redis_url: str
    redis_prefix: str
    stream_queue_ticks: int
    history_retention_ms: int
    history_flush_interval_s: float
    history_max_pending_ticks: int
    history_max_limit: int
    """The largest `limit` of GetHistory and GetCandles (HISTORY_MAX_LIMIT, as REST's)."""
    candle_retention: tuple[tuple[str, int], ...]
    """(interval, seconds) for every interval: how long candles are kept, by open time."""
    shutdown_grace_s: float
    max_tick_ahead_s: float
    """Ticks stamped further ahead of this host's clock are dropped as bad messages."""
    metrics_port: int
    log_level: str
    service_name: str
    instance_name: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BridgeConfig:
        """Build the config from `env`; raise ConfigError naming any bad variable."""
        service = env_str(env, "SERVICE_NAME", "bridge")
        return cls(
            feed_pub_endpoint=env_str(env, "FEED_PUB_ENDPOINT", "tcp://127.0.0.1:5555"),
            feed_control_endpoint=env_str(env, "FEED_CONTROL_ENDPOINT", "tcp://127.0.0.1:5556"),
            grpc_host=env_str(env, "GRPC_HOST", "127.0.0.1"),
            grpc_port=env_int(env, "GRPC_PORT", 50051, minimum=0, maximum=65535),
            redis_url=env_redis_url(env, "redis://127.0.0.1:6379/0"),
            redis_prefix=env_str(env, "REDIS_PREFIX", "mds:"),
            stream_queue_ticks=env_int(env, "STREAM_QUEUE_TICKS", 100_000, minimum=1),
            history_retention_ms=int(env_float(env, "HISTORY_RETENTION_S", 3600.0,
                                               minimum=1.0) * 1000),
            history_flush_interval_s=env_float(env, "HISTORY_FLUSH_INTERVAL_MS", 5.0,
                                               minimum=0.0, maximum=10_000.0) / 1000.0,
            history_max_pending_ticks=env_int(env, "HISTORY_MAX_PENDING_TICKS", 2_000_000,
                                              minimum=1),
            history_max_limit=env_int(env, "HISTORY_MAX_LIMIT", MAX_HISTORY_LIMIT, minimum=1,
                                      maximum=1_000_000),
            candle_retention=tuple(candle_retention(env).items()),
            shutdown_grace_s=env_float(env, "SHUTDOWN_GRACE_S", 2.0, minimum=0.0),
            max_tick_ahead_s=env_float(env, "BRIDGE_MAX_TICK_AHEAD_S", 60.0, minimum=0.0),
            metrics_port=env_int(env, "BRIDGE_METRICS_PORT", 9102, minimum=0, maximum=65535),
            log_level=env_log_level(env),
            service_name=service,
            instance_name=env_str(env, "SERVICE_INSTANCE_NAME", f"{service}-1"),
        )


def candle_retention(env: Mapping[str, str]) -> dict[str, int]:
    """Return the retention of every interval, in seconds: the defaults, with CANDLE_RETENTION_S.

    CANDLE_RETENTION_S lists overrides as ``interval=seconds`` pairs separated by commas, e.g.
    ``1s=3600,1m=172800``. Raise ConfigError naming the variable and the bad pair.
    """
    name = "CANDLE_RETENTION_S"
    retention = dict(DEFAULT_CANDLE_RETENTION_S)
    raw = env.get(name, "").strip()
    for item in filter(None, (part.strip() for part in raw.split(","))):
        interval, sep, seconds = (text.strip() for text in item.partition("="))
        if not sep or interval not in BY_NAME:
            raise ConfigError(f"{name}: {item!r} is not interval=seconds with an interval of "
                              f"{', '.join(BY_NAME)}")
        if not seconds.isdigit() or not 1 <= int(seconds) <= 100 * 365 * 86_400:
            raise ConfigError(f"{name}: {item!r}: the seconds must be a whole number from 1 to "
                              f"{100 * 365 * 86_400}")
        retention[interval] = int(seconds)
    if retention["1m"] < MIN_1M_RETENTION_S:
        raise ConfigError(f"{name}: 1m={retention['1m']} is below {MIN_1M_RETENTION_S}: the "
                          "rolling 24-hour statistics are read from the 1m candles")
    return retention
