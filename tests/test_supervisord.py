"""The supervisord config runs the whole system; operators can stop, start and restart parts."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis

from marketdata import marketdata_pb2 as pb
from tests.system import ROOT, System, wait_for

pytestmark = pytest.mark.integration

PROGRAMS = ("api", "bridge", "feedsim")


@pytest.fixture
def supervised(tmp_path: Path, redis_url: str, redis_prefix: str) -> Iterator[System]:
    """supervisord.conf, copied beside a link to the venv so %(here)s is a private directory."""
    shutil.copy(ROOT / "supervisord.conf", tmp_path / "supervisord.conf")
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])
    (tmp_path / "var" / "supervisord.d").mkdir(parents=True)
    system = System.configure(tmp_path, redis_url, redis_prefix, FEED_TICK_RATE="50")
    with (tmp_path / "supervisord.out").open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "supervisor.supervisord", "-n", "-c",
                                 str(tmp_path / "supervisord.conf")], cwd=tmp_path,
                                env=system.env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    system.procs["supervisord"] = proc
    try:
        yield system
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        subprocess.run(["pkill", "-KILL", "-f", str(tmp_path)], check=False)


def ctl(system: System, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "supervisor.supervisorctl", "-c",
         str(system.workdir / "supervisord.conf"), *args],
        capture_output=True, text=True, timeout=60, check=False)
    return result.stdout


def all_running(system: System) -> bool:
    status = ctl(system, "status")
    return all(f"{name} " in status and "RUNNING" in status.split(f"{name} ")[1].split("\n")[0]
               for name in PROGRAMS)


def current(system: System, symbol: str = "BTC-USD") -> dict[str, object]:
    status, body = system.http(f"/api/v1/prices/{symbol}/current")
    assert 200 == status, body
    return dict(body)


def test_supervisord_runs_everything_and_parts_restart(supervised: System,
                                                       redis_client: redis.Redis) -> None:
    system = supervised
    wait_for("all programs RUNNING", lambda: all_running(system), 30)
    system.wait_http_ready(30)
    first = current(system)
    wait_for("the price to move", lambda: current(system)["seq"] != first["seq"], 10)

    # feedsim restarts: a new session; the bridge follows it without being touched.
    assert "feedsim: started" in ctl(system, "restart", "feedsim")
    wait_for("ticks of the new session",
             lambda: current(system)["session"] != first["session"], 20)

    # The bridge stops: REST keeps answering from Redis; after start, streams work again.
    assert "bridge: stopped" in ctl(system, "stop", "bridge")
    status, _ = system.http("/api/v1/prices/BTC-USD/current")
    assert 200 == status
    assert "bridge: started" in ctl(system, "start", "bridge")
    system.wait_grpc_serving(30)
    with system.channel() as channel:
        update = next(system.stub(channel).StreamPrices(
            pb.StreamPricesRequest(symbols=["BTC-USD"]), timeout=10))
    assert "BTC-USD" == update.symbol

    # The API restarts and answers again.
    assert "api: started" in ctl(system, "restart", "api")
    system.wait_http_ready(30)
    before = current(system)["seq"]
    wait_for("the price to move after restarts",
             lambda: int(str(current(system)["seq"])) > int(str(before)), 10)

    # SIGTERM to supervisord stops everything cleanly.
    supervisord = system.procs.pop("supervisord")
    supervisord.send_signal(signal.SIGTERM)
    assert 0 == supervisord.wait(40)
    out = (system.workdir / "supervisord.out").read_text()
    for name in PROGRAMS:
        assert f"stopped: {name} (exit status 0)" in out, out[-3000:]


def test_grpc_clients_get_unavailable_then_reconnect_after_bridge_restart(
        supervised: System) -> None:
    system = supervised
    wait_for("all programs RUNNING", lambda: all_running(system), 30)
    system.wait_grpc_serving(30)
    with system.channel() as channel:
        stream = system.stub(channel).StreamTicks(pb.StreamTicksRequest(), timeout=60)
        next(stream)
        ctl(system, "restart", "bridge")
        with pytest.raises(grpc.RpcError) as info:
            for _ in stream:
                pass
        assert grpc.StatusCode.UNAVAILABLE == info.value.code()
    system.wait_grpc_serving(30)
    started = time.monotonic()
    with system.channel() as channel:
        message = next(system.stub(channel).StreamTicks(pb.StreamTicksRequest(), timeout=10))
    assert message.batches[0].seq and time.monotonic() - started < 10


def test_a_second_make_run_refuses_before_touching_the_running_system(supervised: System
                                                                       ) -> None:
    """`make run` where the system already runs stops at once: before this check it cleared
    var/ (the running API's metrics files) and only then failed on the taken ports."""
    system = supervised
    workdir = system.workdir
    wait_for("supervisord to answer", lambda: ctl(system, "pid").strip().isdigit() or None, 30)
    shutil.copytree(ROOT / "scripts", workdir / "scripts")
    metrics = workdir / "var" / "prometheus"
    metrics.mkdir(parents=True, exist_ok=True)
    (metrics / "counter_1.db").write_bytes(b"the running API's")
    env = {**system.env, "VENV": str(workdir / ".venv"), "PROMETHEUS_MULTIPROC_DIR": str(metrics)}

    second = subprocess.run(["bash", str(workdir / "scripts" / "run.sh")], cwd=workdir, env=env,
                            capture_output=True, text=True, timeout=60, check=False)

    assert 1 == second.returncode, second.stdout + second.stderr
    assert "already running" in second.stderr
    assert (metrics / "counter_1.db").read_bytes() == b"the running API's"
    assert system.procs["supervisord"].poll() is None
