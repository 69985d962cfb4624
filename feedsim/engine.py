"""The feed: every symbol's state and schedule, advanced by a clock it is given. No I/O.

Tick k of a symbol (from 0 after the schedule's anchor) is due at ``anchor + k / rate`` and
carries that time as its ``ts_ns``. ``step(now)`` produces every tick due by `now`, one batch per
symbol, so a caller that wakes late gets all it missed in one vectorised batch.

Symbols that tick at the same rate form one ``MarketGroup`` whose shocks are correlated as the
symbols file says. The values depend only on the seed and the symbols file: the same seed gives
the same prices, sizes and trades in the same order, however the ticks were batched.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from feedsim.book import BookBuilder
from feedsim.config import Correlation, SymbolConfig, correlation_matrix
from feedsim.market import (
    SECONDS_PER_YEAR,
    CrossLegs,
    CrossParams,
    GarchParams,
    GarchTSteps,
    GbmParams,
    GbmSteps,
    GroupMember,
    GroupModel,
    MarketGroup,
    OuParams,
)
from feedsim.models import Quoter, QuoterRngs
from marketdata.symbols import Instrument
from marketdata.wire import BookDiff, BookSnapshot, TickBatch, Ticks, concat, empty_ticks

NS = 1_000_000_000
MAX_AHEAD_TICKS = 4096


class SymbolFeed:
    """One symbol's model, quoter, sequence numbers and schedule."""

    def __init__(self, config: SymbolConfig, seed: int, anchor_ns: int, model: GroupMember,
                 tick_variance: float, ahead_s: float = 0.0, book_levels: int = 20,
                 book_interval_s: float = 0.1) -> None:
        self.instrument = config.instrument
        self.market = config.market
        seeds = np.random.SeedSequence(
            entropy=seed, spawn_key=(zlib.crc32(config.instrument.symbol.encode()),)
        ).spawn(5)
        self.model = model
        self.book_builder = BookBuilder(config.instrument, config.market, seed, book_levels)
        # The book is updated every `book_every` ticks (by seq), so which ticks update it is
        # fixed by the configuration, never by timing: books are as reproducible as ticks.
        self.book_every = max(1, round(config.market.rate * book_interval_s))
        self.book_seq = 0
        self.book_tick: tuple[int, int] = (0, 0)  # (tick seq, ts_ns) of the current book
        self.quoter = Quoter(config.market, config.instrument,
                             QuoterRngs(*(np.random.default_rng(s) for s in seeds)),
                             config.market.price, tick_variance)
        self.seq = 0
        self.period_ns = NS / config.market.rate
        self.anchor_ns = anchor_ns
        self.scheduled = 0  # ticks produced since the anchor
        self.last: Ticks | None = None  # the latest tick, as a 1-record array
        # Values are made up to `ahead_s` of ticks in advance: quoting costs ~40 us per call
        # whatever its size, and a tick's values do not depend on when they are made.
        self.ahead = max(1, min(MAX_AHEAD_TICKS, int(config.market.rate * ahead_s)))
        self._made: Ticks = empty_ticks(0)

    def due(self, now_ns: int) -> int:
        """Return how many ticks are due by `now_ns` and not yet produced."""
        if now_ns < self.anchor_ns:
            return 0
        return int((now_ns - self.anchor_ns) // self.period_ns) + 1 - self.scheduled

    def next_due_ns(self) -> int:
        """Return when the next tick is due."""
        return self.anchor_ns + round(self.scheduled * self.period_ns)

    def produce(self, n: int) -> Ticks:
        """Produce the next `n` ticks with their sequence numbers and scheduled times."""
        if len(self._made) < n:
            more = self.quoter.quote(self.model.advance(max(n - len(self._made), self.ahead)))
            self._made = concat([self._made, more]) if len(self._made) else more
        ticks = self._made[:n].copy()
        self._made = self._made[n:]
        ticks["seq"] = np.arange(self.seq + 1, self.seq + n + 1, dtype=np.uint64)
        k = np.arange(self.scheduled, self.scheduled + n, dtype=np.float64)
        ticks["ts_ns"] = self.anchor_ns + np.round(k * self.period_ns).astype(np.int64)
        self.seq += n
        self.scheduled += n
        if n:
            self.last = ticks[-1:].copy()
        return ticks

    def update_book(self, ticks: Ticks, session: int) -> list[BookDiff]:
        """Update the book at each of `ticks` whose seq is a multiple of book_every."""
        due = ticks[ticks["seq"] % np.uint64(self.book_every) == 0]
        diffs = []
        symbol = self.instrument.symbol
        for tick in due:
            changes = self.book_builder.update(tick)
            self.book_seq += 1
            self.book_tick = (int(tick["seq"]), int(tick["ts_ns"]))
            diffs.append(BookDiff(symbol, session, self.book_seq, self.book_seq - 1,
                                  *self.book_tick, changes.bids, changes.asks))
        return diffs

    def reanchor(self, now_ns: int) -> None:
        """Restart the schedule at `now_ns`, abandoning the backlog (values are unaffected)."""
        self.anchor_ns = now_ns
        self.scheduled = 0


@dataclass(frozen=True)
class StepResult:
    """What one step produced, and whether the schedule had to be re-anchored."""

    batches: list[TickBatch]
    reanchored: tuple[str, ...]
    books: dict[str, list[BookDiff]]  # each symbol's book updates in this step, in order


class Feed:
    """All symbols of one feed session."""

    def __init__(self, symbols: Sequence[SymbolConfig], seed: int, start_ns: int,
                 max_batch: int = 100_000, ahead_s: float = 0.0, step_s: float = 3600.0,
                 correlations: Sequence[Correlation] = (), book_levels: int = 20,
                 book_interval_s: float = 0.1) -> None:
        self.session = start_ns
        self.seed = seed
        self.start_ns = start_ns
        self.max_batch = max_batch
        models = _group_members(symbols, seed, step_s, tuple(correlations))
        variances = _tick_variances(symbols, step_s, tuple(correlations))
        self.symbols = {s.instrument.symbol: SymbolFeed(s, seed, start_ns,
                                                        models[s.instrument.symbol],
                                                        variances[s.instrument.symbol], ahead_s,
                                                        book_levels, book_interval_s)
                        for s in symbols}

    @property
    def instruments(self) -> list[Instrument]:
        """Published instruments in publication order."""
        return [s.instrument for s in self.symbols.values()]

    def next_due_ns(self) -> int:
        """Return when the earliest next tick of any symbol is due."""
        return min(s.next_due_ns() for s in self.symbols.values())

    def lag_ns(self, now_ns: int) -> int:
        """Return how late the oldest due tick is at `now_ns` (0 when nothing is overdue)."""
        return max(0, now_ns - self.next_due_ns())

    def step(self, now_ns: int, max_lag_ns: int | None = None) -> StepResult:
        """Produce every tick due by `now_ns`, at most `max_batch` per symbol.

        A symbol more than `max_lag_ns` behind is re-anchored at `now_ns` first: after a stall
        the feed resumes at the current time instead of replaying a burst of stale ticks.
        """
        batches: list[TickBatch] = []
        reanchored: list[str] = []
        books: dict[str, list[BookDiff]] = {}
        for symbol, feed in self.symbols.items():
            if max_lag_ns is not None and now_ns - feed.next_due_ns() > max_lag_ns:
                feed.reanchor(now_ns)
                reanchored.append(symbol)
            n = min(feed.due(now_ns), self.max_batch)
            if n > 0:
                ticks = feed.produce(n)
                batches.append(TickBatch(symbol, self.session, ticks))
                diffs = feed.update_book(ticks, self.session)
                if diffs:
                    books[symbol] = diffs
        return StepResult(batches, tuple(reanchored), books)

    def last(self, symbol: str) -> Ticks | None:
        """Return the latest tick of `symbol` as a 1-record array, or None before the first."""
        return self.symbols[symbol].last

    def book(self, symbol: str) -> BookSnapshot:
        """Return the current book of `symbol` in full (book_seq 0, empty, before the first)."""
        feed = self.symbols[symbol]
        bids, asks = feed.book_builder.book()
        return BookSnapshot(symbol, self.session, feed.book_seq, *feed.book_tick, bids, asks)


def _group_model(config: SymbolConfig, step_s: float, names: list[str]) -> GroupModel:
    model, jumps = config.market.model, config.market.jumps
    if isinstance(model, GarchParams):
        return GarchTSteps(model, jumps)
    if isinstance(model, GbmParams):
        return GbmSteps(model, step_s, jumps)
    if isinstance(model, CrossParams):
        return CrossLegs(names.index(model.numerator), names.index(model.denominator))
    return model


def _group_members(symbols: Sequence[SymbolConfig], seed: int, step_s: float,
                   correlations: tuple[Correlation, ...]) -> dict[str, GroupMember]:
    """Group the symbols by tick rate; return each symbol's view of its group."""
    by_rate: dict[float, list[SymbolConfig]] = {}
    for s in symbols:
        by_rate.setdefault(s.market.rate, []).append(s)
    members: dict[str, GroupMember] = {}
    for rate, group in by_rate.items():
        names = [s.instrument.symbol for s in group]
        market = MarketGroup(
            [_group_model(s, step_s, names) for s in group],
            [s.market.price for s in group],
            correlation_matrix(names, correlations),
            rate,
            max(1, round(rate * step_s)),
            np.random.SeedSequence(entropy=seed, spawn_key=(zlib.crc32(",".join(names).encode()),)),
            [(math.log(s.instrument.min_price), math.log(s.instrument.max_price)) for s in group],
        )
        pending: list[list[np.ndarray]] = [[] for _ in group]
        for i, name in enumerate(names):
            members[name] = GroupMember(market, i, pending)
    return members


def _tick_variances(symbols: Sequence[SymbolConfig], step_s: float,
                    correlations: tuple[Correlation, ...]) -> dict[str, float]:
    """The long-run variance of one tick's log return per symbol (the quoter's reference)."""
    out: dict[str, float] = {}
    for s in symbols:
        model, rate = s.market.model, s.market.rate
        if isinstance(model, GarchParams):
            out[s.instrument.symbol] = model.unconditional_variance / (rate * model.interval_s)
        elif isinstance(model, GbmParams):
            out[s.instrument.symbol] = model.volatility**2 / (SECONDS_PER_YEAR * rate)
        elif isinstance(model, OuParams):
            out[s.instrument.symbol] = (model.sigma_per_sqrt_day / model.mean) ** 2 / (
                86_400.0 * rate)
    for s in symbols:
        model = s.market.model
        if isinstance(model, CrossParams):
            a, b = out[model.numerator], out[model.denominator]
            rho = next((c.rho for c in correlations
                        if {c.a, c.b} == {model.numerator, model.denominator}), 0.0)
            out[s.instrument.symbol] = max(a + b - 2 * rho * math.sqrt(a * b), 1e-30)
    return out


MODEL_NAMES = {GbmParams: "gbm", GarchParams: "garch_t", OuParams: "ou", CrossParams: "cross"}
