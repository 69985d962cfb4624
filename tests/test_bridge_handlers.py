"""bridge.handlers against a real grpc.aio server: what each unary call's log line says."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
import pytest

from bridge import handlers
from marketdata import marketdata_pb2 as pb
from marketdata import marketdata_pb2_grpc as pb_grpc


class Servicer:
    """GetPrice fails with a bug; ListSymbols outlasts the caller's deadline; GetCandles
    aborts with NOT_FOUND."""

    async def GetPrice(self, request: Any, context: Any) -> pb.GetPriceResponse:
        raise RuntimeError("a bug")

    async def ListSymbols(self, request: Any, context: Any) -> pb.ListSymbolsResponse:
        await asyncio.sleep(5)
        return pb.ListSymbolsResponse()

    async def GetCandles(self, request: Any, context: Any) -> pb.GetCandlesResponse:
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such symbol")
        raise AssertionError("abort returned")


async def calls() -> None:
    server = grpc.aio.server()
    handlers.add_service(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.MarketDataServiceStub(channel)
            for call in (stub.GetPrice(pb.GetPriceRequest(symbol="BTC-USD"), timeout=5),
                         stub.ListSymbols(pb.ListSymbolsRequest(), timeout=0.2),
                         stub.GetCandles(pb.GetCandlesRequest(symbol="X"), timeout=5)):
                with pytest.raises(grpc.aio.AioRpcError):
                    await call
        await asyncio.sleep(0.2)  # the cancelled handler logs as it unwinds
    finally:
        await server.stop(None)


def test_a_unary_calls_line_says_the_status_the_caller_got(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="bridge.call"):
        asyncio.run(calls())
    codes = {r.__dict__["rpc"]: r.__dict__["code"] for r in caplog.records
             if r.name == "bridge.call"}
    assert codes == {"GetPrice": "UNKNOWN", "ListSymbols": "CANCELLED",
                     "GetCandles": "NOT_FOUND"}
