"""What every process and every client shares: the wire format, symbols, logging, settings.

The gRPC modules ``marketdata_pb2`` and ``marketdata_pb2_grpc`` are generated into this package
from ``proto/marketdata/marketdata.proto`` by ``make proto`` (part of ``make run`` and
``make test``); they are not committed.

Exceptions raised here::

    MarketDataError
     +-- ConfigError        a setting is missing or malformed
     +-- WireError          a ZeroMQ message or stored blob is not a valid tick batch
     +-- InvalidParameter   a request argument is malformed or out of range (REST and gRPC)
     +-- SymbolError
          +-- InvalidSymbol  text that cannot be a symbol at all
          +-- UnknownSymbol  a well-formed symbol that the feed does not publish
"""

from marketdata.errors import (
    ConfigError,
    InvalidParameter,
    InvalidSymbol,
    MarketDataError,
    SymbolError,
    UnknownSymbol,
    WireError,
)

__all__ = [
    "ConfigError",
    "InvalidParameter",
    "InvalidSymbol",
    "MarketDataError",
    "SymbolError",
    "UnknownSymbol",
    "WireError",
]
