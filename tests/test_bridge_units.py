"""The bridge's pure parts: sequence tracking and the fan-out hub's slow-consumer policy."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import SlowConsumer
from bridge.fanout import ConflatingSubscriber, Hub, Subscriber
from bridge.feed import joined
from bridge.service import (
    MAX_TICKS_PER_MESSAGE,
    _rendered,
    _tick_batches,
    _tick_messages,
    ticks_from_message,
)
from marketdata import wire
from marketdata.sequence import SequenceTracker


def batch(symbol: str, seqs: list[int], session: int = 1, flags: int = 0) -> wire.TickBatch:
    ticks = wire.empty_ticks(len(seqs))
    ticks["seq"] = seqs
    ticks["ts_ns"] = np.asarray(seqs) * 1000
    ticks["bid"], ticks["ask"] = 100.0, 101.0
    ticks["flags"] = flags
    return wire.TickBatch(symbol, session, ticks)


def test_tracker_counts_gaps_and_drops_repeats() -> None:
    tracker = SequenceTracker()
    first = tracker.observe(batch("A", [5], flags=wire.FLAG_SNAPSHOT))
    assert first.fresh is not None and 0 == first.missed
    assert 0 == int(first.fresh.ticks["flags"][0])  # a new tick downstream, not a replay
    assert tracker.observe(batch("A", [5], flags=wire.FLAG_SNAPSHOT)).fresh is None
    assert tracker.observe(batch("A", [4, 5], flags=wire.FLAG_SNAPSHOT)).fresh is None
    overlap = tracker.observe(batch("A", [5, 6, 7]))
    assert overlap.fresh is not None and [6, 7] == overlap.fresh.ticks["seq"].tolist()
    gap = tracker.observe(batch("A", [10, 11]))
    assert 2 == gap.missed
    assert (1, 11) == tracker.last("A")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 4), st.integers(1, 5),
                          st.lists(st.sampled_from([0, 1, 2, 3, 6, 7]), min_size=5, max_size=5)),
                min_size=1, max_size=12))
def test_tracker_passes_exactly_the_new_ticks_without_the_snapshot_flag(
        steps: list[tuple[int, int, list[int]]]) -> None:
    """Against a plain model: fresh = the ticks above the last seen seq, FLAG_SNAPSHOT cleared,
    other flags kept, the received batch itself untouched; dropped ticks without FLAG_SNAPSHOT
    counted as stale."""
    tracker, last, next_first = SequenceTracker(), 0, 1
    for shift, n, flags in steps:
        first = max(1, next_first + shift)  # overlaps (repeats), follows, or skips ahead
        received = batch("A", list(range(first, first + n)))
        received.ticks["flags"] = flags[:n]
        before = received.ticks.tobytes()
        observation = tracker.observe(received)
        assert received.ticks.tobytes() == before
        assert observation.stale == sum(1 for s, f in zip(range(first, first + n), flags,
                                                          strict=False)
                                        if s <= last and not f & wire.FLAG_SNAPSHOT)
        expected = [(s, f & ~wire.FLAG_SNAPSHOT) for s, f in zip(range(first, first + n),
                                                                  flags, strict=False)
                    if s > last]
        got = ([] if observation.fresh is None else
               list(zip(observation.fresh.ticks["seq"].tolist(),
                        observation.fresh.ticks["flags"].tolist(), strict=True)))
        assert got == expected
        assert observation.missed == (max(0, expected[0][0] - last - 1)
                                      if expected and last else 0)
        last = max(last, first + n - 1)
        assert (1, last) == tracker.last("A")
        next_first = first + n


def test_ticks_behind_the_last_seq_without_the_replay_flag_are_counted_stale() -> None:
    tracker = SequenceTracker()
    tracker.observe(batch("A", [1, 2, 3]))
    assert 2**62 - 4 == tracker.observe(batch("A", [2**62])).missed  # one corrupt seq
    after = tracker.observe(batch("A", [4, 5]))
    assert after.fresh is None and 2 == after.stale
    assert 0 == tracker.observe(batch("A", [2**62], flags=wire.FLAG_SNAPSHOT)).stale


def test_tracker_notices_a_new_session() -> None:
    tracker = SequenceTracker()
    tracker.seed("A", session=1, seq=500)
    observation = tracker.observe(batch("A", [1, 2], session=2))
    assert observation.restarted and 0 == observation.missed
    assert observation.fresh is not None and [1, 2] == observation.fresh.ticks["seq"].tolist()


def test_hub_delivers_in_order_to_interested_subscribers() -> None:
    async def scenario() -> None:
        hub = Hub()
        btc, everything = Subscriber(["BTC-USD"], 100), Subscriber(None, 100)
        hub.add(btc)
        hub.add(everything)
        hub.publish(batch("BTC-USD", [1, 2]))
        hub.publish(batch("ETH-USD", [1]))
        hub.publish(batch("BTC-USD", [3]))
        assert [[1, 2], [3]] == [b.ticks["seq"].tolist() for b in await btc.next()]
        assert ["BTC-USD", "ETH-USD", "BTC-USD"] == [b.symbol for b in await everything.next()]

    asyncio.run(scenario())


def test_a_slow_subscriber_is_disconnected_without_affecting_others() -> None:
    async def scenario() -> None:
        hub = Hub()
        slow, healthy = Subscriber(None, 10), Subscriber(None, 1000)
        hub.add(slow)
        hub.add(healthy)
        dropped = []
        for i in range(20):
            hub.new_drain()  # one batch a drain, as the bridge's subscription delivers them
            dropped += hub.publish(batch("A", [i + 1]))
            if i % 5 == 0:
                await healthy.next()
        assert [slow] == dropped
        assert 1 == len(hub) and 1 == hub.slow_disconnects
        with pytest.raises(SlowConsumer, match="more than 10 ticks behind"):
            await slow.next()
        assert 4 == len(await healthy.next())

    asyncio.run(scenario())


def test_a_drain_larger_than_the_limit_reaches_a_subscriber_that_has_kept_up() -> None:
    # One drain of the feed can bring more than STREAM_QUEUE_TICKS, in one symbol's batch
    # (joined messages) or spread over several symbols' batches.
    async def scenario() -> None:
        hub = Hub()
        subscriber = Subscriber(None, 10)
        hub.add(subscriber)
        hub.new_drain()
        assert [] == hub.publish(batch("A", list(range(1, 26))))
        assert [] == hub.publish(batch("B", list(range(1, 9))))
        assert 2 == len(await subscriber.next())
        hub.new_drain()
        assert [] == hub.publish(batch("A", list(range(26, 51))))
        hub.new_drain()
        assert [subscriber] == hub.publish(batch("A", [51]))  # 25 unread: now it is behind

    asyncio.run(scenario())


def test_hub_is_quiet_only_while_no_stream_is_writing() -> None:
    async def scenario() -> None:
        hub = Hub()
        assert await hub.quiet(0.0)
        release = asyncio.Event()

        async def stream() -> None:
            with hub.writing():
                await release.wait()

        tasks = [asyncio.create_task(stream()) for _ in range(2)]
        await asyncio.sleep(0)
        assert not await hub.quiet(0.01)  # a stalled write bounds the wait, it does not hold it
        waiting = asyncio.create_task(hub.quiet(5.0))
        await asyncio.sleep(0)
        assert not waiting.done()
        release.set()
        assert await asyncio.wait_for(waiting, 1.0)
        await asyncio.gather(*tasks)

    asyncio.run(scenario())


def test_hub_is_quiet_again_after_a_write_fails() -> None:
    async def scenario() -> None:
        hub = Hub()
        with pytest.raises(ConnectionError), hub.writing():
            raise ConnectionError("client went away")
        assert await hub.quiet(0.0)

    asyncio.run(scenario())


def test_conflating_subscriber_keeps_only_the_latest_per_symbol() -> None:
    async def scenario() -> None:
        sub = ConflatingSubscriber(None)
        for i in range(1, 100):
            sub.offer(batch("A", [i]))
            sub.offer(batch("B", [i, i + 1000]))
        latest = {b.symbol: b.ticks["seq"].tolist() for b in await sub.next()}
        assert {"A": [99], "B": [1099]} == latest

    asyncio.run(scenario())


def test_closing_wakes_a_waiting_reader() -> None:
    async def scenario() -> None:
        sub = Subscriber(None, 10)
        reader = asyncio.create_task(sub.next())
        await asyncio.sleep(0)
        sub.close("shutdown")
        assert [] == await asyncio.wait_for(reader, 1)

    asyncio.run(scenario())


def test_tick_messages_coalesce_in_order_within_the_size_bound_sharing_rendered_ones() -> None:
    batches = [batch("BTC-USD", list(range(1 + 300 * i, 1 + 300 * (i + 1)))) for i in range(5)]
    batches.insert(2, batch("ETH-USD", [1, 2]))
    for b in batches:  # every field differs from tick to tick
        for k, name in enumerate(wire.FIELDS[2:], start=1):
            b.ticks[name] = b.ticks["seq"] * k + 0.25 if name != "flags" else b.ticks["seq"] % 7
    before = [m.SerializeToString() for b in batches for m in _rendered(b)]
    messages = _tick_messages(batches)
    btc = [m for m in messages if m.symbol == "BTC-USD"]
    assert all(len(m.seq) <= MAX_TICKS_PER_MESSAGE for m in messages)
    assert list(range(1, 1501)) == [s for m in btc for s in m.seq]
    assert 2 == len(btc)
    assert before == [m.SerializeToString() for b in batches for m in _rendered(b)]
    (eth,) = [m for m in messages if m.symbol == "ETH-USD"]
    assert [1, 2] == ticks_from_message(eth)["seq"].tolist()
    assert eth is _rendered(batches[2])[0]  # a symbol's only batch: the shared rendering
    for message in btc:  # joined ones: every field, as rendered batch by batch
        got = ticks_from_message(message)
        first = int(got["seq"][0])
        want = wire.concat([b.ticks for b in batches if b.symbol == "BTC-USD"])
        assert want[first - 1:first - 1 + len(got)].tobytes() == got.tobytes()


def test_tick_batches_carry_every_symbol_in_one_message_within_the_bound() -> None:
    batches = [batch("BTC-USD", [1, 2]), batch("ETH-USD", [1]), batch("BTC-USD", [3])]
    (message,) = _tick_batches(batches)
    by_symbol = {b.symbol: list(b.seq) for b in message.batches}
    assert {"BTC-USD": [1, 2, 3], "ETH-USD": [1]} == by_symbol
    big = [batch("BTC-USD", list(range(1, 900))), batch("ETH-USD", list(range(1, 900)))]
    assert 2 == len(_tick_batches(big))


def test_ticks_before_the_first_of_a_new_session_count_as_missed() -> None:
    tracker = SequenceTracker()
    tracker.seed("A", session=1, seq=900)
    observation = tracker.observe(batch("A", [3, 4], session=2))
    assert observation.restarted and 2 == observation.missed


@st.composite
def drains(draw: st.DrawFn) -> list[wire.TickBatch]:
    """Draw what one drain of the SUB socket may hold: batches of a few symbols, in each
    symbol's order, with gaps, repeats, empty batches and session changes."""
    out: list[wire.TickBatch] = []
    position = {"A": (1, 1), "B": (1, 1)}  # symbol -> (session, next seq)
    for _ in range(draw(st.integers(0, 12))):
        symbol = draw(st.sampled_from(["A", "B"]))
        session, seq = position[symbol]
        step = draw(st.sampled_from(["next", "next", "next", "gap", "repeat", "session"]))
        if step == "gap":
            seq += draw(st.integers(1, 5))
        elif step == "repeat":
            seq = max(1, seq - draw(st.integers(1, 3)))
        elif step == "session":
            session, seq = session + 1, 1
        n = draw(st.integers(0, 4))
        out.append(batch(symbol, list(range(seq, seq + n)), session=session))
        position[symbol] = (session, seq + n)
    return out


@given(drains())
def test_a_drain_is_joined_per_symbol_where_seqs_follow_on(batches: list[wire.TickBatch]
                                                          ) -> None:
    out = joined(batches)
    assert len(out) <= len(batches)
    for symbol in ("A", "B"):
        def ticks(bs: list[wire.TickBatch], symbol: str = symbol) -> bytes:
            return b"".join(b.ticks.tobytes() for b in bs if b.symbol == symbol)
        assert ticks(batches) == ticks(out)  # every tick, in each symbol's order
    for b in out:  # an input batch as it was, or a join of batches that follow on
        seqs = b.ticks["seq"].tolist()
        assert any(b is original for original in batches) or seqs == list(
            range(seqs[0], seqs[0] + len(seqs)))
    # What the sequence check sees is the same: fresh ticks, gaps and restarts.
    def observed(bs: list[wire.TickBatch]) -> tuple[dict[str, bytes], int, int]:
        tracker, fresh, missed, restarts = SequenceTracker(), {"A": b"", "B": b""}, 0, 0
        for b in bs:
            seen = tracker.observe(b)
            missed += seen.missed
            restarts += seen.restarted
            if seen.fresh is not None:
                fresh[b.symbol] += seen.fresh.ticks.tobytes()
        return fresh, missed, restarts
    assert observed(batches) == observed(out)


def test_a_drain_of_consecutive_turns_becomes_one_batch_per_symbol() -> None:
    turns = [batch(s, [3 * i + 1, 3 * i + 2, 3 * i + 3]) for i in range(4) for s in ("A", "B")]
    out = joined(turns)
    assert [(b.symbol, b.ticks["seq"].tolist()) for b in out] == [
        ("A", list(range(1, 13))), ("B", list(range(1, 13)))]
    assert joined(turns[:1])[0] is turns[0]
