"""The admin listener: metrics, health, readiness and, where a store runs, its API."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.edge.errors import json_error
from gateway.metrics import Metrics
from gateway.store.api import RecordingsApi


def build_admin_app(
    metrics: Metrics, ready: Callable[[], bool], api: RecordingsApi | None = None
) -> web.Application:
    async def metrics_view(request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        if ready():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "starting"}, status=503)

    async def no_store(request: web.Request) -> web.Response:
        return json_error(
            404, "no_store", "this node forwards to a remote store: ask that node's admin API"
        )

    app = web.Application(middlewares=[api.guard] if api is not None else [])
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if api is not None:
        app.add_routes(api.routes())
    else:
        app.router.add_route("*", "/api/{tail:.*}", no_store)
    return app
