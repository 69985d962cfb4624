"""Reading settings from the environment, once, with clear errors.

Each process has a frozen config dataclass built by its own ``from_env``; these helpers turn
a missing or malformed variable into a ConfigError that names it.
"""

from __future__ import annotations

import errno
import math
import os
import socket
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
    except (ValueError, TypeError, redis.RedisError) as exc:
        # Neither the URL nor redis-py's message: a password with an unescaped / # or ? is
        # parsed as the port, and the message would quote it.
        raise ConfigError(f"REDIS_URL is not a URL redis-py accepts ({type(exc).__name__}): "
                          "check the host, port, database number and options, and "
                          "percent-encode / # ? @ in a password") from None
    return url


def environ() -> Mapping[str, str]:
    """Return the process environment (the one place config reads os.environ)."""
    return os.environ


_NO_SUCH_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}
"""Resolver answers that say the name does not exist: a bad setting, not a passing failure."""


def check_listen_address(host: str, port: int, *, host_name: str, port_name: str,
                         what: str) -> None:
    """Raise ConfigError naming `host_name` when `host` does not resolve or is no address of
    this host, or `port_name` when every address it resolves to has `port` taken (or not ours
    to take).

    Tried with plain sockets bound with SO_REUSEADDR, before the server (`what`: grpc,
    gunicorn) does, so the error says why in one line, where grpc core would print a line of
    its own (not JSON) and gunicorn retry for 5 s and exit 1. Without SO_REUSEPORT, which grpc
    sets: a second bridge on a taken port, which grpc would let share it, is refused. A
    resolver failing for now, or any other failure, is left to the server. Port 0 (any free
    port) is not tried.
    """
    try:
        found = socket.getaddrinfo(host.strip("[]"), port or None, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        if exc.errno not in _NO_SUCH_NAME:
            return  # a resolver failing for now (EAI_AGAIN, ...): the server tries, and fails
        raise ConfigError(f"{host_name}={host!r} does not resolve: {exc.strerror}") from None
    if not port:
        return
    refusals: list[OSError] = []
    for family, kind, proto, _, sockaddr in found:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(sockaddr)
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
                refusals.append(exc)
                continue
        return  # free (or failing in a way the server may get round): the server decides
    if not refusals:
        return
    setting = (f"{host_name}={host!r}" if refusals[0].errno == errno.EADDRNOTAVAIL
               else f"{port_name}={port}")
    raise ConfigError(f"{setting}: {what} cannot listen on {host}:{port}: "
                      f"{refusals[0].strerror}")
