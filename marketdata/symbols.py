"""Symbol names: the canonical ``BASE-QUOTE`` form, the spellings accepted, and instruments.

Users may write ``BTC-USD``, ``BTC/USD``, ``BTC_USD``, ``BTCUSD`` or any of these in lower case;
every answer uses the canonical ``BTC-USD``. A compact spelling such as ``BTCUSD`` is only
ambiguous in general, so it is resolved against the symbols the feed publishes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from marketdata.errors import InvalidSymbol, UnknownSymbol

_PART = re.compile(r"[A-Z0-9]{1,16}")  # used with fullmatch: no trailing newline slips through
_SEPARATORS = re.compile(r"[-/_]")
_COMPACT = re.compile(r"[A-Z0-9]{1,32}")  # BASEQUOTE: two parts of at most 16 each
MAX_SYMBOL_TEXT = 40

# Quote currencies tried, longest first, when splitting an unknown compact spelling for a message.
COMMON_QUOTES = ("USDT", "USDC", "BUSD", "USD", "EUR", "GBP", "JPY", "BTC", "ETH")


def canonical(text: str) -> str:
    """Return the canonical form of a separated spelling, e.g. ``btc/usd`` -> ``BTC-USD``.

    Raise InvalidSymbol when the text has no separator or a part is not alphanumeric; compact
    spellings need the list of known symbols (see Instruments.resolve).
    """
    cleaned = _cleaned(text)
    parts = _SEPARATORS.split(cleaned)
    if len(parts) != 2 or not all(_PART.fullmatch(p) for p in parts):
        raise _malformed(text)
    return f"{parts[0]}-{parts[1]}"


def check_spelling(text: str) -> None:
    """Raise InvalidSymbol unless `text` may name a symbol in some accepted spelling.

    Needs no instrument list, so a server can refuse malformed input before reading one. A
    compact spelling is only checked for its characters here: what it names, and whether it
    names anything, depends on the instruments (Instruments.resolve).
    """
    cleaned = _cleaned(text)
    if _SEPARATORS.search(cleaned):
        canonical(cleaned)
    elif not _COMPACT.fullmatch(cleaned):
        raise _malformed(text)


def _malformed(text: str) -> InvalidSymbol:
    return InvalidSymbol(f"'{text}' is not a symbol: expected BASE-QUOTE such as BTC-USD "
                         "(also accepted: BTC/USD, BTC_USD, BTCUSD, any case)")


def _cleaned(text: str) -> str:
    """Strip and upper-case `text`; refuse empty, overlong or non-ASCII text.

    ASCII first: str.upper() folds some non-ASCII letters into ASCII ones (U+017F, the long s,
    becomes 'S'), which would let a lookalike resolve to a real symbol.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidSymbol("symbol is empty")
    if len(text.strip()) > MAX_SYMBOL_TEXT:
        raise InvalidSymbol(f"symbol is longer than {MAX_SYMBOL_TEXT} characters")
    if not text.isascii():
        raise InvalidSymbol(f"'{text.strip()}' is not a symbol: ASCII only; expected BASE-QUOTE "
                            "such as BTC-USD (also accepted: BTC/USD, BTC_USD, BTCUSD, any case)")
    return text.strip().upper()


def compact(symbol: str) -> str:
    """Return the separator-free spelling of a canonical symbol (``BTC-USD`` -> ``BTCUSD``)."""
    return symbol.replace("-", "")


@dataclass(frozen=True)
class Instrument:
    """What a client needs to know to read a symbol's prices and sizes."""

    symbol: str
    base: str
    quote: str
    tick_size: float
    lot_size: float
    min_price: float
    max_price: float

    @property
    def price_decimals(self) -> int:
        """Decimal places of the tick size (0.01 -> 2)."""
        return _decimals(self.tick_size)

    @property
    def size_decimals(self) -> int:
        """Decimal places of the lot size."""
        return _decimals(self.lot_size)

    def mids(self, bid: npt.NDArray[np.float64], ask: npt.NDArray[np.float64]
             ) -> npt.NDArray[np.float64]:
        """Mid prices, to one decimal more than the tick size (a mid can fall between two
        ticks): the one rounding every API answers with."""
        return np.round((bid + ask) / 2.0, self.price_decimals + 1)

    def spread_bps(self, bid: float, ask: float, mid: float) -> float | None:
        """(ask - bid) / mid in basis points, 3 decimals; None when the mid is not positive."""
        spread = round(ask - bid, self.price_decimals)
        return round(spread / mid * 10_000, 3) if mid > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Instrument:
        """Build from a dict as written by to_dict (unknown keys are ignored)."""
        return cls(
            symbol=str(data["symbol"]),
            base=str(data["base"]),
            quote=str(data["quote"]),
            tick_size=float(data["tick_size"]),
            lot_size=float(data["lot_size"]),
            min_price=float(data["min_price"]),
            max_price=float(data["max_price"]),
        )


def _decimals(step: float) -> int:
    text = f"{step:.12f}".rstrip("0")
    return len(text.split(".")[1]) if "." in text else 0


class Instruments:
    """The set of published instruments, resolving any accepted spelling to one of them."""

    def __init__(self, instruments: Iterable[Instrument]) -> None:
        self._by_symbol = {i.symbol: i for i in instruments}
        self._by_compact = {compact(s): s for s in self._by_symbol}

    def __iter__(self) -> Iterator[Instrument]:
        return iter(self._by_symbol.values())

    def __len__(self) -> int:
        return len(self._by_symbol)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._by_symbol

    @property
    def symbols(self) -> tuple[str, ...]:
        """Canonical symbols in publication order."""
        return tuple(self._by_symbol)

    def resolve(self, text: str) -> Instrument:
        """Return the instrument `text` names; raise InvalidSymbol or UnknownSymbol."""
        cleaned = _cleaned(text)
        if _SEPARATORS.search(cleaned):
            symbol = canonical(cleaned)
        elif cleaned in self._by_compact:
            symbol = self._by_compact[cleaned]
        elif _PART.fullmatch(cleaned):
            symbol = _split_compact(cleaned)
        else:
            raise _malformed(text)
        try:
            return self._by_symbol[symbol]
        except KeyError:
            raise UnknownSymbol(symbol, self.symbols) from None


def _split_compact(text: str) -> str:
    for quote in COMMON_QUOTES:
        if text.endswith(quote) and len(text) > len(quote):
            return f"{text[: -len(quote)]}-{quote}"
    return text
