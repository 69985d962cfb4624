"""The bridge process's lifecycle in process: a dead task stops it instead of lingering."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from bridge.config import BridgeConfig
from bridge.server import Bridge
from tests.conftest import free_port


def test_a_task_that_dies_stops_the_bridge_with_failure(redis_url: str,
                                                        redis_prefix: str) -> None:
    async def scenario() -> Bridge:
        config = BridgeConfig.from_env({
            "GRPC_PORT": "0", "BRIDGE_METRICS_PORT": "0", "REDIS_URL": redis_url,
            "REDIS_PREFIX": redis_prefix, "SHUTDOWN_GRACE_S": "0",
            "FEED_PUB_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
            "FEED_CONTROL_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        })
        bridge = Bridge(config, CollectorRegistry())

        async def broken() -> None:
            raise RuntimeError("the subscription died")

        bridge.subscription.run = broken  # type: ignore[method-assign]
        await bridge.start()
        await asyncio.wait_for(bridge.serve(), 15)
        return bridge

    assert asyncio.run(scenario()).failed
