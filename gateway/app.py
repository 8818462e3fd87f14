"""One gateway process: the edge listener(s) and the admin listener."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.admin.aggregate import merge_expositions
from gateway.admin.app import RouteProvider, build_admin_app
from gateway.admin.auth import bearer, same_token
from gateway.collect.handler import CollectEndpoint
from gateway.collect.quota import SqliteQuotaStore
from gateway.config import Config, node_name, parse_listen
from gateway.edge.errors import json_error
from gateway.edge.headers import TrustedProxies
from gateway.edge.proxy import Proxy
from gateway.edge.recorder_asset import RecorderAsset, load_recorder_asset
from gateway.edge.server import EdgeServer
from gateway.edge.sites import Site, build_site
from gateway.metrics import Metrics
from gateway.pipeline.batcher import Batcher
from gateway.pipeline.deadletter import DeadLetters
from gateway.pipeline.delivery import Delivery
from gateway.pipeline.exporters import Exporter, HttpExporter, LocalExporter
from gateway.pipeline.retry import Backoff, CircuitBreaker
from gateway.pipeline.spool import FSYNC_EVENT, FsyncPolicy, Spool
from gateway.pipeline.spool_sink import SpoolSink
from gateway.store.receiver import IngestEndpoint
from gateway.store.service import StoreService
from gateway.workers import WorkerRole

# Admin requests in flight at shutdown get this long: the grace belongs to the edge.
ADMIN_SHUTDOWN_SECONDS = 1.0
# More header lines than this is an attack, not a browser (431 as well).
_PARSER_MAX_HEADERS = 128


@dataclass
class Listening:
    """Where the listeners actually are (ports may have been 0 in the config)."""

    edge: tuple[str, int]
    admin: tuple[str, int]
    tls: tuple[str, int] | None = None


class Gateway:
    def __init__(
        self,
        config: Config,
        *,
        recorder: RecorderAsset | None = None,
        worker: WorkerRole | None = None,
    ) -> None:
        self.config = config
        # One of `--workers N` processes (workers.py), or None when running alone.
        self.worker = worker
        self.metrics = Metrics()
        self.recorder = recorder or load_recorder_asset()
        self.sites: list[Site] = [
            build_site(s, prefix=config.server.prefix, recorder_digest=self.recorder.digest)
            for s in config.sites
        ]
        self.sink: SpoolSink | None = None
        self.quota: SqliteQuotaStore | None = None
        self.proxy: Proxy | None = None
        self.store: StoreService | None = None
        self.exporter: Exporter | None = None
        self.delivery: Delivery | None = None
        self._delivery_task: asyncio.Task[None] | None = None
        self._runners: list[web.BaseRunner] = []
        self._ready = False
        self.listening: Listening | None = None

    async def start(self) -> Listening:
        data_dir = Path(self.config.server.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.quota = await SqliteQuotaStore.open(data_dir / "quota.sqlite3")
        spool = self.config.spool
        opened = await Spool.open(
            self.worker.spool_dir(data_dir) if self.worker else data_dir / "spool",
            max_bytes=spool.max_bytes,
            segment_bytes=spool.segment_bytes,
            fsync=FsyncPolicy(spool.fsync),
            group_ms=spool.group_ms,
            metrics_hook=self._spool_event,
        )
        self.sink = SpoolSink(opened)
        await self._start_delivery(opened, data_dir)
        # Read at scrape time: always the spool's own numbers.
        self.metrics.spool_batches.set_function(lambda: opened.depth_records)
        self.metrics.spool_bytes.set_function(lambda: opened.depth_bytes)
        collect = CollectEndpoint(
            self.config.collect,
            metrics=self.metrics,
            quota=self.quota,
            sink=self.sink,
            trusted=TrustedProxies(self.config.server.trusted_proxies),
        )
        self.proxy = Proxy(self.config, self.sites, self.metrics, self.recorder, collect)
        limits = self.config.server
        # aiohttp's parser enforces the line limits (414/431 via EdgeServer);
        # they must differ so that an error tells which one was hit.
        line_limit = limits.max_request_line_bytes
        field_limit = limits.max_header_bytes + (limits.max_header_bytes == line_limit)
        server = EdgeServer(
            self.proxy.handle,
            line_limit=line_limit,
            handler_cancellation=True,
            # Request bodies pass to origins as sent (a gzip upload stays gzip);
            # the collect endpoint inflates its own, with a bound.
            auto_decompress=False,
            max_line_size=line_limit,
            max_field_size=field_limit,
            max_headers=_PARSER_MAX_HEADERS,
            access_log=None,
        )
        edge_runner = web.ServerRunner(server, shutdown_timeout=self.config.server.shutdown_grace)
        await edge_runner.setup()
        self._runners.append(edge_runner)
        shared = self.worker is not None  # SO_REUSEPORT: the kernel spreads connections
        edge = await bind(
            edge_runner, self.config.server.listen, "server.listen", reuse_port=shared
        )
        tls = None
        if self.config.server.tls_listen:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.config.server.tls_cert, self.config.server.tls_key)
            tls = await bind(
                edge_runner,
                self.config.server.tls_listen,
                "server.tls_listen",
                context,
                reuse_port=shared,
            )
        if self.worker is None or self.worker.primary:
            admin = await self._start_admin()
        else:
            admin = await self._start_internal(
                [web.get("/metrics", self._internal_metrics)],
                self.worker.metrics_ports[self.worker.index],
            )
        self._ready = True
        self.listening = Listening(edge=edge, admin=admin, tls=tls)
        return self.listening

    async def _start_admin(self) -> tuple[str, int]:
        parts: list[RouteProvider] = []
        if self.store is not None:
            quota = self.quota
            assert quota is not None  # opened first in start()
            # Usage as the edge's quota counts it: the number that refuses new recordings.
            parts = self.store.admin_parts(used=lambda site, now: quota.usage(site, now))
        admin_runner = web.AppRunner(
            build_admin_app(
                self.metrics,
                lambda: self._ready,
                token=lambda: self.config.server.admin_token,
                parts=parts,
                metrics_text=self._metrics_text,
            ),
            access_log=None,
            shutdown_timeout=ADMIN_SHUTDOWN_SECONDS,
        )
        await admin_runner.setup()
        self._runners.append(admin_runner)
        return await bind(admin_runner, self.config.server.admin_listen, "server.admin_listen")

    async def _start_internal(self, routes: list[web.RouteDef], port: int) -> tuple[str, int]:
        """A loopback listener between workers, for the bearer of the run's secret only."""
        assert self.worker is not None
        secret = self.worker.secret.encode()

        @web.middleware
        async def only_workers(request: web.Request, handler: Handler) -> web.StreamResponse:
            if not same_token(bearer(request), secret):
                return json_error(401, "unauthorized", "internal listener of the workers")
            return await handler(request)

        app = web.Application(middlewares=[only_workers], client_max_size=1 << 20)
        app.add_routes(routes)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=ADMIN_SHUTDOWN_SECONDS)
        await runner.setup()
        self._runners.append(runner)
        return await bind(runner, f"127.0.0.1:{port}", "internal listener")

    async def _internal_metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _metrics_text(self) -> bytes:
        """This process's metrics, merged with the other workers' when there are some."""
        own = generate_latest(self.metrics.registry)
        if self.worker is None or self.worker.count == 1:
            return own
        texts = [own.decode()]
        headers = {"Authorization": f"Bearer {self.worker.secret}"}
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as client:
            for port in self.worker.metrics_ports[1:]:
                try:
                    async with client.get(f"http://127.0.0.1:{port}/metrics") as answer:
                        if answer.status == 200:
                            texts.append(await answer.text())
                except (aiohttp.ClientError, TimeoutError):
                    continue  # a worker being restarted: its numbers return with it
        return merge_expositions(texts).encode()

    def announce(self, listening: Listening) -> list[str]:
        lines = [f"edge listening on http://{listening.edge[0]}:{listening.edge[1]}"]
        if listening.tls:
            lines.append(f"edge listening on https://{listening.tls[0]}:{listening.tls[1]}")
        if self.worker is None or self.worker.primary:
            lines.append(f"admin listening on http://{listening.admin[0]}:{listening.admin[1]}")
        if self.worker is not None:
            lines = [f"worker {self.worker.index}: {line}" for line in lines]
        return lines

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish, then flush within the grace."""
        self._ready = False
        deadline = time.monotonic() + self.config.server.shutdown_grace
        for runner in self._runners:  # the edge first: no new batches arrive after it
            await runner.cleanup()
        self._runners.clear()
        if self.proxy is not None:
            await self.proxy.close()
        if self.delivery is not None:
            # What cannot be confirmed in time stays in the spool for the next start.
            if self._delivery_task is not None:
                self._delivery_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._delivery_task
            await self.delivery.drain(deadline)
        if self.exporter is not None:
            await self.exporter.close()
        if self.store is not None:
            await self.store.close()
        if self.quota is not None:
            await self.quota.close()
        if self.sink is not None:
            await self.sink.spool.close()

    async def _start_delivery(self, spool: Spool, data_dir: Path) -> None:
        """Spool -> batcher -> exporter; replays what the spool still holds."""
        upstream = self.config.upstream
        exporter: Exporter
        url, token = upstream.url, upstream.token
        if url == "local" and self.worker is not None and not self.worker.primary:
            # One process writes the store: the others send it their batches.
            url, token = f"http://127.0.0.1:{self.worker.ingest_port}", self.worker.secret
        if url == "local":
            self.store = await StoreService.open(self.config, self.metrics)
            exporter = LocalExporter(self.store.ingest)
            if self.worker is not None and self.worker.count > 1:
                endpoint = IngestEndpoint(
                    self.store.ingest,
                    token=self.worker.secret,
                    max_batch_bytes=self.config.store.max_batch_bytes,
                    metrics=self.metrics,
                )
                await self._start_internal(endpoint.routes(), self.worker.ingest_port)
        else:
            http = HttpExporter(
                url,
                token=token,
                timeout=upstream.timeout,
                max_connections=upstream.max_connections,
                ca_file=upstream.ca_file,
            )
            await http.start()
            exporter = http
        self.exporter = exporter
        batcher = Batcher(
            spool,
            node=node_name(self.config),
            max_bytes=upstream.batch_bytes,
            max_wait=upstream.batch_wait,
        )
        self.delivery = Delivery(
            batcher,
            exporter,
            DeadLetters(data_dir / "dead-letter"),
            backoff=Backoff(upstream.retry_initial, upstream.retry_max),
            circuit=CircuitBreaker(
                upstream.circuit_failures,
                upstream.circuit_cooldown,
                on_change=lambda state: self.metrics.circuit_state.labels(
                    exporter=exporter.name
                ).set(int(state)),
            ),
            metrics=self.metrics,
        )
        self._delivery_task = asyncio.create_task(self.delivery.run(), name="delivery")

    def _spool_event(self, kind: str, value: int) -> None:
        if kind == FSYNC_EVENT:
            self.metrics.spool_fsync.observe(value / 1e9)
        else:
            self.metrics.spool_damage.labels(kind=kind).inc(value)


async def bind(
    runner: web.BaseRunner,
    listen: str,
    key: str,
    context: ssl.SSLContext | None = None,
    *,
    reuse_port: bool = False,
) -> tuple[str, int]:
    host, port = parse_listen(listen, key)
    site = web.TCPSite(
        runner, host, port, ssl_context=context, reuse_address=True, reuse_port=reuse_port
    )
    try:
        await site.start()
    except OSError as exc:
        raise OSError(exc.errno, f"{key}: cannot listen on {listen}: {exc.strerror}") from exc
    # uvloop's server is not asyncio's class, but both have `sockets`.
    server: Any = site._server
    bound = server.sockets[0].getsockname()
    return str(bound[0]), int(bound[1])


class Node(Protocol):
    async def start(self) -> Listening: ...
    def announce(self, listening: Listening) -> list[str]: ...
    async def stop(self) -> None: ...


async def serve_forever(gateway: Node, announce: bool = True) -> None:
    """Run until SIGTERM/SIGINT, then stop accepting and finish in-flight requests."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        listening = await gateway.start()
    except BaseException:
        await gateway.stop()
        raise
    if announce:
        for line in gateway.announce(listening):
            print(line, flush=True)
    # What start-up made lives as long as the process: out of the collector's sight, a
    # full collection no longer walks it (~30 ms of stalled requests each time, measured).
    gc.collect()
    gc.freeze()
    try:
        await stop.wait()
    finally:
        await gateway.stop()
