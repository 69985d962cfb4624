"""The bridge: subscribes to feedsim, fans ticks into gRPC streams, writes history to Redis.

One process, one asyncio loop running ``zmq.asyncio`` and ``grpc.aio`` together. Exceptions::

    BridgeError
     +-- SlowConsumer     a stream's bounded queue overflowed; the stream is ended
     +-- FeedUnavailable  feedsim's control socket did not answer in time
"""


class BridgeError(Exception):
    """Base of the bridge's own errors."""


class SlowConsumer(BridgeError):
    """A stream fell further behind than its queue allows and was disconnected."""


class FeedUnavailable(BridgeError):
    """feedsim did not answer a control request in time."""
