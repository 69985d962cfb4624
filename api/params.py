"""Parsing query parameters: timestamps, limits, intervals, and the range queries as a whole.

``KnownParameters`` refuses, on every route, a parameter the route does not take.

Timestamps are epoch milliseconds (digits only, e.g. ``1764060279123``) or RFC 3339 / ISO 8601
text (``2026-11-25T08:44:39.123Z``, ``2026-11-25T09:44:39+01:00``; without an offset it is UTC;
digits beyond microseconds are dropped), from 1970 to 2262 (the range of int64 nanoseconds).
Every failure raises InvalidParameter naming the parameter, never anything else.

An ``end`` covers the whole unit it is written in: ``end=1764060279123`` includes every tick of
that millisecond, ``end=2026-11-25T08:44:39Z`` every tick of that second. So a tick's own
``timestamp_ms`` or ``timestamp`` used as ``end`` includes that tick.

Candles take the same ``start``, ``end`` and ``limit``, applied to the candles' open times, and
an ``interval`` (``1m`` when not given). The order book takes a ``depth``, trades a ``limit``,
correlations ``symbols`` (comma-separated), ``interval`` and ``window``; the checks themselves
are ``marketdata.queries``, shared with gRPC.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import falcon

from marketdata import correlations, queries
from marketdata.candles import Interval
from marketdata.errors import InvalidParameter
from marketdata.queries import (
    DEFAULT_INTERVAL,
    MAX_NS,
    MAX_TRADES_LIMIT,
    CandleQuery,
    HistoryQuery,
    check_limit,
)

MAX_EPOCH_MS = MAX_NS // 1_000_000
MAX_TIMESTAMP_TEXT = 64
HISTORY_PARAMETERS = ("start", "end", "limit")
CANDLE_PARAMETERS = ("interval", "start", "end", "limit")
ORDERBOOK_PARAMETERS = ("depth",)
TRADES_PARAMETERS = ("limit",)
CORRELATION_PARAMETERS = ("symbols", "interval", "window")
MAX_SYMBOLS_TEXT = 4096

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = "2262-04-11T23:47:16Z"
_DIGITS = re.compile(r"[0-9]+")
_CLOCK = re.compile(r"[Tt ](\d{2})(?::?(\d{2})(?::?(\d{2})(?:[.,](\d+))?)?)?")
# "+01:00" in a query string arrives as " 01:00" when the client did not encode the "+".
_SPACED_OFFSET = re.compile(r"(.*[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?) (\d{2}:?\d{2})")


@dataclass(frozen=True)
class CorrelationQuery:
    """A validated correlations request; `symbols` as written (None: all), not yet resolved."""

    symbols: tuple[str, ...] | None
    interval: Interval
    window: int


def parse_timestamp(name: str, text: str, *, through: bool = False) -> int:
    """Return `text` (epoch ms or RFC 3339) as ns since the epoch; raise InvalidParameter.

    With `through`, return the last ns of the unit the text is written in (see module doc).
    """
    text = text.strip()
    if not text:
        raise InvalidParameter(name, "is empty; give epoch milliseconds or an RFC 3339 time")
    if len(text) > MAX_TIMESTAMP_TEXT:
        raise InvalidParameter(name, f"is longer than {MAX_TIMESTAMP_TEXT} characters")
    if _DIGITS.fullmatch(text):
        ms = int(text)
        if ms > MAX_EPOCH_MS:
            raise InvalidParameter(name, f"{text} is after {_LATEST}, the last time supported")
        return min(ms * 1_000_000 + (999_999 if through else 0), MAX_NS)
    spaced = _SPACED_OFFSET.fullmatch(text)
    if spaced:
        text = f"{spaced.group(1)}+{spaced.group(2)}"
    try:
        moment = datetime.fromisoformat(text.upper())
    except ValueError:
        raise InvalidParameter(
            name, f"{text!r} is neither epoch milliseconds nor an RFC 3339 time such as "
            "2026-11-25T08:44:39.123Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
    if not 0 <= ns <= MAX_NS:
        raise InvalidParameter(name, f"{text!r} is outside the times supported, "
                               f"1970-01-01T00:00:00Z to {_LATEST}")
    if through:
        ns = min(ns + _unit_ns(text) - 1, MAX_NS)
    return ns


def _unit_ns(text: str) -> int:
    """Return the length of the unit an ISO time is written to: a day, hour, minute, second..."""
    clock = _CLOCK.search(text)
    if clock is None:
        return 86_400 * 1_000_000_000  # a date alone
    _, minutes, seconds, fraction = clock.groups()
    if fraction:
        return int(10 ** (9 - min(len(fraction), 6)))
    if seconds:
        return 1_000_000_000
    return (60 if minutes else 3600) * 1_000_000_000


def parse_limit(text: str, maximum: int) -> int:
    """Return the `limit` parameter as an int in 1..maximum; raise InvalidParameter."""
    return parse_count("limit", text, maximum)


def parse_count(name: str, text: str, maximum: int) -> int:
    """Return a whole-number parameter in 1..maximum; raise InvalidParameter naming it."""
    text = text.strip()
    if not _DIGITS.fullmatch(text) or len(text) > 12:
        raise InvalidParameter(name, f"{text[:40]!r} is not an integer from 1 to {maximum}")
    return check_limit(int(text), maximum, name)


def parse_interval(text: str) -> Interval:
    """Return the `interval` parameter as an Interval; raise InvalidParameter listing them all."""
    return queries.interval(text)


def history_query(params: Mapping[str, str | Sequence[str]], now_ns: int, default_limit: int,
                  max_limit: int) -> HistoryQuery:
    """Validate the query parameters of a history request (`end` defaults to now)."""
    values = single_values(params, HISTORY_PARAMETERS)
    return HistoryQuery(*_range(values, now_ns, default_limit, max_limit))


def candle_query(params: Mapping[str, str | Sequence[str]], now_ns: int, default_limit: int,
                 max_limit: int) -> CandleQuery:
    """Validate the query parameters of a candles request (history's, plus `interval`)."""
    values = single_values(params, CANDLE_PARAMETERS)
    interval = parse_interval(values.get("interval", DEFAULT_INTERVAL))
    return CandleQuery(interval, *_range(values, now_ns, default_limit, max_limit))


class KnownParameters:
    """Falcon middleware: refuse a query parameter the matched route does not take.

    One check for every route, /metrics and the probes included: a resource lists the parameters
    it takes in its ``parameters`` attribute, and one without it takes none. It runs before the
    responder, so before any Redis read; an unmatched route or method keeps its 404 or 405.
    """

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: object,
                         params: Mapping[str, Any]) -> None:
        """Raise InvalidParameter naming the first unknown query parameter, if any."""
        if resource is None or not hasattr(resource, f"on_{req.method.lower()}"):
            return
        check_names(req.params, getattr(resource, "parameters", ()))


def check_names(params: Mapping[str, object], accepted: Sequence[str]) -> None:
    """Raise InvalidParameter naming the first parameter (by name) not in `accepted`."""
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        reason = (f"is not a parameter of this route; accepted: {', '.join(accepted)}"
                  if accepted else "is not a parameter of this route, which takes none")
        raise InvalidParameter(unknown[0][:40], reason)


def single_values(params: Mapping[str, str | Sequence[str]],
                  accepted: Sequence[str]) -> dict[str, str]:
    """Return the parameters as single strings; raise InvalidParameter for unknown or repeated."""
    check_names(params, accepted)
    values: dict[str, str] = {}
    for name, value in params.items():
        if not isinstance(value, str):
            raise InvalidParameter(name, "is given more than once")
        values[name] = value
    return values


def _range(values: Mapping[str, str], now_ns: int, default_limit: int,
           max_limit: int) -> tuple[int | None, int, int]:
    """Return (start_ns, end_ns, limit) from validated single values (`end` defaults to now)."""
    query = queries.history_range(
        parse_timestamp("start", values["start"]) if "start" in values else None,
        parse_timestamp("end", values["end"], through=True) if "end" in values else None,
        parse_count("limit", values["limit"], max_limit) if "limit" in values else None,
        now_ns, default_limit=default_limit, max_limit=max_limit)
    return query.start_ns, query.end_ns, query.limit


def parse_whole(name: str, text: str, accepted: str = "a whole number") -> int:
    """Return a parameter written as a whole number; raise InvalidParameter naming it and saying
    what is `accepted` (e.g. "an integer from 3 to 1440")."""
    text = text.strip()
    if not _DIGITS.fullmatch(text) or len(text) > 12:
        raise InvalidParameter(name, f"{text[:40]!r} is not {accepted}")
    return int(text)


def depth_query(params: Mapping[str, str | Sequence[str]]) -> int | None:
    """Return the order book `depth` asked for (None: the default), not yet checked against
    the levels held."""
    values = single_values(params, ORDERBOOK_PARAMETERS)
    return (parse_whole("depth", values["depth"], queries.DEPTH_ACCEPTED)
            if "depth" in values else None)


def trades_query(params: Mapping[str, str | Sequence[str]]) -> int:
    """Return the `limit` of a trades request: 1 to MAX_TRADES_LIMIT, DEFAULT_TRADES_LIMIT."""
    values = single_values(params, TRADES_PARAMETERS)
    return queries.trades_limit(parse_count("limit", values["limit"], MAX_TRADES_LIMIT)
                                if "limit" in values else None)


def correlation_query(params: Mapping[str, str | Sequence[str]]) -> CorrelationQuery:
    """Validate a correlations request: symbols listed once each, at least two; an interval;
    a window of MIN_RETURNS to MAX_WINDOW returns."""
    values = single_values(params, CORRELATION_PARAMETERS)
    symbols = None
    if "symbols" in values:
        text = values["symbols"]
        if len(text) > MAX_SYMBOLS_TEXT:
            raise InvalidParameter("symbols", f"is longer than {MAX_SYMBOLS_TEXT} characters")
        symbols = tuple(part.strip() for part in text.split(","))
        if any(not part for part in symbols):
            raise InvalidParameter("symbols", f"{text[:80]!r} has an empty name; give "
                                   "comma-separated symbols such as BTC-USD,ETH-USD")
        if len(symbols) < 2:
            raise InvalidParameter("symbols", "give at least two symbols to correlate "
                                   "(or leave it out for all)")
    interval = parse_interval(values.get("interval", DEFAULT_INTERVAL))
    window = correlations.DEFAULT_WINDOW
    if "window" in values:
        accepted = (f"an integer from {correlations.MIN_RETURNS} to "
                    f"{correlations.MAX_WINDOW}")
        window = parse_whole("window", values["window"], accepted)
        if not correlations.MIN_RETURNS <= window <= correlations.MAX_WINDOW:
            raise InvalidParameter("window", f"{window} is not {accepted}")
    return CorrelationQuery(symbols, interval, window)
