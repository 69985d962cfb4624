"""The feed: every symbol's state and schedule, advanced by a clock it is given. No I/O.

A simulated symbol's tick k (from 0 after the schedule's anchor) is due at
``anchor + k / rate`` and carries that time as its ``ts_ns``; a replayed symbol's ticks carry
their historical times and are due as the replay clock reaches them (``feedsim.schedule``).
``step(now)`` produces every tick due by `now`, one batch per symbol, so a caller that wakes
late gets all it missed in one vectorised batch.

Symbols that tick at the same rate form one ``MarketGroup`` whose shocks are correlated as the
symbols file says. The values depend only on the seed and the symbols file: the same seed gives
the same prices, sizes and trades in the same order, however the ticks were batched.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
from feedsim.prices import PriceSource
from feedsim.replay import ReplaySource, ticks_per_bar
from feedsim.schedule import LiveSchedule, ReplaySchedule, Schedule
from marketdata.symbols import Instrument
from marketdata.wire import (
    BookDiff,
    BookSnapshot,
    TickBatch,
    Ticks,
    concat,
    copy_ticks,
    empty_ticks,
)

NS = 1_000_000_000
MAX_AHEAD_TICKS = 4096
MAX_REPLAY_BATCH = 1024
"""A replay's ticks per symbol per step: at speed max every tick is due at once, and frames of
this size keep each message (and a subscriber's queue) small."""


class SymbolFeed:
    """One symbol's price source, quoter, sequence numbers and schedule.

    The source (a simulated model or a replay) is the only part that differs between
    simulation and replay; quoting, sequencing, books and timing are the same code.
    """

    def __init__(self, config: SymbolConfig, seed: int, source: PriceSource, schedule: Schedule,
                 tick_variance: float, ahead_s: float = 0.0, book_levels: int = 20,
                 book_interval_s: float = 0.1) -> None:
        self.instrument = config.instrument
        self.market = config.market
        seeds = np.random.SeedSequence(
            entropy=seed, spawn_key=(zlib.crc32(config.instrument.symbol.encode()),)
        ).spawn(5)
        self.source = source
        self.schedule = schedule
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
        self.last: Ticks | None = None  # the latest tick, as a 1-record array
        # Values are made up to `ahead_s` of ticks in advance: quoting costs 0.04-0.3 ms a call
        # whatever its size, and a tick's values do not depend on when they are made.
        self.ahead = max(1, min(MAX_AHEAD_TICKS, int(config.market.rate * ahead_s)))
        self._made: Ticks = empty_ticks(0)

    def due(self, now_ns: int) -> int:
        """Return how many ticks are due by `now_ns` and not yet produced."""
        return self.schedule.due(now_ns)

    def next_due_ns(self) -> int:
        """Return when the next tick is due (NEVER_NS after the end of a replay)."""
        return self.schedule.next_due_ns()

    def produce(self, n: int) -> Ticks:
        """Produce the next `n` ticks with their sequence numbers and scheduled times."""
        if len(self._made) < n:
            self._make(max(n - len(self._made), self.ahead))
        n = min(n, len(self._made))
        ticks = copy_ticks(self._made[:n])
        self._made = self._made[n:]
        ticks["seq"] = np.arange(self.seq + 1, self.seq + n + 1, dtype=np.uint64)
        ticks["ts_ns"] = self.schedule.take(n)
        self.seq += n
        if n:
            self.last = ticks[-1:]  # a view: a published batch is never written to again
        return ticks

    def top_up(self) -> None:
        """Make the next look-ahead of values once fewer than half of it are left: a publisher
        calls this after sending, so that quoting (~0.3 ms a call on a slow machine, whatever
        its size) rarely delays a step's ticks.
        """
        if self.running_low():
            self._make(self.ahead)

    def running_low(self, share: float = 0.5) -> bool:
        """Tell whether fewer than `share` of the look-ahead's values are left."""
        return len(self._made) < max(1, int(self.ahead * share))

    def left(self) -> float:
        """The share of the look-ahead still made."""
        return len(self._made) / self.ahead

    def _make(self, want: int) -> None:
        """Quote `want` more ticks' values (fewer at the end of a replay)."""
        remaining = self.source.remaining
        if remaining is not None:
            want = min(want, remaining)
        if want <= 0:
            return
        path = self.source.path(want)
        more = self.quoter.quote(path.mids, path.prints)
        self._made = concat([self._made, more]) if len(self._made) else more

    def update_book(self, ticks: Ticks, session: int) -> list[BookDiff]:
        """Update the book at each of `ticks` whose seq is a multiple of book_every.

        `ticks` are consecutive by seq (as produce() makes them), so the due ones are found by
        arithmetic: this runs every step, and numpy's per-call cost dominates a few ticks.
        """
        if not len(ticks):
            return []
        every = self.book_every
        first = int(ticks[0]["seq"])
        due = range(-(-first // every) * every - first, len(ticks), every)
        diffs = []
        symbol = self.instrument.symbol
        for tick in (ticks[i] for i in due):
            changes = self.book_builder.update(tick)
            self.book_seq += 1
            self.book_tick = (int(tick["seq"]), int(tick["ts_ns"]))
            diffs.append(BookDiff(symbol, session, self.book_seq, self.book_seq - 1,
                                  *self.book_tick, changes.bids, changes.asks))
        return diffs

    def reanchor(self, now_ns: int) -> None:
        """Make the next tick due at `now_ns` after a stall (values are unaffected)."""
        self.schedule.reanchor(now_ns)


@dataclass(frozen=True)
class StepResult:
    """What one step produced, and whether the schedule had to be re-anchored."""

    batches: list[TickBatch]
    reanchored: tuple[str, ...]
    books: dict[str, list[BookDiff]]  # each symbol's book updates in this step, in order


class Feed:
    """All symbols of one feed session.

    Symbols whose config carries replay bars take their prices from them (``feedsim.replay``)
    on a ReplaySchedule at `replay_speed`; the others are simulated on a LiveSchedule.
    """

    def __init__(self, symbols: Sequence[SymbolConfig], seed: int, start_ns: int,
                 max_batch: int = 100_000, ahead_s: float = 0.0, step_s: float = 3600.0,
                 correlations: Sequence[Correlation] = (), book_levels: int = 20,
                 book_interval_s: float = 0.1, replay_speed: float = 1.0) -> None:
        self.session = start_ns
        self.seed = seed
        self.start_ns = start_ns
        self.max_batch = max_batch
        self.replay_speed = replay_speed
        simulated = [s for s in symbols if s.replay is None]
        models = _group_members(simulated, seed, step_s, tuple(correlations))
        variances = _tick_variances(simulated, step_s, tuple(correlations))
        replayed = [s.replay for s in symbols if s.replay is not None]
        origin_ns = min(int(r.time_ns[0]) for r in replayed) if replayed else start_ns
        self.symbols: dict[str, SymbolFeed] = {}
        for s in symbols:
            name = s.instrument.symbol
            source: PriceSource
            schedule: Schedule
            if s.replay is not None:
                per_bar = ticks_per_bar(s.replay.interval_ns, s.market.rate)
                source = ReplaySource(s.replay, s.instrument, per_bar,
                                      s.market.trade_probability, seed)
                schedule = ReplaySchedule(s.replay.time_ns, s.replay.interval_ns, per_bar,
                                          replay_speed, origin_ns, start_ns)
                variance = s.replay.tick_variance(per_bar)
            else:
                source, schedule = models[name], LiveSchedule(start_ns, s.market.rate)
                variance = variances[name]
            self.symbols[name] = SymbolFeed(s, seed, source, schedule, variance, ahead_s,
                                            book_levels, book_interval_s)

    def start_live(self, now_ns: int) -> None:
        """Make the simulated symbols' first ticks due from `now_ns` (values are unaffected):
        a feed that waited for its first subscriber starts then, without a backlog."""
        for feed in self.symbols.values():
            if isinstance(feed.schedule, LiveSchedule):
                feed.reanchor(now_ns)

    @property
    def instruments(self) -> list[Instrument]:
        """Published instruments in publication order."""
        return [s.instrument for s in self.symbols.values()]

    @property
    def replaying(self) -> bool:
        """Whether any symbol replays a file."""
        return any(isinstance(s.schedule, ReplaySchedule) for s in self.symbols.values())

    @property
    def replay_finished(self) -> bool:
        """Whether this is a replay and every replayed symbol has published its whole file."""
        replays = self._replay_schedules()
        return bool(replays) and all(r.finished for r in replays)

    def _replay_schedules(self) -> list[ReplaySchedule]:
        return [s.schedule for s in self.symbols.values()
                if isinstance(s.schedule, ReplaySchedule)]

    def hold_replay(self) -> None:
        """Keep the replay from starting until start_replay() (feedsim: the first subscriber)."""
        for schedule in self._replay_schedules():
            schedule.hold()

    def start_replay(self, now_ns: int) -> bool:
        """Start a held replay's clock at `now_ns`; return whether it was held."""
        held = [s for s in self._replay_schedules() if not s.started]
        for schedule in held:
            schedule.start(now_ns)
        return bool(held)

    def replay_status(self, now_ns: int) -> dict[str, Any] | None:
        """Return where the replay stands (None when nothing replays): JSON-ready."""
        if not self.replaying:
            return None
        symbols: dict[str, Any] = {}
        replay_ns = None
        for name, feed in self.symbols.items():
            schedule, source = feed.schedule, feed.source
            if not isinstance(schedule, ReplaySchedule) or not isinstance(source, ReplaySource):
                continue
            bars = source.bars
            replay_ns = schedule.replay_ns(now_ns)
            symbols[name] = {
                "file": bars.source, "bars": len(bars), "interval_s": bars.interval_ns / NS,
                "first_bar_ns": int(bars.time_ns[0]), "last_bar_ns": int(bars.time_ns[-1]),
                "ticks_per_bar": schedule.per_bar, "ticks": schedule.total,
                "published": schedule.taken, "position_ns": schedule.position_ns(),
                "finished": schedule.finished,
            }
        started = all(s.started for s in self._replay_schedules())
        return {"speed": "max" if math.isinf(self.replay_speed) else self.replay_speed,
                "started": started,
                "clock_ns": None if math.isinf(self.replay_speed) or not started else replay_ns,
                "finished": self.replay_finished, "symbols": symbols}

    def next_due_ns(self) -> int:
        """Return when the earliest next tick of any symbol is due."""
        return min(s.next_due_ns() for s in self.symbols.values())

    def lag_ns(self, now_ns: int) -> int:
        """Return how late the oldest due tick is at `now_ns` (0 when nothing is overdue)."""
        return max(s.schedule.lag_ns(now_ns) for s in self.symbols.values())

    def step(self, now_ns: int, max_lag_ns: int | None = None, books: bool = True
             ) -> StepResult:
        """Produce every tick due by `now_ns`, at most `max_batch` per symbol.

        A symbol more than `max_lag_ns` behind is re-anchored at `now_ns` first: after a stall
        a live feed resumes at the current time instead of bursting stale ticks, and a replay
        resumes where it was (its clock pauses over the stall).

        With `books` False the result's books stay empty and update_books(result.batches) must
        follow: a publisher sends the ticks first, so a book update (the costlier part) never
        delays them. Either way each book moves at the same ticks with the same values.
        """
        batches: list[TickBatch] = []
        reanchored: list[str] = []
        replayed = {s: f.schedule for s, f in self.symbols.items()
                    if isinstance(f.schedule, ReplaySchedule)}
        if max_lag_ns is not None and replayed:
            # One replay clock for all: pause every replayed symbol by the largest lag, so a
            # symbol between two of its bars (not late itself) does not run ahead of the rest.
            stall = max(schedule.lag_ns(now_ns) for schedule in replayed.values())
            if stall > max_lag_ns:
                for symbol, schedule in replayed.items():
                    schedule.pause(stall)
                    reanchored.append(symbol)
        for symbol, feed in self.symbols.items():
            if (max_lag_ns is not None and symbol not in replayed
                    and feed.schedule.lag_ns(now_ns) > max_lag_ns):
                feed.reanchor(now_ns)
                reanchored.append(symbol)
            cap = (min(self.max_batch, MAX_REPLAY_BATCH)
                   if isinstance(feed.schedule, ReplaySchedule) else self.max_batch)
            n = min(feed.due(now_ns), cap)
            if n > 0:
                batches.append(TickBatch(symbol, self.session, feed.produce(n)))
        return StepResult(batches, tuple(reanchored),
                          self.update_books(batches) if books else {})

    def top_up(self) -> None:
        """Make values ahead (see SymbolFeed.top_up) for the symbol running lowest, and for any
        below a quarter of its look-ahead.

        Symbols filled in the same turn (all of them at start, at equal rates) run low in the
        same turn again, so one turn in every few dozen spent ~0.1 ms per symbol quoting and
        the next turn's ticks waited for it. One refill a turn spreads them over turns; the
        quarter mark keeps many symbols at high rates from running out.
        """
        low = sorted((f for f in self.symbols.values() if f.running_low()), key=SymbolFeed.left)
        for i, feed in enumerate(low):
            if i == 0 or feed.running_low(0.25):
                feed.top_up()

    def update_books(self, batches: Sequence[TickBatch]) -> dict[str, list[BookDiff]]:
        """Move each symbol's book along its new ticks; return the diffs, by symbol, in order."""
        books: dict[str, list[BookDiff]] = {}
        for batch in batches:
            diffs = self.symbols[batch.symbol].update_book(batch.ticks, self.session)
            if diffs:
                books[batch.symbol] = diffs
        return books

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
