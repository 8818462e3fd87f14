"""The open-loop load generator (benchmarks/openloop.py) against a real tiny aiohttp server."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from benchmarks.openloop import OpenLoopResult, open_loop

BODY = b"x" * 1500


@dataclass
class Server:
    port: int
    peers: set[object] = field(default_factory=set)
    hosts: set[str] = field(default_factory=set)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server(0)

    @web.middleware
    async def note(request: web.Request, handler: Handler) -> web.StreamResponse:
        assert request.transport is not None
        state.peers.add(request.transport.get_extra_info("peername"))
        state.hosts.add(request.host)
        return await handler(request)

    async def fixed(request: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="text/plain")

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for i in range(5):
            await response.write(f"chunk {i};".encode() * 300)
        await response.write_eof()
        return response

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.05)
        return web.Response(text="slow")

    async def stuck(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(text="late")

    async def failing(request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/fixed"})

    async def empty(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application(middlewares=[note])
    app.router.add_get("/fixed", fixed)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/slow", slow)
    app.router.add_get("/stuck", stuck)
    app.router.add_get("/fail", failing)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/empty", empty)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield state
    await runner.cleanup()


async def test_sends_at_the_asked_rate(server: Server) -> None:
    result = await open_loop("127.0.0.1", server.port, "/fixed", rate=200, duration=1)
    assert abs(result.sent - 200) <= 2
    assert result.completed == result.sent
    assert result.errors == 0
    assert len(result.latencies_ms) == result.completed
    assert result.percentile(50) <= result.percentile(99) <= result.percentile(100)
    assert result.percentile(100) == max(result.latencies_ms)
    assert len(server.peers) <= 16
    assert server.hosts == {f"127.0.0.1:{server.port}"}


async def test_chunked_bodies_are_read_whole_on_kept_alive_connections(server: Server) -> None:
    result = await open_loop(
        "127.0.0.1", server.port, "/chunked", rate=100, duration=1, connections=4
    )
    assert abs(result.sent - 100) <= 1
    assert result.completed == result.sent and result.errors == 0
    assert len(server.peers) <= 4  # a body left unread would break the next response


async def test_latency_includes_the_server_time(server: Server) -> None:
    result = await open_loop("127.0.0.1", server.port, "/slow", rate=40, duration=1, connections=8)
    assert result.errors == 0
    assert result.percentile(50) >= 50
    assert min(result.latencies_ms) >= 50


async def test_latency_runs_from_the_scheduled_time(server: Server) -> None:
    # One connection, 50 ms per request, 40 asked per second: requests queue up behind
    # each other and their wait counts (no coordinated omission).
    result = await open_loop("127.0.0.1", server.port, "/slow", rate=40, duration=1, connections=1)
    assert result.completed == 40
    assert len(server.peers) == 1
    assert result.percentile(99) >= 500


async def test_non_2xx_3xx_are_errors(server: Server) -> None:
    failed = await open_loop("127.0.0.1", server.port, "/fail", rate=50, duration=0.5)
    assert failed.sent == 25 and failed.errors == 25 and failed.completed == 0
    assert failed.latencies_ms == [] and math.isnan(failed.percentile(50))
    ok = await open_loop("127.0.0.1", server.port, "/redirect", rate=50, duration=0.5)
    assert ok.completed == 25 and ok.errors == 0
    empty = await open_loop("127.0.0.1", server.port, "/empty", rate=50, duration=0.5)
    assert empty.completed == 25 and empty.errors == 0


async def test_bounded_when_the_server_never_answers(server: Server) -> None:
    began = time.perf_counter()
    result = await open_loop(
        "127.0.0.1", server.port, "/stuck", rate=20, duration=0.5, connections=2, timeout=0.5
    )
    assert time.perf_counter() - began < 3
    assert result.completed == 0 and result.errors == 10  # queued ones count too
    assert result.sent <= 10


async def test_reconnects_when_the_server_closed_an_idle_connection() -> None:
    async def fixed(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", fixed)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=0.02)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        result = await open_loop("127.0.0.1", port, "/", rate=10, duration=1, connections=2)
    finally:
        await runner.cleanup()
    assert result.completed == 10 and result.errors == 0


async def test_refused_connections_are_errors() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    result = await open_loop("127.0.0.1", port, "/", rate=20, duration=0.5, connections=2)
    assert result.completed == 0 and result.errors == 10


async def test_custom_headers_and_host(server: Server) -> None:
    result = await open_loop(
        "127.0.0.1",
        server.port,
        "/fixed",
        rate=20,
        duration=0.25,
        headers={"host": "shop.example", "User-Agent": "openloop"},
    )
    assert result.completed == 5
    assert server.hosts == {"shop.example"}


def test_percentile_nearest_rank() -> None:
    result = OpenLoopResult(10, 1, 10, 10, 0, [float(v) for v in (5, 1, 4, 2, 3, 10, 9, 8, 7, 6)])
    assert result.percentile(0) == 1
    assert result.percentile(10) == 1
    assert result.percentile(11) == 2
    assert result.percentile(50) == 5
    assert result.percentile(90) == 9
    assert result.percentile(99) == 10
    assert result.percentile(100) == 10
    assert OpenLoopResult(1, 1, 1, 1, 0, [42.0]).percentile(50) == 42
    with pytest.raises(ValueError):
        result.percentile(101)
