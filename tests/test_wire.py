"""The binary wire format: round trips, forward compatibility, and clear errors."""

from __future__ import annotations

import contextlib
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from marketdata import wire
from marketdata.errors import WireError

symbols = st.from_regex(r"[A-Z0-9]{1,8}-[A-Z0-9]{1,8}", fullmatch=True)
ticks = hnp.arrays(wire.TICK_DTYPE, st.integers(0, 50))


@given(symbol=symbols, session=st.integers(0, 2**64 - 1), ticks=ticks)
def test_encode_decode_round_trips(symbol: str, session: int, ticks: wire.Ticks) -> None:
    frames = wire.encode(wire.TickBatch(symbol, session, ticks))
    decoded = wire.decode(frames)
    assert (symbol, session) == (decoded.symbol, decoded.session)
    assert ticks.tobytes() == decoded.ticks.tobytes()


@given(ticks=ticks, extra=st.integers(1, 40))
def test_reader_skips_fields_a_newer_writer_appends(ticks: wire.Ticks, extra: int) -> None:
    """Records may grow at the end (record_size > 80): old readers still read known fields."""
    wide = np.zeros((len(ticks), wire.RECORD_SIZE + extra), dtype=np.uint8)
    wide[:, : wire.RECORD_SIZE] = ticks.view(np.uint8).reshape(len(ticks), wire.RECORD_SIZE)
    header = struct.pack("<2sBBHHIQI", b"MD", 1, 1, 24, wire.RECORD_SIZE + extra, len(ticks), 7, 0)
    session, decoded = wire.decode_body(header + wide.tobytes())
    assert 7 == session
    assert ticks.tobytes() == decoded.tobytes()


def test_header_can_grow() -> None:
    ticks = wire.empty_ticks(2)
    ticks["seq"] = [1, 2]
    header = struct.pack("<2sBBHHIQI", b"MD", 1, 1, 32, 80, 2, 1, 0) + b"\0" * 8
    _, decoded = wire.decode_body(header + ticks.tobytes())
    assert [1, 2] == decoded["seq"].tolist()


def test_topic_filters_one_symbol_exactly() -> None:
    assert wire.topic("BTC-USD").startswith(wire.subscription("BTC-USD"))
    assert not wire.topic("BTC-USDT").startswith(wire.subscription("BTC-USD"))


def _body(**overrides: int | bytes) -> bytes:
    fields = {"magic": b"MD", "version": 1, "kind": 1, "header_len": 24, "record_size": 80,
              "count": 1, "session": 0, "reserved": 0}
    fields.update(overrides)
    count = int(fields["count"])
    return struct.pack("<2sBBHHIQI", *fields.values()) + bytes(80 * max(count, 0))


@pytest.mark.parametrize(("frames", "message"), [
    ([b"BTC-USD:tick"], "expected 2 frames"),
    ([b"BTC-USD:tick", b"x" * 10], "shorter than the 24-byte header"),
    ([b"BTC-USD:tick", _body(magic=b"XX")], "bad magic"),
    ([b"BTC-USD:tick", _body(version=9)], "unsupported wire version 9"),
    ([b"BTC-USD:tick", _body(kind=5)], "unknown message kind 5"),
    ([b"BTC-USD:tick", _body(header_len=8)], "header_len 8"),
    ([b"BTC-USD:tick", _body(record_size=40)], "record_size 40"),
    ([b"BTC-USD:tick", _body()[:-1]], "header promises"),
    ([b"BTC-USD:book", _body()], "not a tick topic"),
    ([b":tick", _body()], "empty symbol"),
    ([b"\xff:tick", _body()], "not ASCII"),
])
def test_malformed_messages_raise_wire_error(frames: list[bytes], message: str) -> None:
    with pytest.raises(WireError, match=message):
        wire.decode(frames)


@given(st.lists(st.binary(max_size=200), max_size=3))
def test_decode_never_raises_anything_but_wire_error(frames: list[bytes]) -> None:
    with contextlib.suppress(WireError):
        wire.decode(frames)


def test_as_dicts_gives_python_numbers() -> None:
    ticks = wire.empty_ticks(1)
    ticks["seq"] = 3
    ticks["bid"] = 1.5
    (row,) = wire.as_dicts(ticks)
    assert 3 == row["seq"] and isinstance(row["seq"], int)
    assert 1.5 == row["bid"]
    assert "reserved" not in row


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(wire.TICK_DTYPE, st.integers(0, 20)))
def test_copy_ticks_is_an_equal_writable_independent_copy(ticks: wire.Ticks) -> None:
    source = np.frombuffer(ticks.tobytes(), dtype=wire.TICK_DTYPE)  # read-only, like concat's
    copy = wire.copy_ticks(source)
    assert copy.dtype == wire.TICK_DTYPE and copy.tobytes() == source.tobytes()
    copy["seq"] += np.uint64(1)
    assert source.tobytes() == ticks.tobytes()
