"""The supervisord config runs the whole system; operators can stop, start and restart parts."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def supervisord(workdir: Path, redis_url: str, redis_prefix: str, *,
                feedsim_startsecs: int | None = None, **env: str) -> Iterator[System]:
    """supervisord.conf, copied beside a link to the venv so %(here)s is a private directory,
    run with `env` over the test system's free ports and key prefix; killed afterwards.
    `feedsim_startsecs` replaces feedsim's startsecs in the copy."""
    conf = (ROOT / "supervisord.conf").read_text()
    if feedsim_startsecs is not None:
        head, program, rest = conf.partition("[program:feedsim]")
        section, _, tail = rest.partition("\n[")
        assert "\nstartsecs=1\n" in section
        conf = (head + program + section.replace("\nstartsecs=1\n",
                                                 f"\nstartsecs={feedsim_startsecs}\n")
                + "\n[" + tail)
    (workdir / "supervisord.conf").write_text(conf)
    (workdir / ".venv").symlink_to(Path(sys.executable).parents[1])
    (workdir / "var" / "supervisord.d").mkdir(parents=True)
    system = System.configure(workdir, redis_url, redis_prefix, **env)
    with (workdir / "supervisord.out").open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "supervisor.supervisord", "-n", "-c",
                                 str(workdir / "supervisord.conf")], cwd=workdir,
                                env=system.env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    system.procs["supervisord"] = proc
    try:
        yield system
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        subprocess.run(["pkill", "-KILL", "-f", str(workdir)], check=False)


@pytest.fixture
def supervised(tmp_path: Path, redis_url: str, redis_prefix: str) -> Iterator[System]:
    """The whole system under supervisord, on free ports with its own key prefix."""
    with supervisord(tmp_path, redis_url, redis_prefix, FEED_TICK_RATE="50") as system:
        yield system


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


def state(system: System, name: str) -> str:
    """`name`'s state and description in `supervisorctl status` (such as "RUNNING pid 7, ...")."""
    for line in ctl(system, "status", name).splitlines():
        if line.startswith(f"{name} "):
            return line[len(name):].strip()
    return ""


def spawns(system: System, name: str) -> int:
    """How many times supervisord has started `name` so far."""
    return (system.workdir / "supervisord.out").read_text().count(f"spawned: '{name}'")


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

    # feedsim dies of a signal: supervisord starts it again (a crash, not a bad setting).
    pid = state(system, "feedsim").split("pid ")[1].split(",")[0]
    os.kill(int(pid), signal.SIGKILL)
    wait_for("feedsim restarted after SIGKILL",
             lambda: state(system, "feedsim").startswith("RUNNING") and f"pid {pid}," not in
             state(system, "feedsim"), 20)

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


def test_a_setting_feedsim_cannot_use_stops_it_for_good_and_leaves_the_rest_running(
        tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    """Exit status 2 (a setting a program cannot use) is not restarted. feedsim's config load
    takes about its 1 s startsecs here, and longer with a big replay file or on a slow machine:
    then supervisord has marked it RUNNING when it exits 2, and with autorestart=true it
    started it again and again, forever. startsecs=0 in the test's copy puts the exit past it
    whatever this machine's speed."""
    (tmp_path / "system").mkdir()
    with supervisord(tmp_path / "system", redis_url, redis_prefix, feedsim_startsecs=0,
                     FEED_SEED="abc") as system:
        wait_for("feedsim to exit", lambda: spawns(system, "feedsim") and
                 not state(system, "feedsim").startswith(("STARTING", "RUNNING", "BACKOFF")),
                 30)
        out = (system.workdir / "supervisord.out").read_text()
        assert "exited: feedsim (exit status 2; expected)" in out, out[-3000:]
        assert '"FEED_SEED=\'abc\' is not an integer"' in out, out[-3000:]
        # Not started again: as long as a restart loop takes for two more starts.
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            assert 1 == spawns(system, "feedsim"), ctl(system, "status")
            assert state(system, "feedsim").startswith("EXITED"), ctl(system, "status")
            time.sleep(0.5)
        # The bridge and the API run on, started once (the bridge waits for a feed).
        for name in ("bridge", "api"):
            assert state(system, name).startswith("RUNNING"), ctl(system, "status")
            assert 1 == spawns(system, name), ctl(system, "status")
        wait_for("the API's /health", lambda: 200 == system.http("/api/v1/health")[0], 30)
