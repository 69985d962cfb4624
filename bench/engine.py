#!/usr/bin/env python3
"""Engine benchmark: ticks generated per second on one core with the full model.

Builds 5 and 100 symbols (correlated GARCH(1,1)-t with jumps on one grid, OU pegs, a cross
rate, volatility-dependent spreads, bursty trades, and each symbol's 20-level book updated every
100 ms of tick time, with its diffs) and times ``Feed.step`` over one-second windows, in process,
no I/O. The ceiling is a plain numpy GBM producing the same number of mid prices, in the same run.

    .venv/bin/python bench/engine.py [--seconds 5] [--rate 10000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from feedsim.config import Correlation, SymbolConfig
from feedsim.engine import NS, Feed
from feedsim.market import CrossParams, GarchParams, Jumps, OuParams
from feedsim.models import MarketParams
from marketdata.symbols import Instrument

TARGET_100 = 1_000_000  # ticks/s for 100 symbols, from the issue


def universe(n: int, rate: float) -> tuple[list[SymbolConfig], list[Correlation]]:
    """`n` symbols: GARCH-t with jumps, one OU peg, and a cross rate last; a one-factor market."""
    garch = GarchParams(mu=3e-5, omega=6e-7, alpha=0.075, beta=0.92, nu=3.4)

    def symbol(i: int, model: GarchParams | OuParams | CrossParams, price: float) -> SymbolConfig:
        base = f"C{i:03d}"
        return SymbolConfig(
            Instrument(f"{base}-USD", base, "USD", 0.0001, 0.001, 0.0001, 1e9),
            MarketParams(price=price, model=model,
                         jumps=Jumps(2.0, 0.0, 0.02) if isinstance(model, GarchParams) else None,
                         spread_bps=3.0, rate=rate, trade_probability=0.3,
                         mean_trade_size=1.0, mean_quote_size=20.0))

    symbols = [symbol(i, OuParams(1.0, 48.0, 0.002) if i == 1 else garch, 100.0 + i)
               for i in range(n - 1)]
    legs = symbols[0], symbols[2]
    symbols.append(symbol(n - 1, CrossParams(legs[0].instrument.symbol, legs[1].instrument.symbol),
                          legs[0].market.price / legs[1].market.price))
    garchs = [s.instrument.symbol for s in symbols if isinstance(s.market.model, GarchParams)]
    correlations = [Correlation(a, b, 0.5) for k, a in enumerate(garchs) for b in garchs[k + 1:]]
    return symbols, correlations


def run_engine(n: int, rate: float, seconds: int) -> tuple[float, int]:
    symbols, correlations = universe(n, rate)
    feed = Feed(symbols, 1, 0, ahead_s=0.02, correlations=correlations)
    feed.step(NS)  # warm-up
    produced = 0
    started = time.process_time()
    for second in range(2, seconds + 2):
        result = feed.step(second * NS)
        for batch in result.batches:
            produced += len(batch)
    return produced / (time.process_time() - started), produced


def numpy_gbm(ticks: int, symbols: int) -> float:
    """Plain numpy GBM mids for the same tick count (the ceiling)."""
    rng = np.random.default_rng(0)
    per = ticks // symbols
    started = time.process_time()
    for _ in range(symbols):
        steps = 1e-5 * rng.standard_normal(per)
        np.exp(4.6 + np.cumsum(steps))
    return ticks / (time.process_time() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="simulated seconds per run")
    parser.add_argument("--rate", type=float, default=10_000.0, help="ticks/s per symbol")
    args = parser.parse_args()
    rows = []
    for n in (5, 100):
        rate = args.rate if n == 100 else args.rate * 20  # about as many ticks per step
        ticks_per_s, produced = run_engine(n, rate, args.seconds)
        ceiling = numpy_gbm(produced, n)
        rows.append((n, rate, ticks_per_s, ceiling))
    print(f"{'symbols':>7}  {'rate/symbol':>11}  {'ticks/s (1 core)':>16}  "
          f"{'numpy GBM':>12}  {'ratio':>5}  target")
    for n, rate, value, ceiling in rows:
        target = (f">= {TARGET_100:,}: {'PASS' if value >= TARGET_100 else 'FAIL'}"
                  if n == 100 else "")
        print(f"{n:>7}  {rate:>11,.0f}  {value:>16,.0f}  {ceiling:>12,.0f}  "
              f"{value / ceiling:>5.2f}  {target}")


if __name__ == "__main__":
    main()
