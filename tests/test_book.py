"""L2 order books: shape, evolution, determinism, snapshot + diffs, and the book wire formats."""

from __future__ import annotations

import contextlib
import struct

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from feedsim import control
from feedsim.config import FeedConfig
from feedsim.engine import NS, Feed
from marketdata import wire
from marketdata.books import OrderBook, Status, book_from_dict, book_to_dict
from marketdata.errors import WireError

SYMBOLS = FeedConfig.from_env({}).symbols
NAMES = [s.instrument.symbol for s in SYMBOLS]


def updates(feed: Feed, seconds: int) -> tuple[dict[int, np.void], list[tuple[wire.BookDiff,
                                                                                 wire.BookSnapshot]]]:
    """Step `feed` a second at a time; return BTC-USD's ticks by seq and (diff, book after it)."""
    ticks: dict[int, np.void] = {}
    out = []
    for second in range(1, seconds + 1):
        result = feed.step(second * NS)
        for batch in result.batches:
            if batch.symbol == "BTC-USD":
                ticks.update((int(t["seq"]), t) for t in batch.ticks)
        diffs = result.books.get("BTC-USD", [])
        out.extend((d, feed.book("BTC-USD")) for d in diffs[:-1])  # book() is the latest only
        if diffs:
            out.append((diffs[-1], feed.book("BTC-USD")))
    return ticks, out


@pytest.mark.parametrize("symbol", NAMES)
def test_books_start_at_the_touch_and_deepen_away_from_it(symbol: str) -> None:
    feed = Feed(SYMBOLS, 3, 0)
    instrument = feed.symbols[symbol].instrument
    deeper = []
    for second in range(1, 31):
        result = feed.step(second * NS)
        tick = result.batches[[b.symbol for b in result.batches].index(symbol)].ticks[-1]
        book = feed.book(symbol)
        assert book.tick_seq == int(tick["seq"])
        bids, asks = book.bids, book.asks
        assert (bids["price"][0], asks["price"][0]) == (tick["bid"], tick["ask"])
        assert (bids["size"][0], asks["size"][0]) == (tick["bid_size"], tick["ask_size"])
        assert (np.diff(bids["price"]) < 0).all() and (np.diff(asks["price"]) > 0).all()
        for side in (bids, asks):
            steps = side["price"] / instrument.tick_size
            assert np.allclose(steps, np.round(steps), atol=1e-6)
            assert (side["size"] > 0).all()
            lots = side["size"] / instrument.lot_size
            assert np.allclose(lots, np.round(lots), atol=1e-6)
        assert 20 == len(asks) == len(bids)
        deeper.append(asks["size"][10:].mean() / asks["size"][1:5].mean())
        deeper.append(bids["size"][10:].mean() / bids["size"][1:5].mean())
    assert np.mean(deeper) > 1.5  # more size rests further from the mid


@pytest.mark.parametrize("symbol", NAMES)
def test_most_levels_rest_between_updates(symbol: str) -> None:
    """A level that is neither at the touch nor traded through usually keeps price and size."""
    feed = Feed(SYMBOLS, 5, 0)
    unchanged = []
    previous = None
    for tenth in range(1, 101):
        feed.step(tenth * NS // 10)  # one update per step (at the default 10 ticks/s)
        book = feed.book(symbol)
        if previous is not None:
            for old, new in ((previous.bids, book.bids), (previous.asks, book.asks)):
                rest = set(zip(old["price"].tolist(), old["size"].tolist(), strict=True))
                now = set(zip(new["price"].tolist(), new["size"].tolist(), strict=True))
                unchanged.append(len(rest & now) / len(rest))
        previous = book
    assert np.mean(unchanged) > 0.6


def test_the_book_follows_the_touch_at_every_update() -> None:
    ticks, steps = updates(Feed(SYMBOLS, 11, 0), 5)
    assert [d.book_seq for d, _ in steps] == list(range(1, len(steps) + 1))
    assert [d.prev_book_seq for d, _ in steps] == list(range(len(steps)))
    book = OrderBook("BTC-USD")
    book.apply(wire.BookSnapshot("BTC-USD", 0, 0, 0, 0, wire.empty_levels(), wire.empty_levels()))
    for diff, _ in steps:
        assert Status.APPLIED == book.apply(diff).status
        tick = ticks[diff.tick_seq]
        assert (book.bids["price"][0], book.asks["price"][0]) == (tick["bid"], tick["ask"])
        assert (book.bids["size"][0], book.asks["size"][0]) == (tick["bid_size"],
                                                                tick["ask_size"])


def test_books_depend_on_the_seed_and_ticks_not_on_batching() -> None:
    """Which ticks update the book is fixed by seq, so one big step equals many small ones."""
    small, big, other = Feed(SYMBOLS, 9, 0), Feed(SYMBOLS, 9, 0), Feed(SYMBOLS, 10, 0)
    stepped = [d for s in range(1, 101) for d in small.step(s * NS // 10).books.get("ETH-USD", [])]
    at_once = big.step(10 * NS).books["ETH-USD"]
    other.step(10 * NS)
    assert len(stepped) == len(at_once) == 101  # ticks 1..101 at 0 s to 10 s
    for a, b in zip(stepped, at_once, strict=True):
        assert (a.book_seq, a.tick_seq) == (b.book_seq, b.tick_seq)
        assert a.bids.tobytes() == b.bids.tobytes() and a.asks.tobytes() == b.asks.tobytes()
    assert small.book("ETH-USD").bids.tobytes() == big.book("ETH-USD").bids.tobytes()
    assert other.book("ETH-USD").bids.tobytes() != big.book("ETH-USD").bids.tobytes()


@settings(max_examples=25, deadline=None)
@given(interval_ms=st.sampled_from([100, 300, 500, 700, 1000, 2500]),
       steps=st.lists(st.integers(1, 25), min_size=1, max_size=10))
def test_books_move_at_every_multiple_of_book_every_and_can_follow_the_ticks(
        interval_ms: int, steps: list[int]) -> None:
    """A publisher sends ticks first and asks for the books after (update_books): the diffs are
    those step() makes at once, at exactly the seqs that are multiples of the book interval."""
    inline = Feed(SYMBOLS, 3, 0, book_interval_s=interval_ms / 1000)
    deferred = Feed(SYMBOLS, 3, 0, book_interval_s=interval_ms / 1000)
    every = inline.symbols["BTC-USD"].book_every
    now, ticks, moved, deferred_diffs = 0, 0, [], []
    for tenths in steps:  # 10 ticks/s: a step of k tenths makes k ticks
        now += tenths * NS // 10
        result = inline.step(now)
        moved += result.books.get("BTC-USD", [])
        ticks_only = deferred.step(now, books=False)
        assert ticks_only.books == {}
        deferred_diffs += deferred.update_books(ticks_only.batches).get("BTC-USD", [])
        ticks += sum(len(b) for b in result.batches if b.symbol == "BTC-USD")
    assert [d.tick_seq for d in moved] == [s for s in range(1, ticks + 1) if s % every == 0]
    for a, b in zip(moved, deferred_diffs, strict=True):
        assert (a.book_seq, a.tick_seq, a.ts_ns) == (b.book_seq, b.tick_seq, b.ts_ns)
        assert a.bids.tobytes() == b.bids.tobytes() and a.asks.tobytes() == b.asks.tobytes()


def test_books_update_every_interval_of_tick_time() -> None:
    feed = Feed(SYMBOLS, 1, 0, book_interval_s=0.5)
    assert feed.book("BTC-USD").book_seq == 0 and not len(feed.book("BTC-USD").bids)
    result = feed.step(2 * NS)  # ticks 1..21 at 10/s: the book moves at seq 5, 10, 15, 20
    assert [5, 10, 15, 20] == [d.tick_seq for d in result.books["BTC-USD"]]
    assert 4 == feed.book("BTC-USD").book_seq


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), symbol=st.sampled_from(NAMES),
       steps=st.lists(st.integers(1, 30), min_size=1, max_size=12),
       join=st.integers(0, 11), levels=st.integers(1, 25))
def test_snapshot_plus_diffs_equals_the_full_book_at_every_step(
        seed: int, symbol: str, steps: list[int], join: int, levels: int) -> None:
    """A reader that joins at any step with a snapshot, then applies the wire's diffs, holds
    exactly feedsim's book after every step, however many updates each step made."""
    feed = Feed(SYMBOLS, seed, 0, book_levels=levels)
    reader = OrderBook(symbol)
    now = 0
    for i, tenths in enumerate(steps):
        now += tenths * NS // 10
        diffs = feed.step(now).books.get(symbol, [])
        if i < join:
            continue  # not subscribed yet
        if i == join:
            reader.apply(wire.decode_book(wire.encode_book(feed.book(symbol))))
            continue
        for diff in diffs:
            status = reader.apply(wire.decode_book_diff(wire.encode_book_diff(diff))).status
            assert status == Status.APPLIED
        if i > join:
            full = feed.book(symbol)
            got = reader.snapshot()
            assert (full.book_seq, full.tick_seq, full.ts_ns) == (got.book_seq, got.tick_seq,
                                                                 got.ts_ns)
            assert full.bids.tobytes() == got.bids.tobytes()
            assert full.asks.tobytes() == got.asks.tobytes()


def _diff(book_seq: int, bids: list[tuple[float, float]] = (),  # type: ignore[assignment]
          asks: list[tuple[float, float]] = (), session: int = 1,  # type: ignore[assignment]
          prev: int | None = None) -> wire.BookDiff:
    return wire.BookDiff("X-Y", session, book_seq, book_seq - 1 if prev is None else prev,
                         book_seq * 10, book_seq * 100, np.array(list(bids), wire.LEVEL_DTYPE),
                         np.array(list(asks), wire.LEVEL_DTYPE))


def _snapshot(book_seq: int, bids: list[tuple[float, float]], asks: list[tuple[float, float]],
              session: int = 1) -> wire.BookSnapshot:
    return wire.BookSnapshot("X-Y", session, book_seq, book_seq * 10, book_seq * 100,
                             np.array(bids, wire.LEVEL_DTYPE), np.array(asks, wire.LEVEL_DTYPE))


def test_a_dropped_diff_is_a_gap_and_the_next_snapshot_resyncs() -> None:
    book = OrderBook("X-Y")
    assert Status.APPLIED == book.apply(_snapshot(3, [(9.0, 1.0)], [(11.0, 2.0)])).status
    assert Status.APPLIED == book.apply(_diff(4, bids=[(9.5, 3.0)])).status
    outcome = book.apply(_diff(7, asks=[(11.0, 0.0)], prev=6))  # 5 and 6 never arrived
    assert (Status.GAP, 2) == (outcome.status, outcome.missed)
    assert not book.synced and 1 == book.gaps
    assert Status.WAITING == book.apply(_diff(8, asks=[(12.0, 1.0)])).status
    # A snapshot at 6 (say, from the control socket) catches up with the diffs kept since.
    assert Status.APPLIED == book.apply(_snapshot(6, [(9.5, 3.0), (9.0, 1.0)],
                                                  [(11.0, 2.0)])).status
    assert book.synced and 8 == book.book_seq
    assert [(9.5, 3.0), (9.0, 1.0)] == book.bids.tolist()
    assert [(12.0, 1.0)] == book.asks.tolist()


def test_a_snapshot_the_kept_diffs_do_not_follow_is_a_gap() -> None:
    book = OrderBook("X-Y")
    assert Status.WAITING == book.apply(_diff(5, bids=[(1.0, 1.0)])).status
    assert Status.WAITING == book.apply(_diff(6, bids=[(2.0, 1.0)])).status
    outcome = book.apply(_snapshot(2, [(1.0, 1.0)], [(3.0, 1.0)]))  # 3 and 4 are missing
    assert (Status.GAP, 2) == (outcome.status, outcome.missed)
    assert not book.synced
    assert Status.APPLIED == book.apply(_snapshot(6, [(2.0, 1.0)], [(3.0, 1.0)])).status
    assert book.synced and 6 == book.book_seq


def test_diffs_before_the_first_snapshot_wait_and_old_ones_are_dropped() -> None:
    book = OrderBook("X-Y")
    assert Status.WAITING == book.apply(_diff(2, bids=[(1.0, 1.0)])).status
    assert Status.WAITING == book.apply(_diff(3, bids=[(2.0, 1.0)])).status
    assert Status.APPLIED == book.apply(_snapshot(2, [(1.0, 1.0)], [(3.0, 1.0)])).status
    assert 3 == book.book_seq and [(2.0, 1.0), (1.0, 1.0)] == book.bids.tolist()
    assert Status.STALE == book.apply(_diff(3, bids=[(2.0, 1.0)])).status
    assert Status.STALE == book.apply(_snapshot(3, [], [])).status  # a replay for a late joiner
    assert 2 == len(book.bids)


def test_a_reader_there_from_the_start_needs_no_snapshot() -> None:
    """A session's first diff applies to the empty book (book_seq 0): a reader subscribed before
    the first update (so no late-join snapshot came) is in sync from it, and after a feed
    restart the new session's first diff resyncs without a gap."""
    feed = Feed(SYMBOLS, 9, 0)
    reader = OrderBook("BTC-USD")
    for diff in feed.step(3 * NS).books["BTC-USD"]:
        assert Status.APPLIED == reader.apply(diff).status
    assert feed.book("BTC-USD").bids.tobytes() == reader.bids.tobytes()
    assert feed.book("BTC-USD").asks.tobytes() == reader.asks.tobytes()
    restarted = Feed(SYMBOLS, 9, 10 * NS)
    for diff in restarted.step(12 * NS).books["BTC-USD"]:
        assert Status.APPLIED == reader.apply(diff).status
    assert (restarted.session, 0) == (reader.session, reader.gaps)
    assert restarted.book("BTC-USD").asks.tobytes() == reader.asks.tobytes()


def test_a_new_feed_session_is_a_gap_until_its_snapshot() -> None:
    book = OrderBook("X-Y")
    book.apply(_snapshot(50, [(1.0, 1.0)], [(2.0, 1.0)]))
    assert Status.GAP == book.apply(_diff(3, session=2)).status
    assert Status.APPLIED == book.apply(_snapshot(2, [(5.0, 1.0)], [(6.0, 1.0)],
                                                  session=2)).status
    assert (2, 3) == (book.session, book.book_seq)  # the diff kept since applied as well


def test_control_book_answers_the_current_book_in_full() -> None:
    feed = Feed(SYMBOLS, 4, 0)
    feed.step(3 * NS)
    cmd, raw = control.handle(feed, b'{"cmd": "book", "symbol": "eth/usd", "id": 7}', 0)
    reply = orjson.loads(raw)
    assert ("book", True, 7) == (cmd, reply["ok"], reply["id"])
    book, expected = book_from_dict(reply), feed.book("ETH-USD")
    assert (expected.book_seq, expected.tick_seq, expected.session) == (
        book.book_seq, book.tick_seq, book.session)
    assert expected.bids.tobytes() == book.bids.tobytes()
    assert expected.asks.tobytes() == book.asks.tobytes()


@pytest.mark.parametrize(("request_", "message"), [
    (b'{"cmd": "book", "id": 1}', "needs a 'symbol'"),
    (b'{"cmd": "book", "symbol": "DOGE-USD", "id": 1}', "unknown symbol 'DOGE-USD'"),
    (b'{"cmd": "book", "symbol": "not a symbol", "id": 1}', "is not a symbol"),
])
def test_control_book_refuses_a_bad_symbol(request_: bytes, message: str) -> None:
    cmd, raw = control.handle(Feed(SYMBOLS, 4, 0), request_, 0)
    reply = orjson.loads(raw)
    assert ("invalid", False, 1) == (cmd, reply["ok"], reply["id"])
    assert message in reply["error"]


@pytest.mark.parametrize("data", [
    {}, {"symbol": "X-Y", "session": 1, "book_seq": 1, "tick_seq": 1, "ts_ns": 1, "bids": [[1]],
         "asks": []},
    {"symbol": "", "session": 1, "book_seq": 1, "tick_seq": 1, "ts_ns": 1, "bids": [],
     "asks": []},
    {"symbol": "X-Y", "session": 1, "book_seq": 1, "tick_seq": 1, "ts_ns": 1, "bids": "no",
     "asks": []},
])
def test_book_from_dict_refuses_malformed_data(data: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="not a book"):
        book_from_dict(data)


levels = hnp.arrays(wire.LEVEL_DTYPE, st.integers(0, 30))
u64 = st.integers(0, 2**64 - 1)


@given(bids=levels, asks=levels, seqs=st.tuples(u64, u64),
       ts=st.integers(-(2**63), 2**63 - 1))
def test_book_encode_decode_round_trips(bids: wire.Levels, asks: wire.Levels,
                                        seqs: tuple[int, int], ts: int) -> None:
    book = wire.BookSnapshot("BTC-USD", 5, seqs[0], seqs[1], ts, bids, asks)
    decoded = wire.decode_book(wire.encode_book(book))
    assert (book.symbol, book.session, book.book_seq, book.tick_seq, book.ts_ns) == (
        decoded.symbol, decoded.session, decoded.book_seq, decoded.tick_seq, decoded.ts_ns)
    assert bids.tobytes() == decoded.bids.tobytes()
    assert asks.tobytes() == decoded.asks.tobytes()


@given(bids=levels, asks=levels, seqs=st.tuples(u64, u64, u64, u64),
       ts=st.integers(-(2**63), 2**63 - 1),
       symbol=st.from_regex(r"[A-Z0-9]{1,8}-[A-Z0-9]{1,8}", fullmatch=True))
def test_book_diff_encode_decode_round_trips(bids: wire.Levels, asks: wire.Levels,
                                             seqs: tuple[int, int, int, int], ts: int,
                                             symbol: str) -> None:
    diff = wire.BookDiff(symbol, *seqs, ts, bids, asks)
    frames = wire.encode_book_diff(diff)
    assert symbol.encode() + b":bookdiff" == frames[0]
    assert 64 + 16 * (len(bids) + len(asks)) == len(frames[1])
    decoded = wire.decode_message(frames)
    assert isinstance(decoded, wire.BookDiff)
    assert (diff.symbol, diff.session, diff.book_seq, diff.prev_book_seq, diff.tick_seq,
            diff.ts_ns) == (decoded.symbol, decoded.session, decoded.book_seq,
                            decoded.prev_book_seq, decoded.tick_seq, decoded.ts_ns)
    assert bids.tobytes() == decoded.bids.tobytes()
    assert asks.tobytes() == decoded.asks.tobytes()


def test_book_diff_layout_is_as_documented() -> None:
    diff = wire.BookDiff("BTC-USD", 7, 12, 11, 345, -6, np.array([(1.5, 2.0)], wire.LEVEL_DTYPE),
                         np.array([(2.5, 0.0), (3.0, 1.0)], wire.LEVEL_DTYPE))
    _, body = wire.encode_book_diff(diff)
    assert (b"MD", 1, 3, 64, 16, 3, 7, 0) == struct.unpack_from("<2sBBHHIQI", body)
    assert (12, 11, 345, -6, 1, 2) == struct.unpack_from("<QQQqII", body, 24)
    assert (1.5, 2.0, 2.5, 0.0, 3.0, 1.0) == struct.unpack_from("<6d", body, 64)


@given(bids=levels, asks=levels, extra=st.integers(1, 24), header_extra=st.integers(0, 16))
def test_book_diff_readers_skip_what_a_newer_writer_appends(
        bids: wire.Levels, asks: wire.Levels, extra: int, header_extra: int) -> None:
    n = len(bids) + len(asks)
    header = struct.pack("<2sBBHHIQI", b"MD", 1, 3, 64 + header_extra, 16 + extra, n, 1, 0)
    fields = struct.pack("<QQQqII", 2, 1, 3, 4, len(bids), len(asks)) + bytes(header_extra)
    wide = np.zeros((n, 16 + extra), np.uint8)
    wide[:, :16] = np.concatenate((bids, asks)).view(np.uint8).reshape(n, 16)
    decoded = wire.decode_book_diff([b"A-B:bookdiff", header + fields + wide.tobytes()])
    assert (bids.tobytes(), asks.tobytes()) == (decoded.bids.tobytes(), decoded.asks.tobytes())


@given(st.lists(st.binary(max_size=120), max_size=3))
def test_book_decoders_raise_only_wire_errors(frames: list[bytes]) -> None:
    for topic in (b"BTC-USD:book", b"BTC-USD:bookdiff", b"BTC-USD:tick"):
        with contextlib.suppress(WireError):
            wire.decode_message([topic, *frames[1:]] if frames else frames)
    with contextlib.suppress(WireError):
        wire.decode_book_diff([b"BTC-USD:bookdiff", *frames[1:]] if frames else frames)


@pytest.mark.parametrize("topic", [b"BTC-USD:trade", b"BTC-USD:funding_rate"])
def test_readers_skip_message_kinds_they_do_not_know(topic: bytes) -> None:
    body = wire.encode(wire.TickBatch("BTC-USD", 1, wire.empty_ticks(1)))[1]
    assert wire.decode_message([topic, body]) is None
    assert wire.decode_message([topic, b"anything a newer writer sends"]) is None


@pytest.mark.parametrize("topic", [b"BTC-USD", b"BTC-USD:", b":tick", b"BTC-USD:Tick!"])
def test_malformed_topics_are_wire_errors_not_skipped(topic: bytes) -> None:
    body = wire.encode(wire.TickBatch("BTC-USD", 1, wire.empty_ticks(1)))[1]
    with pytest.raises(WireError):
        wire.decode_message([topic, body])


def test_a_tick_body_under_a_book_topic_is_refused() -> None:
    tick = wire.encode(wire.TickBatch("BTC-USD", 1, wire.empty_ticks(1)))
    with pytest.raises(WireError, match="not a version-1 book body"):
        wire.decode_book([b"BTC-USD:book", tick[1] + bytes(40)])
    snapshot = wire.encode_book(wire.BookSnapshot("BTC-USD", 1, 1, 1, 1, wire.empty_levels(2),
                                                  wire.empty_levels(0)))
    with pytest.raises(WireError, match="not a version-1 book diff body"):
        wire.decode_book_diff([b"BTC-USD:bookdiff", snapshot[1] + bytes(8)])
    with pytest.raises(WireError, match="not a book diff topic"):
        wire.decode_book_diff([b"BTC-USD:book", snapshot[1]])


def test_book_dicts_round_trip_through_json() -> None:
    feed = Feed(SYMBOLS, 2, 0)
    feed.step(NS)
    book = feed.book("SOL-USD")
    again = book_from_dict(orjson.loads(orjson.dumps(book_to_dict(book))))
    assert (book.bids.tobytes(), book.asks.tobytes(), book.book_seq) == (
        again.bids.tobytes(), again.asks.tobytes(), again.book_seq)
