"""Long versions of the delivery fault tests: `pytest -m soak` (minutes; not in make test).

The store goes down and comes back several times under a steady load, then a
flapping store takes a few thousand batches; acknowledged == stored, once.
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.integration.conftest import GatewayFactory, Origin
from tests.integration.recordings import (
    Ledger,
    StoreProcess,
    assert_exactly_once,
    send_load,
)
from tests.integration.test_delivery_faults import (  # noqa: F401 - fixtures
    chaos,
    edge_config,
    settle,
    store_node,
)

pytestmark = [pytest.mark.soak, pytest.mark.timeout(900)]


async def test_store_outages_under_steady_load(
    origin: Origin,
    make_gateway: GatewayFactory,
    store_node: StoreProcess,  # noqa: F811
) -> None:
    await asyncio.to_thread(store_node.start)
    gw = await make_gateway(edge_config(origin, store_node.url))
    ledger = Ledger()
    load = asyncio.create_task(
        send_load(gw.url, ledger, sessions=16, batches_per_session=600, pause=0.05)
    )
    for _ in range(5):
        await asyncio.sleep(4.0)
        store_node.stop(signal.SIGKILL)
        await asyncio.sleep(3.0)
        await asyncio.to_thread(store_node.start)
    await load
    await settle(store_node.api, ledger, within=300)
    assert len(ledger.acked) == len(ledger.sent)
    assert_exactly_once(await store_node.api.stored_timestamps(), ledger)


async def test_flapping_store_with_thousands_of_batches(
    origin: Origin,
    make_gateway: GatewayFactory,
    store_node: StoreProcess,  # noqa: F811
    chaos: tuple[str, dict[str, int]],  # noqa: F811
) -> None:
    chaos_url, _ = chaos
    await asyncio.to_thread(store_node.start)
    gw = await make_gateway(
        edge_config(origin, chaos_url, extra_upstream="batch_bytes = 4096\ncircuit_failures = 50")
    )
    ledger = Ledger()
    await send_load(gw.url, ledger, sessions=20, batches_per_session=150, pause=0.01)
    await settle(store_node.api, ledger, within=600)
    assert_exactly_once(await store_node.api.stored_timestamps(), ledger)
