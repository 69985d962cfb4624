"""Two feedsim processes with the same seed publish the same ticks and books; another seed
does not."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import zmq

from marketdata import wire
from tests.system import System

pytestmark = pytest.mark.integration

WINDOW = range(400, 800)  # seqs every run sees, however late the subscriber joins


def stream_hash(workdir: Path, redis_url: str, seed: int) -> str:
    """Run feedsim with `seed`; hash every tick value (not the time) of seqs in WINDOW, and
    every book diff made at those ticks."""
    system = System.configure(workdir, redis_url, "mds-test:determinism:", FEED_SEED=str(seed),
                              FEED_TICK_RATE="400")
    context = zmq.Context.instance()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVTIMEO, 10_000)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(system.env["FEED_PUB_ENDPOINT"])
    system.start("feedsim")
    seen: dict[str, dict[int, bytes]] = {}
    books: dict[str, dict[int, bytes]] = {}
    try:
        while len(seen) < 5 or any(len(v) < len(WINDOW) for v in seen.values()):
            batch = wire.decode_message(sub.recv_multipart())
            if isinstance(batch, wire.BookDiff):
                if batch.tick_seq in WINDOW:
                    books.setdefault(batch.symbol, {})[batch.tick_seq] = (
                        f"{batch.book_seq},{batch.prev_book_seq}".encode()
                        + batch.bids.tobytes() + batch.asks.tobytes())
                continue
            if not isinstance(batch, wire.TickBatch):
                continue  # full snapshots repeat what the diffs built
            for record in batch.ticks:
                if int(record["seq"]) in WINDOW:
                    values = record.copy()
                    values["ts_ns"] = 0
                    values["flags"] &= 0xFFFFFFFF ^ wire.FLAG_SNAPSHOT
                    seen.setdefault(batch.symbol, {})[int(record["seq"])] = values.tobytes()
    finally:
        sub.close()
        system.kill_all()
    digest = hashlib.sha256()
    for symbol in sorted(seen):
        for seq in WINDOW:
            digest.update(seen[symbol][seq])
        # At 400 ticks/s the book moves every 40 ticks: 10 updates in the window.
        assert 10 == len(books[symbol]), sorted(books[symbol])
        for seq in sorted(books[symbol]):
            digest.update(books[symbol][seq])
    return digest.hexdigest()


def test_same_seed_same_stream_across_processes(tmp_path: Path, redis_url: str) -> None:
    first = stream_hash(tmp_path / "a", redis_url, seed=7)
    second = stream_hash(tmp_path / "b", redis_url, seed=7)
    other = stream_hash(tmp_path / "c", redis_url, seed=8)
    assert first == second
    assert first != other
