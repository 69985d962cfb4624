"""Start the real processes (feedsim, bridge, gunicorn) on free ports for integration tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from marketdata import marketdata_pb2_grpc as pb_grpc
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "feedsim": [sys.executable, "-m", "feedsim"],
    "bridge": [sys.executable, "-m", "bridge"],
    "api": [sys.executable, "-m", "gunicorn", "-c", "python:api.gunicorn_conf",
            "api.app:get_app()"],
}
T = TypeVar("T")
DEFAULT_SYMBOLS = ["BTC-USD", "ETH-USD", "USDT-USD", "BTC-ETH", "SOL-USD"]  # feedsim/symbols.toml


@contextlib.contextmanager
def running(workdir: Path, redis_url: str, names: tuple[str, ...], **env: str) -> Iterator[System]:
    """Start `names` with their own key prefix; wait until they serve; kill and clean up after."""
    prefix = f"mds-test:{workdir.name}-{time.monotonic_ns()}:"
    system = System.configure(workdir, redis_url, prefix, **env)
    system.start(*names)
    try:
        if "bridge" in names:
            system.wait_grpc_serving()
        if "api" in names:
            system.wait_http_ready()
        yield system
    finally:
        system.kill_all()
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 20.0) -> T:
    """Poll `check` until it returns a truthy value; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (OSError, grpc.RpcError, ValueError) as exc:
            last_error = exc
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last error: {last_error})")


@dataclass
class System:
    """A running set of processes sharing one environment."""

    workdir: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @classmethod
    def configure(cls, workdir: Path, redis_url: str, prefix: str, **overrides: str) -> System:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FEED_", "GRPC_"))}
        metrics_dir = workdir / "prometheus"
        metrics_dir.mkdir(parents=True, exist_ok=True)
        env.update({
            "FEED_PUB_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
            "FEED_CONTROL_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
            "GRPC_PORT": str(free_port()),
            "HTTP_PORT": str(free_port()),
            "FEED_METRICS_PORT": str(free_port()),
            "BRIDGE_METRICS_PORT": str(free_port()),
            "REDIS_URL": redis_url,
            "REDIS_PREFIX": prefix,
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(overrides)
        return cls(workdir, env)

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.env['GRPC_PORT']}"

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.env['HTTP_PORT']}"

    def start(self, *names: str) -> None:
        for name in names:
            with (self.workdir / f"{name}.log").open("ab") as log:  # the child keeps its copy
                self.procs[name] = subprocess.Popen(COMMANDS[name], cwd=ROOT, env=self.env,
                                                    stdout=log, stderr=subprocess.STDOUT,
                                                    start_new_session=True)

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Signal one process and return its exit code."""
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError(
                f"{name} did not exit within {timeout} s of signal {sig}") from None

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self.procs.clear()

    def logs(self, name: str) -> list[dict[str, Any]]:
        """Return the JSON log lines of `name` (other lines are skipped)."""
        lines = []
        path = self.workdir / f"{name}.log"
        for raw in path.read_text(errors="replace").splitlines() if path.exists() else []:
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue
        return lines

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.grpc_target)

    def stub(self, channel: grpc.Channel) -> pb_grpc.MarketDataServiceStub:
        return pb_grpc.MarketDataServiceStub(channel)

    def wait_grpc_serving(self, timeout: float = 20.0) -> None:
        with self.channel() as channel:
            health = health_pb2_grpc.HealthStub(channel)

            def serving() -> bool:
                reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

            wait_for("gRPC SERVING", serving, timeout)

    def http(self, path: str, timeout: float = 5.0) -> tuple[int, Any]:
        """GET `path`; return (status, parsed JSON or text)."""
        try:
            with urllib.request.urlopen(self.http_base + path, timeout=timeout) as response:
                status, body = response.status, response.read()
                content_type = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
            content_type = exc.headers.get("Content-Type", "")
        if "json" in content_type:
            return status, json.loads(body)
        return status, body.decode()

    def wait_http_ready(self, timeout: float = 20.0) -> None:
        wait_for("REST ready", lambda: self.http("/api/v1/ready")[0] == 200, timeout)
