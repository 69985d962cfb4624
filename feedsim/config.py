"""feedsim's configuration: environment variables read once, and the symbols file."""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from feedsim.market import CrossParams, GarchParams, GbmParams, Jumps, ModelParams, OuParams
from feedsim.models import MarketParams, price_grid_bounds
from feedsim.replay import MAX_TICKS_PER_BAR, ReplayBars, replay_bars, ticks_per_bar
from feedsim.schedule import MAX_SPEED
from marketdata.errors import ConfigError
from marketdata.settings import env_float, env_int, env_log_level, env_str
from marketdata.symbols import Instrument, canonical

DEFAULT_SYMBOLS_FILE = Path(__file__).with_name("symbols.toml")
MIN_TICK_RATE = 1e-6
"""Ticks per second, at least: slower, a tick's due time in ns overflows (or is NaN at 1e-300)."""
MAX_TICK_RATE = 1_000_000.0
MIN_PRICE_TICKS = 100
"""A symbol's starting price is at least this many ticks (its tick at most 1% of the price)."""


@dataclass(frozen=True)
class SymbolConfig:
    """One published symbol: what it is, how its market behaves, and the bars it replays."""

    instrument: Instrument
    market: MarketParams
    replay: ReplayBars | None = None
    """Set for a replayed symbol: its prices come from these bars instead of `market.model`."""


@dataclass(frozen=True)
class Correlation:
    """The correlation of two symbols' shocks (both must tick at the same rate)."""

    a: str
    b: str
    rho: float


@dataclass(frozen=True)
class Universe:
    """Everything the symbols file says: the symbols, the step clock and the correlations."""

    symbols: tuple[SymbolConfig, ...]
    step_s: float = 3600.0
    correlations: tuple[Correlation, ...] = ()


@dataclass(frozen=True)
class FeedConfig:
    """Everything feedsim needs, from the environment (names and defaults in the README)."""

    pub_endpoint: str
    control_endpoint: str
    seed: int
    universe: Universe
    min_batch_interval_s: float
    max_lag_s: float
    ahead_s: float
    book_interval_s: float
    book_levels: int
    book_snapshot_every: int
    send_hwm: int
    metrics_port: int
    log_level: str
    service_name: str
    instance_name: str
    replay_speed: float = 1.0
    """Replayed seconds per wall second (MAX_SPEED: as fast as possible); used in a replay."""
    start_wait_s: float = 0.0
    """How long a live feed waits for its first subscriber before its first tick."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FeedConfig:
        """Build the config from `env`; raise ConfigError naming any bad variable."""
        symbols_file = Path(env_str(env, "SYMBOLS_FILE", str(DEFAULT_SYMBOLS_FILE)))
        universe = load_universe(symbols_file, tick_rate_override(env))
        replay_file = env_str(env, "FEED_REPLAY_FILE", "")
        replay_symbol = env_str(env, "FEED_REPLAY_SYMBOL", "")
        if replay_file:
            universe = replay_one(universe, replay_symbol, Path(replay_file), "FEED_REPLAY_FILE")
        elif replay_symbol:
            raise ConfigError(f"FEED_REPLAY_SYMBOL={replay_symbol!r} needs FEED_REPLAY_FILE, the "
                              "OHLCV file to replay as that symbol; set it, or unset "
                              "FEED_REPLAY_SYMBOL")
        service = env_str(env, "SERVICE_NAME", "feedsim")
        return cls(
            pub_endpoint=env_str(env, "FEED_PUB_ENDPOINT", "tcp://127.0.0.1:5555"),
            control_endpoint=env_str(env, "FEED_CONTROL_ENDPOINT", "tcp://127.0.0.1:5556"),
            seed=env_int(env, "FEED_SEED", 42, minimum=0),
            universe=universe,
            min_batch_interval_s=env_float(env, "FEED_MIN_BATCH_INTERVAL_MS", 1.0,
                                           minimum=0.0, maximum=1000.0) / 1000.0,
            max_lag_s=env_float(env, "FEED_MAX_LAG_MS", 1000.0, minimum=1.0) / 1000.0,
            ahead_s=env_float(env, "FEED_AHEAD_MS", 20.0, minimum=0.0, maximum=1000.0) / 1000.0,
            book_interval_s=env_float(env, "FEED_BOOK_INTERVAL_MS", 100.0, minimum=0.0) / 1000.0,
            book_levels=env_int(env, "FEED_BOOK_LEVELS", 20, minimum=1, maximum=500),
            book_snapshot_every=env_int(env, "FEED_BOOK_SNAPSHOT_EVERY", 50, minimum=0),
            send_hwm=env_int(env, "FEED_SEND_HWM", 100_000, minimum=0),
            metrics_port=env_int(env, "FEED_METRICS_PORT", 9101, minimum=0, maximum=65535),
            log_level=env_log_level(env),
            service_name=service,
            instance_name=env_str(env, "SERVICE_INSTANCE_NAME", f"{service}-1"),
            replay_speed=replay_speed(env),
            start_wait_s=env_float(env, "FEED_START_WAIT_S", 2.0, minimum=0.0, maximum=3600.0),
        )

    @property
    def symbols(self) -> tuple[SymbolConfig, ...]:
        """The published symbols, in publication order."""
        return self.universe.symbols

    @property
    def replaying(self) -> bool:
        """Whether the feed replays files (then every symbol does)."""
        return any(s.replay is not None for s in self.symbols)


def tick_rate_override(env: Mapping[str, str]) -> float | None:
    """Return FEED_TICK_RATE (ticks per second for every symbol), or None when it is unset."""
    if not env_str(env, "FEED_TICK_RATE", ""):
        return None
    try:
        return env_float(env, "FEED_TICK_RATE", 0.0, minimum=MIN_TICK_RATE,
                         maximum=MAX_TICK_RATE)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (ticks per second for every symbol, from {MIN_TICK_RATE:g} to "
                          f"{MAX_TICK_RATE:g}; leave it unset for each symbol's own rate)"
                          ) from None


def replay_speed(env: Mapping[str, str]) -> float:
    """Return FEED_REPLAY_SPEED: a positive number (1 = real time) or `max` (MAX_SPEED)."""
    raw = env_str(env, "FEED_REPLAY_SPEED", "1")
    if raw.lower() == "max":
        return MAX_SPEED
    try:
        return env_float(env, "FEED_REPLAY_SPEED", 1.0, minimum=1e-6, maximum=1e9)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (expected replayed seconds per second, such as 1 or 60, "
                          "or max)") from None


def replay_one(universe: Universe, symbol: str, path: Path, where: str) -> Universe:
    """Publish only `symbol` (default: the file's first symbol), replaying `path`."""
    by_name = {s.instrument.symbol: s for s in universe.symbols}
    if symbol:
        try:
            name = canonical(symbol)
        except ValueError as exc:
            raise ConfigError(f"FEED_REPLAY_SYMBOL={symbol!r}: {exc}") from None
        if name not in by_name:
            raise ConfigError(f"FEED_REPLAY_SYMBOL={symbol!r} is not in SYMBOLS_FILE; known: "
                              f"{', '.join(by_name)}")
    else:
        name = universe.symbols[0].instrument.symbol
    config = _with_replay(by_name[name], path, where)
    _check_tick_grid(f"{where} {path}: {name}", config)
    return Universe((config,), universe.step_s, ())


def load_replay(path: Path, config: SymbolConfig, where: str) -> ReplayBars:
    """Read and import a replay file for `config`'s symbol; raise ConfigError naming it."""
    # Imported here: a feed that replays nothing does not load the calibration package.
    from calibration.errors import DataFormatError  # noqa: PLC0415
    from calibration.importer import parse_ohlcv  # noqa: PLC0415

    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"{where} {path}: cannot read: {exc.strerror or exc}") from None
    try:
        bars, report = parse_ohlcv(text, source=str(path))
    except DataFormatError as exc:
        raise ConfigError(f"{where}: replay file {exc}") from None
    replay = replay_bars(bars, config.instrument, str(path), report)
    per_bar = ticks_per_bar(replay.interval_ns, config.market.rate)
    if per_bar > MAX_TICKS_PER_BAR:
        raise ConfigError(
            f"{where} {path}: {config.instrument.symbol} at {config.market.rate:g} ticks/s puts "
            f"{per_bar} ticks in each {replay.interval_ns / 1e9:g} s bar, above "
            f"{MAX_TICKS_PER_BAR}; lower its rate or FEED_TICK_RATE")
    return replay


def _with_replay(config: SymbolConfig, path: Path, where: str) -> SymbolConfig:
    """Return `config` replaying `path`, starting from the file's first open."""
    replay = load_replay(path, config, where)
    return SymbolConfig(config.instrument, replace(config.market, price=replay.first_open),
                        replay)


def load_symbols(path: Path, rate_override: float | None = None) -> tuple[SymbolConfig, ...]:
    """Read the symbols of a symbols file (see load_universe)."""
    return load_universe(path, rate_override).symbols


def load_universe(path: Path, rate_override: float | None = None) -> Universe:
    """Read a symbols TOML file; raise ConfigError saying which entry and key is wrong."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"SYMBOLS_FILE {path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"SYMBOLS_FILE {path}: not valid TOML: {exc}") from None
    refuse_unknown_keys(f"SYMBOLS_FILE {path}", data, ("market", "correlation", "symbol"),
                        "top-level key")
    entries = data.get("symbol")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"SYMBOLS_FILE {path}: needs at least one [[symbol]] table")
    market = data.get("market", {})
    if isinstance(market, dict):
        refuse_unknown_keys(f"SYMBOLS_FILE {path}: [market]", market, ("step_s",))
    step_s = market.get("step_s", 3600.0) if isinstance(market, dict) else None
    if isinstance(step_s, bool) or not isinstance(step_s, int | float) or step_s <= 0:
        raise ConfigError(f"SYMBOLS_FILE {path}: [market] step_s must be a number > 0")
    _refuse_partial_replay(path, entries)
    result = [_symbol(path, i, entry, rate_override, float(step_s))
              for i, entry in enumerate(entries)]
    result = _replays(path, entries, result)
    names = [s.instrument.symbol for s in result]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"SYMBOLS_FILE {path}: duplicate symbols {', '.join(duplicates)}")
    result = _resolve_crosses(path, result)
    for i, config in enumerate(result):
        _check_tick_grid(f"SYMBOLS_FILE {path}: symbol #{i + 1} ({config.instrument.symbol})",
                         config)
    correlations = _correlations(path, data.get("correlation", []), result)
    return Universe(tuple(result), float(step_s), correlations)


def _refuse_partial_replay(path: Path, entries: list[Any]) -> None:
    """Refuse a file where some symbols replay and others do not, before reading any symbol:
    a symbol without a replay would otherwise be refused for its missing model parameters."""
    replayed = [isinstance(entry, dict) and "replay" in entry for entry in entries]
    if not any(replayed) or all(replayed):
        return

    def name(i: int) -> str:
        entry = entries[i]
        try:
            return canonical(f"{entry.get('base', '')}-{entry.get('quote', '')}")
        except (AttributeError, ValueError):
            return f"symbol #{i + 1}"

    missing = [name(i) for i, r in enumerate(replayed) if not r]
    having = [name(i) for i, r in enumerate(replayed) if r]
    raise ConfigError(f"SYMBOLS_FILE {path}: a replay publishes replayed symbols only; "
                      f"{', '.join(having)} {'has' if len(having) == 1 else 'have'} a "
                      f"[symbol.replay] table but {', '.join(missing)} "
                      f"{'has' if len(missing) == 1 else 'have'} none: give "
                      f"{'it' if len(missing) == 1 else 'them'} a [symbol.replay] file or "
                      f"remove {'it' if len(missing) == 1 else 'them'}")


def _replays(path: Path, entries: list[Any], symbols: list[SymbolConfig]) -> list[SymbolConfig]:
    """Load each `[symbol.replay]` file; a replay needs one for every symbol (one clock, checked
    by _refuse_partial_replay)."""
    tables = [entry.get("replay") if isinstance(entry, dict) else None for entry in entries]
    if all(table is None for table in tables):
        return symbols
    out = []
    for i, (config, table) in enumerate(zip(symbols, tables, strict=True)):
        where = f"SYMBOLS_FILE {path}: symbol #{i + 1} ({config.instrument.symbol}) [replay]"
        if not isinstance(table, dict) or not isinstance(table.get("file"), str) or not table[
                "file"].strip():
            raise ConfigError(f"{where} needs a 'file' string (a CSV of OHLCV bars)")
        refuse_unknown_keys(where, table, ("file",),
                            note="the layout is detected from the file")
        out.append(_with_replay(config, path.parent / table["file"].strip(), where))
    return out


def _resolve_crosses(path: Path, symbols: list[SymbolConfig]) -> list[SymbolConfig]:
    """Check each cross rate's legs and start it at their price ratio."""
    by_name = {s.instrument.symbol: s for s in symbols}
    out = []
    for s in symbols:
        model = s.market.model
        if isinstance(model, CrossParams) and s.replay is None:
            where = f"SYMBOLS_FILE {path}: {s.instrument.symbol} [cross]"
            legs = [by_name.get(model.numerator), by_name.get(model.denominator)]
            if any(leg is None for leg in legs):
                raise ConfigError(f"{where}: its legs {model.numerator} and "
                                  f"{model.denominator} must both be published symbols")
            num, den = (leg for leg in legs if leg is not None)
            if isinstance(num.market.model, CrossParams) or isinstance(den.market.model,
                                                                        CrossParams):
                raise ConfigError(f"{where}: a leg cannot itself be a cross rate")
            if not num.market.rate == den.market.rate == s.market.rate:
                raise ConfigError(f"{where}: must tick at the same rate as its legs")
            price = num.market.price / den.market.price
            if not s.instrument.min_price <= price <= s.instrument.max_price:
                raise ConfigError(f"{where}: the legs' price ratio {price} is outside "
                                  "[min_price, max_price]")
            out.append(SymbolConfig(s.instrument, replace(s.market, price=price)))
        else:
            out.append(s)
    return out


def _check_tick_grid(where: str, config: SymbolConfig) -> None:
    """Refuse a tick too coarse for the starting price, and bounds without room for a quote."""
    instrument, price = config.instrument, config.market.price
    tick = instrument.tick_size
    if price < MIN_PRICE_TICKS * tick:
        started = (" (its file's first open)" if config.replay is not None
                   else " (its legs' price ratio)" if isinstance(config.market.model, CrossParams)
                   else "")
        raise ConfigError(
            f"{where}: 'tick_size' {tick:g} is too coarse for the starting price {price:g}"
            f"{started}: the price must be at least {MIN_PRICE_TICKS} ticks (a tick at most "
            f"{100 / MIN_PRICE_TICKS:g}% of it), else every quote is whole ticks far wider than "
            f"spread_bps; lower tick_size to {price / MIN_PRICE_TICKS:g} or less")
    lo, hi = price_grid_bounds(instrument)
    if hi - lo < tick * (1 - 1e-9):
        raise ConfigError(
            f"{where}: [min_price, max_price] = [{instrument.min_price:g}, "
            f"{instrument.max_price:g}] holds fewer than two prices of the {tick:g} tick grid; "
            "a bid and an ask one tick apart need two")


def correlation_matrix(names: list[str], correlations: tuple[Correlation, ...]) -> np.ndarray:
    """Return the correlation matrix of `names` (identity but for the configured pairs)."""
    index = {name: i for i, name in enumerate(names)}
    matrix = np.eye(len(names))
    for c in correlations:
        if c.a in index and c.b in index:
            matrix[index[c.a], index[c.b]] = matrix[index[c.b], index[c.a]] = c.rho
    return matrix


def _correlations(path: Path, entries: Any, symbols: list[SymbolConfig]
                  ) -> tuple[Correlation, ...]:
    where = f"SYMBOLS_FILE {path}: [[correlation]]"
    if not isinstance(entries, list):
        raise ConfigError(f"{where} must be an array of tables")
    rates = {s.instrument.symbol: s.market.rate for s in symbols}
    crosses = {s.instrument.symbol for s in symbols if isinstance(s.market.model, CrossParams)}
    out = []
    for i, entry in enumerate(entries):
        if isinstance(entry, dict):
            refuse_unknown_keys(f"{where} #{i + 1}", entry, ("symbols", "rho"))
        pair = entry.get("symbols") if isinstance(entry, dict) else None
        rho = entry.get("rho") if isinstance(entry, dict) else None
        if (not isinstance(pair, list) or len(pair) != 2
                or not all(isinstance(p, str) for p in pair)):
            raise ConfigError(f"{where} #{i + 1}: 'symbols' must name two symbols")
        try:
            a, b = (canonical(p) for p in pair)
        except ValueError as exc:
            raise ConfigError(f"{where} #{i + 1}: {exc}") from None
        unknown = [s for s in (a, b) if s not in rates]
        if unknown or a == b:
            raise ConfigError(f"{where} #{i + 1}: needs two different published symbols, "
                              f"got {a}, {b}")
        if a in crosses or b in crosses:
            raise ConfigError(f"{where} #{i + 1}: {a if a in crosses else b} is a cross rate; "
                              "it moves with its legs and takes no correlation of its own")
        if isinstance(rho, bool) or not isinstance(rho, int | float) or not -1 < rho < 1:
            raise ConfigError(f"{where} #{i + 1}: 'rho' must be a number in (-1, 1)")
        if rates[a] != rates[b]:
            raise ConfigError(f"{where} #{i + 1}: {a} and {b} tick at different rates "
                              f"({rates[a]} and {rates[b]}); correlated symbols share one grid")
        out.append(Correlation(a, b, float(rho)))
    result = tuple(out)
    for rate in set(rates.values()):
        names = [n for n, r in rates.items() if r == rate]
        try:
            np.linalg.cholesky(correlation_matrix(names, result))
        except np.linalg.LinAlgError:
            raise ConfigError(f"{where}: the correlations of {', '.join(names)} do not form a "
                              "positive definite matrix") from None
    return result


_POSITIVE = ("tick_size", "lot_size", "min_price", "max_price", "price", "rate",
             "mean_trade_size", "mean_quote_size")


def _symbol(path: Path, index: int, entry: Any, rate_override: float | None,
            step_s: float) -> SymbolConfig:
    where = f"SYMBOLS_FILE {path}: symbol #{index + 1}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} is not a table")

    def number(key: str, default: float | None = None, signed: bool = False) -> float:
        value = entry.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: '{key}' must be a number, got {value!r}")
        if key in _POSITIVE and value <= 0:
            raise ConfigError(f"{where}: '{key}' must be > 0, got {value}")
        if value < 0 and not signed:
            raise ConfigError(f"{where}: '{key}' must be >= 0, got {value}")
        return float(value)

    try:
        symbol = canonical(f"{entry.get('base', '')}-{entry.get('quote', '')}")
    except ValueError as exc:
        raise ConfigError(f"{where}: base/quote: {exc}") from None
    where = f"{where} ({symbol})"
    _refuse_unknown_symbol_keys(where, entry)
    base, quote = symbol.split("-")
    instrument = Instrument(
        symbol=symbol, base=base, quote=quote,
        tick_size=number("tick_size"), lot_size=number("lot_size"),
        min_price=number("min_price"), max_price=number("max_price"),
    )
    model = _model(where, entry, step_s)
    replayed = "replay" in entry
    # The file's rate is checked even when FEED_TICK_RATE overrides it, but needed only when
    # nothing does.
    if rate_override is None or "rate" in entry:
        file_rate = number("rate")
        if not MIN_TICK_RATE <= file_rate <= MAX_TICK_RATE:
            raise ConfigError(f"{where}: 'rate' must be from {MIN_TICK_RATE:g} to "
                              f"{MAX_TICK_RATE:g} ticks per second, got {file_rate:g}")
    rate = rate_override if rate_override is not None else file_rate
    market = MarketParams(
        # A cross rate starts at its legs' ratio, a replay at its file's first open (both set
        # once all symbols are read).
        price=(number("price", 1.0) if isinstance(model, CrossParams) or replayed
               else number("price")),
        model=model,
        jumps=_jumps(where, entry.get("jumps")),
        spread_bps=number("spread_bps"),
        rate=rate,
        trade_probability=number("trade_probability", 0.3),
        mean_trade_size=number("mean_trade_size"),
        mean_quote_size=number("mean_quote_size"),
    )
    if not isinstance(model, CrossParams) and not replayed and not (
            instrument.min_price <= market.price <= instrument.max_price):
        raise ConfigError(f"{where}: price {market.price} is outside [min_price, "
                          f"max_price] = [{instrument.min_price}, {instrument.max_price}]")
    if market.trade_probability > 1:
        raise ConfigError(f"{where}: 'trade_probability' must be <= 1")
    return SymbolConfig(instrument, market)


def refuse_unknown_keys(where: str, table: Mapping[str, Any], known: Collection[str],
                        what: str = "key", note: str = "") -> None:
    """Raise ConfigError naming the first key of `table` not in `known`, and the nearest known
    key when one is close (a misspelt key would otherwise be silently ignored)."""
    for key in table:
        if key in known:
            continue
        close = difflib.get_close_matches(key, list(known), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(known)}"
        raise ConfigError(f"{where}: unknown {what} '{key}'{hint}"
                          + (f" ({note})" if note else ""))


_SYMBOL_KEYS = ("base", "quote", "tick_size", "lot_size", "min_price", "max_price", "price",
                "model", "spread_bps", "rate", "trade_probability", "mean_trade_size",
                "mean_quote_size", "replay")
_MODEL_KEYS = {"gbm": ("volatility", "drift", "jumps"), "garch_t": ("garch", "jumps"),
               "ou": ("ou",), "cross": ("cross",)}
"""The keys (and sub-tables) of a [[symbol]] that only its model reads."""
_ANY_MODEL_KEYS = tuple(dict.fromkeys(k for keys in _MODEL_KEYS.values() for k in keys))


def _refuse_unknown_symbol_keys(where: str, entry: dict[str, Any]) -> None:
    """Refuse a key no symbol has, and one that belongs to another model than the symbol's.

    A replayed symbol reads no model's keys, so it may carry any of them (a table copied from
    a simulation file keeps working as a replay); unknown keys are still refused.
    """
    if "replay" in entry:
        refuse_unknown_keys(where, entry, _SYMBOL_KEYS + _ANY_MODEL_KEYS)
        return
    kind = entry.get("model", "gbm")
    if not isinstance(kind, str) or kind not in _MODEL_KEYS:
        return  # _model refuses the model itself
    own = _MODEL_KEYS[kind]
    for key in entry:
        owners = [name for name, keys in _MODEL_KEYS.items() if key in keys]
        if owners and key not in own:
            raise ConfigError(f"{where}: '{key}' is read by model {' and '.join(owners)} only, "
                              f"and this symbol's model is {kind!r}")
    refuse_unknown_keys(where, entry, _SYMBOL_KEYS + own)


def _table_numbers(where: str, table: Any, keys: dict[str, str]) -> dict[str, float]:
    """Read `keys` (name -> rule: 'signed', '>=0' or '>0') from a sub-table, with clear errors."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where} needs a table with {', '.join(keys)}")
    out = {}
    for key, rule in keys.items():
        value = table.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: '{key}' must be a number, got {value!r}")
        if (rule == ">0" and value <= 0) or (rule == ">=0" and value < 0):
            bound = "> 0" if rule == ">0" else ">= 0"
            raise ConfigError(f"{where}: '{key}' must be {bound}, got {value}")
        out[key] = float(value)
    return out


def _sub_table(where: str, table: Any, keys: dict[str, str],
               also: Collection[str] = ()) -> dict[str, float]:
    """Read a model's sub-table: `keys` as _table_numbers does, and no key but those and `also`
    (read elsewhere)."""
    values = _table_numbers(where, table, keys)
    refuse_unknown_keys(where, table, (*keys, *also))
    return values


def _model(where: str, entry: dict[str, Any], step_s: float) -> ModelParams:
    if "replay" in entry and "model" not in entry:
        # A replayed symbol's prices come from its file; the model is never run (a flat GBM
        # stands in for the field, and the control status reports the model as "replay").
        return GbmParams(0.0)
    kind = entry.get("model", "gbm")
    if kind == "gbm":
        values = _table_numbers(where, entry, {"volatility": ">=0"})
        drift = entry.get("drift", 0.0)
        if isinstance(drift, bool) or not isinstance(drift, int | float):
            raise ConfigError(f"{where}: 'drift' must be a number, got {drift!r}")
        return GbmParams(values["volatility"], float(drift))
    if kind == "garch_t":
        # annualised_volatility is derived, written by `calibration fit` for the reader only.
        g = _sub_table(f"{where} [garch]", entry.get("garch"), {
            "mu": "signed", "omega": ">0", "alpha": ">=0", "beta": ">=0", "nu": ">0"},
            also=("interval_s", "annualised_volatility"))
        if g["alpha"] + g["beta"] >= 1:
            raise ConfigError(f"{where} [garch]: alpha + beta must be < 1 (stationary)")
        if g["nu"] <= 2:
            raise ConfigError(f"{where} [garch]: nu must be > 2 (finite variance)")
        interval = entry["garch"].get("interval_s", step_s)
        if interval != step_s:
            raise ConfigError(f"{where} [garch]: interval_s {interval} differs from the step "
                              f"clock [market] step_s {step_s}; refit or change step_s")
        return GarchParams(interval_s=step_s, **g)
    if kind == "cross":
        table = entry.get("cross")
        raw = [table.get(k) for k in ("numerator", "denominator")] if isinstance(
            table, dict) else []
        legs = [leg for leg in raw if isinstance(leg, str)]
        if not isinstance(table, dict) or len(legs) != 2:
            raise ConfigError(f"{where} [cross]: needs 'numerator' and 'denominator' symbols")
        refuse_unknown_keys(f"{where} [cross]", table, ("numerator", "denominator"))
        try:
            numerator, denominator = (canonical(leg) for leg in legs)
        except ValueError as exc:
            raise ConfigError(f"{where} [cross]: {exc}") from None
        return CrossParams(numerator, denominator)
    if kind == "ou":
        o = _sub_table(f"{where} [ou]", entry.get("ou"), {
            "mean": ">0", "kappa_per_day": ">0", "sigma_per_sqrt_day": ">=0"})
        return OuParams(o["mean"], o["kappa_per_day"], o["sigma_per_sqrt_day"])
    raise ConfigError(f"{where}: unknown model {kind!r}; known: gbm, garch_t, ou, cross")


def _jumps(where: str, table: Any) -> Jumps | None:
    if table is None:
        return None
    j = _sub_table(f"{where} [jumps]", table,
                   {"rate_per_day": ">=0", "mean": "signed", "sd": ">=0"})
    return Jumps(j["rate_per_day"], j["mean"], j["sd"])
