"""The control channel: JSON requests to feedsim's ROUTER socket, answered inside the writer.

A request is one JSON object ``{"cmd": NAME, ...}``; the reply is ``{"ok": true, ...}`` or
``{"ok": false, "error": MESSAGE}``. Commands today: ``ping``, ``instruments``, ``snapshot``
(instruments and the latest tick of each symbol: the "clone" pattern's state request),
``book`` (one symbol's current order book in full, for a reader that saw a gap in its diffs)
and ``status`` (with ``replay``: where a historical replay stands, or null). Scenarios and feed
disruption arrive here later, so they run in the single writer.
A malformed request gets an error reply and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from feedsim.engine import MODEL_NAMES, Feed
from marketdata.books import book_to_dict
from marketdata.errors import SymbolError
from marketdata.symbols import Instruments
from marketdata.wire import as_dicts

MAX_REQUEST_BYTES = 64 * 1024

Handler = Callable[[Feed, dict[str, Any], int], dict[str, Any]]


class RequestError(ValueError):
    """A known command with arguments it cannot take; the message says what was wrong."""


def _ping(feed: Feed, request: dict[str, Any], now_ns: int) -> dict[str, Any]:
    return {"session": feed.session, "now_ns": now_ns}


def _instruments(feed: Feed, request: dict[str, Any], now_ns: int) -> dict[str, Any]:
    return {"session": feed.session, "instruments": [i.to_dict() for i in feed.instruments]}


def _snapshot(feed: Feed, request: dict[str, Any], now_ns: int) -> dict[str, Any]:
    last = {}
    for symbol in feed.symbols:
        tick = feed.last(symbol)
        last[symbol] = as_dicts(tick)[0] if tick is not None else None
    return {"session": feed.session, "instruments": [i.to_dict() for i in feed.instruments],
            "last": last}


def _book(feed: Feed, request: dict[str, Any], now_ns: int) -> dict[str, Any]:
    """The current book of `symbol` (any accepted spelling); book_seq 0 and empty before the
    first update."""
    text = request.get("symbol")
    if not isinstance(text, str):
        raise RequestError("'book' needs a 'symbol' string, e.g. {\"cmd\": \"book\", "
                           "\"symbol\": \"BTC-USD\"}")
    try:
        symbol = Instruments(feed.instruments).resolve(text).symbol
    except SymbolError as exc:
        raise RequestError(str(exc)) from None
    return book_to_dict(feed.book(symbol))


def _status(feed: Feed, request: dict[str, Any], now_ns: int) -> dict[str, Any]:
    replay = feed.replay_status(now_ns)
    return {
        "session": feed.session,
        "seed": feed.seed,
        "uptime_s": (now_ns - feed.start_ns) / 1e9,
        "lag_s": feed.lag_ns(now_ns) / 1e9,
        "symbols": {
            symbol: {"seq": s.seq, "rate": s.market.rate,
                     "model": ("replay" if replay is not None
                               else MODEL_NAMES[type(s.market.model)]),
                     "jumps": s.market.jumps is not None and replay is None}
            for symbol, s in feed.symbols.items()
        },
        "replay": replay,
    }


COMMANDS: dict[str, Handler] = {
    "ping": _ping,
    "instruments": _instruments,
    "snapshot": _snapshot,
    "book": _book,
    "status": _status,
}


def handle(feed: Feed, payload: bytes, now_ns: int) -> tuple[str, bytes]:
    """Answer one request payload; return (command name for metrics, reply bytes)."""
    if len(payload) > MAX_REQUEST_BYTES:
        return "invalid", _error(f"request is {len(payload)} bytes; the limit is "
                                 f"{MAX_REQUEST_BYTES}")
    try:
        request = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return "invalid", _error(f"request is not JSON: {exc}")
    if not isinstance(request, dict):
        return "invalid", _error("request must be a JSON object with a 'cmd' field")
    cmd = request.get("cmd")
    handler = COMMANDS.get(cmd) if isinstance(cmd, str) else None
    if handler is None:
        known = ", ".join(sorted(COMMANDS))
        problem = ("the request has no 'cmd' string" if not isinstance(cmd, str)
                   else f"unknown cmd {cmd!r}")
        return "invalid", _error(f"{problem}; known: {known}", request.get("id"))
    try:
        reply = {"ok": True, "cmd": cmd, **handler(feed, request, now_ns)}
    except RequestError as exc:
        return "invalid", _error(str(exc), request.get("id"))
    if "id" in request:
        reply["id"] = request["id"]
    return str(cmd), orjson.dumps(reply)


def _error(message: str, request_id: Any = None) -> bytes:
    reply: dict[str, Any] = {"ok": False, "error": message}
    if request_id is not None:
        reply["id"] = request_id
    return orjson.dumps(reply)
