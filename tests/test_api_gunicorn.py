"""The API under a real gunicorn, over history written to the real Redis by the bridge's writer."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from marketdata import wire
from marketdata.layout import Keys
from tests.conftest import free_port
from tests.test_store_contract import BTC, ETH, make_ticks, split, write_history

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 8.0
MS = 1_000_000
SLOW_CLIENTS = 5
"""More than the fixture's 2 workers, fewer than a worker's default 8 threads: even all on one
worker leave it a thread free."""

IDLE_CLIENTS = 40
"""More connections than the fixture's 2 workers x 8 threads: 2.5 times as many."""

pytestmark = pytest.mark.integration

# No proxy, even if the environment names one: the server is on 127.0.0.1.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Answer:
    """One HTTP answer."""

    status: int
    headers: dict[str, str]
    """Header names in lower case."""
    body: bytes

    def json(self) -> Any:
        """Return the body parsed as JSON."""
        return orjson.loads(self.body)


def _lower(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


@dataclass(frozen=True)
class Server:
    """A running gunicorn serving the API, and the ticks it serves."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    btc_ts: list[int]

    def get(self, path: str, method: str = "GET", headers: dict[str, str] | None = None) -> Answer:
        """Send one request and return the answer, whatever its status."""
        request = urllib.request.Request(self.base_url + path, method=method,
                                         headers=headers or {})
        try:
            with _opener.open(request, timeout=5) as response:
                return Answer(response.status, _lower(response.headers.items()), response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return Answer(exc.code, _lower(exc.headers.items()), exc.read())

    def logs(self) -> str:
        """Return the tail of gunicorn's and the app's output, for failure messages."""
        return self.log_path.read_text(errors="replace")[-4000:]


def fill_redis(redis_url: str, prefix: str) -> list[int]:
    """Publish BTC and ETH and write their recent ticks as the bridge does; return BTC's times."""
    keys = Keys(prefix)
    now = time.time_ns()
    btc_ts = [now - 3_000 * MS + i * 100 * MS for i in range(25)]
    batches = [*split("BTC-USD", make_ticks(btc_ts), [5, 6, 17], session=21),
               wire.TickBatch("ETH-USD", 21, make_ticks([now - 500 * MS], 101))]
    asyncio.run(write_history(redis_url, keys, batches))
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(keys.instruments, orjson.dumps([BTC.to_dict(), ETH.to_dict()]))
    finally:
        client.close()
    return btc_ts


@pytest.fixture
def server(redis_url: str, redis_prefix: str, tmp_path: Path) -> Iterator[Server]:
    """Start gunicorn with two workers on a free port; kill it at the end whatever happened."""
    btc_ts = fill_redis(redis_url, redis_prefix)
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": redis_prefix,
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(port),
        "API_WORKERS": "2",
        "READY_MAX_TICK_AGE_S": "60",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "SERVICE_INSTANCE_NAME": "api-it",
    }
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "api/gunicorn_conf.py", "api.app:get_app()"],
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(process, f"http://127.0.0.1:{port}", log_path, btc_ts)
    try:
        wait_until_serving(server)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: master and workers
        process.wait(timeout=10)


def wait_until_serving(server: Server) -> None:
    """Poll /api/v1/health until it answers 200; fail with the logs after START_TIMEOUT_S."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"gunicorn exited with {server.process.returncode}:\n{server.logs()}")
        try:
            if server.get("/api/v1/health").status == 200:
                return
        except OSError:  # not listening yet
            pass
        time.sleep(0.1)
    pytest.fail(f"gunicorn did not answer within {START_TIMEOUT_S} s:\n{server.logs()}")


def requests_counted(server: Server, route: str, status: str) -> float:
    """Return api_requests_total for GET `route` and `status`, summed over the workers."""
    answer = server.get("/metrics")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/plain")
    total = 0.0
    for family in text_string_to_metric_families(answer.body.decode()):
        for sample in family.samples:
            if sample.name == "api_requests_total" and sample.labels == {
                    "method": "GET", "route": route, "status": status}:
                total += sample.value
    return total


def test_api_under_gunicorn(server: Server) -> None:
    health = server.get("/api/v1/health", headers={"X-Request-ID": "it-1"})
    assert health.status == 200
    assert health.json() == {"status": "ok", "service": "api", "instance": "api-it"}
    assert health.headers["x-request-id"] == "it-1"

    ready = server.get("/api/v1/ready")
    assert ready.status == 200, ready.body
    assert ready.json()["status"] == "ready"
    assert set(ready.json()["checks"]["ticks"]["symbols"]) == {"BTC-USD", "ETH-USD"}

    assert [s["symbol"] for s in server.get("/api/v1/symbols").json()["symbols"]] == [
        "BTC-USD", "ETH-USD"]

    for spelling in ("BTC-USD", "BTC%2FUSD", "btcusd"):
        current = server.get(f"/api/v1/prices/{spelling}/current")
        assert current.status == 200, (spelling, current.body)
        body = current.json()
        assert (body["symbol"], body["seq"], body["session"]) == ("BTC-USD", 25, 21)
        assert body["ts_ns"] == server.btc_ts[-1]
        assert current.headers["content-type"] == "application/json"

    prices = server.get("/api/v1/prices").json()["prices"]
    assert [(p["symbol"], p["seq"]) for p in prices] == [("BTC-USD", 25), ("ETH-USD", 101)]

    start_ms = server.btc_ts[4] // MS  # inside the first entry; the next two entries follow
    history = server.get(f"/api/v1/prices/BTC-USD/history?start={start_ms}&limit=4")
    assert history.status == 200, history.body
    assert [t["seq"] for t in history.json()["ticks"]] == [5, 6, 7, 8]
    latest = server.get("/api/v1/prices/BTC%2FUSD/history?limit=3").json()
    assert [t["seq"] for t in latest["ticks"]] == [23, 24, 25]
    assert latest["count"] == 3

    unknown = server.get("/api/v1/prices/XYZ-USD/current")
    assert unknown.status == 404
    assert unknown.json() == {"error": {
        "status": 404, "code": "unknown_symbol",
        "message": "unknown symbol 'XYZ-USD'; known symbols: BTC-USD, ETH-USD"}}

    bad = server.get("/api/v1/prices/BTC-USD/history?limit=0")
    assert bad.status == 400
    assert bad.json()["error"]["code"] == "invalid_parameter"
    assert bad.json()["error"]["message"].startswith("limit: ")

    no_route = server.get("/api/v1/nope")
    assert (no_route.status, no_route.json()["error"]["code"]) == (404, "not_found")
    brew = server.get("/api/v1/health", method="BREW")
    assert (brew.status, brew.json()["error"]["code"]) == (400, "bad_request")
    post = server.get("/api/v1/health", method="POST")
    assert (post.status, post.json()["error"]["code"]) == (405, "method_not_allowed")

    # Both workers' counts are added up from the multiprocess directory.
    current_route = "/api/v1/prices/{symbol}/current"
    assert requests_counted(server, current_route, "200") == 3
    assert requests_counted(server, current_route, "404") == 1
    assert requests_counted(server, "unmatched", "404") == 1


def test_sigterm_stops_gunicorn_cleanly(server: Server) -> None:
    assert server.get("/api/v1/prices/BTC-USD/current").status == 200
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=STOP_TIMEOUT_S) == 0, server.logs()
    assert time.monotonic() - started < 5.0
    lines = [line for line in server.logs().splitlines() if line.strip()]
    events = [orjson.loads(line) for line in lines]  # gunicorn's own lines are JSON too
    assert {"event": "Shutting down: Master", "logger": "gunicorn.error", "service": "api",
            "instance": "api-it"}.items() <= next(
        e for e in events if e["event"] == "Shutting down: Master").items()


def health_despite(server: Server, what: str) -> Answer:
    """GET /api/v1/health within the client's timeout, or fail saying `what` was going on."""
    try:
        return server.get("/api/v1/health")
    except OSError as exc:
        pytest.fail(f"/api/v1/health did not answer with {what}: {exc!r}")


def test_idle_and_half_sent_connections_do_not_stall_the_api(server: Server) -> None:
    """Clients that connect and send nothing, or half a request, each hold a thread, not a
    worker: the API answers others meanwhile, and serves the slow request once it is complete."""
    address = server.base_url.removeprefix("http://").split(":")
    with ExitStack() as stack:
        half_sent = []
        for i in range(SLOW_CLIENTS):
            conn = stack.enter_context(socket.create_connection((address[0], int(address[1]))))
            conn.settimeout(5)
            if i % 2 == 0:  # the others stay idle
                conn.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                half_sent.append(conn)
        assert health_despite(server, f"{SLOW_CLIENTS} slow clients connected").status == 200
        assert server.get("/api/v1/prices/BTC-USD/current").status == 200

        half_sent[0].sendall(b"Connection: close\r\n\r\n")
        answer = b""
        while chunk := half_sent[0].recv(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


def test_connections_left_idle_do_not_stall_the_api(server: Server) -> None:
    """Connections opened ahead and left idle (a browser's preconnects, a pool) hold a thread
    only briefly: with more of them than the API has threads, a request is still answered within
    the client's 5 s timeout. gunicorn's own 5 s wait per connection stalled it for 5 s a round."""
    host, port = server.base_url.removeprefix("http://").split(":")
    with ExitStack() as stack:
        for _ in range(IDLE_CLIENTS):
            stack.enter_context(socket.create_connection((host, int(port))))
        assert health_despite(server, f"{IDLE_CLIENTS} idle connections open").status == 200


def test_metrics_add_up_over_workers_and_threads(server: Server) -> None:
    """Requests answered concurrently by several threads of several workers are all counted."""
    route = "/api/v1/symbols"
    before = requests_counted(server, route, "200")
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(lambda _: server.get(route).status, range(64)))
    assert [200] * 64 == statuses
    assert before + 64 == requests_counted(server, route, "200")


def test_each_request_is_logged_once(server: Server) -> None:
    """The app's middleware logs every request; gunicorn's access log adds no second line."""
    path = f"/api/v1/no-such-route-{uuid.uuid4().hex}"
    assert server.get(path, headers={"X-Request-ID": "it-once"}).status == 404
    server.process.send_signal(signal.SIGTERM)  # the workers flush every line before they exit
    assert server.process.wait(timeout=STOP_TIMEOUT_S) == 0, server.logs()
    lines = [line for line in server.log_path.read_text().splitlines() if path in line]
    assert 1 == len(lines), lines
    assert {"logger": "api.request", "event": "request", "path": path, "status": 404,
            "cid": "it-once"}.items() <= orjson.loads(lines[0]).items()


@pytest.mark.parametrize("config", ["api/gunicorn_conf.py", "python:api.gunicorn_conf"])
@pytest.mark.parametrize("setting", ["READY_MAX_TICK_AGE_S=-1", "REDIS_URL=ftp://nowhere",
                                     "REDIS_URL=redis://[bad", "API_WORKERS=0", "HTTP_PORT=http"])
def test_a_bad_setting_stops_gunicorn_with_one_line_naming_it(config: str, setting: str) -> None:
    """Checked once in the master before any worker starts, whichever way the config is named
    (supervisord uses the module form): exit status 2 and one error line, not a traceback."""
    name, value = setting.split("=", 1)
    assert_stops_on_bad_setting(config, name, value)


@pytest.mark.parametrize("config", ["api/gunicorn_conf.py", "python:api.gunicorn_conf"])
def test_a_metrics_dir_that_cannot_be_made_stops_gunicorn_with_one_line(config: str,
                                                                        tmp_path: Path) -> None:
    """Found in the master at config check time, not as a FileNotFoundError traceback (the
    parent is a file: no directory can be made there, even by root)."""
    (tmp_path / "file").write_text("")
    assert_stops_on_bad_setting(config, "PROMETHEUS_MULTIPROC_DIR",
                                str(tmp_path / "file" / "prometheus"))


@pytest.mark.parametrize("config", ["api/gunicorn_conf.py", "python:api.gunicorn_conf"])
def test_a_taken_http_port_stops_gunicorn_at_once_with_one_line(config: str,
                                                                taken_port: int) -> None:
    """gunicorn alone retries for 5 s and exits 1, which supervisord restarts for ever."""
    output = assert_stops_on_bad_setting(config, "HTTP_PORT", str(taken_port))
    assert "Connection in use" not in output  # refused before gunicorn's own tries


def test_log_level_applies_to_gunicorns_own_lines(tmp_path: Path) -> None:
    """LOG_LEVEL=WARNING: no 'Booting worker' or 'Listening at' info lines from gunicorn."""
    port = free_port()
    env = {**os.environ, "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(port), "API_WORKERS": "1",
           "LOG_LEVEL": "WARNING", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus")}
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "api/gunicorn_conf.py", "api.app:get_app()"],
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(process, f"http://127.0.0.1:{port}", log_path, 0)
    try:
        wait_until_serving(server)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=STOP_TIMEOUT_S) == 0, server.logs()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    lines = [orjson.loads(line) for line in log_path.read_text().splitlines()
             if line.startswith("{")]
    assert not [line for line in lines if line["level"] in ("debug", "info")], lines


def assert_stops_on_bad_setting(config: str, name: str, value: str) -> str:
    """gunicorn with `config` and `name`=`value` exits 2 with one error line naming `name`;
    return its output."""
    env = {**os.environ, "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(free_port()), name: value}
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", config, "api.app:get_app()"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=False)
    output = done.stdout + done.stderr
    assert 2 == done.returncode, output
    errors = [line for line in output.splitlines() if '"level":"error"' in line]
    assert 1 == len(errors), output
    assert name in errors[0]
    assert "Traceback" not in output
    return output
