"""The arguments of data requests, checked once for REST and gRPC alike.

REST (``api.params``) parses query text into numbers and gRPC (``bridge.service``) reads them from
messages; both then go through these checks, so a request means the same and fails with the
same words on either. Every failure raises InvalidParameter naming the argument as the caller
spells it (``start`` in REST, ``start_ns`` in gRPC).

Ranges: ``start`` and ``end`` bound tick times (or candle open times) inclusively; ``end``
defaults to now. With a start, the first ``limit`` items from it; without, the last ``limit`` up
to end; always oldest first.
"""

from __future__ import annotations

from dataclasses import dataclass

from marketdata.candles import BY_NAME, Interval
from marketdata.errors import InvalidParameter

MAX_NS = 2**63 - 1  # ticks carry int64 ns: up to 2262-04-11T23:47:16.854775807Z
DEFAULT_HISTORY_LIMIT = 1000
MAX_HISTORY_LIMIT = 10_000
DEFAULT_INTERVAL = "1m"
DEFAULT_DEPTH = 20
DEFAULT_TRADES_LIMIT = 100
MAX_TRADES_LIMIT = 1000
"""Also how many recent trades the bridge keeps per symbol (bridge.recent)."""


@dataclass(frozen=True)
class HistoryQuery:
    """A validated history request: start_ns <= end_ns, 1 <= limit <= the maximum."""

    start_ns: int | None
    end_ns: int
    limit: int


@dataclass(frozen=True)
class CandleQuery:
    """A validated candles request: the interval and a range of open times, as HistoryQuery."""

    interval: Interval
    start_ns: int | None
    end_ns: int
    limit: int


def check_limit(limit: int, maximum: int, name: str = "limit") -> int:
    """Return `limit` when it is in 1..maximum; raise InvalidParameter."""
    if not 1 <= limit <= maximum:
        raise InvalidParameter(name, f"{limit} is not an integer from 1 to {maximum}")
    return limit


def check_time(name: str, ns: int) -> int:
    """Return `ns` when it is a supported time (1970 to 2262); raise InvalidParameter."""
    if not 0 <= ns <= MAX_NS:
        raise InvalidParameter(name, f"{ns} is outside the times supported, 0 (1970-01-01) to "
                               f"{MAX_NS} ns (2262-04-11)")
    return ns


def check_range(start_ns: int | None, end_ns: int | None, now_ns: int, *,
                names: tuple[str, str] = ("start", "end")) -> tuple[int | None, int]:
    """Return (start_ns, end_ns) with end defaulting to now; raise when start is after end."""
    start_name, end_name = names
    end = now_ns if end_ns is None else end_ns
    if start_ns is not None and start_ns > end:
        reason = (f"is after {end_name}" if end_ns is not None
                  else f"is in the future ({end_name} defaults to now)")
        raise InvalidParameter(start_name, reason)
    return start_ns, end


def history_range(start_ns: int | None, end_ns: int | None, limit: int | None, now_ns: int, *,
                  default_limit: int = DEFAULT_HISTORY_LIMIT,
                  max_limit: int = MAX_HISTORY_LIMIT,
                  names: tuple[str, str] = ("start", "end")) -> HistoryQuery:
    """Check a whole range request (times, order, limit; None: the default) at `now_ns`."""
    for name, ns in zip(names, (start_ns, end_ns), strict=True):
        if ns is not None:
            check_time(name, ns)
    start, end = check_range(start_ns, end_ns, now_ns, names=names)
    return HistoryQuery(start, end, default_limit if limit is None
                        else check_limit(limit, max_limit))


def interval(name: str, parameter: str = "interval") -> Interval:
    """Return the candle interval called `name`; raise InvalidParameter listing them all."""
    found = BY_NAME.get(name.strip())
    if found is None:
        raise InvalidParameter(parameter, f"{name[:40]!r} is not an interval; accepted: "
                               f"{', '.join(BY_NAME)}")
    return found


DEPTH_ACCEPTED = "an integer from 1 to the levels held per side"
"""What a depth may be, before the book tells how many levels it holds."""


def check_depth(depth: int | None, name: str = "depth") -> int | None:
    """Reject a depth below 1 before any book is read (the upper bound needs the book)."""
    if depth is not None and depth < 1:
        raise InvalidParameter(name, f"'{depth}' is not {DEPTH_ACCEPTED}")
    return depth


def book_depth(depth: int | None, held: int, name: str = "depth") -> int:
    """Return the levels a side to answer: `depth` when it is 1..held (the levels the book holds
    per side), DEFAULT_DEPTH (or all held, if fewer) when None; raise InvalidParameter."""
    if depth is None:
        return min(DEFAULT_DEPTH, held)
    if not 1 <= depth <= max(held, 1):
        raise InvalidParameter(name, f"{depth} is not an integer from 1 to {max(held, 1)}, "
                               "the levels held per side")
    return depth


def trades_limit(limit: int | None) -> int:
    """Return how many recent trades to answer: 1 to MAX_TRADES_LIMIT, DEFAULT_TRADES_LIMIT
    when None; raise InvalidParameter."""
    return DEFAULT_TRADES_LIMIT if limit is None else check_limit(limit, MAX_TRADES_LIMIT)
