"""The sweeper: finalizes idle recordings and deletes expired ones, on a timer.

A recording is shown (finalized) `finalize_after` seconds after its last
ingest, and deleted `retention_days` after the store created it. Both are
decided by the store's clock, so a sweep that runs late only delays them.
"""

from __future__ import annotations

import asyncio
import logging

from gateway.metrics import Metrics
from gateway.store.engine import RecordingStore

log = logging.getLogger(__name__)


class Sweeper:
    def __init__(
        self,
        store: RecordingStore,
        *,
        finalize_after: float,
        retention_days: float,
        interval: float,
        metrics: Metrics | None = None,
    ) -> None:
        if finalize_after < 0:
            raise ValueError(f"finalize_after: must not be negative, got {finalize_after!r}")
        if not retention_days > 0:
            raise ValueError(f"retention_days: must be positive, got {retention_days!r}")
        if not interval > 0:
            raise ValueError(f"interval: must be positive, got {interval!r}")
        self.store = store
        self.finalize_after = finalize_after
        self.retention_days = retention_days
        self.interval = interval
        self.metrics = metrics

    async def sweep_once(self) -> None:
        finalized = await self.store.finalize_idle(self.finalize_after)
        expired = await self.store.expire(self.retention_days)
        if finalized or expired:
            log.info("sweep: finalized %s, expired %s", finalized, expired)
        if self.metrics is not None:
            for site, count in finalized.items():
                self.metrics.recordings_finalized.labels(site=site).inc(count)
            for site, count in expired.items():
                self.metrics.recordings_expired.labels(site=site).inc(count)

    async def run(self) -> None:
        """Sweep now and then every `interval` seconds until cancelled.

        A failed sweep (StoreError, or anything unexpected) is logged and the
        next one tries again: an unfinalized recording is only shown late.
        """
        while True:
            try:
                await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recording sweep failed; trying again in %s s", self.interval)
            await asyncio.sleep(self.interval)
