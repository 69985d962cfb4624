"""The API's configuration, read once from the environment (names and defaults in the README)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from marketdata.queries import DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT
from marketdata.settings import env_float, env_int, env_log_level, env_redis_url, env_str


@dataclass(frozen=True)
class ApiConfig:
    """Everything one API worker needs."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "mds:"
    redis_socket_timeout_s: float = 2.0
    ready_max_tick_age_s: float = 5.0
    history_max_limit: int = MAX_HISTORY_LIMIT
    log_level: str = "INFO"
    service_name: str = "api"
    instance_name: str = "api-1"
    prometheus_multiproc_dir: str | None = None
    """Set under gunicorn: /metrics then aggregates every worker's metrics files."""

    @property
    def history_default_limit(self) -> int:
        """The limit used when a history request gives none."""
        return min(DEFAULT_HISTORY_LIMIT, self.history_max_limit)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApiConfig:
        """Build the config from `env`; raise ConfigError naming any bad variable."""
        redis_url = env_redis_url(env, cls.redis_url)
        service = env_str(env, "SERVICE_NAME", cls.service_name)
        log_level = env_log_level(env, cls.log_level)
        return cls(
            redis_url=redis_url,
            redis_prefix=env_str(env, "REDIS_PREFIX", cls.redis_prefix),
            redis_socket_timeout_s=env_float(env, "REDIS_SOCKET_TIMEOUT_S",
                                             cls.redis_socket_timeout_s, minimum=0.01,
                                             maximum=60.0),
            ready_max_tick_age_s=env_float(env, "READY_MAX_TICK_AGE_S", cls.ready_max_tick_age_s,
                                           minimum=0.001),
            history_max_limit=env_int(env, "HISTORY_MAX_LIMIT", cls.history_max_limit,
                                      minimum=1, maximum=1_000_000),
            log_level=log_level,
            service_name=service,
            instance_name=env_str(env, "SERVICE_INSTANCE_NAME", f"{service}-1"),
            prometheus_multiproc_dir=env_str(env, "PROMETHEUS_MULTIPROC_DIR", "") or None,
        )
