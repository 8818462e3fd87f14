"""The store as a running part of a process: recordings, ingest, sweeper and API.

`gateway serve` with `upstream.url = "local"` and `gateway store` both run one.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from pathlib import Path

from gateway.admin.app import RouteProvider
from gateway.admin.pages import Pages
from gateway.admin.session import SessionApi
from gateway.config import Config
from gateway.metrics import Metrics
from gateway.store.api import RecordingsApi, SitePlan, UsageCounter
from gateway.store.engine import RecordingStore
from gateway.store.ingest import MeteredIngest
from gateway.store.lifecycle import Sweeper
from gateway.store.share_api import ShareApi
from gateway.store.shares import ShareStore


def store_directory(config: Config) -> Path:
    return Path(config.store.dir) if config.store.dir else Path(config.server.data_dir) / "store"


class StoreService:
    def __init__(
        self, config: Config, store: RecordingStore, shares: ShareStore, metrics: Metrics
    ) -> None:
        self.config = config
        self.store = store
        self.shares = shares
        self.ingest = MeteredIngest(store, metrics)
        self._metrics = metrics
        self._sweeper = Sweeper(
            store,
            finalize_after=config.store.finalize_after,
            retention_days=config.store.retention_days,
            interval=config.store.sweep_interval,
            metrics=metrics,
        )
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, config: Config, metrics: Metrics) -> StoreService:
        directory = store_directory(config)
        directory.mkdir(parents=True, exist_ok=True)
        store = await RecordingStore.open(directory, session_gap=config.store.session_gap)
        try:
            shares = await ShareStore.open(directory)
        except BaseException:
            await store.close()
            raise
        service = cls(config, store, shares, metrics)
        service._task = asyncio.create_task(service._sweeper.run(), name="store-sweeper")
        return service

    def admin_parts(self, used: UsageCounter | None = None) -> list[RouteProvider]:
        """API, share links, sign-in and pages; `used` counts this month's recordings
        (default: the store's own count)."""
        sites = {s.key: SitePlan(plan=s.plan, limit=s.limit) for s in self.config.sites}
        api = RecordingsApi(
            self.store,
            sites=sites,
            used=used or self._created_this_month,
            retention_days=self.config.store.retention_days,
            metrics=self._metrics,
        )
        shares = ShareApi(
            self.store,
            self.shares,
            view=api.view,
            default_days=self.config.store.share_days,
            retention_days=self.config.store.retention_days,
        )
        session = SessionApi(lambda: self.config.server.admin_token, self.config.sites)
        return [api, shares, session, Pages()]

    async def _created_this_month(self, site: str, now: datetime) -> int:
        return await self.store.created_in_month(site, now.strftime("%Y-%m"))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.shares.close()
        await self.store.close()
