"""Symbol spellings resolve to the canonical form; bad ones fail with clear errors."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketdata.errors import InvalidSymbol, UnknownSymbol
from marketdata.symbols import Instrument, Instruments, canonical, check_spelling

BTC = Instrument("BTC-USD", "BTC", "USD", 0.01, 0.00001, 1.0, 1e7)
ETH = Instrument("ETH-USD", "ETH", "USD", 0.01, 0.0001, 0.1, 1e6)
BTCUSDT = Instrument("BTC-USDT", "BTC", "USDT", 0.01, 0.00001, 1.0, 1e7)
INSTRUMENTS = Instruments([BTC, ETH, BTCUSDT])


@pytest.mark.parametrize("text", ["BTC-USD", "BTC/USD", "BTC_USD", "BTCUSD", "btc-usd",
                                  "btcusd", " btc/usd ", "Btc_Usd"])
def test_accepted_spellings_resolve_to_canonical(text: str) -> None:
    assert "BTC-USD" == INSTRUMENTS.resolve(text).symbol


def test_compact_spelling_prefers_the_exact_known_symbol() -> None:
    assert "BTC-USDT" == INSTRUMENTS.resolve("btcusdt").symbol


@pytest.mark.parametrize(("text", "named"), [("XYZ-USD", "XYZ-USD"), ("xyzusd", "XYZ-USD"),
                                             ("BTC/EUR", "BTC-EUR"), ("SOLUSDC", "SOL-USDC")])
def test_unknown_symbol_names_itself_and_the_known_ones(text: str, named: str) -> None:
    with pytest.raises(UnknownSymbol) as info:
        INSTRUMENTS.resolve(text)
    assert named == info.value.symbol
    assert f"unknown symbol '{named}'" in str(info.value)
    assert "BTC-USD, ETH-USD, BTC-USDT" in str(info.value)


@pytest.mark.parametrize("text", ["", "   ", "BTC-", "-USD", "BTC-USD-X", "BTC USD", "B$C-USD",
                                  "BTC--USD", "A" * 41, "€UR-USD"])
def test_malformed_symbols_are_invalid(text: str) -> None:
    with pytest.raises(InvalidSymbol):
        INSTRUMENTS.resolve(text)


@given(st.text(max_size=50))
def test_resolve_raises_only_symbol_errors(text: str) -> None:
    with contextlib.suppress(InvalidSymbol, UnknownSymbol):
        INSTRUMENTS.resolve(text)


@given(st.text(max_size=50) | st.from_regex(r"[A-Za-z0-9.$ ]{1,20}([-/_][A-Za-z0-9.$ ]{0,20})*",
                                             fullmatch=True))
def test_check_spelling_refuses_only_what_resolve_calls_invalid(text: str) -> None:
    """What check_spelling refuses without the instruments, resolve refuses with them."""
    try:
        check_spelling(text)
    except InvalidSymbol:
        with pytest.raises(InvalidSymbol):
            INSTRUMENTS.resolve(text)


@pytest.mark.parametrize("text", ["BTC-USD", "btc/usd", "BTCUSD", "XYZ-USD", "xyzusd", "A" * 30])
def test_check_spelling_accepts_what_may_name_a_symbol(text: str) -> None:
    check_spelling(text)


@pytest.mark.parametrize("text", ["", "B..D", "BTC-", "BTC-USD-X", "B$C", "A" * 41, "€UR-USD"])
def test_check_spelling_refuses_malformed_text(text: str) -> None:
    with pytest.raises(InvalidSymbol):
        check_spelling(text)


@given(st.from_regex(r"[A-Z0-9]{1,16}", fullmatch=True),
       st.from_regex(r"[A-Z0-9]{1,16}", fullmatch=True), st.sampled_from("-/_"))
def test_canonical_is_idempotent(base: str, quote: str, sep: str) -> None:
    symbol = canonical(f"{base.lower()}{sep}{quote}")
    assert f"{base}-{quote}" == symbol
    assert symbol == canonical(symbol)


def test_instrument_round_trips_through_dict() -> None:
    assert BTC == Instrument.from_dict(BTC.to_dict())
    assert 2 == BTC.price_decimals
    assert 5 == BTC.size_decimals


@pytest.mark.parametrize("text", ["BTC\n-USD", "BTC\nUSD", "btc-u\u017fd", "\uff22TC-USD"])
def test_newlines_and_unicode_lookalikes_are_invalid(text: str) -> None:
    with pytest.raises(InvalidSymbol):
        INSTRUMENTS.resolve(text)


def test_non_ascii_text_is_told_what_a_symbol_may_hold() -> None:
    """Told it must be ASCII, and shown the spellings accepted (separators included)."""
    with pytest.raises(InvalidSymbol, match="ASCII only; expected BASE-QUOTE") as info:
        INSTRUMENTS.resolve("€")
    assert "'€' is not a symbol" in str(info.value)
    assert "BTC/USD, BTC_USD, BTCUSD" in str(info.value)
