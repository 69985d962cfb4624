"""Order books on the client side: a snapshot, then the diffs after it, with gap detection.

The zguide "Clone" pattern: subscribe first, take a snapshot (a late-join replay, a periodic
snapshot, or feedsim's ``book`` control command), drop diffs the snapshot already includes,
apply the rest in book_seq order. A diff that does not follow the book (its prev_book_seq is not
the book's book_seq) means updates were missed: the book says so and waits for a snapshot,
keeping the diffs that arrive meanwhile so a snapshot older than them still catches up.

Pure; the bridge uses it, and so can any ZeroMQ client (see the README).
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from marketdata import wire

MAX_PENDING_DIFFS = 1024


class Status(enum.Enum):
    """What a book message did to an OrderBook."""

    APPLIED = "applied"  # the book moved to this message's book_seq
    STALE = "stale"  # the book already includes it (a replayed snapshot, a repeated diff)
    WAITING = "waiting"  # no snapshot yet: the diff is kept until one arrives
    GAP = "gap"  # the diff does not follow the book: updates were missed; take a snapshot


@dataclass(frozen=True)
class Outcome:
    """The status of one message, and how many book updates were missed (GAP only)."""

    status: Status
    missed: int = 0


class OrderBook:
    """One symbol's L2 book, rebuilt from snapshots and diffs."""

    def __init__(self, symbol: str, max_pending: int = MAX_PENDING_DIFFS) -> None:
        self.symbol = symbol
        self.session = 0
        self.book_seq = 0
        self.tick_seq = 0
        self.ts_ns = 0
        self.synced = False
        self.gaps = 0
        self._bids: dict[float, float] = {}
        self._asks: dict[float, float] = {}
        self._pending: deque[wire.BookDiff] = deque(maxlen=max_pending)

    def apply(self, message: wire.BookSnapshot | wire.BookDiff) -> Outcome:
        """Apply a snapshot or a diff of this symbol."""
        if isinstance(message, wire.BookSnapshot):
            return self.apply_snapshot(message)
        return self.apply_diff(message)

    def apply_snapshot(self, snapshot: wire.BookSnapshot) -> Outcome:
        """Take `snapshot` unless the book is in sync and already at or past it.

        Diffs kept while waiting that come after the snapshot are applied at once; if they do
        not follow on from it, the answer is GAP (the book waits for a newer snapshot).
        """
        if (self.synced and snapshot.session == self.session
                and snapshot.book_seq <= self.book_seq):
            return Outcome(Status.STALE)
        self.session, self.book_seq = snapshot.session, snapshot.book_seq
        self.tick_seq, self.ts_ns = snapshot.tick_seq, snapshot.ts_ns
        self._bids = dict(zip(snapshot.bids["price"].tolist(), snapshot.bids["size"].tolist(),
                              strict=True))
        self._asks = dict(zip(snapshot.asks["price"].tolist(), snapshot.asks["size"].tolist(),
                              strict=True))
        self.synced = True
        pending = sorted((d for d in self._pending
                          if d.session == self.session and d.book_seq > self.book_seq),
                         key=lambda d: d.book_seq)
        self._pending.clear()
        for diff in pending:
            outcome = self.apply_diff(diff)
            if outcome.status is Status.GAP:
                return outcome  # the kept diffs skip past the snapshot: still out of sync
        return Outcome(Status.APPLIED)

    def apply_diff(self, diff: wire.BookDiff) -> Outcome:
        """Apply `diff` if it follows the book; otherwise say why not."""
        if diff.prev_book_seq == 0 and (not self.synced or diff.session != self.session):
            # A session's first update applies to the empty book (book_seq 0): a reader there
            # from the start, or following a feed restart, needs no snapshot.
            self._pending.append(diff)
            return self.apply_snapshot(wire.BookSnapshot(
                self.symbol, diff.session, 0, 0, 0, wire.empty_levels(), wire.empty_levels()))
        if not self.synced:
            self._pending.append(diff)
            return Outcome(Status.WAITING)
        if diff.session != self.session:
            return self._lost(diff, diff.prev_book_seq)  # the feed restarted
        if diff.book_seq <= self.book_seq:
            return Outcome(Status.STALE)
        if diff.prev_book_seq != self.book_seq:
            return self._lost(diff, max(diff.prev_book_seq - self.book_seq, 1))
        for side, levels in ((self._bids, diff.bids), (self._asks, diff.asks)):
            for price, size in zip(levels["price"].tolist(), levels["size"].tolist(),
                                   strict=True):
                if size:
                    side[price] = size
                else:
                    side.pop(price, None)
        self.book_seq, self.tick_seq, self.ts_ns = diff.book_seq, diff.tick_seq, diff.ts_ns
        return Outcome(Status.APPLIED)

    def _lost(self, diff: wire.BookDiff, missed: int) -> Outcome:
        self.synced = False
        self.gaps += 1
        self._pending.clear()
        self._pending.append(diff)
        return Outcome(Status.GAP, missed)

    @property
    def bids(self) -> wire.Levels:
        """Bid levels, best (highest) first."""
        return _levels(sorted(self._bids.items(), reverse=True))

    @property
    def asks(self) -> wire.Levels:
        """Ask levels, best (lowest) first."""
        return _levels(sorted(self._asks.items()))

    def snapshot(self) -> wire.BookSnapshot:
        """Return the book in full, as a BookSnapshot (as of its last applied message)."""
        return wire.BookSnapshot(self.symbol, self.session, self.book_seq, self.tick_seq,
                                 self.ts_ns, self.bids, self.asks)


def _levels(items: list[tuple[float, float]]) -> wire.Levels:
    return np.array(items, dtype=wire.LEVEL_DTYPE) if items else wire.empty_levels()


def book_to_dict(book: wire.BookSnapshot) -> dict[str, Any]:
    """Return `book` as JSON-ready data: levels as [price, size] pairs, best first."""
    return {
        "symbol": book.symbol, "session": book.session, "book_seq": book.book_seq,
        "tick_seq": book.tick_seq, "ts_ns": book.ts_ns,
        "bids": np.stack((book.bids["price"], book.bids["size"]), axis=1).tolist(),
        "asks": np.stack((book.asks["price"], book.asks["size"]), axis=1).tolist(),
    }


def book_from_dict(data: Mapping[str, Any]) -> wire.BookSnapshot:
    """Build a BookSnapshot from book_to_dict's output; raise ValueError if it is malformed."""
    try:
        session, book_seq, tick_seq, ts_ns = (int(data[k]) for k in
                                              ("session", "book_seq", "tick_seq", "ts_ns"))
        bids, asks = _side(data["bids"]), _side(data["asks"])
        symbol = data["symbol"]
    except (KeyError, TypeError, OverflowError) as exc:
        raise ValueError(f"not a book: {exc!r}") from None
    if not isinstance(symbol, str) or not symbol:
        raise ValueError("not a book: 'symbol' must be a non-empty string")
    return wire.BookSnapshot(symbol, session, book_seq, tick_seq, ts_ns, bids, asks)


def _side(pairs: Any) -> wire.Levels:
    if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(v, int | float) for v in p)
            for p in pairs):
        raise ValueError("not a book: levels must be a list of [price, size] number pairs")
    levels = _levels([(float(p), float(s)) for p, s in pairs])
    if not all(math.isfinite(v) for v in levels["price"].tolist() + levels["size"].tolist()):
        raise ValueError("not a book: prices and sizes must be finite")
    return levels
