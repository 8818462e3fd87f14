"""The open-loop load generator (benchmarks/openloop.py) against a real tiny aiohttp server."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from benchmarks.openloop import (
    OpenLoopResult,
    build_native,
    open_loop,
)

BODY = b"x" * 1500

OpenLoop = Callable[..., Awaitable[OpenLoopResult]]


@pytest.fixture(params=["python", "native"])
def generator(request: pytest.FixtureRequest) -> OpenLoop:
    """Each test runs against both implementations; the native one must build (gcc is here)."""
    if request.param == "native":
        assert build_native() is not None, "gcc could not build benchmarks/native/openloop.c"
        return functools.partial(open_loop, native=True)
    return functools.partial(open_loop, native=False)


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


async def test_sends_at_the_asked_rate(server: Server, generator: OpenLoop) -> None:
    result = await generator("127.0.0.1", server.port, "/fixed", rate=200, duration=1)
    assert abs(result.sent - 200) <= 2
    assert result.completed == result.sent
    assert result.errors == 0
    assert len(result.latencies_ms) == result.completed
    assert result.percentile(50) <= result.percentile(99) <= result.percentile(100)
    assert result.percentile(100) == max(result.latencies_ms)
    assert len(server.peers) <= 16
    assert server.hosts == {f"127.0.0.1:{server.port}"}


async def test_chunked_bodies_are_read_whole_on_kept_alive_connections(
    server: Server, generator: OpenLoop
) -> None:
    result = await generator(
        "127.0.0.1", server.port, "/chunked", rate=100, duration=1, connections=4
    )
    assert abs(result.sent - 100) <= 1
    assert result.completed == result.sent and result.errors == 0
    assert len(server.peers) <= 4  # a body left unread would break the next response


async def test_latency_includes_the_server_time(server: Server, generator: OpenLoop) -> None:
    result = await generator("127.0.0.1", server.port, "/slow", rate=40, duration=1, connections=8)
    assert result.errors == 0
    assert result.percentile(50) >= 50
    assert min(result.latencies_ms) >= 50


async def test_latency_runs_from_the_scheduled_time(server: Server, generator: OpenLoop) -> None:
    # One connection, 50 ms per request, 40 asked per second: requests queue up behind
    # each other and their wait counts (no coordinated omission).
    result = await generator("127.0.0.1", server.port, "/slow", rate=40, duration=1, connections=1)
    assert result.completed == 40
    assert len(server.peers) == 1
    assert result.percentile(99) >= 500


async def test_non_2xx_3xx_are_errors(server: Server, generator: OpenLoop) -> None:
    failed = await generator("127.0.0.1", server.port, "/fail", rate=50, duration=0.5)
    assert failed.sent == 25 and failed.errors == 25 and failed.completed == 0
    assert failed.latencies_ms == [] and math.isnan(failed.percentile(50))
    ok = await generator("127.0.0.1", server.port, "/redirect", rate=50, duration=0.5)
    assert ok.completed == 25 and ok.errors == 0
    empty = await generator("127.0.0.1", server.port, "/empty", rate=50, duration=0.5)
    assert empty.completed == 25 and empty.errors == 0


async def test_bounded_when_the_server_never_answers(server: Server, generator: OpenLoop) -> None:
    began = time.perf_counter()
    result = await generator(
        "127.0.0.1", server.port, "/stuck", rate=20, duration=0.5, connections=2, timeout=0.5
    )
    assert time.perf_counter() - began < 3
    assert result.completed == 0 and result.errors == 10  # queued ones count too
    assert result.sent <= 10


async def test_reconnects_when_the_server_closed_an_idle_connection(generator: OpenLoop) -> None:
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
        result = await generator("127.0.0.1", port, "/", rate=10, duration=1, connections=2)
    finally:
        await runner.cleanup()
    assert result.completed == 10 and result.errors == 0


async def test_refused_connections_are_errors(generator: OpenLoop) -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    result = await generator("127.0.0.1", port, "/", rate=20, duration=0.5, connections=2)
    assert result.completed == 0 and result.errors == 10


async def test_custom_headers_and_host(server: Server, generator: OpenLoop) -> None:
    result = await generator(
        "127.0.0.1",
        server.port,
        "/fixed",
        rate=20,
        duration=0.25,
        headers={"host": "shop.example", "User-Agent": "openloop"},
    )
    assert result.completed == 5
    assert server.hosts == {"shop.example"}


@dataclass
class Raw:
    """A hand-written HTTP server (asyncio streams) and what it saw."""

    port: int = 0
    connections: int = 0
    requests: int = 0


Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Raw], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(serve: Serve) -> AsyncIterator[Raw]:
    state = Raw()
    tasks: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        state.connections += 1
        try:
            await serve(reader, writer, state)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            tasks.discard(task)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def next_request(reader: asyncio.StreamReader, state: Raw) -> None:
    await reader.readuntil(b"\r\n\r\n")
    state.requests += 1


# "|" marks where the answer pauses a moment; between, it goes out one byte per write.
FRAGMENTED = [
    b"HTTP/1.1 2|00 OK\r\ncontent-LENGTH: 11\r|\n\r|\nhello| world",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=va|lue\r\nhel|lo\r|\n6\r\n world\r\n0\r\nX-Trailer: |1\r\nX-Other: 2\r\n\r|\n",
    b"HTTP/1.1 204 No Content\r\nX-A: b\r\n\r|\n",
]


@pytest.mark.parametrize("answer", FRAGMENTED, ids=["length", "chunked-trailers", "204"])
async def test_answers_in_one_byte_pieces(generator: OpenLoop, answer: bytes) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Raw) -> None:
        while True:
            await next_request(reader, state)
            for piece in answer.split(b"|"):
                for byte in piece:
                    writer.write(bytes([byte]))
                    await writer.drain()
                await asyncio.sleep(0.003)

    async with raw_server(serve) as raw:
        result = await generator("127.0.0.1", raw.port, "/", rate=40, duration=0.25, connections=2)
    assert result.completed == 10 and result.errors == 0 and result.sent == 10
    assert raw.connections <= 2  # each answer read exactly: the connections stay usable
    assert all(latency >= 0 for latency in result.latencies_ms)


@pytest.mark.parametrize(
    ("answer", "server_closes"),
    [
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.1 200 OK\r\nconnection: Close\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nthe body runs to the end", True),
    ],
    ids=["http10", "connection-close", "until-close"],
)
async def test_answers_ending_the_connection(
    generator: OpenLoop, answer: bytes, server_closes: bool
) -> None:
    # One answer per connection: a generator reusing the connection would wait in vain.
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Raw) -> None:
        await next_request(reader, state)
        writer.write(answer)
        await writer.drain()
        if not server_closes:
            await reader.read()  # until the client closes

    async with raw_server(serve) as raw:
        result = await generator(
            "127.0.0.1", raw.port, "/", rate=40, duration=0.25, connections=2, timeout=1
        )
    assert result.completed == 10 and result.errors == 0 and result.sent == 10
    assert raw.requests == 10 and raw.connections >= 10


async def test_http10_keep_alive_answers(generator: OpenLoop) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Raw) -> None:
        while True:
            await next_request(reader, state)
            writer.write(
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"
            )
            await writer.drain()

    async with raw_server(serve) as raw:
        result = await generator("127.0.0.1", raw.port, "/", rate=40, duration=0.25, connections=2)
    assert result.completed == 10 and result.errors == 0


async def test_retries_once_when_a_kept_alive_connection_was_closed(generator: OpenLoop) -> None:
    # Each connection answers its first request and closes on the second, unanswered: the
    # generator sends that one again on a new connection.
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Raw) -> None:
        await next_request(reader, state)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await next_request(reader, state)

    async with raw_server(serve) as raw:
        result = await generator("127.0.0.1", raw.port, "/", rate=20, duration=0.25, connections=1)
    assert result.completed == 5 and result.errors == 0 and result.sent == 5
    assert raw.connections == 5 and raw.requests == 9


async def test_no_second_retry(generator: OpenLoop) -> None:
    # Every connection is closed as soon as a request comes: the kept-alive one gets one more
    # try on a fresh connection, a fresh one none.
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Raw) -> None:
        await next_request(reader, state)

    async with raw_server(serve) as raw:
        result = await generator("127.0.0.1", raw.port, "/", rate=20, duration=0.25, connections=1)
    assert result.completed == 0 and result.errors == 5 and result.sent == 5
    assert raw.requests == 6


async def test_a_timed_out_request_is_an_error_and_its_connection_replaced(
    generator: OpenLoop,
) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Raw) -> None:
        while True:
            await next_request(reader, state)
            if state.requests == 1:
                await reader.read()  # never answered
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async with raw_server(serve) as raw:
        result = await generator(
            "127.0.0.1", raw.port, "/", rate=40, duration=0.25, connections=1, timeout=0.1
        )
    assert result.errors == 1 and result.completed == 9 and result.sent == 10
    assert raw.connections == 2
    # The second request, due at 25 ms, waited for the first one's timeout at 100 ms.
    assert max(result.latencies_ms) >= 70


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\nContent-Length: 2\r\n\r\nok",
        b"SPAM 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["head-too-big", "not-http", "bad-chunk"],
)
async def test_malformed_answers_are_errors(generator: OpenLoop, answer: bytes) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Raw) -> None:
        await next_request(reader, state)
        writer.write(answer)
        await writer.drain()
        await reader.read()

    async with raw_server(serve) as raw:
        result = await generator(
            "127.0.0.1", raw.port, "/", rate=20, duration=0.15, connections=1, timeout=1
        )
    assert result.completed == 0 and result.errors == 3 and result.sent == 3


async def test_arguments_are_checked(generator: OpenLoop) -> None:
    for bad in ({"rate": 0}, {"duration": -1}, {"connections": 0}, {"timeout": 0}):
        arguments: dict[str, Any] = {"rate": 10, "duration": 1, **bad}
        with pytest.raises(ValueError):
            await generator("127.0.0.1", 1, "/", **arguments)


async def test_open_loop_takes_the_native_generator(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    import benchmarks.openloop as module

    async def unwanted(*args: Any, **kwargs: Any) -> OpenLoopResult:
        raise AssertionError("not this one")

    python = module._run_python
    monkeypatch.setattr(module, "_run_python", unwanted)
    result = await open_loop("127.0.0.1", server.port, "/fixed", rate=20, duration=0.25)
    assert result.completed == 5 and result.errors == 0

    monkeypatch.setattr(module, "_run_python", python)
    monkeypatch.setattr(module, "_run_native", unwanted)
    monkeypatch.setattr(module, "build_native", lambda: None)  # as without gcc
    result = await open_loop("127.0.0.1", server.port, "/fixed", rate=20, duration=0.25)
    assert result.completed == 5 and result.errors == 0


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


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ],
    ids=["interim-1xx-skipped", "chunked-after-another-coding"],
)
async def test_answers_read_exactly_on_kept_alive_connections(
    generator: OpenLoop, answer: bytes
) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Raw) -> None:
        while True:
            await next_request(reader, state)
            writer.write(answer)
            await writer.drain()

    async with raw_server(serve) as raw:
        result = await generator("127.0.0.1", raw.port, "/", rate=40, duration=0.25, connections=2)
    assert result.completed == 10 and result.errors == 0
    assert raw.connections <= 2


async def test_the_timeout_runs_from_the_scheduled_time(generator: OpenLoop) -> None:
    # One connection, answers taking 0.3 s, one request every 0.1 s: requests queue up,
    # and those answered later than 1 s after their scheduled time are errors.
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Raw) -> None:
        while True:
            await next_request(reader, state)
            await asyncio.sleep(0.3)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async with raw_server(serve) as raw:
        result = await generator(
            "127.0.0.1", raw.port, "/", rate=10, duration=1, connections=1, timeout=1
        )
    assert result.completed + result.errors == 10
    assert result.errors >= 3 and result.completed >= 2
    assert max(result.latencies_ms) <= 1000
