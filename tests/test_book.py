"""L2 order books: shape, determinism, and the book wire format."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from feedsim.book import BookMaker
from feedsim.config import FeedConfig
from feedsim.engine import Feed
from marketdata import wire
from marketdata.errors import WireError

SYMBOLS = FeedConfig.from_env({}).symbols


@pytest.mark.parametrize("symbol", [s.instrument.symbol for s in SYMBOLS])
def test_books_start_at_the_touch_and_deepen_away_from_it(symbol: str) -> None:
    feed = Feed(SYMBOLS, 3, 0)
    stream = feed.symbols[symbol]
    ticks = stream.produce(300)
    maker = BookMaker(stream.instrument, stream.market, 3)
    deeper = []
    for tick in ticks[::10]:
        bids, asks = maker.book(tick)
        assert (bids["price"][0], asks["price"][0]) == (tick["bid"], tick["ask"])
        assert (bids["size"][0], asks["size"][0]) == (tick["bid_size"], tick["ask_size"])
        assert (np.diff(bids["price"]) < 0).all() and (np.diff(asks["price"]) > 0).all()
        for side in (bids, asks):
            steps = side["price"] / stream.instrument.tick_size
            assert np.allclose(steps, np.round(steps), atol=1e-6)
            assert (side["size"] > 0).all()
        deeper.append(asks["size"][10:].mean() / asks["size"][1:5].mean())
    assert 20 == len(asks)
    assert np.mean(deeper) > 1.5  # more size rests further from the mid


def test_a_book_depends_only_on_its_tick() -> None:
    stream = Feed(SYMBOLS, 3, 0).symbols["ETH-USD"]
    ticks = stream.produce(50)
    a, b = BookMaker(stream.instrument, stream.market, 3), BookMaker(stream.instrument,
                                                                     stream.market, 3)
    for _ in range(5):
        b.book(ticks[7])  # other books in between change nothing
    assert a.book(ticks[30])[0].tobytes() == b.book(ticks[30])[0].tobytes()
    assert a.book(ticks[30])[1].tobytes() != a.book(ticks[31])[1].tobytes()


def test_feed_books_carry_increasing_book_seq_and_their_tick() -> None:
    feed = Feed(SYMBOLS, 1, 0)
    assert feed.book("BTC-USD") is None
    feed.step(10**9)
    first, second = feed.book("BTC-USD"), feed.book("BTC-USD")
    assert first is not None and second is not None
    assert (1, 2) == (first.book_seq, second.book_seq)
    last = feed.last("BTC-USD")
    assert last is not None and first.tick_seq == int(last["seq"][0])


levels = hnp.arrays(wire.LEVEL_DTYPE, st.integers(0, 30))


@given(bids=levels, asks=levels, seqs=st.tuples(st.integers(0, 2**64 - 1),
                                                   st.integers(0, 2**64 - 1)),
       ts=st.integers(-(2**63), 2**63 - 1))
def test_book_encode_decode_round_trips(bids: wire.Levels, asks: wire.Levels,
                                        seqs: tuple[int, int], ts: int) -> None:
    book = wire.BookSnapshot("BTC-USD", 5, seqs[0], seqs[1], ts, bids, asks)
    decoded = wire.decode_book(wire.encode_book(book))
    assert (book.symbol, book.session, book.book_seq, book.tick_seq, book.ts_ns) == (
        decoded.symbol, decoded.session, decoded.book_seq, decoded.tick_seq, decoded.ts_ns)
    assert bids.tobytes() == decoded.bids.tobytes()
    assert asks.tobytes() == decoded.asks.tobytes()


@given(st.lists(st.binary(max_size=120), max_size=3))
def test_book_decode_raises_only_wire_errors(frames: list[bytes]) -> None:
    with contextlib.suppress(WireError):
        wire.decode_book([b"BTC-USD:book", *frames[1:]] if frames else frames)


def test_a_tick_body_under_a_book_topic_is_refused() -> None:
    tick = wire.encode(wire.TickBatch("BTC-USD", 1, wire.empty_ticks(1)))
    with pytest.raises(WireError, match="not a version-1 book body"):
        wire.decode_book([b"BTC-USD:book", tick[1] + bytes(40)])
