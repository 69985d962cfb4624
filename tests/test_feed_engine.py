"""The feed's domain: seeded determinism, quoting invariants, scheduling. No I/O."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibration.garch import params_to_toml
from feedsim import control
from feedsim.config import (
    DEFAULT_SYMBOLS_FILE,
    FeedConfig,
    SymbolConfig,
    load_symbols,
    load_universe,
)
from feedsim.engine import NS, Feed
from feedsim.market import GarchParams, GbmParams, Jumps
from feedsim.models import SPREAD_MULTIPLIER_BOUNDS, MarketParams, Quoter, QuoterRngs
from feedsim.prices import Prints
from feedsim.schedule import LiveSchedule
from marketdata import wire
from marketdata.errors import ConfigError
from marketdata.symbols import Instrument

SYMBOLS = FeedConfig.from_env({}).symbols
CROSS_FILE = Path(__file__).with_name("data") / "symbols_cross.toml"
BENCH_SYMBOLS_FILE = Path(__file__).parents[1] / "bench" / "symbols.toml"
BASE_SYMBOL = """[[symbol]]
base = 'BTC'
quote = 'USD'
tick_size = 0.01
lot_size = 0.001
min_price = 1
max_price = 1e7
price = 100
spread_bps = 2
rate = 10
mean_trade_size = 1
mean_quote_size = 1
"""


def _values(ticks: wire.Ticks) -> bytes:
    """The tick values that must be reproducible (everything but the time)."""
    copy = ticks.copy()
    copy["ts_ns"] = 0
    return copy.tobytes()


def _run(seed: int, chunks: list[int]) -> dict[str, bytes]:
    feed = Feed(SYMBOLS, seed, start_ns=0, max_batch=10**9)
    out: dict[str, list[bytes]] = {s: [] for s in feed.symbols}
    for symbol, stream in feed.symbols.items():
        for n in chunks:
            out[symbol].append(_values(stream.produce(n)))
    return {s: b"".join(parts) for s, parts in out.items()}


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=1, max_size=8))
def test_values_do_not_depend_on_batching(chunks: list[int]) -> None:
    """Same seed, same ticks, however they are split into batches."""
    assert _run(7, [sum(chunks)]) == _run(7, chunks)


def test_same_seed_same_stream_hash_and_other_seed_differs() -> None:
    def digest(seed: int) -> str:
        h = hashlib.sha256()
        for value in _run(seed, [500, 250]).values():
            h.update(value)
        return h.hexdigest()

    assert digest(1) == digest(1)
    assert digest(1) != digest(2)


def test_configured_correlation_moves_symbols_together() -> None:
    universe = FeedConfig.from_env({}).universe
    feed = Feed(universe.symbols, 3, 0, step_s=universe.step_s,
                correlations=universe.correlations)
    # 10 s returns: a single tick of SOL-USD moves less than its 0.01 tick size.
    r = {s: np.diff(np.log(wire.mid(f.produce(200_000)[::100])))
         for s, f in feed.symbols.items()}
    assert np.corrcoef(r["BTC-USD"], r["ETH-USD"])[0, 1] == pytest.approx(0.78, abs=0.05)
    assert np.corrcoef(r["BTC-USD"], r["SOL-USD"])[0, 1] == pytest.approx(0.70, abs=0.05)
    assert abs(np.corrcoef(r["BTC-USD"], r["USDT-USD"])[0, 1]) < 0.05


def test_quotes_sit_on_the_tick_grid_around_the_mid() -> None:
    feed = Feed(SYMBOLS, 11, 0)
    for stream in feed.symbols.values():
        ticks = stream.produce(5000)
        tick = stream.instrument.tick_size
        assert (ticks["ask"] > ticks["bid"]).all()
        for side in ("bid", "ask", "last"):
            steps = ticks[side] / tick
            assert np.allclose(steps, np.round(steps), atol=1e-6)
        spread_bps = (ticks["ask"] - ticks["bid"]) / wire.mid(ticks) * 1e4
        low, high = SPREAD_MULTIPLIER_BOUNDS
        rounding = 3 * tick / ticks["bid"].min() * 1e4
        assert spread_bps.min() >= stream.market.spread_bps * low - 1e-9
        assert spread_bps.max() <= stream.market.spread_bps * high + rounding
        lots = ticks["bid_size"] / stream.instrument.lot_size
        assert np.allclose(lots, np.round(lots)) and (lots >= 1).all()


def test_spreads_widen_with_volatility_and_trades_come_in_bursts() -> None:
    stream = Feed(SYMBOLS, 12, 0).symbols["BTC-USD"]
    ticks = stream.produce(200_000)  # 5.5 hours at 10 ticks/s
    mid = wire.mid(ticks)
    spread = (ticks["ask"] - ticks["bid"]) / mid
    minutes = len(ticks) // 600
    per_minute = ticks[: minutes * 600].reshape(minutes, 600)
    vol = np.abs(np.diff(np.log(wire.mid(per_minute)), axis=1)).mean(axis=1)
    assert np.corrcoef(vol, spread[: minutes * 600].reshape(minutes, 600).mean(axis=1))[0, 1] > 0.3
    trades = (per_minute["flags"] & wire.FLAG_TRADE).astype(bool).sum(axis=1)
    assert trades.var() > 2 * trades.mean()  # overdispersed: bursts, not a steady Poisson rate
    sizes = ticks["last_size"][(ticks["flags"] & wire.FLAG_TRADE) != 0]
    assert sizes.max() > 20 * sizes.mean()  # heavy-tailed trade sizes


def test_trades_print_at_the_touch_and_volume_accumulates() -> None:
    stream = Feed(SYMBOLS, 5, 0).symbols["ETH-USD"]
    ticks = stream.produce(4000)
    traded = (ticks["flags"] & wire.FLAG_TRADE) != 0
    buyer = (ticks["flags"] & wire.FLAG_BUYER_AGGRESSOR) != 0
    assert 0.2 < traded.mean() < 0.4  # trade_probability 0.3
    assert (ticks["last"][traded & buyer] == ticks["ask"][traded & buyer]).all()
    assert (ticks["last"][traded & ~buyer] == ticks["bid"][traded & ~buyer]).all()
    assert not (buyer & ~traded).any()
    assert np.isclose(ticks["volume"][-1], ticks["last_size"][traded].sum())
    assert (np.diff(ticks["volume"]) >= 0).all()


def _bounded(min_price: float, max_price: float, tick_size: float = 1e-5) -> Instrument:
    return Instrument("BTC-ETH", "BTC", "ETH", tick_size=tick_size, lot_size=0.001,
                      min_price=min_price, max_price=max_price)


def _inside(prices: np.ndarray, instrument: Instrument) -> bool:
    return bool(((instrument.min_price <= prices) & (prices <= instrument.max_price)).all())


@settings(max_examples=40, deadline=None)
@given(volatility=st.floats(1.0, 1e6), jump_sd=st.sampled_from([0.0, 5.0]),
       seed=st.integers(0, 2**32 - 1), spread_bps=st.floats(0.5, 3000.0),
       min_price=st.sampled_from([1e-5, 3.3e-5, 1e-4, 1.05e-4, 9.99e-4]),
       max_price=st.sampled_from([1.01e-3, 2e-3, 1.0, 1e6]))
def test_published_prices_never_leave_min_and_max_price(
        volatility: float, jump_sd: float, seed: int, spread_bps: float, min_price: float,
        max_price: float) -> None:
    """Under any volatility the mid is held at a bound, and so are the bid, ask, last and every
    book level quoted around it (a bid was once a tick below min_price)."""
    instrument = _bounded(min_price, max_price)
    market = MarketParams(price=1e-3, model=GbmParams(volatility),
                          jumps=Jumps(1000.0, 0.0, jump_sd) if jump_sd else None,
                          spread_bps=spread_bps, rate=10.0, trade_probability=0.9,
                          mean_trade_size=1.0, mean_quote_size=1.0)
    feed = Feed([SymbolConfig(instrument, market)], seed, 0, step_s=60.0)
    symbol = feed.symbols["BTC-ETH"]
    for second in range(1, 40):
        ticks = np.concatenate([b.ticks for b in feed.step(second * NS).batches])
        for column in ("bid", "ask", "last"):
            assert _inside(ticks[column], instrument), (column, ticks[column])
        assert (ticks["ask"] > ticks["bid"]).all()
        for levels in symbol.book_builder.book():
            assert _inside(levels["price"], instrument), levels


def test_a_mid_at_min_price_is_quoted_from_it_upwards() -> None:
    """The case reported: gbm volatility 1e6 published a bid of 9e-05 under min_price 1e-4."""
    instrument = _bounded(1e-4, 1e7)
    market = MarketParams(price=1e-3, model=GbmParams(1e6), jumps=None, spread_bps=2.0,
                          rate=10.0, trade_probability=0.9, mean_trade_size=1.0,
                          mean_quote_size=1.0)
    ticks = Feed([SymbolConfig(instrument, market)], 1, 0).symbols["BTC-ETH"].produce(5000)
    assert ticks["bid"].min() == 1e-4 == ticks["last"].min()
    assert ticks["ask"].min() == 1.1e-4


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), spread_bps=st.floats(0.5, 5000.0),
       grid=st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=1, max_size=50))
def test_replayed_prints_at_the_bounds_keep_the_touch_inside_them(
        seed: int, spread_bps: float, grid: list[tuple[int, bool]]) -> None:
    """A trade at or near min_price or max_price prints on the side the touch has room for."""
    instrument = _bounded(1e-4, 1.05e-4, 1e-6)  # six grid prices
    market = MarketParams(price=1e-4, model=GbmParams(0.0), jumps=None, spread_bps=spread_bps,
                          rate=10.0, trade_probability=0.5, mean_trade_size=1.0,
                          mean_quote_size=1.0)
    quoter = Quoter(market, instrument, QuoterRngs(*(np.random.default_rng(seed + i)
                                                     for i in range(5))), 1e-4, 1e-6)
    price = np.round(1e-4 + np.array([g for g, _ in grid]) * 1e-6, 6)
    ticks = quoter.quote(price.copy(), Prints(price, np.full(len(grid), 1.0),
                                              np.array([b for _, b in grid])))
    for column in ("bid", "ask", "last"):
        assert _inside(ticks[column], instrument), (column, ticks)
    assert (ticks["ask"] > ticks["bid"]).all()
    assert (ticks["last"] == price).all()
    buyer = (ticks["flags"] & wire.FLAG_BUYER_AGGRESSOR) != 0
    assert (ticks["ask"][buyer] == price[buyer]).all()
    assert (ticks["bid"][~buyer] == price[~buyer]).all()


def test_gbm_volatility_matches_configuration() -> None:
    gbm = replace(SYMBOLS[0], market=replace(SYMBOLS[0].market, model=GbmParams(0.6)))
    stream = Feed([gbm], 9, 0).symbols["BTC-USD"]
    mids = wire.mid(stream.produce(200_000))
    r = np.diff(np.log(mids))
    annualised = r.std() * np.sqrt(stream.market.rate * 365.25 * 86400)
    assert annualised == pytest.approx(0.6, rel=0.1)


@pytest.mark.parametrize(("extra", "message"), [
    ('model = "garch_t"\n[symbol.garch]\nmu=0\nomega=1e-6\nalpha=0.5\nbeta=0.6\nnu=4\n',
     "alpha \\+ beta must be < 1"),
    ('model = "garch_t"\n[symbol.garch]\nmu=0\nomega=1e-6\nalpha=0.1\nbeta=0.8\nnu=2\n',
     "nu must be > 2"),
    ('model = "garch_t"\n[symbol.garch]\nmu=0\nomega=1e-6\nalpha=0.1\nbeta=0.8\nnu=4\n'
     'interval_s=60\n', "differs from the step clock"),
    ('model = "ou"\n', r"\[ou\] needs a table"),
    ('model = "heston"\n', "unknown model 'heston'"),
    ('model = "gbm"\nvolatility = 0.5\n[symbol.jumps]\nrate_per_day = -1\nmean=0\nsd=0\n',
     "'rate_per_day' must be >= 0"),
])
def test_bad_models_are_rejected_clearly(tmp_path: Path, extra: str, message: str) -> None:
    path = tmp_path / "symbols.toml"
    path.write_text(BASE_SYMBOL + extra)
    with pytest.raises(ConfigError, match=message):
        load_symbols(path)


GBM = "volatility = 0.5\n"
CROSS_LEGS = '[symbol.cross]\nnumerator = "BTC-USD"\ndenominator = "ETH-USD"\n'


@pytest.mark.parametrize(("before", "extra", "message"), [
    ("", GBM + "trade_probabilty = 0.9\n",
     r"symbol #1 \(BTC-USD\): unknown key 'trade_probabilty'; did you mean 'trade_probability'\?"),
    ("", GBM + "colour = 'red'\n", r"symbol #1 \(BTC-USD\): unknown key 'colour'; known: base, "),
    ("", GBM + "volatilty = 0.9\n", "unknown key 'volatilty'; did you mean 'volatility'"),
    ("", 'model = "ou"\nvolatility = 0.5\n[symbol.ou]\nmean=1\nkappa_per_day=1\n'
     "sigma_per_sqrt_day=0.1\n",
     r"\(BTC-USD\): 'volatility' is read by model gbm only, and this symbol's model is 'ou'"),
    ("", GBM + "[symbol.garch]\nmu=0\nomega=1e-6\nalpha=0.1\nbeta=0.8\nnu=4\n",
     "'garch' is read by model garch_t only, and this symbol's model is 'gbm'"),
    ("", 'model = "garch_t"\n[symbol.garch]\nmu=0\nomega=1e-6\nalpha=0.1\nbeta=0.8\nnu=4\n'
     "nuu=4\n", r"\(BTC-USD\) \[garch\]: unknown key 'nuu'; did you mean 'nu'\?"),
    ("", 'model = "ou"\n[symbol.ou]\nmean=1\nkappa_per_day=1\nsigma_per_sqrt_day=0.1\n'
     "kappa=1\n", r"\[ou\]: unknown key 'kappa'; known: mean, kappa_per_day, "),
    ("", 'model = "ou"\n[symbol.ou]\nmean=1\nkappa_per_day=1\nsigma_per_sqrt_day=0.1\n'
     "[symbol.jumps]\nrate_per_day=1\nmean=0\nsd=0.01\n",
     "'jumps' is read by model gbm and garch_t only, and this symbol's model is 'ou'"),
    ("", GBM + "[symbol.jumps]\nrate_per_day=1\nmean=0\nsd=0.01\nsd_=0.01\n",
     r"\[jumps\]: unknown key 'sd_'; did you mean 'sd'\?"),
    ("", 'model = "cross"\n' + CROSS_LEGS + "invert = true\n",
     r"\[cross\]: unknown key 'invert'; known: numerator, denominator"),
    ("seed = 3\n", GBM, r"symbols.toml: unknown top-level key 'seed'; known: market, "),
    ("[market]\nstep = 60\n", GBM, r"\[market\]: unknown key 'step'; did you mean 'step_s'\?"),
    ("", GBM + '[[correlation]]\nsymbols = ["BTC-USD", "ETH-USD"]\nrh0 = 0.5\n',
     r"\[\[correlation\]\] #1: unknown key 'rh0'; did you mean 'rho'\?"),
    ("", 'model = ["gbm"]\n' + GBM, r"\(BTC-USD\): .*model"),  # not a TypeError
])
def test_unknown_keys_are_refused_with_the_nearest_known_one(
        tmp_path: Path, before: str, extra: str, message: str) -> None:
    """A misspelt key would otherwise be ignored, its default silently used instead."""
    path = tmp_path / "symbols.toml"
    path.write_text(before + BASE_SYMBOL + extra)
    with pytest.raises(ConfigError, match=message):
        load_symbols(path)


def test_every_key_the_symbols_files_use_is_known(tmp_path: Path) -> None:
    for path in (DEFAULT_SYMBOLS_FILE, CROSS_FILE, BENCH_SYMBOLS_FILE):
        assert load_universe(path).symbols
    # A [garch] table as `python -m calibration fit` writes it, pasted under a symbol.
    fitted = params_to_toml(GarchParams(1e-5, 1e-6, 0.05, 0.9, 4.0), "fitted")
    path = tmp_path / "symbols.toml"
    path.write_text(BASE_SYMBOL + 'model = "garch_t"\n'
                    + fitted.replace("[garch]", "[symbol.garch]"))
    assert isinstance(load_symbols(path)[0].market.model, GarchParams)


@pytest.mark.parametrize(("edits", "message"), [
    ({"tick_size = 0.01": "tick_size = 1000000.0"},
     r"symbol #1 \(BTC-USD\): 'tick_size' 1e\+06 is too coarse for the starting price 100: the "
     r"price must be at least 100 ticks \(a tick at most 1% of it\).*lower tick_size to 1 or less"),
    ({"tick_size = 0.01": "tick_size = 1.5"}, "'tick_size' 1.5 is too coarse"),
    ({"min_price = 1\n": "min_price = 100\n", "max_price = 1e7": "max_price = 100"},
     r"\[min_price, max_price\] = \[100, 100\] holds fewer than two prices of the 0.01 tick grid"),
    ({"min_price = 1\n": "min_price = 100.001\n", "max_price = 1e7": "max_price = 100.009",
      "\nprice = 100\n": "\nprice = 100.005\n"}, "holds fewer than two prices"),
])
def test_instruments_without_room_for_a_quote_are_refused(tmp_path: Path, edits: dict[str, str],
                                                          message: str) -> None:
    text = BASE_SYMBOL + GBM
    for old, new in edits.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "symbols.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_symbols(path)


def test_a_tick_of_1_percent_is_the_coarsest_accepted(tmp_path: Path) -> None:
    path = tmp_path / "symbols.toml"
    path.write_text(BASE_SYMBOL.replace("tick_size = 0.01", "tick_size = 1.0") + GBM)
    assert 1.0 == load_symbols(path)[0].instrument.tick_size


def test_a_cross_rates_tick_is_checked_against_its_legs_ratio(tmp_path: Path) -> None:
    text = CROSS_FILE.read_text()
    assert "tick_size = 0.00001" in text
    path = tmp_path / "symbols.toml"
    path.write_text(text.replace("tick_size = 0.00001", "tick_size = 0.5"))
    with pytest.raises(ConfigError, match=r"\(BTC-ETH\): 'tick_size' 0.5 is too coarse for the "
                       r"starting price 20.3125 \(its legs' price ratio\)"):
        load_universe(path)


@pytest.mark.parametrize(("correlation", "message"), [
    ('symbols = ["BTC-USD", "DOGE-USD"]\nrho = 0.5', "two different published symbols"),
    ('symbols = ["BTC-USD", "ETH-USD"]\nrho = 1.5', "'rho' must be a number in"),
    ('symbols = ["BTC-USD"]\nrho = 0.5', "must name two symbols"),
])
def test_bad_correlations_are_rejected_clearly(tmp_path: Path, correlation: str,
                                               message: str) -> None:
    path = tmp_path / "symbols.toml"
    eth = BASE_SYMBOL.replace("'BTC'", "'ETH'") + 'volatility = 0.5\n'
    path.write_text(BASE_SYMBOL + 'volatility = 0.5\n' + eth
                    + f"[[correlation]]\n{correlation}\n")
    with pytest.raises(ConfigError, match=message):
        load_symbols(path)


def test_correlated_symbols_must_share_a_rate(tmp_path: Path) -> None:
    path = tmp_path / "symbols.toml"
    eth = BASE_SYMBOL.replace("'BTC'", "'ETH'").replace("rate = 10", "rate = 20")
    path.write_text(BASE_SYMBOL + 'volatility = 0.5\n' + eth + 'volatility = 0.5\n'
                    + '[[correlation]]\nsymbols = ["BTC-USD", "ETH-USD"]\nrho = 0.5\n')
    with pytest.raises(ConfigError, match="tick at different rates"):
        load_symbols(path)


def test_schedule_produces_every_due_tick_with_its_time_and_sequence() -> None:
    feed = Feed(SYMBOLS, 1, start_ns=1_000 * NS)
    assert [] == feed.step(999 * NS).batches
    first = feed.step(1_000 * NS + NS // 2).batches  # 10/s: ticks at +0.0 ... +0.5 s
    assert {b.symbol: len(b) for b in first} == {s: 6 for s in feed.symbols}
    second = feed.step(1_001 * NS).batches
    btc = [b for b in first + second if b.symbol == "BTC-USD"]
    seq = np.concatenate([b.ticks["seq"] for b in btc])
    ts = np.concatenate([b.ticks["ts_ns"] for b in btc])
    assert list(range(1, 12)) == seq.tolist()
    assert [1_000 * NS + k * NS // 10 for k in range(11)] == ts.tolist()
    assert 1_001 * NS + NS // 10 == feed.next_due_ns()


@settings(max_examples=50, deadline=None)
@given(anchor=st.integers(0, 2**62), rate=st.floats(0.01, 1_000_000),
       takes=st.lists(st.integers(0, 40), min_size=1, max_size=10))
def test_tick_times_do_not_depend_on_how_many_are_taken_at_once(
        anchor: int, rate: float, takes: list[int]) -> None:
    """A few ticks' times are computed in Python, many with numpy: the values are the same."""
    one_by_one, at_once = LiveSchedule(anchor, rate), LiveSchedule(anchor, rate)
    times = np.concatenate([one_by_one.take(n) for n in takes])
    assert times.dtype == np.int64
    assert times.tolist() == at_once.take(sum(takes)).tolist()
    assert one_by_one.next_due_ns() == at_once.next_due_ns()


def test_a_stall_reanchors_instead_of_bursting() -> None:
    feed = Feed(SYMBOLS, 1, start_ns=0)
    feed.step(0)
    result = feed.step(60 * NS, max_lag_ns=NS)
    assert set(feed.symbols) == set(result.reanchored)
    assert all(len(b) == 1 for b in result.batches)
    assert all(int(b.ticks["seq"][0]) == 2 for b in result.batches)  # no seq is skipped


def test_control_snapshot_and_errors() -> None:
    feed = Feed(SYMBOLS, 1, start_ns=0)
    feed.step(NS)
    cmd, reply = control.handle(feed, b'{"cmd": "snapshot", "id": 4}', NS)
    body = orjson.loads(reply)
    assert ("snapshot", True, 4) == (cmd, body["ok"], body["id"])
    assert 11 == body["last"]["BTC-USD"]["seq"]
    assert list(feed.symbols) == [i["symbol"] for i in body["instruments"]]
    for bad, message in [(b"{", "not JSON"), (b"[1]", "JSON object"),
                         (b'{"cmd": "explode"}', "unknown cmd 'explode'"),
                         (b'{"id": 1}', "the request has no 'cmd' string"),
                         (b"x" * 70_000, "limit")]:
        cmd, reply = control.handle(feed, bad, NS)
        assert "invalid" == cmd
        assert message in orjson.loads(reply)["error"]
    # an error answers with the request's id, so a client can match it to its request
    for bad in (b'{"cmd": "explode", "id": 3}', b'{"id": 3}', b'{"cmd": "book", "id": 3}'):
        assert 3 == orjson.loads(control.handle(feed, bad, NS)[1])["id"]


@pytest.mark.parametrize(("text", "message"), [
    ("", "at least one"),
    ("[[symbol]]\nbase='BTC'\nquote='USD'\n", "'tick_size' must be a number"),
    ("[[symbol]]\nbase='B$'\nquote='USD'\n", "base/quote"),
    ("x = [", "not valid TOML"),
])
def test_bad_symbols_files_are_rejected_clearly(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "symbols.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_symbols(path)


def test_bad_environment_is_rejected_clearly() -> None:
    with pytest.raises(ConfigError, match="FEED_SEED='abc' is not an integer"):
        FeedConfig.from_env({"FEED_SEED": "abc"})
    with pytest.raises(ConfigError, match="cannot read"):
        FeedConfig.from_env({"SYMBOLS_FILE": "/nonexistent/symbols.toml"})


def test_tick_rate_override_applies_to_every_symbol() -> None:
    config = FeedConfig.from_env({"FEED_TICK_RATE": "5000"})
    assert {5000.0} == {s.market.rate for s in config.symbols}
    for env in ({}, {"FEED_TICK_RATE": ""}, {"FEED_TICK_RATE": " "}):  # unset: the file's rates
        assert {10.0} == {s.market.rate for s in FeedConfig.from_env(env).symbols}
    assert {1e-6} == {s.market.rate for s in FeedConfig.from_env(
        {"FEED_TICK_RATE": "1e-6"}).symbols}


@pytest.mark.parametrize("rate", ["0", "1e-300", "2e6", "'fast'"])
@pytest.mark.parametrize("override", [{}, {"FEED_TICK_RATE": "10"}])
def test_a_symbols_rate_outside_the_range_is_refused(tmp_path: Path, rate: str,
                                                     override: dict[str, str]) -> None:
    """Checked even while FEED_TICK_RATE overrides it: the file is wrong either way."""
    path = tmp_path / "symbols.toml"
    path.write_text(BASE_SYMBOL.replace("rate = 10", f"rate = {rate}") + GBM)
    message = ("'rate' must be a number" if rate.startswith("'") else
               "> 0" if rate == "0" else "'rate' must be from 1e-06 to 1e[+]06 ticks per second")
    with pytest.raises(ConfigError, match=rf"symbol #1 \(BTC-USD\): .*{message}"):
        FeedConfig.from_env({"SYMBOLS_FILE": str(path), **override})


def test_a_symbols_rate_may_be_left_out_while_feed_tick_rate_sets_it(tmp_path: Path) -> None:
    path = tmp_path / "symbols.toml"
    path.write_text(BASE_SYMBOL.replace("rate = 10", "") + GBM)
    config = FeedConfig.from_env({"SYMBOLS_FILE": str(path), "FEED_TICK_RATE": "250"})
    assert [s.market.rate for s in config.symbols] == [250.0]
    with pytest.raises(ConfigError, match=r"symbol #1 \(BTC-USD\): .*'rate'"):
        FeedConfig.from_env({"SYMBOLS_FILE": str(path)})


@pytest.mark.parametrize(("ahead_s", "top_up"), [(0.0, False), (0.05, False), (0.05, True),
                                                 (10.0, False), (10.0, True)])
def test_making_values_ahead_changes_nothing_but_cost(ahead_s: float, top_up: bool) -> None:
    """Values made ahead, in produce or topped up between steps (as feedsim's loop does), are
    the values made one step at a time."""
    def run(ahead: float, top_up: bool) -> list[bytes]:
        feed = Feed(SYMBOLS, 4, start_ns=0, ahead_s=ahead)
        out = []
        for now in range(0, 30 * NS, NS // 7):
            out += [b.ticks.tobytes() for b in feed.step(now).batches]
            if top_up:
                feed.top_up()
        return out

    assert run(0.0, False) == run(ahead_s, top_up)


def test_top_ups_spread_over_turns_once_the_first_fill_is_used() -> None:
    """All symbols start filled in the same turn; afterwards one refill a turn, never a stall
    quoting every symbol at once, and no step has to quote its own ticks."""
    symbols = FeedConfig.from_env({"FEED_TICK_RATE": "2000"}).symbols
    assert len(symbols) >= 5
    feed = Feed(symbols, 4, start_ns=0, ahead_s=0.02)
    made: list[str] = []
    for name, symbol_feed in feed.symbols.items():
        def counting(want: int, name: str = name, inner=symbol_feed._make) -> None:  # type: ignore[no-untyped-def]
            made.append(name)
            inner(want)
        symbol_feed._make = counting  # type: ignore[method-assign]
    per_turn = []
    for turn in range(1, 2000):  # 1 s of 0.5 ms turns
        feed.step(turn * NS // 2000)
        stepped = len(made)
        feed.top_up()
        per_turn.append((stepped, len(made) - stepped))
        made.clear()
    assert per_turn[0][0] == len(symbols)  # the first step makes every symbol's values
    assert all(in_step == 0 for in_step, _ in per_turn[1:])
    assert max(refills for _, refills in per_turn) == 1
    assert sum(refills for _, refills in per_turn) >= 5 * len(symbols)




def test_a_cross_rate_is_its_legs_ratio_within_its_spread_at_every_tick() -> None:
    universe = load_universe(CROSS_FILE)
    feed = Feed(universe.symbols, 1, 0, step_s=universe.step_s,
                correlations=universe.correlations)
    ticks = {s: stream.produce(5000) for s, stream in feed.symbols.items()}
    ratio = wire.mid(ticks["BTC-USD"]) / wire.mid(ticks["ETH-USD"])
    cross = ticks["BTC-ETH"]
    assert ((cross["bid"] <= ratio) & (ratio <= cross["ask"])).all()
    assert next(s for s in universe.symbols if s.instrument.symbol == "BTC-ETH").market.price == (
        pytest.approx(65000.0 / 3200.0))


def test_an_ou_peg_stays_near_its_mean() -> None:
    universe = load_universe(CROSS_FILE)
    feed = Feed(universe.symbols, 2, 0, step_s=universe.step_s)
    usdt = wire.mid(feed.symbols["USDT-USD"].produce(20_000))
    assert abs(usdt.mean() - 1.0) < 5e-4
    assert usdt.max() - usdt.min() < 0.01


@pytest.mark.parametrize(("edit", "message"), [
    (('numerator = "BTC-USD"', 'numerator = "SOL-USD"'), "must both be published symbols"),
    (('rate = 10.0\nmean_trade_size = 0.05\nmean_quote_size = 1.0\n[symbol.cross]',
      'rate = 20.0\nmean_trade_size = 0.05\nmean_quote_size = 1.0\n[symbol.cross]'),
     "same rate as its legs"),
    (('symbols = ["BTC-USD", "ETH-USD"]', 'symbols = ["BTC-ETH", "ETH-USD"]'),
     "is a cross rate"),
])
def test_bad_cross_rates_are_rejected_clearly(tmp_path: Path, edit: tuple[str, str],
                                              message: str) -> None:
    text = CROSS_FILE.read_text()
    assert edit[0] in text
    path = tmp_path / "symbols.toml"
    path.write_text(text.replace(*edit))
    with pytest.raises(ConfigError, match=message):
        load_universe(path)


@pytest.mark.parametrize(("env", "message"), [
    ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL='VERBOSE' is not one of"),
    ({"FEED_MAX_LAG_MS": "inf"}, "FEED_MAX_LAG_MS='inf' is not a finite number"),
    ({"FEED_TICK_RATE": "nan"}, "FEED_TICK_RATE='nan' is not a finite number"),
    # 0 was taken for unset, and the file's rates were used.
    ({"FEED_TICK_RATE": "0"}, r"FEED_TICK_RATE=0.0 is below the minimum 1e-06 \(ticks per second "
     r"for every symbol, from 1e-06 to 1e\+06; leave it unset for each symbol's own rate\)"),
    ({"FEED_TICK_RATE": "-1"}, "FEED_TICK_RATE=-1.0 is below the minimum 1e-06"),
    ({"FEED_TICK_RATE": "1e-300"}, "FEED_TICK_RATE=1e-300 is below the minimum 1e-06"),
    ({"FEED_TICK_RATE": "2e6"}, "FEED_TICK_RATE=2000000.0 is above the maximum 1000000.0"),
])
def test_malformed_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FeedConfig.from_env(env)
