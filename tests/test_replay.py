"""Historical replay, pure parts: bar paths, the replay source and schedule, config. No I/O but
reading the test data."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from calibration.importer import parse_ohlcv
from feedsim import control
from feedsim.config import FeedConfig
from feedsim.engine import MAX_REPLAY_BATCH, NS, Feed
from feedsim.replay import (
    MIN_TICKS_PER_BAR,
    ReplayBars,
    ReplaySource,
    bar_path,
    on_grid,
    replay_bars,
    ticks_per_bar,
)
from feedsim.schedule import MAX_SPEED, NEVER_NS, ReplaySchedule
from marketdata import wire
from marketdata.candles import BY_NAME, CandleAggregator
from marketdata.errors import ConfigError
from marketdata.symbols import Instrument

DATA = Path(__file__).parent / "data"
BITSTAMP = DATA / "bitstamp_btcusd_1h_slice.csv"
ETH = DATA / "binance_ethusdt_1h_slice.csv"
BTC = Instrument("BTC-USD", "BTC", "USD", tick_size=0.01, lot_size=0.00001, min_price=1.0,
                 max_price=10_000_000.0)
HOUR = 3600 * NS


@st.composite
def bars(draw: st.DrawFn) -> tuple[float, float, float, float, int]:
    """One valid bar on BTC's grid: (open, high, low, close, lots)."""
    cents = st.integers(100, 10_000_000)
    low = draw(cents)
    high = draw(st.integers(low, low + draw(st.sampled_from([0, 1, 5, 1000, 500_000]))))
    o, c = draw(st.integers(low, high)), draw(st.integers(low, high))
    lots = draw(st.one_of(st.integers(0, 10), st.integers(0, 10**9)))
    return o / 100, high / 100, low / 100, c / 100, lots


def _trades(path: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    prints = path.prints  # type: ignore[attr-defined]
    traded = np.flatnonzero(prints.size > 0)
    return traded, prints.price[traded], prints.size[traded]


@settings(max_examples=300, deadline=None)
@given(bars(), st.integers(MIN_TICKS_PER_BAR, 400), st.floats(0.0, 1.0), st.integers(0, 2**32))
def test_a_bar_path_rebuilds_its_bar(bar: tuple[float, float, float, float, int], per_bar: int,
                                     probability: float, seed: int) -> None:
    o, h, lo, c, lots = bar
    path = bar_path(o, h, lo, c, lots, per_bar, probability, BTC, o,
                    np.random.default_rng(seed))
    assert len(path.mids) == per_bar == len(path.prints.price)
    assert path.mids[0] == o and path.mids[-1] == c
    assert (path.mids >= lo * (1 - 1e-12)).all() and (path.mids <= h * (1 + 1e-12)).all()
    traded, prices, sizes = _trades(path)
    if lots == 0:
        assert traded.size == 0  # no volume, no trade: the bar makes no candle
        return
    # The candle of these trades is the bar: first O, then H and L, last C.
    assert (prices[0], prices.max(), prices.min(), prices[-1]) == (o, h, lo, c)
    assert traded[0] == 0 and traded[-1] <= per_bar - 1
    assert (prices == on_grid(prices, BTC.tick_size, 2)).all()
    # Whole lots, at least one each, summing to the bar's lots (more only when the bar has
    # fewer lots than the distinct prices it must print).
    in_lots = np.round(sizes / BTC.lot_size).astype(np.int64)
    assert (in_lots >= 1).all()
    assert np.allclose(sizes, in_lots * BTC.lot_size, rtol=1e-12, atol=1e-12)  # to the ulp
    distinct = 1 + int(np.count_nonzero(np.diff(prices)))
    assert int(in_lots.sum()) == (lots if lots >= min(4, distinct) else traded.size)
    assert traded.size <= max(lots, 4)


@settings(max_examples=50, deadline=None)
@given(bars(), st.integers(MIN_TICKS_PER_BAR, 200), st.integers(0, 2**32))
def test_a_bar_path_is_a_function_of_its_seed(bar: tuple[float, float, float, float, int],
                                              per_bar: int, seed: int) -> None:
    def draw(s: int) -> bytes:
        path = bar_path(*bar, per_bar, 0.3, BTC, bar[0], np.random.default_rng(s))
        p = path.prints
        return b"".join(a.tobytes() for a in (path.mids, p.price, p.size, p.buyer))

    assert draw(seed) == draw(seed)
    assume(bar[1] > bar[2] and per_bar > 8)
    assert draw(seed) != draw(seed + 1)


def test_the_extremes_come_in_a_plausible_order() -> None:
    """Open at the low and close at the high: down first is impossible, so the high is second."""
    orders = []
    for seed in range(200):
        path = bar_path(100.0, 110.0, 95.0, 109.0, 10**6, 50, 0.0, BTC, 100.0,
                        np.random.default_rng(seed))
        _, prices, _ = _trades(path)
        orders.append(int(np.argmax(prices)) < int(np.argmin(prices)))
    # P(high first) = ((O - L) + (H - C)) / (2 (H - L)) = 6 / 30 = 0.2
    assert 0.1 < np.mean(orders) < 0.3


def _bitstamp(n: int | None = None) -> ReplayBars:
    bars_, report = parse_ohlcv(BITSTAMP.read_text(), source=str(BITSTAMP))
    replay = replay_bars(bars_, BTC, str(BITSTAMP), report)
    if n is None:
        return replay
    return ReplayBars(replay.source, replay.time_ns[:n], replay.open[:n], replay.high[:n],
                      replay.low[:n], replay.close[:n], replay.lots[:n], replay.interval_ns,
                      replay.lines[:n])


def test_the_real_slice_loads_on_the_grid_with_its_line_numbers() -> None:
    replay = _bitstamp()
    assert len(replay) == 500 and replay.interval_ns == HOUR and replay.moved == 0
    assert (np.diff(replay.time_ns) == HOUR).all()
    assert replay.lines[0] == 502 and replay.lines[-1] == 3  # newest first in the file
    assert replay.zero_volume == 0 and replay.short_volume == 0
    assert replay.report is not None and replay.report.dropped == 0


def _symbols(env: dict[str, str]) -> FeedConfig:
    return FeedConfig.from_env({"FEED_REPLAY_FILE": str(BITSTAMP), **env})


def _candles_of(feed: Feed, symbol: str, chunks: Callable[[], int]) -> list[wire.Ticks]:
    out = []
    stream = feed.symbols[symbol]
    while stream.source.remaining or len(stream._made):
        ticks = stream.produce(chunks())
        if not len(ticks):
            break
        out.append(ticks)
    return out


def test_ticks_rebuild_the_source_bars_at_their_interval() -> None:
    """The whole feed path (source, quoter, seq, times): 1h candles equal the file's bars."""
    config = _symbols({"FEED_TICK_RATE": "0.05"})
    feed = Feed(config.symbols, 3, 0, replay_speed=MAX_SPEED)
    rng = np.random.default_rng(0)
    batches = _candles_of(feed, "BTC-USD", lambda: int(rng.integers(1, 700)))
    ticks = wire.concat(batches)
    replay = config.symbols[0].replay
    assert replay is not None
    assert len(ticks) == len(replay) * ticks_per_bar(HOUR, 0.05) == 500 * 180
    assert (np.diff(ticks["ts_ns"]) > 0).all() and (np.diff(ticks["seq"].astype(int)) == 1).all()
    assert (ticks["ask"] > ticks["bid"]).all()
    trades = ticks[(ticks["flags"] & wire.FLAG_TRADE) != 0]
    buyer = (trades["flags"] & wire.FLAG_BUYER_AGGRESSOR) != 0
    assert (trades["last"][buyer] == trades["ask"][buyer]).all()
    assert (trades["last"][~buyer] == trades["bid"][~buyer]).all()

    aggregator = CandleAggregator([BY_NAME["1h"]])
    candles = []
    for batch in batches:
        candles.extend(aggregator.add(wire.TickBatch("BTC-USD", 1, batch)))
    final = {c.open_ns: c for c in candles}  # the latest state of each candle
    assert sorted(final) == replay.time_ns.tolist()
    for i, open_ns in enumerate(replay.time_ns.tolist()):
        candle = final[open_ns]
        assert (candle.open, candle.high, candle.low, candle.close) == (
            replay.open[i], replay.high[i], replay.low[i], replay.close[i])
        assert round(candle.volume, 5) == round(int(replay.lots[i]) * BTC.lot_size, 5)


def test_replayed_values_do_not_depend_on_batching_and_follow_the_seed() -> None:
    config = _symbols({"FEED_TICK_RATE": "0.02"})

    def run(seed: int, size: Callable[[], int]) -> bytes:
        feed = Feed(config.symbols, seed, 0, replay_speed=MAX_SPEED)
        return wire.concat(_candles_of(feed, "BTC-USD", size)).tobytes()

    rng = np.random.default_rng(1)
    whole = run(5, lambda: 10**6)
    assert whole == run(5, lambda: int(rng.integers(1, 200)))
    assert whole != run(6, lambda: 10**6)


def test_a_replay_schedule_paces_historical_times_on_the_wall_clock() -> None:
    # Three hourly bars with a one-hour gap after the second, 4 ticks a bar, at 60x.
    t0 = 1_600_000_000 * NS
    times = np.array([t0, t0 + HOUR, t0 + 3 * HOUR])
    s = ReplaySchedule(times, HOUR, 4, 60.0, t0, start_ns=0)
    assert s.times(0, 12).tolist() == [t0 + q * HOUR // 4 for q in range(8)] + [
        t0 + 3 * HOUR + q * HOUR // 4 for q in range(4)]
    assert s.due(0) == 1 and s.next_due_ns() == 0
    assert s.take(1).tolist() == [t0]
    quarter_wall = HOUR // 4 // 60  # 15 s of wall time per tick at 60x
    assert s.next_due_ns() == quarter_wall and s.due(quarter_wall - 1) == 0
    assert s.due(quarter_wall) == 1
    assert s.due(2 * HOUR // 60) == 7  # the gap: nothing more until the third bar
    s.take(7)
    assert s.next_due_ns() == 3 * HOUR // 60 and s.lag_ns(3 * HOUR // 60 + 5) == 5
    # A stall: the replay clock pauses instead of skipping bars.
    s.reanchor(10 * HOUR)
    assert s.next_due_ns() == 10 * HOUR and s.due(10 * HOUR) == 1
    assert s.take(100).tolist() == s.times(8, 4).tolist() and s.finished
    assert s.due(NEVER_NS - 1) == 0 and s.next_due_ns() == NEVER_NS and s.lag_ns(20 * HOUR) == 0


def test_a_stall_pauses_every_replayed_symbol_alike() -> None:
    """Symbol B has no bar between 0h and 3h, so it is not late when a stall hits; its clock must
    pause with A's all the same, or its 3h bar would come out early."""
    a = ReplaySchedule(np.array([0, HOUR, 2 * HOUR, 3 * HOUR]), HOUR, 4, 3600.0, 0, 0)
    b = ReplaySchedule(np.array([0, 3 * HOUR]), HOUR, 4, 3600.0, 0, 0)
    now = int(1.1 * NS)  # 1.1 s of wall time: 1.1 h replayed at 3600x
    for schedule in (a, b):
        schedule.take(schedule.due(now))
    now += int(1.5 * NS)  # a 1.5 s stall
    stall = max(a.lag_ns(now), b.lag_ns(now))
    assert b.lag_ns(now) == 0 < stall
    for schedule in (a, b):
        schedule.pause(stall)
    assert a.replay_ns(now) == b.replay_ns(now)
    assert a.due(now) == 1 and b.due(now) == 0  # A's next tick is due now; B's 3h bar is not


def test_a_held_replay_waits_for_its_start() -> None:
    config = _symbols({"FEED_TICK_RATE": "0.02"})
    feed = Feed(config.symbols, 1, 0, replay_speed=60.0)
    feed.hold_replay()
    assert feed.next_due_ns() == NEVER_NS and feed.step(10**15).batches == []
    assert feed.replay_status(0)["started"] is False  # type: ignore[index]
    assert feed.start_replay(5 * NS) and not feed.start_replay(6 * NS)
    assert feed.next_due_ns() == 5 * NS
    assert [len(b) for b in feed.step(5 * NS).batches] == [1]


def test_at_max_speed_everything_is_due_in_bounded_steps() -> None:
    config = _symbols({"FEED_TICK_RATE": "0.02"})
    feed = Feed(config.symbols, 1, 0, replay_speed=MAX_SPEED)
    total = 500 * 72
    published = 0
    steps = 0
    while not feed.replay_finished:
        result = feed.step(0, max_lag_ns=1)
        assert result.reanchored == ()
        published += sum(len(b) for b in result.batches)
        assert all(len(b) <= MAX_REPLAY_BATCH for b in result.batches)
        steps += 1
    assert published == total and steps == math.ceil(total / MAX_REPLAY_BATCH)
    assert feed.step(10**20).batches == [] and feed.next_due_ns() == NEVER_NS


def test_control_status_says_where_the_replay_stands() -> None:
    config = _symbols({"FEED_TICK_RATE": "0.02", "FEED_REPLAY_SPEED": "60"})
    replay = config.symbols[0].replay
    assert replay is not None and config.replay_speed == 60.0
    feed = Feed(config.symbols, 1, 0, replay_speed=config.replay_speed)

    def status(now_ns: int) -> dict[str, object]:
        _, reply = control.handle(feed, b'{"cmd": "status"}', now_ns)
        return orjson.loads(reply)["replay"]  # type: ignore[no-any-return]

    feed.step(HOUR // 60)  # one replayed hour: the first bar
    got = status(HOUR // 60)
    assert got["speed"] == 60.0 and got["finished"] is False
    assert got["clock_ns"] == int(replay.time_ns[0]) + HOUR
    btc = got["symbols"]["BTC-USD"]  # type: ignore[index]
    assert btc["published"] == 73 and btc["ticks"] == 500 * 72 and btc["bars"] == 500
    assert btc["position_ns"] == int(replay.time_ns[1])
    assert btc["file"] == str(BITSTAMP) and btc["interval_s"] == 3600.0
    feed.step(10**16)
    while not feed.replay_finished:
        feed.step(10**16)
    assert status(10**16)["finished"] is True
    _, reply = control.handle(Feed(FeedConfig.from_env({}).symbols, 1, 0), b'{"cmd": "status"}',
                              0)
    assert orjson.loads(reply)["replay"] is None


def test_replay_speed_and_symbol_settings() -> None:
    assert _symbols({"FEED_REPLAY_SPEED": "max"}).replay_speed == MAX_SPEED
    assert _symbols({}).replay_speed == 1.0
    config = _symbols({"FEED_REPLAY_SYMBOL": "eth/usd"})
    assert [s.instrument.symbol for s in config.symbols] == ["ETH-USD"]
    assert config.symbols[0].market.price == config.symbols[0].replay.first_open  # type: ignore[union-attr]
    for env, message in [
        ({"FEED_REPLAY_SPEED": "fast"}, "FEED_REPLAY_SPEED='fast' is not a number"),
        ({"FEED_REPLAY_SPEED": "0"}, "FEED_REPLAY_SPEED=0.0 is below the minimum"),
        ({"FEED_REPLAY_SYMBOL": "DOGE-USD"}, "FEED_REPLAY_SYMBOL='DOGE-USD' is not in"),
        ({"FEED_REPLAY_FILE": "/nonexistent.csv"}, "FEED_REPLAY_FILE /nonexistent.csv: cannot"),
        ({"FEED_REPLAY_FILE": str(DATA / "README.md")}, "no OHLCV header"),
        ({"FEED_TICK_RATE": "1000"}, "3600000 ticks in each 3600 s bar"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
            _symbols(env)


@pytest.mark.parametrize("env", [{"FEED_REPLAY_SYMBOL": "ETH-USD"},
                                 {"FEED_REPLAY_SYMBOL": "ETH-USD", "FEED_REPLAY_FILE": " "}])
def test_a_replay_symbol_without_a_replay_file_is_refused(env: dict[str, str]) -> None:
    """It was silently ignored: every symbol was simulated instead of one replayed."""
    with pytest.raises(ConfigError, match=r"FEED_REPLAY_SYMBOL='ETH-USD' needs FEED_REPLAY_FILE"):
        FeedConfig.from_env(env)


SYMBOL = """
[[symbol]]
base = "{base}"
quote = "USD"
tick_size = 0.01
lot_size = 0.0001
min_price = {min_price}
max_price = 1e6
spread_bps = 2
rate = 0.01
mean_trade_size = 0.1
mean_quote_size = 1
{replay}
"""


def _write_symbols(tmp_path: Path, *entries: str) -> Path:
    path = tmp_path / "symbols.toml"
    path.write_text("".join(entries))
    return path


def test_symbols_file_replays_every_symbol_from_its_own_file(tmp_path: Path) -> None:
    (tmp_path / "eth.csv").write_bytes(ETH.read_bytes())
    path = _write_symbols(
        tmp_path,
        SYMBOL.format(base="BTC", min_price=1, replay=f'[symbol.replay]\nfile = "{BITSTAMP}"'),
        SYMBOL.format(base="ETH", min_price=1, replay='[symbol.replay]\nfile = "eth.csv"'))
    config = FeedConfig.from_env({"SYMBOLS_FILE": str(path)})
    assert config.replaying
    btc, eth = (s.replay for s in config.symbols)
    assert btc is not None and eth is not None
    assert eth.source == str(tmp_path / "eth.csv")  # relative to the symbols file
    assert eth.report is not None and eth.report.dropped == 4  # duplicates (bad print: repaired)
    assert eth.zero_volume > 0
    # Both symbols share one replay clock from the earlier file's first bar.
    feed = Feed(config.symbols, 1, 0, replay_speed=1.0)
    eth_first = int(eth.time_ns[0])
    assert eth_first < int(btc.time_ns[0])
    assert feed.symbols["ETH-USD"].next_due_ns() == 0
    assert feed.symbols["BTC-USD"].next_due_ns() == int(btc.time_ns[0]) - eth_first


@pytest.mark.parametrize(("entries", "message"), [
    ((SYMBOL.format(base="BTC", min_price=1, replay=f'[symbol.replay]\nfile = "{BITSTAMP}"'),
      SYMBOL.format(base="ETH", min_price=1, replay="volatility = 0.5\nprice = 100")),
     r"a replay publishes replayed symbols only; BTC-USD has a \[symbol.replay\] table but "
     r"ETH-USD has none: give it a \[symbol.replay\] file or remove it"),
    # Without a model either: still told about the replay, not about a missing volatility.
    ((SYMBOL.format(base="BTC", min_price=1, replay=f'[symbol.replay]\nfile = "{BITSTAMP}"'),
      SYMBOL.format(base="ETH", min_price=1, replay=""),
      SYMBOL.format(base="SOL", min_price=1, replay="")),
     r"BTC-USD has a \[symbol.replay\] table but ETH-USD, SOL-USD have none: give them a "
     r"\[symbol.replay\] file or remove them"),
    ((SYMBOL.format(base="BTC", min_price=1, replay='[symbol.replay]\nfile = ""'),),
     r"symbol #1 \(BTC-USD\) \[replay\] needs a 'file' string"),
    ((SYMBOL.format(base="BTC", min_price=1,
                    replay=f'[symbol.replay]\nfile = "{BITSTAMP}"\nformat = "csv"'),),
     r"\(BTC-USD\) \[replay\]: unknown key 'format'; known: file \(the layout is detected"),
    ((SYMBOL.format(base="BTC", min_price=1,
                    replay=f'[symbol.replay]\nfile = "{BITSTAMP}"\nfiles = "x.csv"'),),
     r"\[replay\]: unknown key 'files'; did you mean 'file'\?"),
    ((SYMBOL.format(base="BTC", min_price=12000, replay=f'[symbol.replay]\nfile = "{BITSTAMP}"'),),
     "replay file .*bitstamp_btcusd_1h_slice.csv line 502: open 10865.82 is outside BTC-USD's "
     r"\[min_price, max_price\] = \[12000, 1e\+06\]"),
])
def test_bad_replay_entries_stop_start_up_with_the_file_and_line(
        tmp_path: Path, entries: tuple[str, ...], message: str) -> None:
    path = _write_symbols(tmp_path, *entries)
    with pytest.raises(ConfigError, match=message):
        FeedConfig.from_env({"SYMBOLS_FILE": str(path)})


def test_a_replayed_symbols_tick_is_checked_against_its_files_first_open(
        tmp_path: Path) -> None:
    coarse = SYMBOL.format(base="BTC", min_price=1, replay="volatility = 0.5\nprice = 100000")
    path = _write_symbols(tmp_path, coarse.replace("tick_size = 0.01", "tick_size = 500"))
    with pytest.raises(ConfigError, match=r"FEED_REPLAY_FILE .*: BTC-USD: 'tick_size' 500 is too "
                       r"coarse for the starting price \d+ \(its file's first open\)"):
        FeedConfig.from_env({"SYMBOLS_FILE": str(path), "FEED_REPLAY_FILE": str(BITSTAMP)})


def test_prices_off_the_tick_grid_are_rounded_to_it_and_counted() -> None:
    bars_, _ = parse_ohlcv(BITSTAMP.read_text(), source="x")
    coarse = Instrument("BTC-USD", "BTC", "USD", tick_size=5.0, lot_size=0.001, min_price=1,
                        max_price=1e7)
    replay = replay_bars(bars_, coarse, "x")
    assert replay.moved > 0
    for column in (replay.open, replay.high, replay.low, replay.close):
        assert (column % 5.0 == 0).all()
    source = ReplaySource(replay, coarse, 8, 0.5, seed=1)
    path = source.path(8)
    assert path.prints is not None
    traded = path.prints.size > 0
    assert path.prints.price[traded][0] == replay.open[0]
    assert source.remaining == 499 * 8


def test_a_replayed_symbol_may_keep_its_simulation_keys(tmp_path: Path) -> None:
    """A table copied from a simulation file (model keys and all) still loads as a replay: a
    replay reads no model's keys. A misspelt key is still refused."""
    kept = f'volatility = 0.5\ndrift = 0.0\n[symbol.replay]\nfile = "{BITSTAMP}"'
    path = _write_symbols(tmp_path, SYMBOL.format(base="BTC", min_price=1, replay=kept))
    assert FeedConfig.from_env({"SYMBOLS_FILE": str(path)}).replaying
    typo = f'volatilty = 0.5\n[symbol.replay]\nfile = "{BITSTAMP}"'
    path = _write_symbols(tmp_path, SYMBOL.format(base="BTC", min_price=1, replay=typo))
    with pytest.raises(ConfigError, match="unknown key 'volatilty'; did you mean 'volatility'"):
        FeedConfig.from_env({"SYMBOLS_FILE": str(path)})
