"""Register the gRPC service so that a request that is not valid protobuf gets INVALID_ARGUMENT.

The generated ``add_MarketDataServiceServicer_to_server`` decodes requests with ``FromString``;
when that raises, grpc answers UNKNOWN with no detail, and the caller cannot tell its own bad
bytes from a server fault. Here each request is decoded leniently: bytes that do not parse become
a ``Malformed`` value, and the call ends with INVALID_ARGUMENT naming the message type and the
parser's complaint. Every RPC of the service descriptor is registered this way, so an RPC added
to the proto and implemented as a coroutine method of the servicer is covered without more code.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from marketdata import marketdata_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["MarketDataService"]
log = logging.getLogger("bridge.call")

Handler = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Coroutine[Any, Any, Any]]


@dataclass(frozen=True)
class Malformed:
    """A request whose bytes did not parse as its message type."""

    message_type: str
    error: str


def lenient_decoder(message_class: Any) -> Callable[[bytes], Any]:
    """Return a request decoder that yields a Malformed value instead of raising."""

    def decode(data: bytes) -> Any:
        try:
            return message_class.FromString(data)
        except (DecodeError, ValueError) as exc:  # ValueError: e.g. invalid UTF-8 in a string
            return Malformed(message_class.DESCRIPTOR.full_name, str(exc) or type(exc).__name__)

    return decode


def _guarded(rpc: str, method: Handler, *, streaming: bool) -> Handler:
    """Wrap `method`: a Malformed request ends with INVALID_ARGUMENT, and a unary call is
    logged once it is answered (streams log their own opening and end)."""

    async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started = time.perf_counter()
        failed: grpc.StatusCode | None = None  # what the caller gets when no code was set
        try:
            if isinstance(request, Malformed):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"{rpc}: the request is not a valid {request.message_type} "
                                    f"message ({request.error})")
            return await method(request, context)
        except grpc.aio.AbortError:
            raise  # the code is the context's
        except asyncio.CancelledError:
            failed = grpc.StatusCode.CANCELLED  # the caller left, or its deadline passed
            raise
        except Exception:
            failed = grpc.StatusCode.UNKNOWN  # a bug: grpc answers UNKNOWN
            raise
        finally:
            if not streaming:
                code = context.code() or failed or grpc.StatusCode.OK
                log.info("call", extra={"rpc": rpc, "code": code.name,
                                        "duration_ms": round((time.perf_counter() - started)
                                                             * 1e3, 3)})

    return handle


def add_service(servicer: object, server: grpc.aio.Server) -> list[str]:
    """Register `servicer`'s coroutine methods for MarketDataService; return the RPC names."""
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for method in SERVICE.methods:
        implementation = getattr(servicer, method.name, None)
        if not inspect.iscoroutinefunction(implementation):
            continue  # not implemented here: grpc answers UNIMPLEMENTED
        request_class = getattr(pb, method.input_type.name)
        response_class = getattr(pb, method.output_type.name)
        if method.client_streaming:
            raise TypeError(f"{method.name}: client-streaming RPCs are not supported here")
        factory = (grpc.unary_stream_rpc_method_handler if method.server_streaming
                   else grpc.unary_unary_rpc_method_handler)
        handlers[method.name] = factory(
            _guarded(method.name, implementation, streaming=method.server_streaming),
            request_deserializer=lenient_decoder(request_class),
            response_serializer=response_class.SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))
    return list(handlers)
