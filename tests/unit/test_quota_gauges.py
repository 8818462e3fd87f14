"""The quota gauges of the collect endpoint: read once per herd of starts, never left behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.collect.handler import CollectEndpoint
from gateway.collect.quota import SqliteQuotaStore
from gateway.config import CollectConfig
from gateway.edge.headers import TrustedProxies
from gateway.metrics import Metrics
from gateway.pipeline.spool import Spool
from gateway.pipeline.spool_sink import SpoolSink

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


class GatedQuota(SqliteQuotaStore):
    """The real store, whose usage reads wait for the test to let them through."""

    gate: asyncio.Event
    reads: int

    async def usage(self, site: str, now: datetime) -> int:
        self.reads += 1
        await self.gate.wait()
        return await super().usage(site, now)


@pytest.fixture
async def quota(tmp_path: Path) -> AsyncIterator[GatedQuota]:
    real = await SqliteQuotaStore.open(tmp_path / "quota.sqlite")
    store = GatedQuota(real._path, real._executor, real._db)
    store.gate, store.reads = asyncio.Event(), 0
    try:
        yield store
    finally:
        await store.close()


async def test_a_start_during_a_gauge_read_is_shown_by_a_second_read(
    quota: GatedQuota, tmp_path: Path
) -> None:
    spool = await Spool.open(tmp_path / "spool", max_bytes=1 << 20)
    metrics = Metrics()
    endpoint = CollectEndpoint(
        CollectConfig(),
        metrics=metrics,
        quota=quota,
        sink=SpoolSink(spool),
        trusted=TrustedProxies([]),
    )
    try:
        assert await quota.try_start("shop", "one", 10, NOW)
        first = asyncio.create_task(endpoint._refresh_quota_gauges("shop", 10, NOW))
        while quota.reads == 0:  # the first read is under way (and held)
            await asyncio.sleep(0)
        assert await quota.try_start("shop", "two", 10, NOW)
        # A second start while the read is held: no second read of its own...
        await endpoint._refresh_quota_gauges("shop", 10, NOW)
        assert quota.reads == 1
        quota.gate.set()
        await asyncio.wait_for(first, 5)
        # ...but the first one reads again, so the gauge does not stay at 1.
        assert quota.reads == 2
        assert metrics.quota_used.labels(site="shop")._value.get() == 2
    finally:
        await spool.close()
