"""feedsim refuses settings it cannot use at start-up: one JSON error line, exit status 2.

Each case runs the real `python -m feedsim` against real sockets (a port held by a listening
socket of the test's own). Before the fix a failed bind left a ZeroMQ socket open, so
context.term() waited forever and feedsim never exited; a taken metrics port was a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import free_port
from tests.system import ROOT

pytestmark = pytest.mark.integration

EXIT_TIMEOUT_S = 30.0  # feedsim loads its config in ~1 s; a hang is what this catches


def run_feedsim(**overrides: str) -> tuple[int, list[str]]:
    """Run feedsim on free ports with `overrides`; return its exit status and output lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
    env.update({
        "FEED_PUB_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "FEED_CONTROL_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "FEED_METRICS_PORT": str(free_port()),
        "FEED_START_WAIT_S": "0",
        "PYTHONUNBUFFERED": "1",
        **overrides,
    })
    try:
        done = subprocess.run([sys.executable, "-m", "feedsim"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=EXIT_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        pytest.fail(f"feedsim still running {EXIT_TIMEOUT_S} s after {overrides}:\n{out}")
    return done.returncode, (done.stdout + done.stderr).splitlines()


def the_one_error(lines: list[str]) -> dict[str, object]:
    """The output's only line: a JSON error (no traceback, nothing else)."""
    assert 1 == len(lines), "\n".join(lines)
    record = json.loads(lines[0])
    assert "error" == record["level"], record
    return dict(record)


@pytest.mark.parametrize("variable", ["FEED_PUB_ENDPOINT", "FEED_CONTROL_ENDPOINT"])
def test_an_endpoint_in_use_is_one_error_line_and_exit_2(variable: str, taken_port: int) -> None:
    endpoint = f"tcp://127.0.0.1:{taken_port}"
    status, lines = run_feedsim(**{variable: endpoint})

    assert 2 == status, "\n".join(lines)
    record = the_one_error(lines)
    assert {"event": "cannot bind", "variable": variable, "value": endpoint}.items() \
        <= record.items()
    assert f"{variable}='{endpoint}'" in str(record["error"])
    assert "Address already in use" in str(record["error"])


@pytest.mark.parametrize(("variable", "endpoint"), [
    ("FEED_PUB_ENDPOINT", "garbage"),
    ("FEED_CONTROL_ENDPOINT", "nope"),
    ("FEED_CONTROL_ENDPOINT", "nope://127.0.0.1:5556"),
])
def test_an_invalid_endpoint_is_one_error_line_and_exit_2(variable: str, endpoint: str) -> None:
    status, lines = run_feedsim(**{variable: endpoint})

    assert 2 == status, "\n".join(lines)
    record = the_one_error(lines)
    assert {"event": "cannot bind", "variable": variable, "value": endpoint}.items() \
        <= record.items()
    assert "transport://address" in str(record["error"])


def test_a_metrics_port_in_use_is_one_error_line_and_exit_2(taken_port: int) -> None:
    status, lines = run_feedsim(FEED_METRICS_PORT=str(taken_port))

    assert 2 == status, "\n".join(lines)
    record = the_one_error(lines)
    assert {"event": "cannot bind", "variable": "FEED_METRICS_PORT",
            "value": str(taken_port)}.items() <= record.items()
    assert "Address already in use" in str(record["error"])


def test_a_malformed_setting_is_one_error_line_and_exit_2() -> None:
    """The convention the bind errors follow (it held before them)."""
    status, lines = run_feedsim(FEED_SEED="abc")

    assert 2 == status, "\n".join(lines)
    record = the_one_error(lines)
    assert "bad configuration" == record["event"]
    assert "FEED_SEED" in str(record["error"])
