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
    rewound: bool = False         # seq went back without a snapshot flag: counting restarted


class SequenceTracker:
    """Remembers the last (session, seq) per symbol.

    A tick whose seq is not above the last seen (a last-value replay) is dropped; a jump is
    counted as missed ticks; a new session restarts the count. Ticks accepted as new lose
    FLAG_SNAPSHOT: downstream they are ordinary ticks in sequence.

    Only a replay (FLAG_SNAPSHOT on its first tick) is entirely behind the last seen seq. A
    batch that is, without one, means the count itself went wrong (say one corrupt seq far
    ahead): it is taken whole and counting starts again from it (`rewound`); otherwise every
    later tick would be dropped.
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
        if int(seqs[-1]) <= last_seq and not int(ticks["flags"][0]) & wire.FLAG_SNAPSHOT:
            self._last[batch.symbol] = (batch.session, int(seqs[-1]))
            return Observation(_unflagged(batch), 0, restarted, rewound=True)
        if first <= last_seq:
            ticks = ticks[seqs > last_seq]
            if not len(ticks):
                return Observation(None, 0, restarted)
            seqs = ticks["seq"]
            first = int(seqs[0])
        # After a restart the new session's ticks before `first` were missed too.
        missed = first - last_seq - 1 if previous is not None else 0
        self._last[batch.symbol] = (batch.session, int(seqs[-1]))
        fresh = batch if ticks is batch.ticks else wire.TickBatch(batch.symbol, batch.session,
                                                                   ticks)
        return Observation(_unflagged(fresh), max(missed, 0), restarted)


def _unflagged(batch: wire.TickBatch) -> wire.TickBatch:
    """`batch` without FLAG_SNAPSHOT (a copy only when some tick has it)."""
    # One reduction, not a mask: this runs for every message the bridge receives.
    if not int(_OR(batch.ticks["flags"])) & wire.FLAG_SNAPSHOT:
        return batch
    ticks = wire.copy_ticks(batch.ticks)
    ticks["flags"] &= np.uint32(0xFFFFFFFF ^ wire.FLAG_SNAPSHOT)
    return wire.TickBatch(batch.symbol, batch.session, ticks)
