"""When each tick of a symbol is due on the wall clock, and the time it carries. No I/O.

Two schedules share one interface, so the feed's loop does not care which it runs:

- ``LiveSchedule``: tick k is due at ``anchor + k / rate`` and carries that time.
- ``ReplaySchedule``: tick k carries its historical time (inside its source bar) and is due when
  the replay clock reaches it: ``wall start + (tick time - first tick time) / speed``, or at once
  at speed ``max``. It ends with the file.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
import numpy.typing as npt

Ints = npt.NDArray[np.int64]

NS = 1_000_000_000
NEVER_NS = 2**62
"""The due time of a schedule that has ended: later than any wall clock."""
SMALL_TAKE = 16
"""Up to this many ticks LiveSchedule.take computes times in Python (same values as numpy:
both round the same float64 product half to even)."""
MAX_SPEED = math.inf
"""A replay speed: every tick is due at once (the loop still bounds each turn's batch)."""


class Schedule(Protocol):
    """A symbol's tick times."""

    def due(self, now_ns: int) -> int:
        """Return how many ticks are due by `now_ns` and not yet taken."""
        ...

    def next_due_ns(self) -> int:
        """Return when the next tick is due (NEVER_NS when there is none)."""
        ...

    def lag_ns(self, now_ns: int) -> int:
        """Return how late the next tick is at `now_ns` (0 when it is not overdue)."""
        ...

    def take(self, n: int) -> Ints:
        """Return the times (ns since the epoch) of the next `n` ticks and move past them."""
        ...

    def reanchor(self, now_ns: int) -> None:
        """Make the next tick due at `now_ns` after a stall (how depends on the schedule)."""
        ...


class LiveSchedule:
    """Tick k from the anchor is due at, and carries, ``anchor + k / rate``."""

    def __init__(self, anchor_ns: int, rate: float) -> None:
        self.anchor_ns = anchor_ns
        self.period_ns = NS / rate
        self.scheduled = 0  # ticks taken since the anchor

    def due(self, now_ns: int) -> int:
        if now_ns < self.anchor_ns:
            return 0
        return int((now_ns - self.anchor_ns) // self.period_ns) + 1 - self.scheduled

    def next_due_ns(self) -> int:
        return self.anchor_ns + round(self.scheduled * self.period_ns)

    def lag_ns(self, now_ns: int) -> int:
        return max(0, now_ns - self.next_due_ns())

    def take(self, n: int) -> Ints:
        first = self.scheduled
        self.scheduled += n
        if n <= SMALL_TAKE:  # a live step's few ticks: plain floats beat numpy's call costs
            period, anchor = self.period_ns, self.anchor_ns
            return np.array([anchor + round(k * period) for k in range(first, first + n)],
                            dtype=np.int64)
        k = np.arange(first, first + n, dtype=np.float64)
        return self.anchor_ns + np.round(k * self.period_ns).astype(np.int64)

    def reanchor(self, now_ns: int) -> None:
        """Restart at `now_ns`, abandoning the backlog (a live feed does not burst stale ticks)."""
        self.anchor_ns = now_ns
        self.scheduled = 0


class ReplaySchedule:
    """Historical tick times of a replay, paced on the wall clock.

    Bar b opens at ``bar_ns[b]`` and holds `per_bar` ticks; its tick j carries
    ``bar_ns[b] + j * interval_ns // per_bar``, so every tick falls inside its bar. Missing bars
    (gaps in the file) hold no ticks: the replay is silent over them, as the market was.
    `speed` is replayed seconds per wall second; MAX_SPEED (infinity) means as fast as the loop
    runs. The
    replay clock starts at `origin_ns` (the earliest bar of all replayed symbols, so symbols
    over the same hours stay aligned) at wall time `start_ns`.
    """

    def __init__(self, bar_ns: Ints, interval_ns: int, per_bar: int, speed: float,
                 origin_ns: int, start_ns: int) -> None:
        self.bar_ns = np.asarray(bar_ns, dtype=np.int64)
        self.interval_ns = interval_ns
        self.per_bar = per_bar
        self.speed = speed
        self.origin_ns = origin_ns
        self.start_ns = start_ns
        self.total = len(self.bar_ns) * per_bar
        self.taken = 0
        self.started = True

    def hold(self) -> None:
        """Keep every tick from being due until start() (e.g. until someone subscribes)."""
        self.started = False

    def start(self, now_ns: int) -> None:
        """Start the replay clock at `now_ns`."""
        self.start_ns = now_ns
        self.started = True

    @property
    def remaining(self) -> int:
        """Ticks not yet taken."""
        return self.total - self.taken

    @property
    def finished(self) -> bool:
        """Whether every tick of the file has been taken."""
        return self.taken >= self.total

    def times(self, first: int, n: int) -> Ints:
        """Return the times of ticks first .. first + n - 1."""
        k = np.arange(first, first + n, dtype=np.int64)
        bar, j = np.divmod(k, self.per_bar)
        return self.bar_ns[bar] + j * self.interval_ns // self.per_bar  # type: ignore[no-any-return]

    def replay_ns(self, now_ns: int) -> int:
        """Return the replayed time the wall clock `now_ns` stands for."""
        if math.isinf(self.speed):
            return NEVER_NS
        return self.origin_ns + math.floor((now_ns - self.start_ns) * self.speed)

    def position_ns(self) -> int | None:
        """Return the time of the latest tick taken (None before the first)."""
        return int(self.times(self.taken - 1, 1)[0]) if self.taken else None

    def due(self, now_ns: int) -> int:
        if self.finished or not self.started:
            return 0
        if math.isinf(self.speed):
            return self.remaining
        t = self.replay_ns(now_ns)
        bar = int(np.searchsorted(self.bar_ns, t, side="right")) - 1
        if bar < 0:
            return 0
        # Tick j of the bar is due when j * interval // per_bar <= t - bar open.
        since = t - int(self.bar_ns[bar])
        j = min(((since + 1) * self.per_bar - 1) // self.interval_ns, self.per_bar - 1)
        return max(0, bar * self.per_bar + j + 1 - self.taken)

    def next_due_ns(self) -> int:
        if self.finished or not self.started:
            return NEVER_NS
        if math.isinf(self.speed):
            return 0  # always due
        t = int(self.times(self.taken, 1)[0])
        return self.start_ns + math.ceil((t - self.origin_ns) / self.speed)

    def lag_ns(self, now_ns: int) -> int:
        if self.finished or not self.started or math.isinf(self.speed):
            return 0
        return max(0, now_ns - self.next_due_ns())

    def take(self, n: int) -> Ints:
        n = min(n, self.remaining)
        out = self.times(self.taken, n)
        self.taken += n
        return out

    def reanchor(self, now_ns: int) -> None:
        """Pause the replay clock over a stall: the next tick becomes due now, none is skipped."""
        if self.finished or not self.started or math.isinf(self.speed):
            return
        t = int(self.times(self.taken, 1)[0])
        self.start_ns = now_ns - math.floor((t - self.origin_ns) / self.speed)

    def pause(self, wall_ns: int) -> None:
        """Hold the replay clock still for `wall_ns` of wall time (every replayed symbol of a
        feed pauses by the same amount, so symbols over the same hours stay aligned)."""
        if self.started and not self.finished and not math.isinf(self.speed):
            self.start_ns += wall_ns
