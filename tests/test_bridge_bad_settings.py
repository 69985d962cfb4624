"""A real bridge process given a bad setting: exit status 2 and one JSON error line naming the
variable, never a traceback (README, Configuration)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.system import COMMANDS, ROOT, System

pytestmark = pytest.mark.integration


def run_bridge(workdir: Path, redis_url: str, **overrides: str) -> str:
    """Run the bridge on free ports with `overrides`; assert it stops with status 2 and one error
    line and no traceback; return that line."""
    system = System.configure(workdir, redis_url, "mds-test:bad-settings:", **overrides)
    done = subprocess.run(COMMANDS["bridge"], cwd=ROOT, env=system.env, capture_output=True,
                          text=True, timeout=20, check=False)
    output = done.stdout + done.stderr
    assert 2 == done.returncode, output
    assert "Traceback" not in output
    lines = output.splitlines()
    assert all(line.startswith("{") for line in lines), output  # JSON only: no stray stderr
    errors = [line for line in lines if '"level":"error"' in line]
    assert 1 == len(errors), output
    assert '"event":"bad configuration"' in errors[0]
    return errors[0]


@pytest.mark.parametrize("url", ["redis://[bad", "redis://127.0.0.1:port/0",
                                 "redis://127.0.0.1:6379/0?no_such_option=1"])
def test_a_redis_url_redis_py_refuses_is_a_bad_setting(tmp_path: Path, redis_url: str,
                                                       url: str) -> None:
    assert "REDIS_URL" in run_bridge(tmp_path, redis_url, REDIS_URL=url)


@pytest.mark.parametrize("name", ["FEED_PUB_ENDPOINT", "FEED_CONTROL_ENDPOINT"])
@pytest.mark.parametrize("endpoint", ["garbage", "tcp://127.0.0.1", "tcp://127.0.0.1:port"])
def test_an_endpoint_zeromq_refuses_is_a_bad_setting(tmp_path: Path, redis_url: str, name: str,
                                                     endpoint: str) -> None:
    assert f"{name}={endpoint!r}" in run_bridge(tmp_path, redis_url, **{name: endpoint})


@pytest.mark.parametrize("name", ["BRIDGE_METRICS_PORT", "GRPC_PORT"])
def test_a_port_already_taken_is_a_bad_setting(tmp_path: Path, redis_url: str, taken_port: int,
                                               name: str) -> None:
    """The metrics server and gRPC cannot listen: one line naming the port, and (run_bridge
    checks) no line of grpc core's own on stderr."""
    line = run_bridge(tmp_path, redis_url, **{name: str(taken_port)})
    assert f"{name}={taken_port}" in line and "Address already in use" in line


def test_a_grpc_host_that_does_not_resolve_is_a_bad_setting(tmp_path: Path,
                                                            redis_url: str) -> None:
    assert "GRPC_HOST='nohost.invalid'" in run_bridge(tmp_path, redis_url,
                                                      GRPC_HOST="nohost.invalid")
