"""The exception tree shared by all processes (drawn in the package docstring)."""


class MarketDataError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(MarketDataError):
    """A setting is missing or malformed; the message names it and says what is expected."""


class WireError(MarketDataError, ValueError):
    """Bytes that are not a valid tick batch of a version this code reads."""


class SymbolError(MarketDataError, ValueError):
    """A symbol that cannot be served."""


class InvalidSymbol(SymbolError):
    """Text that is not a symbol in any accepted spelling."""


class UnknownSymbol(SymbolError):
    """A well-formed symbol the feed does not publish."""

    def __init__(self, symbol: str, known: tuple[str, ...] = ()) -> None:
        self.symbol = symbol
        self.known = known
        hint = f"; known symbols: {', '.join(known)}" if known else ""
        super().__init__(f"unknown symbol '{symbol}'{hint}")


class InvalidParameter(MarketDataError, ValueError):
    """A request argument is malformed or out of range; the message names it and says why.

    Shared by REST (400 invalid_parameter) and gRPC (INVALID_ARGUMENT).
    """

    def __init__(self, parameter: str, reason: str) -> None:
        self.parameter = parameter
        super().__init__(f"{parameter}: {reason}")
