"""Per-request bookkeeping: correlation id, request metrics, and one canonical log line.

The correlation id comes from the request's ``X-Request-ID`` header when it is a sane token
(1-128 characters of ``A-Za-z0-9._:-``), else a new uuid4 hex; it is echoed in the response's
``X-Request-ID`` and set in ``marketdata.logs.correlation_id`` so every log line of the request
carries it. Metrics are labelled with the route template, never the raw path, and with the
method only when it is a standard one ("other" otherwise), so label values stay bounded.
falcon's default OPTIONS answer gets OPTIONS added to its ``Allow``, as its 405s list it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import falcon
from prometheus_client import CollectorRegistry, Counter, Histogram

from marketdata.logs import correlation_id, request_id

log = logging.getLogger("api.request")

REQUEST_ID_HEADER = "X-Request-ID"
UNMATCHED_ROUTE = "unmatched"
OTHER_METHOD = "other"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetrics:
    """The API's Prometheus metrics, on the registry it is given."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("api_requests_total", "HTTP requests answered",
                                ["method", "route", "status"], registry=registry)
        self.duration = Histogram(
            "api_request_duration_seconds", "Time to answer an HTTP request",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=registry)


class RequestMiddleware:
    """Set the correlation id, then record and log every request when it is answered."""

    def __init__(self, metrics: RequestMetrics, route_labels: Mapping[str, str]) -> None:
        self.metrics = metrics
        self.route_labels = route_labels

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Start the clock and adopt or create the request's correlation id."""
        req.context.started = time.perf_counter()
        rid = request_id(req.get_header(REQUEST_ID_HEADER))
        req.context.request_id = rid
        req.context.cid_token = correlation_id.set(rid)
        resp.set_header(REQUEST_ID_HEADER, rid)

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        """Count, time and log the answered request, then clear the correlation id."""
        if req.method == "OPTIONS" and resp.status_code == 200:
            _answer_options(resp)
        started: float | None = req.context.get("started")
        duration = time.perf_counter() - started if started is not None else 0.0
        template = req.uri_template
        route = self.route_labels.get(template, template) if template else UNMATCHED_ROUTE
        status = resp.status_code
        # Labels only take bounded values: a client can send any method token.
        method = req.method if req.method in KNOWN_METHODS else OTHER_METHOD
        self.metrics.requests.labels(method, route, str(status)).inc()
        self.metrics.duration.labels(method, route).observe(duration)
        log.info("request", extra={"method": req.method, "path": req.path, "route": route,
                                   "status": status, "duration_ms": round(duration * 1e3, 3)})
        token = req.context.get("cid_token")
        if token is not None:
            correlation_id.reset(token)


def _answer_options(resp: falcon.Response) -> None:
    """Make falcon's default OPTIONS answer agree with its 405s: list OPTIONS in Allow, as a
    405 on the same route does."""
    allowed = [m.strip() for m in (resp.get_header("Allow") or "").split(",") if m.strip()]
    if allowed and "OPTIONS" not in allowed:
        resp.set_header("Allow", ", ".join([*allowed, "OPTIONS"]))
