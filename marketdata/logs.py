"""JSON-lines logging to stdout with a correlation id, for every process.

One line per event: ``{"ts", "level", "service", "instance", "pid", "logger", "event", "cid",
...fields}``. Fields come from ``extra=``; the correlation id from the context variable below,
set per HTTP request or gRPC call.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import orjson

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id(incoming: str | None) -> str:
    """Return the caller's request id when it is a valid one (1-128 letters, digits and
    ``. _ : -``), else a new one: what goes into every log line must stay short and plain."""
    return incoming if incoming and _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {
    "message", "asctime", "taskName",
}


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object on one line."""

    def __init__(self, service: str, instance: str) -> None:
        super().__init__()
        self.service = service
        self.instance = instance

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "instance": self.instance,
            "pid": record.process,
            "logger": record.name,
            "event": record.getMessage(),
        }
        cid = correlation_id.get()
        if cid:
            line["cid"] = cid
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure_for_error(env: Mapping[str, str], service: str) -> None:
    """Set logging up when the settings could not be read, to say why: the names come from
    the environment as far as it goes (SERVICE_NAME, SERVICE_INSTANCE_NAME, as documented)."""
    name = env.get("SERVICE_NAME", "").strip() or service
    configure(name, instance=env.get("SERVICE_INSTANCE_NAME", "").strip() or f"{name}-1")


def configure(service: str, level: str = "INFO", instance: str | None = None) -> None:
    """Send every logger's records to stdout as JSON lines at `level`."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service, instance or f"{service}-{os.getpid()}"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
