"""Per-symbol sequence tracking for any subscriber: drop repeats, count gaps, notice restarts.

Pure; the bridge uses it, and so can a ZeroMQ client (see the README example).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marketdata import wire

_OR = np.bitwise_or.reduce


@dataclass(frozen=True)
class Observation:
    """What one received batch meant: the ticks that are new, and what was missed."""

    fresh: wire.TickBatch | None  # None when every tick had been seen already
    missed: int                   # ticks skipped between the last seen and this batch
    restarted: bool               # the feed session changed
    stale: int = 0                # ticks dropped as seen that were no replay (no snapshot flag)


class SequenceTracker:
    """Remembers the last (session, seq) per symbol.

    A tick whose seq is not above the last seen (a last-value replay) is dropped; a jump is
    counted as missed ticks; a new session restarts the count. Ticks accepted as new lose
    FLAG_SNAPSHOT: downstream they are ordinary ticks in sequence.

    Only a last-value replay (FLAG_SNAPSHOT) repeats a seq. Dropped ticks without the flag are
    counted as `stale`: a feed whose seq went back (say after one corrupt seq far ahead) shows
    there, rather than in silence.
    """

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, int]] = {}

    def seed(self, symbol: str, session: int, seq: int) -> None:
        """Start from a known position (e.g. the last tick in history)."""
        self._last[symbol] = (session, seq)

    def last(self, symbol: str) -> tuple[int, int] | None:
        """Return (session, seq) of the last tick seen of `symbol`."""
        return self._last.get(symbol)

    def observe(self, batch: wire.TickBatch) -> Observation:
        """Account for `batch` and return its new part."""
        ticks = batch.ticks
        if not len(ticks):
            return Observation(None, 0, False)
        previous = self._last.get(batch.symbol)
        restarted = previous is not None and previous[0] != batch.session
        last_seq = 0 if previous is None or restarted else previous[1]
        seqs = ticks["seq"]
        first = int(seqs[0])
        stale = 0
        if first <= last_seq:
            seen = seqs <= last_seq
            stale = int((ticks["flags"][seen] & wire.FLAG_SNAPSHOT == 0).sum())
            ticks = ticks[~seen]
            if not len(ticks):
                return Observation(None, 0, restarted, stale)
            seqs = ticks["seq"]
            first = int(seqs[0])
        # After a restart the new session's ticks before `first` were missed too.
        missed = first - last_seq - 1 if previous is not None else 0
        # One reduction, not a mask: this runs for every message the bridge receives.
        if int(_OR(ticks["flags"])) & wire.FLAG_SNAPSHOT:
            ticks = wire.copy_ticks(ticks)
            ticks["flags"] &= np.uint32(0xFFFFFFFF ^ wire.FLAG_SNAPSHOT)
        self._last[batch.symbol] = (batch.session, int(seqs[-1]))
        fresh = batch if ticks is batch.ticks else wire.TickBatch(batch.symbol, batch.session,
                                                                   ticks)
        return Observation(fresh, max(missed, 0), restarted, stale)
