"""What a price source hands the quoter: mids, and for a replay the trades that must print.

A price source is the one part of a symbol's pipeline that differs between simulation and
replay. The simulated source (``feedsim.market.GroupMember``) gives mids only, and the quoter
draws its own trades; the replay source (``feedsim.replay``) gives mids plus the prints that
rebuild each historical bar. Everything after it (quoter, sequence numbers, book, wire, server)
is shared, so what acts on a symbol's output (scenarios, later) acts on a replay too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Prints:
    """Trades a source requires, one slot per tick: size 0 means no trade in that tick.

    `price` is on the instrument's tick grid where `size` > 0; `buyer` says whether the trade
    lifted the ask (else it hit the bid). Sizes are in base units, whole lots.
    """

    price: Floats
    size: Floats
    buyer: Bools


@dataclass(frozen=True)
class PricePath:
    """The next ticks' mids and, when the source dictates them, their trades."""

    mids: Floats
    prints: Prints | None = None

    def __len__(self) -> int:
        return len(self.mids)


class PriceSource(Protocol):
    """Where a symbol's prices come from."""

    @property
    def remaining(self) -> int | None:
        """How many more ticks the source can give (None: without end)."""
        ...

    def path(self, n: int) -> PricePath:
        """Return the next `n` ticks' prices (`n` at most `remaining`)."""
        ...
