"""The REST ceiling: a bare WSGI app answering one small fixed JSON body, for bench/pipeline.py.

Run under the product's gunicorn settings: ``gunicorn -c python:api.gunicorn_conf
bench.bare_wsgi:app``. The body has the shape and size of a real current-price answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

BODY = (
    b'{"symbol":"BTC-USD","bid":64997.14,"ask":65010.16,"mid":65003.65,"last":64997.17,'
    b'"last_size":0.04066,"bid_size":7.26963,"ask_size":0.4574,"spread":13.02,'
    b'"spread_bps":2.003,"volume":1183.42719,"seq":78373,"session":1795597337174016008,'
    b'"timestamp":"2026-11-25T09:02:17.957736Z","timestamp_ms":1795597337957,'
    b'"ts_ns":1795597337957736008,"age_ms":6.167,"flags":0}'
)
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answer every request with BODY."""
    start_response("200 OK", HEADERS)
    return [BODY]
