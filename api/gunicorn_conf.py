"""gunicorn settings for the API: ``gunicorn -c api/gunicorn_conf.py 'api.app:get_app()'``.

HTTP_HOST (default 127.0.0.1) and HTTP_PORT (default 8080) give the bind address, API_WORKERS
(default 2) the number of worker processes and API_THREADS (default 8) the request threads of
each. Requests are logged by the app's middleware, so the access log is off. With
PROMETHEUS_MULTIPROC_DIR set, workers write metrics to files there; the directory is created (and
emptied of old files) at startup and a dead worker's files are marked dead.

Why gthread: a sync worker is held by one connection from accept to answer, so a client that
opens a socket and sends half a request stalls a whole worker (until `timeout` kills it), and
API_WORKERS such clients stall the API. A gthread worker accepts in its main loop and hands each
connection to a thread: a new connection that sends nothing holds a thread for at most
IDLE_CONNECTION_WAIT_S before it waits in the poller, and a connection still sending its request
holds one thread (gunicorn sets no read timeout on it), not the worker. Requests are short (a
Redis read and a JSON render under the GIL), so more threads add room for slow clients rather
than throughput.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, NoReturn

import gunicorn
from gunicorn.workers import gthread
from prometheus_client import multiprocess

from api.config import ApiConfig
from marketdata import logs
from marketdata.errors import ConfigError
from marketdata.settings import check_listen_address, env_int, env_str, environ


def _writable_dir(name: str, path: str) -> str:
    """Create directory `path` (the setting `name`) if need be and check that files can be made
    in it; raise ConfigError naming the setting if not."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(f"{name}={path!r} cannot be created or written to: "
                          f"{exc.strerror or exc}") from None
    return path


def _refuse(error: ConfigError) -> NoReturn:
    """Say what setting is bad in one JSON line and exit 2 (supervisord does not restart that)."""
    logs.configure_for_error(_env, ApiConfig.service_name)
    logging.getLogger("api").error("bad configuration", extra={"error": str(error)})
    raise SystemExit(2) from None


_env = environ()
try:
    # Every setting the API reads, checked once here, in the master, before any worker starts:
    # a bad one is one JSON line naming it and exit status 2, as in feedsim and the bridge, not
    # a traceback from gunicorn's config loader or from every worker's boot.
    _api = ApiConfig.from_env(_env)
    _host = env_str(_env, "HTTP_HOST", "127.0.0.1")
    _port = env_int(_env, "HTTP_PORT", 8080, minimum=1, maximum=65535)
    bind = f"{_host}:{_port}"
    workers = env_int(_env, "API_WORKERS", 2, minimum=1, maximum=64)
    threads = env_int(_env, "API_THREADS", 8, minimum=1, maximum=256)
    # The workers write their metrics there: a directory that cannot be had is found here, not
    # as a FileNotFoundError traceback from on_starting or from every worker.
    _multiproc_dir = (_writable_dir("PROMETHEUS_MULTIPROC_DIR", _api.prometheus_multiproc_dir)
                      if _api.prometheus_multiproc_dir else None)
except ConfigError as _error:
    _refuse(_error)

worker_class = "gthread"
# Seconds an idle kept-alive connection stays open (it waits in the poller, holding no thread):
# enough for a client polling every second or two to reuse its connection, short enough that
# idle connections do not pile up. A stopping worker closes them within 2 s anyway.
keepalive = 5
timeout = 30
graceful_timeout = 10
accesslog = None
errorlog = "-"
loglevel = _api.log_level.lower()  # gunicorn's own lines follow LOG_LEVEL too
# gunicorn's own lines (arbiter and worker lifecycle) as the same JSON lines as the app's.
# Any logconfig_dict turns gunicorn's access log on whatever `accesslog` says (glogging's
# Logger.access checks logconfig_dict too), so "gunicorn.access" is left without a handler and
# cut off from the root's: the middleware's "api.request" line is the one line per request.
logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {
        "()": "marketdata.logs.JsonFormatter",
        "service": _api.service_name,
        "instance": _api.instance_name,
    }},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json",
                            "stream": "ext://sys.stdout"}},
    "root": {"level": _api.log_level, "handlers": ["stdout"]},
    "loggers": {
        "gunicorn.error": {"level": _api.log_level, "handlers": ["stdout"], "propagate": False},
        "gunicorn.access": {"handlers": [], "propagate": False},
    },
}
proc_name = "mds-api"
# gunicorn >= 25.1 opens a control socket at one fixed path per user by default, which two
# instances (a dev run and a test) would fight over; nothing here uses it.
control_socket_disable = True

IDLE_CONNECTION_WAIT_S = 0.1
"""How long a request thread waits for a new connection's first bytes before parking it in the
poller (gunicorn 27's gthread default: 5 s, a module constant, not a setting). Clients send their
request as soon as they connect, so a short wait costs them nothing; at 5 s, API_WORKERS x
API_THREADS connections opened ahead and left idle (a browser's preconnects, a pool) held every
thread and stalled every request for 5 s at a time. A parked connection is closed `keepalive`
seconds later if it still sends nothing. gunicorn uses the same constant to bound how long it
reads a request body the app left unread before reusing the connection; every route here is
GET, and a connection whose body comes later than that is closed, not reused."""


def on_starting(server: Any) -> None:
    """Check that the HTTP address can be listened on, then drop metrics files left by an
    earlier run (the directory exists: checked above), before any fork.

    The address is checked here, at the master's first start only, not with the settings
    above: gunicorn reads this module again on a reload (SIGHUP), while it holds the port. A
    port taken by someone else is a bad setting (one line, exit 2); gunicorn itself would retry
    for 5 s and exit 1, which supervisord restarts again and again. Not checked when gunicorn
    is handed its sockets: a new master after USR2 (the old one still listens) or systemd
    socket activation.
    """
    handed_over = bool(getattr(server, "master_pid", 0)) or "LISTEN_FDS" in os.environ
    try:
        if not handed_over:
            check_listen_address(_host, _port, host_name="HTTP_HOST", port_name="HTTP_PORT",
                                 what="gunicorn")
    except ConfigError as error:
        _refuse(error)
    if _multiproc_dir:
        for stale in Path(_multiproc_dir).glob("*.db"):
            stale.unlink(missing_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    """Mark a dead worker's live gauges dead, so /metrics stops reporting them."""
    if _multiproc_dir:
        multiprocess.mark_process_dead(worker.pid, _multiproc_dir)  # type: ignore[no-untyped-call]


def post_worker_init(worker: Any) -> None:
    """Shorten the gthread worker's wait for a new connection's first bytes (see
    IDLE_CONNECTION_WAIT_S), before the worker accepts any; say so if this gunicorn lacks it."""
    if hasattr(gthread, "DEFAULT_WORKER_DATA_TIMEOUT"):
        gthread.DEFAULT_WORKER_DATA_TIMEOUT = IDLE_CONNECTION_WAIT_S
    else:
        logging.getLogger("api").warning(
            "this gunicorn has no gthread.DEFAULT_WORKER_DATA_TIMEOUT; idle connections are "
            "handled as it does by default", extra={"gunicorn": gunicorn.__version__})
