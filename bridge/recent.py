"""The latest order book and the recent trades of each symbol in Redis: layout and writers.

Layout, under the same prefix as history (``bridge.history``)::

    {prefix}book:{SYMBOL}     string, the latest L2 book (pack_book below), replaced whole
    {prefix}trades:{SYMBOL}   list, the latest MAX_TRADES_LIMIT (1,000) trades, newest first,
                              one 48-byte trade record a member (marketdata.trades)

Why: a book is only ever read whole and only the latest matters, so one SET replaces it (a
reader sees one book or the next, never a mix). Recent trades are read newest first, up to a
limit: LPUSH the new ones (oldest first, so the newest ends at the head), LTRIM to the cap, and
a read is one LRANGE 0 limit-1.

Both are written by the history flush, in its pipeline (``HistoryWriter``): books as they arrive
(about every 100 ms a symbol, the latest one only), trades about every 50 ms (half way between
the candles' writes) from the same fresh ticks that history stores, so the list holds exactly the
trade ticks of history. A flush that fails or times out may have been applied in part: the trade
writer then re-reads the head of each list before its next write and skips the trades already
there, so a retry never stores a trade twice.

The stored book's layout is in ``marketdata.layout``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

import redis.asyncio as aioredis

from bridge.candles import CANDLE_WRITE_INTERVAL_S
from bridge.history import Cadence
from marketdata import trades as mdtrades
from marketdata import wire
from marketdata.layout import Keys, pack_book
from marketdata.queries import MAX_TRADES_LIMIT

TRADE_WRITE_INTERVAL_S = CANDLE_WRITE_INTERVAL_S  # the candles' cadence: ~50 ms to Redis

TakenTrades = list[tuple[str, mdtrades.Trades]]
"""(symbol, its trades oldest first) for each symbol with trades to write."""


class BookWriter:
    """Keeps the latest book of each symbol until the next history flush writes it."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self._pending: dict[str, wire.BookSnapshot] = {}

    def add(self, book: wire.BookSnapshot) -> None:
        """Queue `book`, replacing any older book of its symbol not yet written."""
        self._pending[book.symbol] = book

    def due_in(self) -> float | None:
        """Return 0.0 while books wait (written with every flush), else None."""
        return 0.0 if self._pending else None

    def take(self, *, force: bool = True) -> list[wire.BookSnapshot]:
        """Remove and return the pending books."""
        taken = list(self._pending.values())
        self._pending.clear()
        return taken

    async def prepare(self, client: aioredis.Redis,
                      taken: list[wire.BookSnapshot]) -> list[wire.BookSnapshot]:
        """Nothing to check: a SET written twice is the same book."""
        return taken

    def queue_write(self, pipe: Any, taken: list[wire.BookSnapshot]) -> int:
        """Add one SET per book to `pipe`; return how many commands were added."""
        for book in taken:
            pipe.set(self.keys.book(book.symbol), pack_book(book))
        return len(taken)

    def requeue(self, taken: list[wire.BookSnapshot]) -> None:
        """Put back books not written, unless a newer one of the symbol has arrived."""
        for book in taken:
            self._pending.setdefault(book.symbol, book)

    def written(self, taken: list[wire.BookSnapshot]) -> None:
        """Nothing to remember."""

    def reset(self) -> None:
        """Nothing is assumed about Redis."""


class TradeWriter:
    """Extracts the trades of fresh ticks and pushes them onto each symbol's capped list.

    ``add`` only keeps the batch: trades are extracted once per symbol per write, from all its
    batches joined, which costs far less than once per batch at high tick rates. They are
    written about every `write_interval_s` (50 ms, as the candles), not with every flush.
    While Redis is unreachable a symbol's batches are folded into its newest `kept` trades every
    COMPACT_TICKS ticks, so memory stays bounded.
    """

    COMPACT_TICKS = 100_000

    def __init__(self, keys: Keys, kept: int = MAX_TRADES_LIMIT, *,
                 write_interval_s: float = TRADE_WRITE_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.keys = keys
        self.kept = kept
        # Half an interval after the candles' slots: the two folds land in different flushes.
        self.cadence = Cadence(write_interval_s, clock, phase=write_interval_s / 2)
        self._batches: dict[str, list[wire.TickBatch]] = {}
        self._ticks: dict[str, int] = {}
        self._trades: dict[str, mdtrades.Trades] = {}
        """symbol -> trades already extracted (after a compaction or a requeue), oldest first."""
        self._heads: dict[str, tuple[int, int] | None] = {}
        """symbol -> (session, seq) of the newest trade in its list, once known."""

    def add(self, batch: wire.TickBatch) -> None:
        """Queue the ticks of `batch` for the next flush (never blocks)."""
        n = len(batch.ticks)
        if not n:
            return
        symbol = batch.symbol
        queued = self._batches.get(symbol)
        if queued is None:
            self._batches[symbol] = [batch]
        else:
            queued.append(batch)
        ticks = self._ticks[symbol] = self._ticks.get(symbol, 0) + n
        if ticks >= self.COMPACT_TICKS:
            self._compact(symbol)

    def due_in(self) -> float | None:
        """Return the seconds until waiting ticks or trades are due (0.0: now), else None."""
        return self.cadence.due_in() if self._batches or self._trades else None

    def take(self, *, force: bool = True) -> TakenTrades:
        """Remove and return the pending trades of every symbol that has any.

        Without `force`, only when the cadence says a write is due.
        """
        if not (self._batches or self._trades) or not self.cadence.take(force=force):
            return []
        for symbol in list(self._batches):
            self._compact(symbol)
        taken = [(symbol, found) for symbol, found in self._trades.items() if len(found)]
        self._trades.clear()
        return taken

    async def prepare(self, client: aioredis.Redis, taken: TakenTrades) -> TakenTrades:
        """Read the head of each list not known since the last write; drop trades already in it."""
        unknown = [symbol for symbol, _ in taken if symbol not in self._heads]
        if unknown:
            pipe = client.pipeline(transaction=False)
            for symbol in unknown:
                pipe.lindex(self.keys.trades(symbol), 0)
            for symbol, head in zip(unknown, await pipe.execute(), strict=True):
                self._heads[symbol] = _head(cast(bytes | None, head))
        out: TakenTrades = []
        for symbol, found in taken:
            head = self._heads.get(symbol)
            fresh = found if head is None else mdtrades.after(found, *head)
            if len(fresh):
                out.append((symbol, fresh))
        return out

    def queue_write(self, pipe: Any, taken: TakenTrades) -> int:
        """Add LPUSH and LTRIM per symbol to `pipe`; return how many commands were added."""
        for symbol, found in taken:
            key = self.keys.trades(symbol)
            pipe.lpush(key, *mdtrades.pack(found[-self.kept:]))
            pipe.ltrim(key, 0, self.kept - 1)
        return 2 * len(taken)

    def requeue(self, taken: TakenTrades) -> None:
        """Put back trades not written, before any that arrived since."""
        for symbol, found in taken:
            self._compact(symbol)
            waiting = self._trades.get(symbol)
            joined = found if waiting is None else mdtrades.concat([found, waiting])
            self._trades[symbol] = joined[-self.kept:]

    def written(self, taken: TakenTrades) -> None:
        """Remember the newest trade now at the head of each list."""
        for symbol, found in taken:
            self._heads[symbol] = (int(found["session"][-1]), int(found["seq"][-1]))

    def reset(self) -> None:
        """After a failed write, re-read the lists' heads before writing again."""
        self._heads.clear()

    def _compact(self, symbol: str) -> None:
        """Extract the trades of `symbol`'s queued batches, keeping the newest `kept`."""
        batches = self._batches.pop(symbol, [])
        self._ticks.pop(symbol, None)
        parts = [self._trades[symbol]] if symbol in self._trades else []
        start = 0
        for end in range(1, len(batches) + 1):  # one extraction per run of one session
            if end == len(batches) or batches[end].session != batches[start].session:
                ticks = wire.concat([b.ticks for b in batches[start:end]])
                parts.append(mdtrades.from_ticks(ticks, batches[start].session))
                start = end
        if parts:
            self._trades[symbol] = mdtrades.concat(parts)[-self.kept:]


def _head(member: bytes | None) -> tuple[int, int] | None:
    """Return (session, seq) of a stored trade, or None for no list (or an unreadable head)."""
    if member is None or len(member) != mdtrades.TRADE_SIZE:
        return None
    trade = mdtrades.unpack([member])
    return int(trade["session"][0]), int(trade["seq"][0])
