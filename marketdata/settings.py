"""Reading settings from the environment, once, with clear errors.

Each process has a frozen config dataclass built by its own ``from_env``; these helpers turn
a missing or malformed variable into a ConfigError that names it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from marketdata.errors import ConfigError


def env_str(env: Mapping[str, str], name: str, default: str) -> str:
    """Return env[name] stripped, or `default` when unset or blank."""
    value = env.get(name, "").strip()
    return value or default


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int | None = None,
            maximum: int | None = None) -> int:
    """Return env[name] as an int within bounds, or `default` when unset."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    _check_bounds(name, value, minimum, maximum)
    return value


def env_float(env: Mapping[str, str], name: str, default: float, *, minimum: float | None = None,
              maximum: float | None = None) -> float:
    """Return env[name] as a float within bounds, or `default` when unset."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name}={raw!r} is not a finite number")
    _check_bounds(name, value, minimum, maximum)
    return value


def _check_bounds(name: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={value} is above the maximum {maximum}")


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def env_log_level(env: Mapping[str, str], default: str = "INFO") -> str:
    """Return LOG_LEVEL, upper-cased, or raise ConfigError naming the accepted levels."""
    level = env_str(env, "LOG_LEVEL", default).upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL={level!r} is not one of {', '.join(LOG_LEVELS)}")
    return level


def env_redis_url(env: Mapping[str, str], default: str) -> str:
    """Return REDIS_URL, or raise ConfigError unless it is a redis://, rediss:// or unix:// URL
    that redis-py accepts.

    redis-py is the judge: its pool is built from the URL and makes one connection object, which
    parses the host, port, database and options but opens no socket. Without this check a URL
    such as ``redis://[bad`` or ``redis://host:port/0?timeout=1`` passed and failed later, as a
    traceback where the first client was made.
    """
    url = env_str(env, "REDIS_URL", default)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        scheme = url.split("://", 1)[0] if "://" in url else ""  # no more: it may hold a password
        raise ConfigError(f"REDIS_URL must start with redis://, rediss:// or unix:// "
                          f"(got {scheme + '://' if scheme else 'no scheme'})")
    import redis  # noqa: PLC0415 -- here, not above: feedsim reads settings and needs no Redis

    try:
        redis.ConnectionPool.from_url(url).make_connection()
    except (ValueError, TypeError) as exc:  # the URL is left out: it may hold a password
        raise ConfigError(f"REDIS_URL is not a URL redis-py accepts: {exc}") from None
    return url


def environ() -> Mapping[str, str]:
    """Return the process environment (the one place config reads os.environ)."""
    return os.environ
