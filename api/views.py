"""Rendering ticks as the API's JSON objects, rounded to each instrument's decimals.

Prices are rounded to the tick size's decimals (mid to one more, since it can fall between two
ticks), sizes and volume to the lot size's, spread_bps to 3 decimals. Times are given three ways:
``ts_ns`` (exact), ``timestamp_ms`` and ``timestamp`` (RFC 3339, UTC, microseconds, ``Z``).

Candles and statistics round prices and volume the same way, and quote volume to the price's
plus the size's decimals (the exact precision of one trade's price * size). Order book levels and
trades round prices and sizes the same way; correlations to 6 decimals.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from marketdata import trades as mdtrades
from marketdata import wire
from marketdata.candles import Candle, Summary
from marketdata.correlations import Correlations, Grid
from marketdata.store import LatestTick
from marketdata.symbols import Instrument

TICK_FIELDS = ("seq", "ts_ns", "timestamp", "timestamp_ms", "bid", "ask", "mid", "last",
               "bid_size", "ask_size", "last_size", "volume", "flags")
"""The keys of a history tick object, in order."""


def rfc3339(ts_ns: int) -> str:
    """Return `ts_ns` as RFC 3339 UTC with microseconds, e.g. 2026-11-25T08:44:39.123456Z."""
    return rfc3339_many(np.array([ts_ns], dtype=np.int64))[0]


def rfc3339_many(ts_ns: npt.NDArray[np.int64]) -> list[str]:
    """Return RFC 3339 texts of many ns timestamps at once."""
    micros = np.floor_divide(ts_ns, 1_000).astype("datetime64[us]")
    return [f"{text}Z" for text in np.datetime_as_string(micros, unit="us").tolist()]


def tick_columns(ticks: wire.Ticks, instrument: Instrument) -> dict[str, list[Any]]:
    """Return every field of a tick object as a column of JSON-ready Python values."""
    prices = instrument.price_decimals
    sizes = instrument.size_decimals
    ts_ns = ticks["ts_ns"].astype(np.int64)
    bid = ticks["bid"].astype(np.float64)
    ask = ticks["ask"].astype(np.float64)
    return {
        "seq": ticks["seq"].tolist(),
        "ts_ns": ts_ns.tolist(),
        "timestamp": rfc3339_many(ts_ns),
        "timestamp_ms": np.floor_divide(ts_ns, 1_000_000).tolist(),
        "bid": np.round(bid, prices).tolist(),
        "ask": np.round(ask, prices).tolist(),
        "mid": instrument.mids(bid, ask).tolist(),
        "last": np.round(ticks["last"], prices).tolist(),
        "bid_size": np.round(ticks["bid_size"], sizes).tolist(),
        "ask_size": np.round(ticks["ask_size"], sizes).tolist(),
        "last_size": np.round(ticks["last_size"], sizes).tolist(),
        "volume": np.round(ticks["volume"], sizes).tolist(),
        "flags": ticks["flags"].tolist(),
    }


def tick_objects(ticks: wire.Ticks, instrument: Instrument) -> list[dict[str, Any]]:
    """Return history tick objects (keys TICK_FIELDS) for `ticks`."""
    columns = tick_columns(ticks, instrument)
    rows = zip(*(columns[name] for name in TICK_FIELDS), strict=True)
    return [dict(zip(TICK_FIELDS, row, strict=True)) for row in rows]


def price_object(latest: LatestTick, instrument: Instrument, now_ns: int) -> dict[str, Any]:
    """Return the current-price object of a symbol's latest tick, aged against `now_ns`."""
    tick = {name: column[0] for name, column in tick_columns(latest.record, instrument).items()}
    bid, ask, mid = tick["bid"], tick["ask"], tick["mid"]
    return {
        "symbol": instrument.symbol,
        "bid": bid,
        "ask": ask,
        "mid": mid,
        "last": tick["last"],
        "last_size": tick["last_size"],
        "bid_size": tick["bid_size"],
        "ask_size": tick["ask_size"],
        "spread": round(ask - bid, instrument.price_decimals),
        "spread_bps": instrument.spread_bps(bid, ask, mid),
        "volume": tick["volume"],
        "seq": tick["seq"],
        "session": latest.session,
        "timestamp": tick["timestamp"],
        "timestamp_ms": tick["timestamp_ms"],
        "ts_ns": tick["ts_ns"],
        "age_ms": round((now_ns - tick["ts_ns"]) / 1e6, 3),
        "flags": tick["flags"],
    }


CANDLE_FIELDS = ("open_time", "open_time_ms", "close_time_ms", "open", "high", "low", "close",
                 "volume", "quote_volume", "trades", "closed")
"""The keys of a candle object, in order."""

STATS_FIELDS = ("symbol", "open", "high", "low", "last", "volume", "quote_volume", "change",
                "change_percent", "trades", "open_time", "close_time")
"""The keys of a 24-hour statistics object, in order."""


def candle_objects(candles: list[Candle], instrument: Instrument,
                   now_ns: int) -> list[dict[str, Any]]:
    """Return candle objects (keys CANDLE_FIELDS); `closed` when the interval ended by now_ns."""
    prices = instrument.price_decimals
    sizes = instrument.size_decimals
    open_times = rfc3339_many(np.array([c.open_ns for c in candles], dtype=np.int64))
    return [
        {
            "open_time": open_time,
            "open_time_ms": c.open_ns // 1_000_000,
            "close_time_ms": c.close_ns // 1_000_000,
            "open": round(c.open, prices),
            "high": round(c.high, prices),
            "low": round(c.low, prices),
            "close": round(c.close, prices),
            "volume": round(c.volume, sizes),
            "quote_volume": round(c.quote_volume, prices + sizes),
            "trades": c.trades,
            "closed": c.is_closed(now_ns),
        }
        for c, open_time in zip(candles, open_times, strict=True)
    ]


def stats_object(summary: Summary, instrument: Instrument, open_ns: int,
                 close_ns: int) -> dict[str, Any]:
    """Return the statistics object (keys STATS_FIELDS) of a window from open_ns to close_ns."""
    prices = instrument.price_decimals
    sizes = instrument.size_decimals
    percent = summary.change_percent
    return {
        "symbol": instrument.symbol,
        "open": round(summary.open, prices),
        "high": round(summary.high, prices),
        "low": round(summary.low, prices),
        "last": round(summary.last, prices),
        "volume": round(summary.volume, sizes),
        "quote_volume": round(summary.quote_volume, prices + sizes),
        "change": round(summary.change, prices),
        "change_percent": None if percent is None else round(percent, 3),
        "trades": summary.trades,
        "open_time": rfc3339(open_ns),
        "close_time": rfc3339(close_ns),
    }


BOOK_FIELDS = ("symbol", "session", "book_seq", "tick_seq", "timestamp", "timestamp_ms", "ts_ns",
               "age_ms", "depth", "bids", "asks")
"""The keys of an order book object, in order."""

TRADE_FIELDS = ("price", "size", "side", "seq", "session", "timestamp", "timestamp_ms", "ts_ns")
"""The keys of a trade object, in order."""


def _levels(levels: wire.Levels, depth: int, instrument: Instrument) -> list[list[float]]:
    """Return the first `depth` levels as [price, size] pairs, rounded."""
    top = levels[:depth]
    prices = np.round(top["price"], instrument.price_decimals).tolist()
    sizes = np.round(top["size"], instrument.size_decimals).tolist()
    return [[p, q] for p, q in zip(prices, sizes, strict=True)]


def book_object(book: wire.BookSnapshot, instrument: Instrument, depth: int,
                now_ns: int) -> dict[str, Any]:
    """Return the order book object (keys BOOK_FIELDS): up to `depth` levels a side, best first."""
    return {
        "symbol": instrument.symbol,
        "session": book.session,
        "book_seq": book.book_seq,
        "tick_seq": book.tick_seq,
        "timestamp": rfc3339(book.ts_ns),
        "timestamp_ms": book.ts_ns // 1_000_000,
        "ts_ns": book.ts_ns,
        "age_ms": round((now_ns - book.ts_ns) / 1e6, 3),
        "depth": depth,
        "bids": _levels(book.bids, depth, instrument),
        "asks": _levels(book.asks, depth, instrument),
    }


def trade_objects(trades: mdtrades.Trades, instrument: Instrument) -> list[dict[str, Any]]:
    """Return trade objects (keys TRADE_FIELDS) in the order of `trades`."""
    ts_ns = trades["ts_ns"].astype(np.int64)
    columns = (
        np.round(trades["price"], instrument.price_decimals).tolist(),
        np.round(trades["size"], instrument.size_decimals).tolist(),
        mdtrades.sides(trades),
        trades["seq"].tolist(),
        trades["session"].tolist(),
        rfc3339_many(ts_ns),
        np.floor_divide(ts_ns, 1_000_000).tolist(),
        ts_ns.tolist(),
    )
    return [dict(zip(TRADE_FIELDS, row, strict=True)) for row in zip(*columns, strict=True)]


def correlation_object(result: Correlations, grid: Grid) -> dict[str, Any]:
    """Return the correlations object: the matrix in the order of `symbols`, and its sample."""
    return {
        "symbols": list(result.symbols),
        "interval": grid.interval.name,
        "window": grid.window,
        "start": rfc3339(grid.first_open_ns),
        "end": rfc3339(grid.end_ns),
        "returns": result.returns,
        "matrix": [[None if v is None else round(v, 6) for v in row] for row in result.matrix],
        "reason": result.reason,
    }
