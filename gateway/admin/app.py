"""The admin listener: metrics, health, readiness and, where a store runs, its API,
the dashboard and the player."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.admin.auth import admin_guard
from gateway.edge.errors import json_error
from gateway.metrics import Metrics


class RouteProvider(Protocol):
    def routes(self) -> list[web.RouteDef]: ...


def build_admin_app(
    metrics: Metrics,
    ready: Callable[[], bool],
    *,
    token: Callable[[], str],
    parts: Sequence[RouteProvider] = (),
    metrics_text: Callable[[], Awaitable[bytes]] | None = None,
) -> web.Application:
    async def metrics_view(request: web.Request) -> web.Response:
        # All workers' numbers when there are several (app.py merges them).
        body = await metrics_text() if metrics_text else generate_latest(metrics.registry)
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

    async def no_icon(request: web.Request) -> web.Response:
        return web.Response(status=204, headers={"Cache-Control": "public, max-age=86400"})

    app = web.Application(middlewares=[admin_guard(token)])
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/favicon.ico", no_icon)
    for part in parts:
        app.add_routes(part.routes())
    if not parts:
        app.router.add_route("*", "/api/{tail:.*}", no_store)
    return app
