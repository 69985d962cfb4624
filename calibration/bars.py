"""OHLCV bars as immutable numpy columns, and the log returns that calibration works on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

NS_PER_S = 1_000_000_000


def _frozen_floats(values: npt.ArrayLike) -> Floats:
    """Return a read-only 1-D float copy of `values`, so a frozen value cannot change."""
    array: Floats = np.array(values, dtype=np.float64, copy=True).reshape(-1)
    array.flags.writeable = False
    return array


def _frozen_ints(values: npt.ArrayLike) -> Ints:
    """Return a read-only 1-D int64 copy of `values`, so a frozen value cannot change."""
    array: Ints = np.array(values, dtype=np.int64, copy=True).reshape(-1)
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class Bars:
    """Bars of one symbol at one interval, oldest first, with strictly increasing open times.

    Times are bar open times in nanoseconds since the Unix epoch (UTC); volumes are in base and in
    quote currency. The arrays are read-only.
    """

    time_ns: Ints
    open: Floats
    high: Floats
    low: Floats
    close: Floats
    volume_base: Floats
    volume_quote: Floats
    interval_ns: int
    lines: Ints | None = None
    """The 1-based source line of each bar, when the bars were read from a file."""

    def __post_init__(self) -> None:
        """Copy the columns into read-only arrays and check that they fit together."""
        object.__setattr__(self, "time_ns", _frozen_ints(self.time_ns))
        if self.lines is not None:
            object.__setattr__(self, "lines", _frozen_ints(self.lines))
        for name in ("open", "high", "low", "close", "volume_base", "volume_quote"):
            object.__setattr__(self, name, _frozen_floats(getattr(self, name)))
        n = self.time_ns.size
        columns = (self.open, self.high, self.low, self.close, self.volume_base,
                   self.volume_quote)
        if any(column.size != n for column in columns) or (
                self.lines is not None and self.lines.size != n):
            raise ValueError("Bars columns differ in length")
        if n > 1 and not bool(np.all(np.diff(self.time_ns) > 0)):
            raise ValueError("Bars times must increase strictly")
        if self.interval_ns <= 0:
            raise ValueError("Bars interval must be positive")

    def __len__(self) -> int:
        """Return the number of bars."""
        return int(self.time_ns.size)

    @property
    def interval_s(self) -> float:
        """Return the bar interval in seconds."""
        return self.interval_ns / NS_PER_S


def log_returns(bars: Bars) -> tuple[Ints, Floats]:
    """Return (end times, log close-to-close returns) over exactly one interval each.

    A return across a gap would mix several intervals into one draw, so returns are taken only
    between bars that are one interval apart; the end time is the later bar's open time.
    """
    if len(bars) < 2:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    adjacent = np.diff(bars.time_ns) == bars.interval_ns
    returns = np.diff(np.log(bars.close))[adjacent]
    return bars.time_ns[1:][adjacent].astype(np.int64), returns.astype(np.float64)
