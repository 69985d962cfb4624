"""feedsim's configuration: environment variables read once, and the symbols file."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feedsim.models import MarketParams
from marketdata.errors import ConfigError
from marketdata.settings import env_float, env_int, env_str
from marketdata.symbols import Instrument, canonical

DEFAULT_SYMBOLS_FILE = Path(__file__).with_name("symbols.toml")


@dataclass(frozen=True)
class SymbolConfig:
    """One published symbol: what it is and how its market behaves."""

    instrument: Instrument
    market: MarketParams


@dataclass(frozen=True)
class FeedConfig:
    """Everything feedsim needs, from the environment (names and defaults in the README)."""

    pub_endpoint: str
    control_endpoint: str
    seed: int
    symbols: tuple[SymbolConfig, ...]
    min_batch_interval_s: float
    max_lag_s: float
    ahead_s: float
    send_hwm: int
    metrics_port: int
    log_level: str
    service_name: str
    instance_name: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FeedConfig:
        """Build the config from `env`; raise ConfigError naming any bad variable."""
        rate_override = env_float(env, "FEED_TICK_RATE", 0.0, minimum=0.0, maximum=1_000_000.0)
        symbols_file = Path(env_str(env, "SYMBOLS_FILE", str(DEFAULT_SYMBOLS_FILE)))
        symbols = load_symbols(symbols_file, rate_override or None)
        service = env_str(env, "SERVICE_NAME", "feedsim")
        return cls(
            pub_endpoint=env_str(env, "FEED_PUB_ENDPOINT", "tcp://127.0.0.1:5555"),
            control_endpoint=env_str(env, "FEED_CONTROL_ENDPOINT", "tcp://127.0.0.1:5556"),
            seed=env_int(env, "FEED_SEED", 42, minimum=0),
            symbols=symbols,
            min_batch_interval_s=env_float(env, "FEED_MIN_BATCH_INTERVAL_MS", 0.5,
                                           minimum=0.0, maximum=1000.0) / 1000.0,
            max_lag_s=env_float(env, "FEED_MAX_LAG_MS", 1000.0, minimum=1.0) / 1000.0,
            ahead_s=env_float(env, "FEED_AHEAD_MS", 20.0, minimum=0.0, maximum=1000.0) / 1000.0,
            send_hwm=env_int(env, "FEED_SEND_HWM", 100_000, minimum=0),
            metrics_port=env_int(env, "FEED_METRICS_PORT", 9101, minimum=0, maximum=65535),
            log_level=env_str(env, "LOG_LEVEL", "INFO"),
            service_name=service,
            instance_name=env_str(env, "SERVICE_INSTANCE_NAME", f"{service}-1"),
        )


def load_symbols(path: Path, rate_override: float | None = None) -> tuple[SymbolConfig, ...]:
    """Read a symbols TOML file; raise ConfigError saying which entry and key is wrong."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"SYMBOLS_FILE {path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"SYMBOLS_FILE {path}: not valid TOML: {exc}") from None
    entries = data.get("symbol")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"SYMBOLS_FILE {path}: needs at least one [[symbol]] table")
    result = [_symbol(path, i, entry, rate_override) for i, entry in enumerate(entries)]
    names = [s.instrument.symbol for s in result]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"SYMBOLS_FILE {path}: duplicate symbols {', '.join(duplicates)}")
    return tuple(result)


_POSITIVE = ("tick_size", "lot_size", "min_price", "max_price", "price", "rate",
             "mean_trade_size", "mean_quote_size")


def _symbol(path: Path, index: int, entry: Any, rate_override: float | None) -> SymbolConfig:
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
    base, quote = symbol.split("-")
    instrument = Instrument(
        symbol=symbol, base=base, quote=quote,
        tick_size=number("tick_size"), lot_size=number("lot_size"),
        min_price=number("min_price"), max_price=number("max_price"),
    )
    market = MarketParams(
        price=number("price"),
        volatility=number("volatility"),
        drift=number("drift", 0.0, signed=True),
        spread_bps=number("spread_bps"),
        rate=rate_override or number("rate"),
        trade_probability=number("trade_probability", 0.3),
        mean_trade_size=number("mean_trade_size"),
        mean_quote_size=number("mean_quote_size"),
    )
    if not instrument.min_price <= market.price <= instrument.max_price:
        raise ConfigError(f"{where} ({symbol}): price {market.price} is outside [min_price, "
                          f"max_price] = [{instrument.min_price}, {instrument.max_price}]")
    if market.trade_probability > 1:
        raise ConfigError(f"{where} ({symbol}): 'trade_probability' must be <= 1")
    return SymbolConfig(instrument, market)
