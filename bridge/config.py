"""The bridge's configuration, read once from the environment (names and defaults in README)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from marketdata.settings import env_float, env_int, env_str


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
    shutdown_grace_s: float
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
            redis_url=env_str(env, "REDIS_URL", "redis://127.0.0.1:6379/0"),
            redis_prefix=env_str(env, "REDIS_PREFIX", "mds:"),
            stream_queue_ticks=env_int(env, "STREAM_QUEUE_TICKS", 100_000, minimum=1),
            history_retention_ms=int(env_float(env, "HISTORY_RETENTION_S", 3600.0,
                                               minimum=1.0) * 1000),
            history_flush_interval_s=env_float(env, "HISTORY_FLUSH_INTERVAL_MS", 5.0,
                                               minimum=0.0, maximum=10_000.0) / 1000.0,
            history_max_pending_ticks=env_int(env, "HISTORY_MAX_PENDING_TICKS", 2_000_000,
                                              minimum=1),
            shutdown_grace_s=env_float(env, "SHUTDOWN_GRACE_S", 2.0, minimum=0.0),
            metrics_port=env_int(env, "BRIDGE_METRICS_PORT", 9102, minimum=0, maximum=65535),
            log_level=env_str(env, "LOG_LEVEL", "INFO"),
            service_name=service,
            instance_name=env_str(env, "SERVICE_INSTANCE_NAME", f"{service}-1"),
        )
