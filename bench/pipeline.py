#!/usr/bin/env python3
"""Pipeline benchmark: the real processes on this machine, each figure beside a bare ceiling.

Run from the repository root::

    .venv/bin/python bench/pipeline.py            # full run, about 3 minutes
    .venv/bin/python bench/pipeline.py --quick    # short run, under a minute
    .venv/bin/python bench/pipeline.py --only grpc
    .venv/bin/python bench/pipeline.py --json > figures.json   # table on stderr, JSON on stdout

Sections (``--only NAME``): engine, zmq, grpc, history, rest, latency. Every section starts the
processes it needs on free loopback ports (via ``tests.system.System``), runs for a bounded time and
kills everything it started in ``finally``. Redis keys go under ``mds-bench:<random>:`` and are
deleted afterwards. Client and ceiling processes are this same file run with ``--worker NAME``.
See bench/README.md for what each figure means and how it is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import numpy as np
import redis
import zmq

from feedsim.config import FeedConfig, load_symbols
from feedsim.engine import NS, Feed
from marketdata import marketdata_pb2 as pb
from marketdata import marketdata_pb2_grpc as pb_grpc
from marketdata import wire

ROOT = Path(__file__).resolve().parents[1]

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SECTIONS = ("engine", "zmq", "grpc", "history", "rest", "latency")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    """Progress goes to stderr, so stdout stays the report (or the JSON)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Durations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How long each measurement window is (seconds)."""

    warm: float
    engine: float
    zmq_bare: float
    zmq: float
    grpc_bare: float
    grpc: float
    history: float
    rest: int
    latency: float
    latency_side: float
    latency_rounds: int
    redis_bare: float


FULL = Plan(warm=1.0, engine=1.5, zmq_bare=3.0, zmq=5.0, grpc_bare=3.0, grpc=5.0, history=8.0,
            rest=10, latency=10.0, latency_side=10.0, latency_rounds=3, redis_bare=2.0)
QUICK = Plan(warm=0.5, engine=0.3, zmq_bare=0.8, zmq=1.2, grpc_bare=0.7, grpc=1.5, history=2.0,
             rest=2, latency=5.0, latency_side=2.5, latency_rounds=1, redis_bare=0.5)

# Rates (ticks/s per symbol; the feed has 2 symbols).
ZMQ_RATES = (100_000, 1_000_000)  # 1,000,000 is FEED_TICK_RATE's maximum: the feed's own limit
GRPC_TARGET_RATE = 50_000         # 2 x 50k = the 100,000 ticks/s to one stream
GRPC_MAX_RATE = 500_000           # 2 x 500k: more than the bridge can send to one stream
GRPC_FANOUT_RATE = 5_000          # 10 streams x 2 x 5k = 100,000 ticks/s delivered in all
GRPC_FANOUT_MAX_RATE = 50_000     # 10 streams x 2 x 50k: more than the bridge can fan out
BIG_QUEUE = "50000000"            # STREAM_QUEUE_TICKS for the overload runs: measure, don't cut
HISTORY_RATE = 50_000             # 2 x 50k = the 100,000 ticks/s
HISTORY_HIGH_RATE = 1_000_000     # 2 x 1M: FEED_TICK_RATE's maximum
LATENCY_RATE = 5_000              # 2 x 5k = 10,000 ticks/s
N_SYMBOLS = 2
SYMBOLS_FILE = Path(__file__).with_name("symbols.toml")  # the two symbols every figure assumes
TICK_TOPICS = [b"BTC-USD:tick", b"ETH-USD:tick"]  # its two symbols' tick topics (wire.topic)


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table."""

    section: str
    figure: str
    value: float | None
    unit: str
    ceiling: float | None = None
    ceiling_what: str = ""
    target: str = ""
    passed: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.ceiling:
            return None
        return self.value / self.ceiling


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit in ("ms",):
        return f"{value:.3f}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def render_table(report: Report) -> str:
    headers = ("#", "figure", "value", "unit", "ceiling (bare library)", "ratio", "target",
               "result")
    lines: list[tuple[str, ...]] = []
    for i, row in enumerate(report.rows, 1):
        ceiling = "-" if row.ceiling is None else f"{fmt(row.ceiling, row.unit)} {row.ceiling_what}"
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}"
        result = {True: "PASS", False: "FAIL", None: ""}[row.passed]
        lines.append((str(i), row.figure, fmt(row.value, row.unit), row.unit, ceiling.strip(),
                      ratio, row.target, result))
    widths = [max(len(h), *(len(r[c]) for r in lines)) if lines else len(h)
              for c, h in enumerate(headers)]
    right = {0, 2, 5}

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    out = [line(headers), line(tuple("-" * w for w in widths))]
    section = None
    for row, cells in zip(report.rows, lines, strict=True):
        if section is not None and row.section != section:
            out.append("")
        section = row.section
        out.append(line(cells))
    notes = [(i, r.note) for i, r in enumerate(report.rows, 1) if r.note]
    if notes:
        out.append("")
        out.append("notes:")
        out.extend(f"  {i:>2}. {note}" for i, note in notes)
    if report.errors:
        out.append("")
        out.append("sections that failed to run:")
        out.extend(f"  {name}: {err}" for name, err in report.errors.items())
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Process helpers
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


class Procs:
    """Every helper process this run started, so each section can kill its own in `finally`."""

    def __init__(self) -> None:
        self.live: list[subprocess.Popen[bytes]] = []

    def spawn(self, cmd: list[str], *, env: dict[str, str] | None = None,
              log_path: Path | None = None, cwd: Path = ROOT,
              stdout: int | None = subprocess.PIPE) -> subprocess.Popen[bytes]:
        out: Any = stdout
        if log_path is not None:
            out = log_path.open("ab")
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT if log_path is not None else None,
                                start_new_session=True)
        if log_path is not None:
            out.close()
        self.live.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if proc in self.live:
            self.live.remove(proc)

    def kill_all(self) -> None:
        for proc in list(self.live):
            self.kill(proc)


PROCS = Procs()


def spawn_worker(name: str, args: dict[str, Any]) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
           "--worker-args", json.dumps(args)]
    return PROCS.spawn(cmd)


def worker_result(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    """Wait for a worker and parse the JSON line it prints last."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        PROCS.kill(proc)
        raise RuntimeError(f"worker {proc.args[3]} did not finish within {timeout:.0f} s") from None
    finally:
        if proc in PROCS.live and proc.poll() is not None:
            PROCS.live.remove(proc)
    lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker {proc.args[3]} exited {proc.returncode}: "
                           f"{out.decode(errors='replace')[-500:]}")
    return dict(json.loads(lines[-1]))


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (ppid, cpu seconds) for every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                raw = f.read().decode(errors="replace")
        except OSError:
            continue
        rest = raw[raw.rfind(")") + 2:].split()
        table[int(entry)] = (int(rest[1]), (int(rest[11]) + int(rest[12])) / CLK_TCK)
    return table


def tree_cpu(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each named process and its descendants."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out = {}
    for name, root in pids.items():
        total, stack = 0.0, [root]
        while stack:
            pid = stack.pop()
            if pid in table:
                total += table[pid][1]
            stack.extend(children.get(pid, []))
        out[name] = total
    return out


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already in user
    return total - idle, total


class CpuWindow:
    """CPU % of named processes (and of the whole machine) between start() and stop()."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {k: v for k, v in pids.items() if v}
        self.t0 = 0.0
        self.c0: dict[str, float] = {}
        self.m0 = (0, 0)
        self.percent: dict[str, float] = {}

    def start(self) -> None:
        self.t0, self.c0, self.m0 = time.monotonic(), tree_cpu(self.pids), machine_ticks()

    def stop(self) -> dict[str, float]:
        c1, dt = tree_cpu(self.pids), time.monotonic() - self.t0
        m1 = machine_ticks()
        alive = {pid for pid in self.pids.values() if os.path.exists(f"/proc/{pid}")}
        self.percent = {k: round(100 * (c1[k] - self.c0.get(k, 0.0)) / dt, 1)
                        for k in c1 if self.pids[k] in alive}
        busy, total = m1[0] - self.m0[0], m1[1] - self.m0[1]
        if total > 0:
            self.percent["machine"] = round(100 * (os.cpu_count() or 1) * busy / total, 1)
        return self.percent


def with_worker_cpu(percent: dict[str, float], name: str, result: dict[str, Any]
                    ) -> dict[str, float]:
    """Use the CPU % a worker measured itself (it has exited by the time the window closes)."""
    out = {k: v for k, v in percent.items() if k != "machine"}
    if result.get("cpu_pct") is not None:
        out[name] = result["cpu_pct"]
    if "machine" in percent:
        out["machine"] = percent["machine"]
    return out


def cpu_text(percent: dict[str, float]) -> str:
    """"a 50%, b 20% (machine 75% of 200%)": the machine's figure includes everything running."""
    parts = [f"{k} {v:.0f}%" for k, v in percent.items() if k != "machine"]
    text = ", ".join(parts)
    if "machine" in percent:
        ours = sum(v for k, v in percent.items() if k != "machine")
        other = percent["machine"] - ours
        text += f" (machine {percent['machine']:.0f}% of {100 * (os.cpu_count() or 1)}%"
        text += f"; NOT ours: {other:.0f}%)" if other >= 25 else ")"
    return text


def scrape(port: int | str) -> dict[str, float]:
    """Prometheus text -> {"name{labels}": value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[key] = float(value)
    return out


def metric(metrics: dict[str, float], name: str) -> float:
    """Sum of a metric over its labels."""
    return sum(v for k, v in metrics.items() if k == name or k.startswith(name + "{"))


def redis_pid() -> int | None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return int(client.info("server")["process_id"])
    except (redis.RedisError, KeyError, ValueError):
        return None
    finally:
        client.close()


def redis_command_calls() -> dict[str, int]:
    """Calls per Redis command so far (INFO commandstats)."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()
            if isinstance(v, dict) and "calls" in v}


def delete_prefix(prefix: str) -> int:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


@contextlib.contextmanager
def system(tag: str, prefixes: list[str], **env: str) -> Iterator[Any]:
    """A tests.system.System in a temp dir with its own Redis prefix; everything killed after."""
    if str(ROOT) not in sys.path:  # tests/ is not an installed package
        sys.path.insert(0, str(ROOT))
    from tests.system import System  # noqa: PLC0415

    workdir = Path(tempfile.mkdtemp(prefix=f"mds-bench-{tag}-"))
    prefix = f"mds-bench:{uuid.uuid4().hex[:10]}:"
    prefixes.append(prefix)
    sys_ = System.configure(workdir, REDIS_URL, prefix, SYMBOLS_FILE=str(SYMBOLS_FILE), **env)
    try:
        yield sys_
    finally:
        sys_.kill_all()
        delete_prefix(prefix)
        shutil.rmtree(workdir, ignore_errors=True)


def pids_of(sys_: Any) -> dict[str, int]:
    return {name: proc.pid for name, proc in sys_.procs.items()}


def wait_metric(port: str, name: str, minimum: float, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, urllib.error.URLError):
            if metric(scrape(port), name) >= minimum:
                return
        time.sleep(0.05)
    raise RuntimeError(f"metric {name} did not reach {minimum} within {timeout} s")


# --------------------------------------------------------------------------------------------
# Workers (run as separate processes: `pipeline.py --worker NAME --worker-args JSON`)
# --------------------------------------------------------------------------------------------


def _emit(result: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def _latency_summary(chunks: list[np.ndarray]) -> dict[str, Any]:
    lat = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)
    if not len(lat):
        return {"n": 0}
    ms = lat.astype(np.float64) / 1e6
    p = np.percentile(ms, [50, 90, 99, 99.9])
    return {"n": len(ms), "p50_ms": p[0], "p90_ms": p[1], "p99_ms": p[2], "p999_ms": p[3],
            "max_ms": float(ms.max()), "mean_ms": float(ms.mean()), "min_ms": float(ms.min())}


class SeqCheck:
    """Per-symbol gap accounting that ignores the last-value replay at the start."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        self.gaps = 0          # ticks missing between batches
        self.gap_events = 0
        self.dupes = 0         # ticks at or below the last seen seq (other than the replay)
        self.irregular = 0     # batches whose seq is not contiguous inside

    def see(self, symbol: str, first: int, last: int, n: int, snapshot_first: bool) -> None:
        prev = self.last.get(symbol)
        if last - first + 1 != n:
            self.irregular += 1
        if prev is None:
            self.last[symbol] = last
            return
        if first > prev + 1:
            self.gaps += first - prev - 1
            self.gap_events += 1
        elif first <= prev and not snapshot_first:
            self.dupes += min(prev, last) - first + 1
        self.last[symbol] = max(prev, last)

    def as_dict(self) -> dict[str, Any]:
        return {"gaps": self.gaps, "gap_events": self.gap_events, "dupes": self.dupes,
                "irregular_batches": self.irregular, "last_seq": self.last}


def worker_zmq_sub(a: dict[str, Any]) -> None:
    """A plain SUB on feedsim (or the bare publisher), counting ticks in a window after warm-up.

    mode "wire": decode every message with marketdata.wire.decode and check seq gaps.
    mode "bare": count frames only (the transport ceiling).
    """

    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, a.get("rcvhwm", 1_000_000))
    for topic in TICK_TOPICS:  # ticks only: feedsim also publishes order books
        sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.connect(a["endpoint"])
    warm, duration = a["warm"], a["duration"]
    wire_mode = a["mode"] == "wire"
    want_latency = a.get("latency", False)
    ticks_per_msg = a.get("ticks_per_message", 0)
    check = SeqCheck()
    lat_chunks: list[np.ndarray] = []
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    hard_end = time.monotonic() + a.get("first_timeout", 20.0)
    if not poller.poll(int(a.get("first_timeout", 20.0) * 1000)):
        _emit({"error": "no message received"})
        return
    t_first = time.monotonic()
    t0 = t_first + warm
    t1 = t0 + duration
    hard_end = t1 + 5
    msgs = ticks = 0
    win_msgs = win_ticks = 0
    snapshots = 0
    counting = False
    cpu0 = time.process_time()
    while True:
        if not poller.poll(100):
            now = time.monotonic()
            if now >= t1 or now >= hard_end:
                break
            continue
        # Drain what is queued, as the bridge does.
        for _ in range(1000):
            try:
                frames = sub.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            recv_ns = time.time_ns() if want_latency else 0
            if wire_mode:
                batch = wire.decode([f.buffer for f in frames])
                t = batch.ticks
                n = len(t)
                seq = t["seq"]
                snap = bool(t["flags"][0] & wire.FLAG_SNAPSHOT) if n else False
                if snap:
                    snapshots += 1
                if n:
                    check.see(batch.symbol, int(seq[0]), int(seq[-1]), n, snap)
                if want_latency and counting and not snap:
                    lat_chunks.append(recv_ns - t["ts_ns"])
            else:
                n = ticks_per_msg
            msgs += 1
            ticks += n
            if counting:
                win_msgs += 1
                win_ticks += n
        now = time.monotonic()
        if not counting and now >= t0:
            counting = True
            t0 = now
            cpu0 = time.process_time()
            win_msgs = win_ticks = 0
            t1 = t0 + duration
            hard_end = t1 + 5
        if counting and now >= t1:
            break
    elapsed = time.monotonic() - t0
    result: dict[str, Any] = {
        "cpu_pct": round(100 * (time.process_time() - cpu0) / elapsed, 1) if counting else None,
        "ticks_per_s": win_ticks / elapsed, "messages_per_s": win_msgs / elapsed,
        "window_s": elapsed, "ticks_total": ticks, "messages_total": msgs,
        "snapshots": snapshots, **check.as_dict(),
    }
    if want_latency:
        result["latency"] = _latency_summary(lat_chunks)
    sub.close(0)
    ctx.term()
    _emit(result)


def worker_zmq_pub(a: dict[str, Any]) -> None:
    """Bare pyzmq PUB: the same two frames, pre-built, sent as fast as the socket takes them."""

    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.setsockopt(zmq.SNDHWM, a.get("sndhwm", 100_000))
    pub.bind(a["endpoint"])
    ticks = wire.empty_ticks(a["ticks_per_message"])
    ticks["seq"] = np.arange(1, len(ticks) + 1)
    frames = [wire.topic("BTC-USD"), wire.encode_body(ticks, 1)]
    time.sleep(a.get("join_wait", 0.5))
    end = time.monotonic() + a["duration"]
    sent = 0
    send = pub.send_multipart
    while time.monotonic() < end:
        for _ in range(500):
            send(frames)
        sent += 500
    pub.close(0)
    ctx.term()
    _emit({"sent": sent})


def worker_grpc_client(a: dict[str, Any]) -> None:
    """N concurrent StreamTicks streams in one grpc.aio process, each on its own channel."""

    n_streams, warm, duration = a["streams"], a["warm"], a["duration"]
    check_seq = a.get("check_seq", True)

    async def one(i: int, t0: float, t1: float, out: list[dict[str, Any]]) -> None:
        check = SeqCheck()
        ticks = msgs = win_ticks = win_msgs = 0
        status = "ok"
        async with grpc.aio.insecure_channel(a["target"]) as channel:
            stub = pb_grpc.MarketDataServiceStub(channel)
            call = stub.StreamTicks(pb.StreamTicksRequest(), timeout=t1 - time.monotonic() + 30)
            try:
                async for message in call:
                    now = time.monotonic()
                    n = 0
                    for msg in message.batches:
                        seq = msg.seq
                        n += len(seq)
                        if len(seq) and check_seq:
                            check.see(msg.symbol, seq[0], seq[-1], len(seq),
                                      bool(msg.flags[0] & 1))
                    ticks += n
                    msgs += 1
                    if now >= t0:
                        win_ticks += n
                        win_msgs += 1
                    if now >= t1:
                        call.cancel()
                        break
            except grpc.aio.AioRpcError as exc:
                status = f"{exc.code().name}: {exc.details()}"[:200]
            except asyncio.CancelledError:
                pass
        out.append({"stream": i, "ticks": ticks, "messages": msgs, "win_ticks": win_ticks,
                    "win_messages": win_msgs, "status": status, **check.as_dict()})

    async def main() -> dict[str, Any]:
        out: list[dict[str, Any]] = []
        start = time.monotonic()
        t0 = start + warm
        t1 = t0 + duration
        cpu: dict[str, float] = {}

        async def cpu_probe() -> None:
            await asyncio.sleep(max(0.0, t0 - time.monotonic()))
            cpu["c0"], cpu["t0"] = time.process_time(), time.monotonic()
            await asyncio.sleep(max(0.0, t1 - time.monotonic()))
            cpu["c1"], cpu["t1"] = time.process_time(), time.monotonic()

        probe = asyncio.create_task(cpu_probe())
        await asyncio.wait_for(asyncio.gather(*(one(i, t0, t1, out) for i in range(n_streams))),
                               timeout=warm + duration + 20)
        if not probe.done():
            probe.cancel()
            cpu.setdefault("c1", time.process_time())
            cpu.setdefault("t1", time.monotonic())
        elapsed = duration
        per_stream = [s["win_ticks"] / elapsed for s in out]
        return {
            "cpu_pct": (round(100 * (cpu["c1"] - cpu["c0"]) / (cpu["t1"] - cpu["t0"]), 1)
                        if "c0" in cpu else None),
            "streams": sorted(out, key=lambda s: s["stream"]),
            "per_stream_ticks_per_s": per_stream,
            "aggregate_ticks_per_s": sum(per_stream),
            "min_stream_ticks_per_s": min(per_stream),
            "messages_per_s": sum(s["win_messages"] for s in out) / elapsed,
            "gaps": sum(s["gaps"] for s in out),
            "dupes": sum(s["dupes"] for s in out),
            "irregular": sum(s["irregular_batches"] for s in out),
            "errors": [s["status"] for s in out if s["status"] != "ok"],
        }

    _emit(asyncio.run(main()))


def worker_grpc_latency(a: dict[str, Any]) -> None:
    """One StreamTicks stream (grpc.aio): receipt time minus each tick's ts_ns.

    The asyncio client, like the servers, reads each message on its event loop as soon as the
    poller hands it over; the sync client's extra thread hand-off added ~1 ms to the p99 in
    A/B runs on the same feed and relay (3.75-3.79 ms against 4.69-5.05 ms).
    """

    warm, duration = a["warm"], a["duration"]
    check = SeqCheck()
    lat: list[int] = []
    ticks = msgs = 0
    cpu0: float | None = None

    async def run() -> None:
        nonlocal ticks, msgs, cpu0
        async with grpc.aio.insecure_channel(a["target"]) as channel:
            call = pb_grpc.MarketDataServiceStub(channel).StreamTicks(
                pb.StreamTicksRequest(), timeout=warm + duration + 30)
            t0 = time.monotonic() + warm
            t1 = t0 + duration
            try:
                async for message in call:
                    recv_ns = time.time_ns()
                    now = time.monotonic()
                    if now >= t0 and cpu0 is None:
                        cpu0 = time.process_time()
                    counted = False
                    for msg in message.batches:
                        seq = msg.seq
                        n = len(seq)
                        snap = bool(msg.flags[0] & 1) if n else False
                        if n:
                            check.see(msg.symbol, seq[0], seq[-1], n, snap)
                        if now >= t0 and not snap:
                            lat.extend([recv_ns - t for t in msg.ts_ns])
                            ticks += n
                            counted = True
                    msgs += counted
                    if now >= t1:
                        call.cancel()
                        break
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.CANCELLED:
                    raise

    asyncio.run(run())
    cpu_pct = round(100 * (time.process_time() - cpu0) / duration, 1) if cpu0 is not None else None
    _emit({"cpu_pct": cpu_pct, "latency": _latency_summary([np.array(lat, dtype=np.int64)]),
           "ticks": ticks, "messages": msgs, "ticks_per_s": ticks / duration, **check.as_dict()})


def worker_grpc_bare_server(a: dict[str, Any]) -> None:
    """Bare grpc.aio server: StreamTicks writes one pre-built columnar TickBatch forever."""

    n = a["ticks_per_message"]
    rng = np.random.default_rng(1)
    message = pb.TickBatch(
        symbol="BTC-USD", session=1795597337174016008,
        seq=list(range(1, n + 1)),
        ts_ns=(1795597337174016008 + np.arange(n) * 10_000).tolist(),
        bid=(65000 + rng.random(n)).round(2).tolist(),
        ask=(65001 + rng.random(n)).round(2).tolist(),
        last=(65000 + rng.random(n)).round(2).tolist(),
        bid_size=rng.random(n).round(5).tolist(), ask_size=rng.random(n).round(5).tolist(),
        last_size=rng.random(n).round(5).tolist(), volume=(1000 + rng.random(n)).tolist(),
        flags=rng.integers(0, 7, n).tolist(),
    )

    class Bare(pb_grpc.MarketDataServiceServicer):
        async def StreamTicks(self, request: Any, context: Any) -> None:
            batches = pb.TickBatches(batches=[message])
            while True:
                await context.write(batches)

    async def main() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        pb_grpc.add_MarketDataServiceServicer_to_server(Bare(), server)
        server.add_insecure_port(f"127.0.0.1:{a['port']}")
        await server.start()
        _emit({"serving": a["port"], "message_bytes": message.ByteSize()})
        await asyncio.sleep(a.get("lifetime", 120))
        await server.stop(0)

    asyncio.run(main())


def worker_bare_relay(a: dict[str, Any]) -> None:
    """The latency ceiling: the bridge's transports with the least work between them.

    One asyncio loop: a SUB socket on feedsim read from the loop's reader callback, as the
    bridge reads it (bridge.feed.TickSubscription) -> each stream's queue; the stream writes
    everything queued since its last write as one TickBatches message holding a columnar
    TickBatch per symbol (the bridge coalesces the same way). No sequence tracking, history,
    metrics or logging.
    """

    queues: set[asyncio.Queue[tuple[str, int, bytes]]] = set()

    def message(symbol: str, session: int, records: list[bytes]) -> pb.TickBatch:
        t = np.frombuffer(b"".join(records), dtype=wire.TICK_DTYPE)
        return pb.TickBatch(
            symbol=symbol, session=session, seq=t["seq"].tolist(), ts_ns=t["ts_ns"].tolist(),
            bid=t["bid"].tolist(), ask=t["ask"].tolist(), last=t["last"].tolist(),
            bid_size=t["bid_size"].tolist(), ask_size=t["ask_size"].tolist(),
            last_size=t["last_size"].tolist(), volume=t["volume"].tolist(),
            flags=t["flags"].tolist())

    class Relay(pb_grpc.MarketDataServiceServicer):
        async def StreamTicks(self, request: Any, context: Any) -> None:
            queue: asyncio.Queue[tuple[str, int, bytes]] = asyncio.Queue()
            queues.add(queue)
            try:
                while True:
                    items = [await queue.get()]
                    while not queue.empty():
                        items.append(queue.get_nowait())
                    by_symbol: dict[tuple[str, int], list[bytes]] = {}
                    for symbol, session, records in items:
                        by_symbol.setdefault((symbol, session), []).append(records)
                    await context.write(pb.TickBatches(batches=[
                        message(symbol, session, parts)
                        for (symbol, session), parts in by_symbol.items()]))
            finally:
                queues.discard(queue)

    async def pump() -> None:
        sub: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVHWM, 1_000_000)
        for topic in TICK_TOPICS:
            sub.setsockopt(zmq.SUBSCRIBE, topic)
        sub.connect(a["endpoint"])
        loop = asyncio.get_running_loop()

        def drain() -> None:
            for _ in range(1000):
                try:
                    frames = sub.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    return
                batch = wire.decode([f.buffer for f in frames])
                item = (batch.symbol, batch.session, batch.ticks.tobytes())
                for queue in queues:
                    queue.put_nowait(item)
            loop.call_soon(drain)  # more may be queued: ZMQ_FD will not say so again

        loop.add_reader(sub.fileno(), drain)
        drain()
        await asyncio.Event().wait()

    async def main() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        pb_grpc.add_MarketDataServiceServicer_to_server(Relay(), server)
        server.add_insecure_port(f"127.0.0.1:{a['port']}")
        await server.start()
        task = asyncio.create_task(pump())
        gc.collect()  # as the bridge does: long-lived start-up objects out of the collector's way
        gc.freeze()
        _emit({"serving": a["port"]})
        await asyncio.sleep(a.get("lifetime", 120))
        task.cancel()
        await server.stop(0)

    asyncio.run(main())


WORKERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "zmq-sub": worker_zmq_sub,
    "zmq-pub": worker_zmq_pub,
    "grpc-client": worker_grpc_client,
    "grpc-latency": worker_grpc_latency,
    "grpc-bare-server": worker_grpc_bare_server,
    "bare-relay": worker_bare_relay,
}


# --------------------------------------------------------------------------------------------
# Section 1: the feed engine alone
# --------------------------------------------------------------------------------------------


def bare_numpy_ticks(n: int, rng: np.random.Generator, state: list[float]) -> np.ndarray:
    """A plain numpy GBM with the quoter's vector work: the engine's ceiling.

    The engine does more (GARCH-t steps, a correlated Brownian bridge, the quoter's rounding
    and sizes), so the ratio is what the richer model costs against the plainest one.
    """

    t = np.empty(n, dtype=wire.TICK_DTYPE)
    path = np.cumsum(np.concatenate(([state[0]], 1e-5 * rng.standard_normal(n))))[1:]
    state[0] = float(path[-1])
    mid = np.exp(path)
    t["bid"] = np.round(np.floor(mid * (1 - 1e-4) / 0.01) * 0.01, 2)
    t["ask"] = np.round(np.ceil(mid * (1 + 1e-4) / 0.01) * 0.01, 2)
    sizes = rng.lognormal(0.0, 0.8, (n, 2))
    t["bid_size"] = sizes[:, 0]
    t["ask_size"] = sizes[:, 1]
    u = rng.random((n, 2))
    traded = u[:, 0] < 0.3
    t["last"] = np.where(u[:, 1] < 0.5, t["ask"], t["bid"])
    t["last_size"] = rng.lognormal(0.0, 0.8, n)
    t["volume"] = np.cumsum(np.where(traded, t["last_size"], 0.0))
    t["flags"] = np.where(traded, 2, 0)
    t["seq"] = np.arange(1, n + 1)
    t["ts_ns"] = np.arange(n) * 10_000
    t["reserved"] = 0
    return t


def bench_engine(plan: Plan, report: Report) -> None:

    # Values made ahead as feedsim makes them (FEED_AHEAD_MS's default), so the small-step
    # rows pay what feedsim's loop pays per step; without it every step would quote anew.
    ahead_s = FeedConfig.from_env({}).ahead_s
    details: dict[str, Any] = {}

    def run(per_step: int, rate: float) -> tuple[float, float]:
        feed = Feed(load_symbols(SYMBOLS_FILE, rate), 42, 0, ahead_s=ahead_s)
        step_ns = per_step * NS / rate
        k = 0
        produced = 0
        t0 = time.perf_counter()
        while True:
            for _ in range(max(1, 2000 // per_step)):
                k += 1
                result = feed.step(int(k * step_ns))
                produced += sum(len(b) for b in result.batches)
            elapsed = time.perf_counter() - t0
            if elapsed >= plan.engine:
                steps = k
                return produced / elapsed, elapsed / steps * 1e6

    def bare(per_step: int) -> float:
        rng = np.random.default_rng(1)
        state = [0.0]
        produced = 0
        t0 = time.perf_counter()
        while True:
            for _ in range(max(1, 2000 // per_step)):
                for _s in range(N_SYMBOLS):
                    produced += len(bare_numpy_ticks(per_step, rng, state))
            elapsed = time.perf_counter() - t0
            if elapsed >= plan.engine:
                return produced / elapsed

    for per_step, rate, label in (
            (100_000, 100_000.0, "large window: 100,000 ticks/symbol per step"),
            (20, 100_000.0, "20 ticks/symbol per step (feedsim's batch at 2x100k/s)"),
            (1, 5_000.0, "1 tick/symbol per step (feedsim's batch at 2x5k/s)")):
        rate_v, us_per_step = run(per_step, rate)
        ceiling = bare(per_step)
        details[str(per_step)] = {"ticks_per_s": rate_v, "us_per_step": us_per_step,
                                  "bare_numpy_ticks_per_s": ceiling}
        report.add(Row("engine", f"Feed.step, {label}", rate_v, "ticks/s", ceiling,
                       "numpy", note=(f"Feed.step over {N_SYMBOLS} symbols at {rate:,.0f}/s "
                                      f"each: {us_per_step:.1f} us per step, values made "
                                      f"{ahead_s * 1000:.0f} ms ahead as feedsim does; the "
                                      "numpy figure makes a plain GBM + quoting per step, "
                                      "so above 1 is what making values ahead saves"
                                      if per_step != 100_000 else
                                      "Feed.step(now) over a 1 s window per call (max_batch "
                                      "100,000/symbol), in process, no I/O")))
    report.details["engine"] = details


# --------------------------------------------------------------------------------------------
# Section 2: ZeroMQ
# --------------------------------------------------------------------------------------------


def bare_zmq(plan: Plan, ticks_per_message: int) -> dict[str, Any]:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    sub = spawn_worker("zmq-sub", {"endpoint": endpoint, "mode": "bare", "warm": plan.warm / 2,
                                   "duration": plan.zmq_bare,
                                   "ticks_per_message": ticks_per_message})
    pub = spawn_worker("zmq-pub", {"endpoint": endpoint, "ticks_per_message": ticks_per_message,
                                   "duration": plan.zmq_bare + plan.warm + 2})
    try:
        cpu = CpuWindow({"publisher": pub.pid, "subscriber": sub.pid})
        time.sleep(0.6 + plan.warm / 2)
        cpu.start()
        result = worker_result(sub, plan.zmq_bare + plan.warm + 30)
        result["cpu"] = with_worker_cpu(cpu.stop(), "subscriber", result)
        return result
    finally:
        PROCS.kill(pub)
        PROCS.kill(sub)


def bench_zmq(plan: Plan, report: Report, prefixes: list[str]) -> None:
    details: dict[str, Any] = {}
    log("zmq: bare pyzmq PUB->SUB, 100 ticks (8,024-byte body) per message")
    c100 = bare_zmq(plan, 100)
    log("zmq: bare pyzmq PUB->SUB, 1 tick (104-byte body) per message")
    c1 = bare_zmq(plan, 1)
    details["bare_100"] = c100
    details["bare_1"] = c1
    for rate in ZMQ_RATES:
        log(f"zmq: feedsim at FEED_TICK_RATE={rate} x {N_SYMBOLS} symbols -> SUB + wire.decode")
        with system(f"zmq{rate}", prefixes, FEED_TICK_RATE=str(rate)) as sys_:
            sys_.start("feedsim")
            sub = spawn_worker("zmq-sub", {"endpoint": sys_.env["FEED_PUB_ENDPOINT"],
                                           "mode": "wire", "warm": plan.warm,
                                           "duration": plan.zmq})
            try:
                cpu = CpuWindow({**pids_of(sys_), "subscriber": sub.pid})
                wait_metric(sys_.env["FEED_METRICS_PORT"], "feedsim_ticks_total", 1)
                time.sleep(plan.warm)
                m0 = scrape(sys_.env["FEED_METRICS_PORT"])
                cpu.start()
                t0 = time.monotonic()
                result = worker_result(sub, plan.zmq + plan.warm + 30)
                m1 = scrape(sys_.env["FEED_METRICS_PORT"])
                dt = time.monotonic() - t0
                result["cpu"] = with_worker_cpu(cpu.stop(), "subscriber", result)
            finally:
                PROCS.kill(sub)
            published = (metric(m1, "feedsim_ticks_total") - metric(m0, "feedsim_ticks_total"))
            frames = (metric(m1, "feedsim_frames_total") - metric(m0, "feedsim_frames_total"))
            result["feedsim_published_ticks_per_s"] = published / dt
            result["feedsim_ticks_per_frame"] = published / frames if frames else None
            result["feedsim_reanchors"] = metric(m1, "feedsim_schedule_reanchors_total")
            result["feedsim_lag_s"] = metric(m1, "feedsim_schedule_lag_seconds")
            details[f"feedsim_{rate}"] = result
        offered = rate * N_SYMBOLS
        label = ("max: FEED_TICK_RATE=1,000,000 (the config's maximum)" if rate == 1_000_000
                 else f"FEED_TICK_RATE={rate:,} x {N_SYMBOLS}")
        report.add(Row(
            "zmq", f"feedsim -> ZMQ SUB + wire.decode, {label}", result["ticks_per_s"],
            "ticks/s", c100["ticks_per_s"], "pyzmq 100-tick msgs",
            note=(f"offered {offered:,}/s ({100 * result['ticks_per_s'] / offered:.1f}% "
                  f"received); seq gaps {result['gaps']} ({result['gap_events']} "
                  f"events); {result['feedsim_ticks_per_frame'] or 0:.1f} ticks per frame, "
                  f"{result['messages_per_s']:,.0f} msgs/s; feedsim reanchors "
                  f"{result['feedsim_reanchors']:.0f}, lag {result['feedsim_lag_s']:.3f} s; "
                  f"CPU: {cpu_text(result['cpu'])}")))
    top = details[f"feedsim_{ZMQ_RATES[-1]}"]
    report.add(Row("zmq", f"feedsim -> ZMQ SUB messages, FEED_TICK_RATE={ZMQ_RATES[-1]:,}",
                   top["messages_per_s"], "msgs/s", c1["messages_per_s"], "pyzmq 1-tick msgs",
                   note=("feedsim's loop turns per second x symbols (one frame per symbol per "
                         "turn), against bare pyzmq sending 1-tick (104-byte) messages; bare "
                         f"1-tick CPU: {cpu_text(c1['cpu'])}; bare 100-tick: "
                         f"{c100['messages_per_s']:,.0f} msgs/s, CPU: {cpu_text(c100['cpu'])}")))
    report.details["zmq"] = details


# --------------------------------------------------------------------------------------------
# Section 3: gRPC StreamTicks
# --------------------------------------------------------------------------------------------


def bare_grpc(plan: Plan, streams: int, ticks_per_message: int) -> dict[str, Any]:
    port = free_port()
    server = spawn_worker("grpc-bare-server", {"port": port,
                                               "ticks_per_message": ticks_per_message,
                                               "lifetime": plan.grpc_bare + plan.warm + 60})
    try:
        wait_port(port)
        client = spawn_worker("grpc-client", {"target": f"127.0.0.1:{port}", "streams": streams,
                                              "warm": plan.warm, "duration": plan.grpc_bare,
                                              "check_seq": False})
        cpu = CpuWindow({"server": server.pid, "client": client.pid})
        time.sleep(plan.warm)
        cpu.start()
        result = worker_result(client, plan.grpc_bare + plan.warm + 40)
        result["cpu"] = with_worker_cpu(cpu.stop(), "client", result)
        return result
    finally:
        PROCS.kill(server)


def product_grpc(plan: Plan, sys_: Any, streams: int, rpid: int | None) -> dict[str, Any]:
    port = sys_.env["BRIDGE_METRICS_PORT"]
    client = spawn_worker("grpc-client", {"target": sys_.grpc_target, "streams": streams,
                                          "warm": plan.warm, "duration": plan.grpc})
    try:
        cpu = CpuWindow({**pids_of(sys_), "client": client.pid, "redis-server": rpid or 0})
        time.sleep(plan.warm)
        m0 = scrape(port)
        cpu.start()
        t0 = time.monotonic()
        result = worker_result(client, plan.grpc + plan.warm + 40)
        dt = time.monotonic() - t0
        result["cpu"] = with_worker_cpu(cpu.stop(), "client", result)
        m1 = scrape(port)
    finally:
        PROCS.kill(client)
    result["bridge_received_ticks_per_s"] = (metric(m1, "bridge_ticks_received_total")
                                             - metric(m0, "bridge_ticks_received_total")) / dt
    result["bridge_missed"] = metric(m1, "bridge_ticks_missed_total")
    result["bridge_disconnects"] = metric(m1, "bridge_stream_disconnects_total")
    result["history_dropped"] = metric(m1, "bridge_history_ticks_dropped_total")
    return result


def start_feed_and_bridge(sys_: Any) -> None:
    sys_.start("feedsim", "bridge")
    sys_.wait_grpc_serving()
    wait_metric(sys_.env["BRIDGE_METRICS_PORT"], "bridge_ticks_received_total", 1)


def grpc_note(r: dict[str, Any], offered: int, streams: int, queue: str) -> str:
    errors = (f"; stream errors: {r['errors'][0]} (x{len(r['errors'])})" if r["errors"] else "")
    msg_ticks = r["aggregate_ticks_per_s"] / r["messages_per_s"] if r["messages_per_s"] else 0
    slowest = (f"slowest stream {r['min_stream_ticks_per_s']:,.0f}/s "
               f"({100 * r['min_stream_ticks_per_s'] / offered:.1f}% of offered); "
               if streams > 1 else
               f"{100 * r['aggregate_ticks_per_s'] / offered:.1f}% of offered; ")
    return (f"offered {offered:,} ticks/s per stream, STREAM_QUEUE_TICKS="
            f"{queue}; {slowest}bridge received {r['bridge_received_ticks_per_s']:,.0f}/s from "
            f"ZMQ; per-stream seq gaps {r['gaps']}, dupes {r['dupes']}; bridge feed gaps "
            f"{r['bridge_missed']:.0f}; slow-consumer disconnects {r['bridge_disconnects']:.0f}; "
            f"{msg_ticks:.0f} ticks/message{errors}; CPU: {cpu_text(r['cpu'])}")


def bench_grpc(plan: Plan, report: Report, prefixes: list[str]) -> None:
    details: dict[str, Any] = {}
    rpid = redis_pid()
    bare: dict[tuple[int, int], dict[str, Any]] = {}
    for streams, size in ((1, 100), (1, 1000), (10, 100)):
        log(f"grpc: bare grpc.aio server -> {streams} stream(s), pre-built {size}-tick TickBatch")
        bare[(streams, size)] = details[f"bare_{streams}x{size}"] = bare_grpc(plan, streams, size)

    runs = [  # (rate per symbol, streams, STREAM_QUEUE_TICKS, ceiling)
        (GRPC_TARGET_RATE, 1, "100000", (1, 100)),
        (GRPC_MAX_RATE, 1, BIG_QUEUE, (1, 1000)),
        (GRPC_FANOUT_RATE, 10, "100000", (10, 100)),
        (GRPC_FANOUT_MAX_RATE, 10, BIG_QUEUE, (10, 100)),
    ]
    for rate, streams, queue, ceiling_key in runs:
        offered = rate * N_SYMBOLS
        log(f"grpc: feedsim {N_SYMBOLS} x {rate:,}/s -> bridge -> {streams} StreamTicks "
            f"stream(s), STREAM_QUEUE_TICKS={queue}")
        with system(f"grpc{rate}", prefixes, FEED_TICK_RATE=str(rate),
                    STREAM_QUEUE_TICKS=queue) as sys_:
            start_feed_and_bridge(sys_)
            r = product_grpc(plan, sys_, streams, rpid)
        details[f"bridge_{rate}x{streams}"] = r
        c = bare[ceiling_key]
        ceiling_what = f"grpc.aio {ceiling_key[0]}x{ceiling_key[1]}-tick"
        target, ok = "", None
        if rate == GRPC_TARGET_RATE and streams == 1:
            target = ">= 100,000, 0 gaps"
            ok = (r["aggregate_ticks_per_s"] >= 0.99 * offered and offered >= 100_000
                  and r["gaps"] == 0 and not r["errors"])
        what = ("max: offered more than it can send, " if queue == BIG_QUEUE else "")
        label = "1 stream" if streams == 1 else f"{streams} streams (sum)"
        report.add(Row(
            "grpc", f"bridge StreamTicks, {label}, {what}feed {N_SYMBOLS}x{rate:,}/s",
            r["aggregate_ticks_per_s"], "ticks/s", c["aggregate_ticks_per_s"], ceiling_what,
            target=target, passed=ok, note=grpc_note(r, offered, streams, queue)))
    report.details["grpc"] = details


# --------------------------------------------------------------------------------------------
# Section 4: history writes to Redis
# --------------------------------------------------------------------------------------------


def bare_redis(plan: Plan, prefix: str) -> dict[str, Any]:
    """redis-py's best write pattern: pipelined XADD of 100-tick blobs; variadic LPUSH of 100."""

    client = redis.Redis.from_url(REDIS_URL)
    ticks = wire.empty_ticks(100)
    blob = wire.encode_body(ticks, 1)
    values = [bytes(80)] * 100
    per_pipe = 50
    out: dict[str, Any] = {}
    try:
        key = f"{prefix}ceiling:xadd"
        done = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < plan.redis_bare:
            pipe = client.pipeline(transaction=False)
            for _ in range(per_pipe):
                pipe.xadd(key, {"d": blob}, maxlen=20_000, approximate=True)
            pipe.execute()
            done += per_pipe
        dt = time.perf_counter() - t0
        out["xadd_ticks_per_s"] = done * 100 / dt
        out["xadd_entries_per_s"] = done / dt
        client.delete(key)
        key = f"{prefix}ceiling:lpush"
        done = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < plan.redis_bare:
            pipe = client.pipeline(transaction=False)
            for _ in range(per_pipe):
                pipe.lpush(key, *values)
            pipe.ltrim(key, 0, 1_000_000)
            pipe.execute()
            done += per_pipe
        dt = time.perf_counter() - t0
        out["lpush_ticks_per_s"] = done * 100 / dt
        client.delete(key)
    finally:
        client.close()
    return out


def read_history(prefix: str, symbols: list[str]) -> dict[str, Any]:
    """Read every stream entry back and check the seq numbers are contiguous."""

    client = redis.Redis.from_url(REDIS_URL)
    out: dict[str, Any] = {}
    try:
        for symbol in symbols:
            key = f"{prefix}ticks:{symbol}"
            parts: list[np.ndarray] = []
            sessions = set()
            entries = 0
            low = "-"
            while True:
                rows = client.xrange(key, low, "+", count=2000)
                for _entry_id, fields in rows:
                    session, ticks = wire.decode_body(fields[b"d"])
                    sessions.add(session)
                    parts.append(ticks["seq"].astype(np.int64))
                    entries += 1
                if len(rows) < 2000:
                    break
                ms, _, n = rows[-1][0].decode().partition("-")
                low = f"{ms}-{int(n) + 1}"
            seq = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
            diffs = np.diff(seq)
            out[symbol] = {
                "entries": entries, "ticks": len(seq),
                "first_seq": int(seq[0]) if len(seq) else None,
                "last_seq": int(seq[-1]) if len(seq) else None,
                "missing": int((diffs[diffs > 1] - 1).sum()),
                "out_of_order_or_repeated": int((diffs < 1).sum()),
                "sessions": len(sessions),
            }
    finally:
        client.close()
    return out


def feedsim_final_seq(sys_: Any) -> dict[str, int]:
    for line in reversed(sys_.logs("feedsim")):
        if line.get("event") == "feedsim stopped":
            return dict(line.get("seq", {}))
    return {}


def product_history(plan: Plan, prefixes: list[str], rate: int, verify: bool,
                    rpid: int | None) -> dict[str, Any]:
    with system(f"history{rate}", prefixes, FEED_TICK_RATE=str(rate)) as sys_:
        prefix = sys_.env["REDIS_PREFIX"]
        port = sys_.env["BRIDGE_METRICS_PORT"]
        sys_.start("bridge")  # first, so the bridge is subscribed before the first tick
        time.sleep(0.5)
        sys_.start("feedsim")
        sys_.wait_grpc_serving()
        wait_metric(port, "bridge_history_ticks_written_total", 1)
        cpu = CpuWindow({**pids_of(sys_), "redis-server": rpid or 0})
        time.sleep(plan.warm)
        samples = []
        cpu.start()
        t_start = time.monotonic()
        while True:
            now = time.monotonic()
            m = scrape(port)
            samples.append((now, metric(m, "bridge_history_ticks_written_total"),
                            metric(m, "bridge_history_pending_ticks"),
                            metric(m, "bridge_ticks_received_total"), m))
            if now - t_start >= plan.history:
                break
            time.sleep(0.25)
        cpu_pct = cpu.stop()
        (ta, wa, _, ra, ma), (tb, wb, _, rb, mb) = samples[0], samples[-1]
        backlog = next((t - ta for t, _, pending, _, _ in samples if pending > 100_000), None)
        result: dict[str, Any] = {
            "written_ticks_per_s": (wb - wa) / (tb - ta),
            "received_ticks_per_s": (rb - ra) / (tb - ta),
            "pending_max": max(s[2] for s in samples),
            "pending_last": samples[-1][2],
            "backlog_over_100k_at_s": backlog,
            "dropped": metric(mb, "bridge_history_ticks_dropped_total"),
            "write_errors": metric(mb, "bridge_history_write_errors_total"),
            "bridge_missed": metric(mb, "bridge_ticks_missed_total"),
            "entries_per_s": (metric(mb, "bridge_history_entries_written_total")
                              - metric(ma, "bridge_history_entries_written_total")) / (tb - ta),
            "flush_mean_ms": 1000 * (
                (metric(mb, "bridge_history_flush_seconds_sum")
                 - metric(ma, "bridge_history_flush_seconds_sum"))
                / max(1.0, metric(mb, "bridge_history_flush_seconds_count")
                      - metric(ma, "bridge_history_flush_seconds_count"))),
            "flushes_per_s": (metric(mb, "bridge_history_flush_seconds_count")
                              - metric(ma, "bridge_history_flush_seconds_count")) / (tb - ta),
            "cpu": cpu_pct,
        }
        if verify:
            sys_.stop("feedsim")  # SIGTERM: it logs its final seq per symbol
            final = feedsim_final_seq(sys_)
            deadline = time.monotonic() + 15
            last, stable_since = (-1.0, -1.0), time.monotonic()
            while time.monotonic() < deadline:  # until nothing moves for 1 s and nothing pends
                m = scrape(port)
                now = (metric(m, "bridge_history_ticks_written_total"),
                       metric(m, "bridge_ticks_received_total"))
                if now != last:
                    last, stable_since = now, time.monotonic()
                elif (time.monotonic() - stable_since >= 1.0
                      and metric(m, "bridge_history_pending_ticks") == 0):
                    break
                time.sleep(0.2)
            m = scrape(port)
            result["written_total"] = metric(m, "bridge_history_ticks_written_total")
            result["received_total"] = metric(m, "bridge_ticks_received_total")
            result["dropped"] = metric(m, "bridge_history_ticks_dropped_total")
            result["feedsim_final_seq"] = final
            result["redis"] = read_history(prefix, ["BTC-USD", "ETH-USD"])
            result["redis_ticks_total"] = sum(v["ticks"] for v in result["redis"].values())
            result["redis_missing"] = sum(v["missing"] for v in result["redis"].values())
            result["feedsim_unstored_tail"] = {
                s: (final[s] - (v["last_seq"] or 0)) if s in final else None
                for s, v in result["redis"].items()}
    return result


def bench_history(plan: Plan, report: Report, prefixes: list[str]) -> None:
    details: dict[str, Any] = {}
    rpid = redis_pid()
    prefix = f"mds-bench:{uuid.uuid4().hex[:10]}:"
    prefixes.append(prefix)
    log("history: redis-py ceiling (pipelined XADD of 100-tick blobs; LPUSH of 100 values)")
    try:
        ceiling = bare_redis(plan, prefix)
    finally:
        delete_prefix(prefix)
    details["ceiling"] = ceiling
    for rate, verify in ((HISTORY_RATE, True), (HISTORY_HIGH_RATE, False)):
        offered = rate * N_SYMBOLS
        log(f"history: feedsim {N_SYMBOLS} x {rate:,}/s -> bridge -> Redis streams"
            + (" (then read back and check every seq)" if verify else ""))
        r = product_history(plan, prefixes, rate, verify, rpid)
        details[f"bridge_{rate}"] = r
        keeps_up = (r["written_ticks_per_s"] >= 0.98 * offered and r["dropped"] == 0
                    and r["pending_last"] < offered)
        if verify:
            ok = (keeps_up and r["redis_missing"] == 0 and r["bridge_missed"] == 0
                  and r["written_total"] == r["redis_ticks_total"] == r["received_total"])
            firsts = {s: v["first_seq"] for s, v in r["redis"].items()}
            redis_note = (
                f"; after stopping feedsim, read back {r['redis_ticks_total']:,} ticks = "
                f"written counter {r['written_total']:,.0f} = received "
                f"{r['received_total']:,.0f}: missing seq {r['redis_missing']}, out of order "
                f"{sum(v['out_of_order_or_repeated'] for v in r['redis'].values())}; first "
                f"stored seq {firsts}"
                + ("" if set(firsts.values()) <= {1} else
                   " (ticks before it were sent before the bridge's SUB had joined)")
                + "; ticks feedsim made but nobody stored at its stop: "
                f"{r['feedsim_unstored_tail']}")
        else:
            ok = None
            redis_note = ""
        report.add(Row(
            "history", f"history ticks written to Redis, feed {N_SYMBOLS}x{rate:,}/s",
            r["written_ticks_per_s"], "ticks/s", ceiling["xadd_ticks_per_s"],
            "redis-py XADD 100/entry",
            target=">= 98,000, 0 dropped, 0 gaps" if verify else "", passed=ok,
            note=(f"offered {offered:,}/s; dropped {r['dropped']:,.0f}; pending max "
                  f"{r['pending_max']:,.0f}, at end of window {r['pending_last']:,.0f}"
                  + (f", first above 100,000 at {r['backlog_over_100k_at_s']:.1f} s into the "
                     "window" if r["backlog_over_100k_at_s"] is not None else "") + "; "
                  f"received {r['received_ticks_per_s']:,.0f}/s; "
                  f"{r['entries_per_s']:,.0f} entries/s in {r['flushes_per_s']:,.0f} flushes/s, "
                  f"mean flush {r['flush_mean_ms']:.2f} ms; write errors "
                  f"{r['write_errors']:.0f}; bridge feed gaps {r['bridge_missed']:.0f}"
                  f"{redis_note}; CPU: {cpu_text(r['cpu'])}")))
    report.add(Row("history", "redis-py pipelined LPUSH of 100 x 80-byte values",
                   ceiling["lpush_ticks_per_s"], "ticks/s",
                   note="second ceiling: one variadic LPUSH per 100 ticks, 50 per pipeline"))
    report.details["history"] = details


# --------------------------------------------------------------------------------------------
# Section 5: REST
# --------------------------------------------------------------------------------------------


def load_test(url: str, seconds: int, connections: int = 16, threads: int = 2
              ) -> dict[str, Any]:
    """wrk when installed, else a Python thread pool doing the same."""
    wrk = None if os.environ.get("BENCH_NO_WRK") else shutil.which("wrk")
    if wrk:
        cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30,
                             check=False).stdout
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        used = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        result: dict[str, Any] = {"tool": " ".join(cmd[:-1]), "raw": out,
                                  "tool_cpu_pct": round(100 * used / (time.monotonic() - t0), 1)}
        m = re.search(r"Requests/sec:\s+([\d.]+)", out)
        result["requests_per_s"] = float(m.group(1)) if m else None
        m = re.search(r"(\d+) requests in", out)
        result["requests"] = int(m.group(1)) if m else None
        m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
        result["non_2xx"] = int(m.group(1)) if m else 0
        m = re.search(r"Socket errors:(.*)", out)
        result["socket_errors"] = m.group(1).strip() if m else ""
        for pct in ("50", "99"):
            m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
            if m:
                scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
                result[f"p{pct}_ms"] = float(m.group(1)) * scale
        return result
    return python_load(url, seconds, connections)


def python_load(url: str, seconds: int, connections: int) -> dict[str, Any]:
    """Fallback load generator: `connections` threads, one request at a time each."""

    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    end = time.monotonic() + seconds
    lock = threading.Lock()
    counts = {"ok": 0, "non_2xx": 0, "errors": 0}
    latencies: list[float] = []

    def loop() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
        ok = bad = err = 0
        lats = []
        while time.monotonic() < end:
            t = time.perf_counter()
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                if 200 <= response.status < 400:
                    ok += 1
                else:
                    bad += 1
                if response.will_close:
                    conn.close()
                    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
            except (OSError, http.client.HTTPException):
                err += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
            lats.append(time.perf_counter() - t)
        conn.close()
        with lock:
            counts["ok"] += ok
            counts["non_2xx"] += bad
            counts["errors"] += err
            latencies.extend(lats)

    started = time.monotonic()
    cpu0 = time.process_time()
    pool = [threading.Thread(target=loop) for _ in range(connections)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(seconds + 10)
    dt = time.monotonic() - started
    tool_cpu = round(100 * (time.process_time() - cpu0) / dt, 1)
    lat = np.array(latencies) * 1e3 if latencies else np.zeros(1)
    return {"tool": f"python threads x{connections} (wrk not found or BENCH_NO_WRK set)",
            "requests_per_s": (counts["ok"] + counts["non_2xx"]) / dt,
            "requests": counts["ok"] + counts["non_2xx"], "non_2xx": counts["non_2xx"],
            "tool_cpu_pct": tool_cpu,
            "socket_errors": str(counts["errors"]),
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


def gunicorn_cmd(app: str) -> list[str]:
    # The same settings as the product's: api/gunicorn_conf.py (2 gthread workers of 8 threads
    # by default; API_WORKERS and API_THREADS from this environment apply to both apps).
    return [sys.executable, "-m", "gunicorn", "-c", "python:api.gunicorn_conf", app]


def bench_rest(plan: Plan, report: Report, prefixes: list[str]) -> None:
    details: dict[str, Any] = {}
    rpid = redis_pid()
    # The bare app: same gunicorn config module, same worker count, fixed small JSON.
    workdir = Path(tempfile.mkdtemp(prefix="mds-bench-rest-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEED_", "GRPC_"))}
    env.update({"HTTP_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prom"),
                "PYTHONUNBUFFERED": "1"})
    log("rest: bare WSGI app (fixed JSON) under gunicorn -c python:api.gunicorn_conf")
    bare = PROCS.spawn(gunicorn_cmd("bench.bare_wsgi:app"), env=env,
                       log_path=workdir / "bare.log")
    try:
        wait_port(port)
        url = f"http://127.0.0.1:{port}/api/v1/prices/BTC-USD/current"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200
        cpu = CpuWindow({"gunicorn": bare.pid})
        cpu.start()
        ceiling = load_test(url, plan.rest)
        ceiling["cpu"] = {**cpu.stop(), "load tool": ceiling["tool_cpu_pct"]}
    finally:
        PROCS.kill(bare)
        shutil.rmtree(workdir, ignore_errors=True)
    details["bare"] = ceiling

    log("rest: api (falcon under gunicorn) GET /api/v1/prices/BTC-USD/current")
    with system("rest", prefixes) as sys_:  # the feed at its default 10 ticks/s per symbol
        sys_.start("feedsim", "bridge", "api")
        sys_.wait_grpc_serving()
        try:
            sys_.wait_http_ready(20)
        except AssertionError as exc:
            raise RuntimeError(f"the API did not become ready: {exc}") from None
        url = f"{sys_.http_base}/api/v1/prices/BTC-USD/current"
        status, body = sys_.http("/api/v1/prices/BTC-USD/current")
        if status != 200:
            raise RuntimeError(f"GET current answered {status}: {str(body)[:200]}")
        cpu = CpuWindow({"gunicorn": sys_.procs["api"].pid, "redis-server": rpid or 0,
                         "feedsim": sys_.procs["feedsim"].pid,
                         "bridge": sys_.procs["bridge"].pid})
        calls0 = redis_command_calls()
        cpu.start()
        product = load_test(url, plan.rest)
        product["cpu"] = {**cpu.stop(), "load tool": product["tool_cpu_pct"]}
        calls1 = redis_command_calls()
        requests = product.get("requests") or 1
        product["redis_calls_per_request"] = {
            k: round((v - calls0.get(k, 0)) / requests, 2) for k, v in calls1.items()
            if (v - calls0.get(k, 0)) / requests >= 0.05 and k not in ("info",)}
        product["sample_body_bytes"] = len(json.dumps(body))
    details["api"] = product
    for r in (ceiling, product):
        r.pop("raw", None)
    report.add(Row(
        "rest", "REST GET /api/v1/prices/BTC-USD/current", product["requests_per_s"], "req/s",
        ceiling["requests_per_s"], "bare WSGI, same gunicorn",
        note=(f"{product['tool']}; p50 {product.get('p50_ms', 0):.2f} ms, p99 "
              f"{product.get('p99_ms', 0):.2f} ms (bare: p50 {ceiling.get('p50_ms', 0):.2f}, p99 "
              f"{ceiling.get('p99_ms', 0):.2f}); non-2xx {product['non_2xx']}, socket errors "
              f"[{product['socket_errors'] or 'none'}]; Redis commands per request "
              f"{product['redis_calls_per_request']}; CPU: {cpu_text(product['cpu'])}; "
              f"bare CPU: {cpu_text(ceiling['cpu'])}")))
    report.details["rest"] = details


# --------------------------------------------------------------------------------------------
# Section 6: end-to-end latency
# --------------------------------------------------------------------------------------------


def latency_client(plan: Plan, target: str, pids: dict[str, int], seconds: float
                   ) -> dict[str, Any]:
    client = spawn_worker("grpc-latency", {"target": target, "warm": plan.warm,
                                           "duration": seconds})
    try:
        cpu = CpuWindow({**pids, "client": client.pid})
        time.sleep(plan.warm + 0.5)
        cpu.start()
        result = worker_result(client, seconds + plan.warm + 30)
        result["cpu"] = with_worker_cpu(cpu.stop(), "client", result)
        return result
    finally:
        PROCS.kill(client)


LATENCY_KEYS = (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9"), ("max_ms", "max"))


def _median_round(results: list[dict[str, Any]]) -> dict[str, float]:
    """Each latency percentile's median over the rounds (one round: its own figures)."""
    return {key: float(np.nanmedian([r["latency"].get(key, np.nan) for r in results]))
            for key, _ in LATENCY_KEYS}


def bench_latency(plan: Plan, report: Report, prefixes: list[str]) -> None:
    """Generation -> receipt latency at 10k ticks/s: plain ZMQ, then rounds of bare relay and
    bridge in turn.

    On a shared 2-core VM one window's p99 varies by 2x from run to run, so the bridge and its
    ceiling are measured alternately, `latency_rounds` times, and each figure is the median
    over the rounds (every round's p99 is in the note). The bridge is stopped while the relay
    runs, so neither shares the machine with the other.
    """
    details: dict[str, Any] = {}
    rate = LATENCY_RATE
    offered = rate * N_SYMBOLS
    rpid = redis_pid()
    side = plan.latency_side
    relays: list[dict[str, Any]] = []
    bridges: list[dict[str, Any]] = []
    with system("latency", prefixes, FEED_TICK_RATE=str(rate)) as sys_:
        sys_.start("feedsim")
        feedsim_pid = sys_.procs["feedsim"].pid
        log(f"latency: feedsim {N_SYMBOLS} x {rate:,}/s -> bare ZMQ SUB, {side:.0f} s")
        sub = spawn_worker("zmq-sub", {"endpoint": sys_.env["FEED_PUB_ENDPOINT"],
                                       "mode": "wire", "warm": plan.warm,
                                       "duration": side, "latency": True})
        try:
            cpu = CpuWindow({"feedsim": feedsim_pid, "subscriber": sub.pid})
            time.sleep(plan.warm + 0.5)
            cpu.start()
            zmq_r = worker_result(sub, side + plan.warm + 30)
            zmq_r["cpu"] = with_worker_cpu(cpu.stop(), "subscriber", zmq_r)
        finally:
            PROCS.kill(sub)
        details["zmq"] = zmq_r

        for n in range(1, plan.latency_rounds + 1):
            log(f"latency round {n}/{plan.latency_rounds}: feedsim -> bare relay (zmq on the loop "
                f"+ grpc.aio) -> 1 client, {side:.0f} s")
            port = free_port()
            relay = spawn_worker("bare-relay", {"endpoint": sys_.env["FEED_PUB_ENDPOINT"],
                                                "port": port, "lifetime": side + 60})
            try:
                wait_port(port)
                relays.append(latency_client(plan, f"127.0.0.1:{port}",
                                             {"feedsim": feedsim_pid, "relay": relay.pid}, side))
            finally:
                PROCS.kill(relay)
            log(f"latency round {n}/{plan.latency_rounds}: feedsim -> bridge -> 1 StreamTicks "
                f"client, {plan.latency:.0f} s")
            sys_.start("bridge")
            sys_.wait_grpc_serving()
            wait_metric(sys_.env["BRIDGE_METRICS_PORT"], "bridge_ticks_received_total", 1)
            bridges.append(latency_client(plan, sys_.grpc_target,
                                          {**pids_of(sys_), "redis-server": rpid or 0},
                                          plan.latency))
            sys_.stop("bridge")
    details["bare_relay"] = relays
    details["grpc"] = bridges
    report.details["latency"] = details
    gl, rl, zl = _median_round(bridges), _median_round(relays), zmq_r["latency"]
    grpc_r, relay_r = bridges[len(bridges) // 2], relays[len(relays) // 2]
    rounds = len(bridges)

    def p99s(results: list[dict[str, Any]]) -> str:
        return ", ".join(f"{r['latency'].get('p99_ms', np.nan):.2f}" for r in results)

    for key, label in LATENCY_KEYS:
        ok = bool(gl[key] < 2.0) if key == "p99_ms" else None  # NaN (no ticks): FAIL
        report.add(Row(
            "latency", f"ts_ns -> StreamTicks client, {label} @ {offered:,} ticks/s",
            gl[key], "ms", rl[key], "bare relay", target="< 2 ms" if ok is not None else "",
            passed=ok,
            note=(f"median of {rounds} round(s), each a {side:.0f} s bare relay run then a "
                  f"{plan.latency:.0f} s bridge run; p99 by round: bridge {p99s(bridges)}, relay "
                  f"{p99s(relays)} ms. Middle round ({len(bridges) // 2 + 1}): bridge "
                  f"{grpc_r['latency']['n']:,} ticks, seq gaps {grpc_r['gaps']}, "
                  f"{grpc_r['ticks'] / max(grpc_r['messages'], 1):.1f} ticks/message; CPU: "
                  f"{cpu_text(grpc_r['cpu'])}. Ceiling = the same feed through a bare relay "
                  "(SUB on the loop's reader -> decode -> grpc.aio write, nothing else) to the "
                  f"same client: seq gaps {relay_r['gaps']}; CPU: {cpu_text(relay_r['cpu'])}. "
                  "For a latency the ratio is figure/ceiling: above 1 is slower"
                  if key == "p50_ms" else "")))
    for key, label in LATENCY_KEYS:
        report.add(Row(
            "latency", f"ts_ns -> ZMQ SUB receipt (no bridge), {label}", zl.get(key), "ms",
            note=(f"feedsim -> plain SUB + wire.decode: {zl['n']:,} ticks over {side:.0f} s, "
                  f"seq gaps {zmq_r['gaps']}; CPU: {cpu_text(zmq_r['cpu'])}. The bridge's "
                  "share is the StreamTicks figure minus this" if key == "p50_ms" else "")))


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:

    cpu_model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    redis_version = None
    with contextlib.suppress(redis.RedisError):
        client = redis.Redis.from_url(REDIS_URL)
        redis_version = client.info("server").get("redis_version")
        client.close()
    return {"cpus": os.cpu_count(), "cpu_model": cpu_model, "python": platform.python_version(),
            "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version(), "grpcio": grpc.__version__,
            "numpy": np.__version__, "redis_server": redis_version,
            "wrk": shutil.which("wrk") or "(absent: python load generator)"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short windows (under a minute)")
    parser.add_argument("--only", choices=SECTIONS, action="append",
                        help="run only this section (repeatable)")
    parser.add_argument("--json", action="store_true",
                        help="print the figures as JSON on stdout (the table goes to stderr)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-args", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
        WORKERS[args.worker](json.loads(args.worker_args or "{}"))
        return 0

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        print(f"Redis at {REDIS_URL} is not reachable: {exc}", file=sys.stderr)
        return 2

    plan = QUICK if args.quick else FULL
    sections = args.only or list(SECTIONS)
    report = Report()
    prefixes: list[str] = []
    runners: dict[str, Callable[[], None]] = {
        "engine": lambda: bench_engine(plan, report),
        "zmq": lambda: bench_zmq(plan, report, prefixes),
        "grpc": lambda: bench_grpc(plan, report, prefixes),
        "history": lambda: bench_history(plan, report, prefixes),
        "rest": lambda: bench_rest(plan, report, prefixes),
        "latency": lambda: bench_latency(plan, report, prefixes),
    }

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    started = time.monotonic()
    try:
        for name in sections:
            t = time.monotonic()
            log(f"section {name}")
            try:
                runners[name]()
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # report the section as failed and go on
                report.errors[name] = f"{type(exc).__name__}: {exc}"
                log(f"section {name} failed: {exc}")
            finally:
                PROCS.kill_all()
            log(f"section {name} took {time.monotonic() - t:.1f} s")
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        PROCS.kill_all()
        for prefix in prefixes:
            with contextlib.suppress(Exception):
                delete_prefix(prefix)
    elapsed = time.monotonic() - started

    info = machine()
    info["loadavg_at_start"] = load_before
    header = (f"market-data-simulator pipeline benchmark ({'quick' if args.quick else 'full'} run, "
              f"{elapsed:.0f} s) on {info['cpus']} x {info['cpu_model']}; Python "
              f"{info['python']}, libzmq {info['libzmq']}, grpcio {info['grpcio']}, Redis "
              f"{info['redis_server']}; load average before the run {load_before}")
    table = header + "\n\n" + render_table(report)
    if args.json:
        print(table, file=sys.stderr)
        print(json.dumps({
            "machine": info, "mode": "quick" if args.quick else "full",
            "elapsed_s": round(elapsed, 1),
            "rows": [{**asdict(r), "ratio": r.ratio} for r in report.rows],
            "details": report.details, "errors": report.errors,
        }, indent=2, default=str))
    else:
        print(table)
    # Exit status says whether every section ran; PASS/FAIL against the targets is in the table.
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
