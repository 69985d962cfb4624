"""The API's errors and their one JSON shape, mapped to HTTP in a single table.

Every error answer, including falcon's own 404 and 405, is::

    {"error": {"status": 404, "code": "unknown_symbol", "message": "unknown symbol 'XYZ-USD'; ..."}}

Unexpected exceptions answer 500 ``internal`` with a generic message; the exception is logged
with the request's correlation id, never sent to the client.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import falcon

from marketdata.errors import InvalidParameter, InvalidSymbol, MarketDataError, UnknownSymbol
from marketdata.store import StoreError, StoreUnavailable

log = logging.getLogger(__name__)


class ApiError(MarketDataError):
    """Base of the errors the API raises itself."""


class Unavailable(ApiError):
    """The data needed for the answer is not there yet (e.g. the bridge has written nothing)."""


@dataclass(frozen=True)
class ErrorKind:
    """How one exception type is answered."""

    status: int
    code: str
    message: str | None = None
    """A fixed message to send instead of the exception's text (for texts with internals)."""


ERRORS: dict[type[Exception], ErrorKind] = {
    InvalidSymbol: ErrorKind(400, "invalid_symbol"),
    UnknownSymbol: ErrorKind(404, "unknown_symbol"),
    InvalidParameter: ErrorKind(400, "invalid_parameter"),
    Unavailable: ErrorKind(503, "unavailable"),
    StoreUnavailable: ErrorKind(503, "unavailable",
                                "the price store is unreachable; try again shortly"),
    StoreError: ErrorKind(500, "internal", "internal error"),
    Exception: ErrorKind(500, "internal", "internal error"),
}
"""Exception type -> answer. Falcon picks the most specific type for each exception."""

HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    503: "unavailable",
}
"""Codes for falcon's own HTTPErrors (routing, request parsing), by status."""


def error_body(status: int, code: str, message: str) -> dict[str, Any]:
    """Return the JSON body of an error answer."""
    return {"error": {"status": status, "code": code, "message": message}}


def install(app: falcon.App[falcon.Request, falcon.Response]) -> None:
    """Register the handlers that answer every error in the one JSON shape."""
    for exc_type in ERRORS:
        app.add_error_handler(exc_type, _handle_mapped)
    app.add_error_handler(falcon.HTTPError, _handle_http_error)


def _handle_mapped(req: falcon.Request, resp: falcon.Response, ex: Exception,
                   params: dict[str, Any]) -> None:
    kind = next(ERRORS[t] for t in type(ex).__mro__ if t in ERRORS)
    if kind.status >= 500:
        if kind.code == "internal":
            log.exception("unhandled error", extra={"path": req.path, "method": req.method})
        else:
            log.warning("answered unavailable", extra={"path": req.path, "error": str(ex)})
    _answer(resp, kind.status, kind.code, kind.message or str(ex))


def _handle_http_error(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError,
                       params: dict[str, Any]) -> None:
    status = ex.status_code
    headers = _headers(ex)
    if status == 404:
        message = f"no route {req.path}; see /api/v1/symbols and the README for the routes"
    elif status == 405:
        allowed = headers.get("Allow", "")
        message = f"method {req.method} not allowed on {req.path}; allowed: {allowed}"
    else:
        message = ex.description or ex.title or "request failed"
    _answer(resp, status, HTTP_CODES.get(status, "http_error"), message)
    for name, value in headers.items():
        resp.set_header(name, value)


def _headers(ex: falcon.HTTPError) -> dict[str, str]:
    """Return the headers an HTTPError asks for (e.g. Allow on a 405) as a dict."""
    return dict(ex.headers) if ex.headers is not None else {}


def _answer(resp: falcon.Response, status: int, code: str, message: str) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.media = error_body(status, code, message)
