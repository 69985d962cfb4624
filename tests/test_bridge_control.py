"""The bridge's control client against a real ROUTER socket playing a misbehaving feedsim."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import orjson
import pytest
import zmq
import zmq.asyncio

from bridge import FeedUnavailable
from bridge.feed import ControlClient

GOOD_INSTRUMENT = {"symbol": "BTC-USD", "base": "BTC", "quote": "USD", "tick_size": 0.01,
                   "lot_size": 0.00001, "min_price": 1.0, "max_price": 1e7}


@pytest.fixture
def router() -> Iterator[zmq.Socket[bytes]]:
    context = zmq.Context()
    socket = context.socket(zmq.ROUTER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.bind("tcp://127.0.0.1:*")
    yield socket
    socket.close()
    context.term()


def answer_with(router: zmq.Socket[bytes], make_reply: object) -> None:
    """Answer one request: `make_reply(request)` gives the reply bytes."""
    assert callable(make_reply)
    assert router.poll(5000), "the client sent no request"
    peer, payload = router.recv_multipart()
    router.send_multipart([peer, make_reply(orjson.loads(payload))])


def ask_instruments(router: zmq.Socket[bytes], make_reply: object) -> object:
    """Run ControlClient.instruments() against `router` answering with `make_reply`."""
    endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)

    async def scenario() -> object:
        context = zmq.asyncio.Context()
        client = ControlClient(context, endpoint)
        try:
            answer = asyncio.get_running_loop().run_in_executor(None, answer_with, router,
                                                                 make_reply)
            try:
                return await client.instruments(timeout_s=5.0)
            except FeedUnavailable as exc:
                return exc
            finally:
                await answer
        finally:
            client.close()
            context.term()

    return asyncio.run(scenario())


def reply(**fields: object) -> object:
    return lambda request: orjson.dumps({"id": request["id"], "ok": True, **fields})


@pytest.mark.parametrize(("make_reply", "says"), [
    (reply(session=7, instruments=[{"symbol": "BTC-USD", "base": "BTC"}]), "quote"),
    (reply(session="soon", instruments=[GOOD_INSTRUMENT]), "soon"),
    (reply(session=7, instruments=None), "instruments"),
    (reply(session=7, instruments=[{**GOOD_INSTRUMENT, "tick_size": "a cent"}]), "a cent"),
    (reply(instruments=[GOOD_INSTRUMENT]), "session"),
    (lambda request: b"not json", "not a JSON object"),
    (lambda request: b"[1, 2]", "not a JSON object"),
], ids=["missing-fields", "bad-session", "no-list", "bad-tick-size", "no-session", "not-json",
        "not-an-object"])
def test_a_malformed_instruments_reply_is_feed_unavailable_not_a_crash(
        router: zmq.Socket[bytes], make_reply: object, says: str) -> None:
    # _keep_instruments retries on FeedUnavailable; anything else would end the bridge.
    outcome = ask_instruments(router, make_reply)
    assert isinstance(outcome, FeedUnavailable)
    assert says in str(outcome)


def test_a_well_formed_instruments_reply_is_read(router: zmq.Socket[bytes]) -> None:
    outcome = ask_instruments(router, reply(session=7, instruments=[GOOD_INSTRUMENT]))
    assert isinstance(outcome, tuple)
    session, instruments = outcome
    assert session == 7
    assert [i.symbol for i in instruments] == ["BTC-USD"]
