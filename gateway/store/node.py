"""`gateway store`: a store node alone, receiving upstream batches from edge nodes.

It reads [server] (listen: the ingest endpoint; admin_listen: metrics, health
and the recordings API; data_dir), [store], and [[sites]] when present (for
the usage endpoint's plans and limits).
"""

from __future__ import annotations

from aiohttp import web

from gateway.admin.app import build_admin_app
from gateway.app import ADMIN_SHUTDOWN_SECONDS, Listening, bind
from gateway.config import Config
from gateway.metrics import Metrics
from gateway.store.receiver import IngestEndpoint
from gateway.store.service import StoreService


class StoreNode:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.service: StoreService | None = None
        self.listening: Listening | None = None
        self._runners: list[web.BaseRunner] = []
        self._ready = False

    async def start(self) -> Listening:
        self.service = await StoreService.open(self.config, self.metrics)
        endpoint = IngestEndpoint(
            self.service.ingest,
            token=self.config.store.ingest_token,
            max_batch_bytes=self.config.store.max_batch_bytes,
            metrics=self.metrics,
        )
        ingest_app = web.Application(client_max_size=self.config.store.max_batch_bytes)
        ingest_app.add_routes(endpoint.routes())
        ingest_runner = web.AppRunner(
            ingest_app, access_log=None, shutdown_timeout=self.config.server.shutdown_grace
        )
        await ingest_runner.setup()
        self._runners.append(ingest_runner)
        ingest = await bind(ingest_runner, self.config.server.listen, "server.listen")
        admin_runner = web.AppRunner(
            build_admin_app(
                self.metrics,
                lambda: self._ready,
                token=lambda: self.config.server.admin_token,
                parts=self.service.admin_parts(),
            ),
            access_log=None,
            shutdown_timeout=ADMIN_SHUTDOWN_SECONDS,
        )
        await admin_runner.setup()
        self._runners.append(admin_runner)
        admin = await bind(admin_runner, self.config.server.admin_listen, "server.admin_listen")
        self._ready = True
        self.listening = Listening(edge=ingest, admin=admin)
        return self.listening

    def announce(self, listening: Listening) -> list[str]:
        return [
            f"store ingest listening on http://{listening.edge[0]}:{listening.edge[1]}",
            f"admin listening on http://{listening.admin[0]}:{listening.admin[1]}",
        ]

    async def stop(self) -> None:
        self._ready = False
        # Ingest first: batches in flight finish (they are acknowledged only when durable).
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        if self.service is not None:
            await self.service.close()
            self.service = None
