"""The candle aggregator and its helpers: pure, checked against a brute-force reference."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.config import DEFAULT_CANDLE_RETENTION_S, BridgeConfig, candle_retention
from marketdata import wire
from marketdata.candles import (
    BY_NAME,
    DAY_NS,
    INTERVALS,
    ONE_MINUTE,
    PACKED_SIZE,
    Candle,
    CandleAggregator,
    Interval,
    _fold,
    _folds,
    pack,
    rolling_window_start,
    select,
    summarize,
    unpack,
)
from marketdata.errors import ConfigError

S = 1_000_000_000
T0 = 1_764_060_279 * S  # 2025-11-25T08:44:39Z, a whole second
SEC, MIN = BY_NAME["1s"], BY_NAME["1m"]


def ticks_at(ts_ns: Sequence[int], prices: Sequence[float] | None = None,
             sizes: Sequence[float] | None = None, traded: Sequence[bool] | None = None,
             first_seq: int = 1) -> wire.Ticks:
    """Return ticks at `ts_ns` with consecutive seqs; every one a trade unless `traded` says."""
    n = len(ts_ns)
    ticks = wire.empty_ticks(n)
    ticks["seq"] = np.arange(first_seq, first_seq + n)
    ticks["ts_ns"] = ts_ns
    ticks["last"] = prices if prices is not None else 100.0 + np.arange(n)
    ticks["last_size"] = sizes if sizes is not None else 0.5
    ticks["bid"] = ticks["last"] - 0.01
    ticks["ask"] = ticks["last"] + 0.01
    flags = np.ones(n, dtype=bool) if traded is None else np.asarray(traded, dtype=bool)
    ticks["flags"] = np.where(flags, wire.FLAG_TRADE, 0)
    return ticks


def feed(aggregator: CandleAggregator, batches: Sequence[wire.TickBatch]) -> dict[
        tuple[str, int], Candle]:
    """Add `batches`; return the latest emitted state of every candle, by (interval, open_ns)."""
    out: dict[tuple[str, int], Candle] = {}
    for batch in batches:
        for candle in aggregator.add(batch):
            out[(candle.interval.name, candle.open_ns)] = candle
    return out


def reference(batches: Sequence[wire.TickBatch], interval: Interval) -> list[Candle]:
    """Build candles trade by trade in plain Python: the definition the aggregator must meet."""
    candles: list[Candle] = []
    for batch in batches:
        for tick in wire.as_dicts(batch.ticks):
            if not tick["flags"] & wire.FLAG_TRADE:
                continue
            last = candles[-1] if candles else None
            if last is not None and last.session == batch.session and tick["seq"] <= last.last_seq:
                continue
            bucket = tick["ts_ns"] - tick["ts_ns"] % interval.ns
            price, size = tick["last"], tick["last_size"]
            if last is not None and bucket <= last.open_ns:
                candles[-1] = replace(
                    last, high=max(last.high, price), low=min(last.low, price), close=price,
                    volume=last.volume + size, quote_volume=last.quote_volume + price * size,
                    trades=last.trades + 1, last_seq=tick["seq"], session=batch.session)
            else:
                candles.append(Candle(batch.symbol, interval, bucket, price, price, price, price,
                                      0.0 + size, 0.0 + price * size, 1, tick["seq"],
                                      tick["seq"], batch.session))
    return candles


# -- intervals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "ts", "expected_open"), [
    ("1s", T0 + 999_999_999, T0),
    ("1m", T0, T0 - 39 * S),                             # 08:44:00
    ("5m", T0, T0 - (4 * 60 + 39) * S),                  # 08:40:00
    ("15m", T0, T0 - (14 * 60 + 39) * S),                # 08:30:00
    ("1h", T0, T0 - (44 * 60 + 39) * S),                 # 08:00:00
    ("4h", T0 - 5 * 3600 * S, T0 - (8 * 3600 + 44 * 60 + 39) * S),  # 03:44:39 -> 00:00
    ("4h", T0, T0 - (44 * 60 + 39) * S),                 # 08:44:39 -> 08:00 UTC
    ("1d", T0, T0 - (8 * 3600 + 44 * 60 + 39) * S),      # midnight UTC
])
def test_intervals_are_aligned_to_the_epoch_in_utc(name: str, ts: int, expected_open: int) -> None:
    assert BY_NAME[name].open_ns(ts) == expected_open
    (candle,) = [c for c in CandleAggregator().add(wire.TickBatch("A", 1, ticks_at([ts])))
                 if c.interval.name == name]
    assert candle.open_ns == expected_open
    assert candle.close_ns == expected_open + BY_NAME[name].ns - 1


def test_the_intervals_offered() -> None:
    assert [i.name for i in INTERVALS] == ["1s", "1m", "5m", "15m", "1h", "4h", "1d"]
    assert [i.ms for i in INTERVALS] == [1_000, 60_000, 300_000, 900_000, 3_600_000,
                                         14_400_000, 86_400_000]


# -- aggregation -------------------------------------------------------------------------------


def test_a_candle_holds_ohlc_volumes_count_and_seqs_of_its_trades() -> None:
    ticks = ticks_at([T0 + i * 200_000_000 for i in range(5)],
                     prices=[100.0, 103.0, 99.0, 101.0, 102.0], sizes=[1.0, 2.0, 0.5, 0.25, 4.0],
                     traded=[True, True, True, False, True], first_seq=41)
    changed = CandleAggregator([SEC]).add(wire.TickBatch("BTC-USD", 9, ticks))
    assert changed == [Candle("BTC-USD", SEC, T0, open=100.0, high=103.0, low=99.0, close=102.0,
                              volume=7.5, quote_volume=100.0 + 206.0 + 49.5 + 408.0, trades=4,
                              first_seq=41, last_seq=45, session=9)]


def test_no_trades_no_candle_and_quotes_never_move_one() -> None:
    aggregator = CandleAggregator([SEC])
    quotes = ticks_at([T0, T0 + 1], traded=[False, False])
    assert [] == aggregator.add(wire.TickBatch("A", 1, quotes))
    assert aggregator.open_candle("A", SEC) is None
    # Trades in seconds 0 and 3: seconds 1 and 2 have no candle, not a flat one.
    ts = [T0, T0 + 3 * S + 5, T0 + 3 * S + 6]
    candles = feed(aggregator, [wire.TickBatch("A", 1, ticks_at(ts, traded=[True, True, False],
                                                                first_seq=3))])
    assert sorted(open_ns for _, open_ns in candles) == [T0, T0 + 3 * S]
    assert aggregator.add(wire.TickBatch("A", 1, ticks_at([T0 + 3 * S + 9], traded=[False],
                                                          first_seq=6))) == []


def test_each_interval_emits_its_closed_candles_then_its_open_one() -> None:
    ts = [T0, T0 + S, T0 + 2 * S, T0 + 61 * S]
    changed = CandleAggregator([SEC, MIN]).add(wire.TickBatch("A", 1, ticks_at(ts)))
    assert [(c.interval.name, c.open_ns) for c in changed] == [
        ("1s", T0), ("1s", T0 + S), ("1s", T0 + 2 * S), ("1s", T0 + 61 * S),
        ("1m", T0 - 39 * S), ("1m", T0 + 21 * S)]


def test_replayed_trades_are_not_counted_twice() -> None:
    aggregator = CandleAggregator()
    batch = wire.TickBatch("A", 1, ticks_at([T0, T0 + 1, T0 + 2]))
    first = feed(aggregator, [batch])
    assert [] == aggregator.add(batch)
    overlap = wire.TickBatch("A", 1, ticks_at([T0 + 2, T0 + 3], first_seq=3))
    candle = aggregator.add(overlap)[0]
    assert (candle.trades, candle.last_seq) == (4, 4)
    assert first[("1s", T0)].trades == 3


def test_a_new_feed_session_restarting_seqs_continues_the_open_candle() -> None:
    aggregator = CandleAggregator([SEC, MIN])
    feed(aggregator, [wire.TickBatch("A", 1, ticks_at([T0, T0 + 1], first_seq=500))])
    after = feed(aggregator, [wire.TickBatch("A", 2, ticks_at([T0 + 5, T0 + 2 * S]))])
    assert after[("1s", T0)].trades == 3
    assert (after[("1s", T0)].first_seq, after[("1s", T0)].last_seq) == (500, 1)
    assert after[("1s", T0)].session == 2
    assert after[("1m", T0 - 39 * S)].trades == 4


def test_a_trade_stamped_before_the_open_candle_counts_in_it() -> None:
    aggregator = CandleAggregator([SEC])
    feed(aggregator, [wire.TickBatch("A", 1, ticks_at([T0 + 5 * S]))])
    changed = aggregator.add(wire.TickBatch("A", 2, ticks_at([T0 + S, T0 + 6 * S])))
    assert [(c.open_ns, c.trades) for c in changed] == [(T0 + 5 * S, 2), (T0 + 6 * S, 1)]


def test_restoring_a_stored_candle_continues_its_interval() -> None:
    ticks = ticks_at([T0 + i * 100_000_000 for i in range(8)])
    whole = feed(CandleAggregator(), [wire.TickBatch("A", 1, ticks)])
    first = CandleAggregator()
    feed(first, [wire.TickBatch("A", 1, ticks[:5])])
    second = CandleAggregator()
    for candle in first.open_candles():
        second.restore(unpack(candle.symbol, candle.interval, pack(candle)))
    # The feed replays what the restarted bridge had counted already; it is skipped.
    resumed = feed(second, [wire.TickBatch("A", 1, ticks[3:])])
    assert resumed == whole


def test_restore_keeps_a_later_open_candle() -> None:
    aggregator = CandleAggregator([SEC])
    feed(aggregator, [wire.TickBatch("A", 1, ticks_at([T0 + 5 * S]))])
    newer = aggregator.open_candle("A", SEC)
    aggregator.restore(Candle("A", SEC, T0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1, 1, 1, 1))
    assert aggregator.open_candle("A", SEC) == newer


finite_sizes = st.floats(0, 1e9, allow_nan=False)
gap_ns = st.sampled_from([1, 1_000, 250_000_000, S - 1, S, 7 * S, 59 * S, 3_600 * S,
                          5 * 3_600 * S, DAY_NS + 1])


@st.composite
def tick_streams(draw: st.DrawFn) -> tuple[list[wire.TickBatch], list[wire.TickBatch]]:
    """Draw trades and quotes over up to two feed sessions, whole and cut into batches."""
    n = draw(st.integers(1, 60))
    gaps = draw(st.lists(gap_ns, min_size=n, max_size=n))
    ts = (T0 + np.cumsum(gaps) - gaps[0]).tolist()
    prices = draw(st.lists(st.integers(1, 10_000_000).map(lambda c: c / 100), min_size=n,
                           max_size=n))
    sizes = draw(st.lists(st.integers(1, 5_000_000).map(lambda lots: lots * 0.00001),
                          min_size=n, max_size=n))
    traded = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    restart = draw(st.none() | st.integers(1, n - 1)) if n > 1 else None
    ticks = ticks_at(ts, prices, sizes, traded)
    if restart is not None:
        ticks["seq"][restart:] = np.arange(1, n - restart + 1)
    sessions = [(0, restart or n, 1)] + ([(restart, n, 2)] if restart is not None else [])
    whole = [wire.TickBatch("BTC-USD", session, ticks[a:b]) for a, b, session in sessions]
    cuts = set(draw(st.lists(st.integers(1, n - 1), max_size=8)) if n > 1 else [])
    split: list[wire.TickBatch] = []
    for a, b, session in sessions:
        bounds = [a, *sorted(c for c in cuts if a < c < b), b]
        split += [wire.TickBatch("BTC-USD", session, ticks[x:y]) for x, y in pairwise(bounds)]
    return whole, split


@settings(max_examples=80, deadline=None)
@given(tick_streams())
def test_any_batch_split_aggregates_exactly_as_all_at_once(
        streams: tuple[list[wire.TickBatch], list[wire.TickBatch]]) -> None:
    whole, split = streams
    at_once, batched = CandleAggregator(), CandleAggregator()
    assert feed(at_once, whole) == feed(batched, split)
    assert at_once.open_candles() == batched.open_candles()


@settings(max_examples=80, deadline=None)
@given(tick_streams())
def test_candles_match_the_trade_by_trade_definition(
        streams: tuple[list[wire.TickBatch], list[wire.TickBatch]]) -> None:
    _, split = streams
    emitted = feed(CandleAggregator(), split)
    all_ticks = wire.concat([b.ticks for b in split])
    traded = all_ticks[(all_ticks["flags"] & wire.FLAG_TRADE) != 0]
    for interval in INTERVALS:
        expected = reference(split, interval)
        got = sorted((c for (name, _), c in emitted.items() if name == interval.name),
                     key=lambda c: c.open_ns)
        assert got == expected
        for candle in got:
            assert candle.low <= min(candle.open, candle.close)
            assert max(candle.open, candle.close) <= candle.high
            assert candle.open_ns % interval.ns == 0
        assert sum(c.trades for c in got) == len(traded)
        assert math.isclose(math.fsum(c.volume for c in got),
                            math.fsum(traded["last_size"].tolist()), rel_tol=1e-12)
        assert math.isclose(math.fsum(c.quote_volume for c in got),
                            math.fsum((traded["last"] * traded["last_size"]).tolist()),
                            rel_tol=1e-12)


@settings(max_examples=100)
@given(st.lists(st.tuples(finite_sizes, finite_sizes), max_size=100), finite_sizes,
       finite_sizes)
def test_both_ways_of_folding_are_the_same_in_order_additions(
        pairs: list[tuple[float, float]], volume: float, quote_volume: float) -> None:
    size = np.array([a for a, _ in pairs], dtype=np.float64)
    quote = np.array([b for _, b in pairs], dtype=np.float64)
    expected = (volume, quote_volume)
    for a, b in pairs:
        expected = (expected[0] + a, expected[1] + b)
    assert _fold(volume, quote_volume, size, quote, small=0) == expected
    assert _fold(volume, quote_volume, size, quote, small=1_000) == expected


@settings(max_examples=100)
@given(st.lists(st.tuples(finite_sizes, finite_sizes), max_size=40),
       st.lists(st.tuples(finite_sizes, finite_sizes), min_size=1, max_size=8))
def test_folding_from_several_starts_at_once_is_each_fold_alone(
        pairs: list[tuple[float, float]], starts: list[tuple[float, float]]) -> None:
    size = np.array([a for a, _ in pairs], dtype=np.float64)
    quote = np.array([b for _, b in pairs], dtype=np.float64)
    expected = [_fold(volume, quote_volume, size, quote) for volume, quote_volume in starts]
    assert _folds(starts, size, quote, small=0) == expected
    assert _folds(starts, size, quote, small=10_000) == expected


def test_volume_is_the_in_order_sum_of_trade_sizes() -> None:
    sizes = [0.1, 0.2, 0.3, 1e-5, 7.00001]
    (candle,) = CandleAggregator([SEC]).add(
        wire.TickBatch("A", 1, ticks_at([T0 + i for i in range(5)], sizes=sizes)))
    total = 0.0
    for size in sizes:
        total += size
    assert candle.volume == total


# -- storage form, selection, statistics -------------------------------------------------------


finite = st.floats(allow_nan=False, allow_infinity=False)


@given(open_ns=st.integers(-(2**63), 2**63 - 1), prices=st.lists(finite, min_size=6, max_size=6),
       counts=st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1),
                        st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)),
       interval=st.sampled_from(INTERVALS))
def test_pack_round_trips(open_ns: int, prices: list[float], counts: tuple[int, int, int, int],
                          interval: Interval) -> None:
    candle = Candle("ETH-USD", interval, open_ns, *prices, *counts)
    packed = pack(candle)
    assert len(packed) == PACKED_SIZE == 96
    assert unpack("ETH-USD", interval, packed) == candle
    assert unpack("ETH-USD", interval, packed + b"newer fields") == candle


@pytest.mark.parametrize(("data", "message"), [
    (b"", "shorter"),
    (b"\x01" * 95, "shorter"),
    (b"\x02" + bytes(95), "version 2"),
])
def test_unpack_rejects_what_is_not_a_candle(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        unpack("A", SEC, data)


def candle_at(open_ns: int, price: float = 100.0, interval: Interval = SEC) -> Candle:
    """Return a one-trade candle opening at `open_ns`."""
    return Candle("A", interval, open_ns, price, price, price, price, 1.0, price, 1, 1, 1, 1)


@pytest.mark.parametrize(("start", "end", "limit", "expected"), [
    (None, None, 10, [0, 1, 2, 3, 4]),
    (None, None, 2, [3, 4]),
    (1, None, 2, [1, 2]),
    (None, 2, 2, [1, 2]),
    (1, 3, 10, [1, 2, 3]),
    (1, 1, 10, [1]),
    (5, None, 10, []),
    (3, 1, 10, []),
    (None, None, 0, []),
])
def test_select_by_open_time(start: int | None, end: int | None, limit: int,
                             expected: list[int]) -> None:
    candles = [candle_at(T0 + i * S) for i in (3, 0, 4, 1, 2)]
    chosen = select(candles, None if start is None else T0 + start * S,
                    None if end is None else T0 + end * S, limit)
    assert [(c.open_ns - T0) // S for c in chosen] == expected


def test_summarize_the_window() -> None:
    candles = [
        Candle("A", MIN, T0, 100.0, 110.0, 95.0, 105.0, 1.5, 150.0, 3, 1, 3, 1),
        Candle("A", MIN, T0 + 60 * S, 104.0, 120.0, 90.0, 99.0, 2.0, 200.0, 2, 4, 5, 1),
    ]
    summary = summarize(candles)
    assert summary is not None
    assert (summary.open, summary.high, summary.low, summary.last) == (100.0, 120.0, 90.0, 99.0)
    assert (summary.volume, summary.quote_volume, summary.trades) == (3.5, 350.0, 5)
    assert summary.change == -1.0
    assert summary.change_percent == pytest.approx(-1.0)
    assert summarize([]) is None


def test_the_rolling_window_is_the_current_minute_and_the_1439_before() -> None:
    now = T0 + 123_456_789  # 08:44:39.123 -> the window opens at 08:45:00 the day before
    start = rolling_window_start(now)
    assert start == ONE_MINUTE.open_ns(now) - DAY_NS + ONE_MINUTE.ns
    assert (ONE_MINUTE.open_ns(now) - start) // ONE_MINUTE.ns + 1 == 1440


# -- retention settings ------------------------------------------------------------------------


def test_candle_retention_defaults_and_overrides() -> None:
    assert candle_retention({}) == DEFAULT_CANDLE_RETENTION_S == {
        "1s": 86_400, "1m": 604_800, "5m": 2_592_000, "15m": 2_592_000, "1h": 31_536_000,
        "4h": 31_536_000, "1d": 157_680_000}
    assert candle_retention({"CANDLE_RETENTION_S": " 1s=60, 1d=86400 ,"}) == {
        **DEFAULT_CANDLE_RETENTION_S, "1s": 60, "1d": 86_400}
    config = BridgeConfig.from_env({"CANDLE_RETENTION_S": "1h=7200"})
    assert dict(config.candle_retention)["1h"] == 7_200


@pytest.mark.parametrize("value", ["1s", "2m=60", "1s=0", "1s=-1", "1s=1.5", "1s=soon",
                                   "1m=3600", "1s=99999999999"])
def test_candle_retention_errors_name_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="CANDLE_RETENTION_S"):
        candle_retention({"CANDLE_RETENTION_S": value})
