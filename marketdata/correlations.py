"""Correlation of symbols' returns, from their candle closes on a common time grid.

Pure: no I/O, no clock. The grid is `window` + 1 consecutive open times of one interval ending
with the last interval that has closed; a symbol's close at a grid time is the close of its
candle that opened then (none when it did not trade). A return is the log change of the close
from one grid time to the next, so it exists when both candles do. Returns are aligned across
all the symbols asked for: a grid step counts only when every one of them has a return there,
so every entry of the matrix comes from the same sample (and the matrix is a true correlation
matrix, positive semi-definite).

Entries that cannot be computed are None with a reason: fewer than MIN_RETURNS aligned returns,
or a symbol whose close never changed in the sample (its variance is zero).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from marketdata.candles import Candle, Interval

MIN_RETURNS = 3
DEFAULT_WINDOW = 60
MAX_WINDOW = 1440


@dataclass(frozen=True)
class Grid:
    """The open times of window + 1 consecutive candles of one interval."""

    interval: Interval
    first_open_ns: int
    window: int

    @classmethod
    def ending_before(cls, interval: Interval, now_ns: int, window: int) -> Grid:
        """Return the grid whose last candle is the latest one closed by `now_ns`."""
        last_open = interval.open_ns(now_ns) - interval.ns
        return cls(interval, last_open - window * interval.ns, window)

    @property
    def last_open_ns(self) -> int:
        """The open time of the grid's last candle."""
        return self.first_open_ns + self.window * self.interval.ns

    @property
    def end_ns(self) -> int:
        """The last ns of the grid's last candle."""
        return self.last_open_ns + self.interval.ns - 1

    def closes(self, candles: Sequence[Candle]) -> npt.NDArray[np.float64]:
        """Return the close at every grid time (NaN where there is no candle)."""
        out = np.full(self.window + 1, np.nan)
        for candle in candles:
            step, offset = divmod(candle.open_ns - self.first_open_ns, self.interval.ns)
            if offset == 0 and 0 <= step <= self.window:
                out[step] = candle.close
        return out


@dataclass(frozen=True)
class Correlations:
    """A correlation matrix, in the order of `symbols`, and the sample it came from."""

    symbols: tuple[str, ...]
    matrix: list[list[float | None]]
    returns: int
    """How many aligned returns each entry is computed from."""
    reason: str | None
    """Why entries are None, or None when every entry is a number."""


def correlate(symbols: Sequence[str], closes: npt.NDArray[np.float64]) -> Correlations:
    """Return the Pearson correlations of the log returns of `closes` (one row per symbol)."""
    n = len(symbols)
    returns = np.diff(np.log(closes), axis=1)
    aligned = returns[:, ~np.isnan(returns).any(axis=0)]
    count = int(aligned.shape[1])
    if count < MIN_RETURNS:
        too_few = (f"only {count} aligned returns in the window (at least {MIN_RETURNS} "
                   "needed): a return needs a candle, so a trade, of every symbol in two "
                   "consecutive intervals")
        return Correlations(tuple(symbols), [[None] * n for _ in range(n)], count, too_few)
    centred = aligned - aligned.mean(axis=1, keepdims=True)
    spread = np.sqrt((centred * centred).sum(axis=1))
    flat = spread == 0.0
    safe = np.where(flat, 1.0, spread)
    matrix = np.clip((centred @ centred.T) / np.outer(safe, safe), -1.0, 1.0)
    np.fill_diagonal(matrix, 1.0)
    rows: list[list[float | None]] = [
        [None if flat[i] or flat[j] else float(matrix[i, j]) for j in range(n)]
        for i in range(n)
    ]
    reason: str | None = None
    if flat.any():
        names = ", ".join(s for s, f in zip(symbols, flat, strict=True) if f)
        reason = f"the close of {names} did not change over the aligned returns"
    return Correlations(tuple(symbols), rows, count, reason)
