"""The origin client (gateway.edge.origin) against scripted raw TCP servers on loopback.

Each test writes the origin's side byte by byte in a per-connection handler, so it
can count connections, answer out of turn, close or stall at chosen moments. Every
wait is bounded: a broken client fails a test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from multidict import CIMultiDict

from gateway.edge.origin.connection import MAX_HEAD_BYTES, OriginResponse
from gateway.edge.origin.errors import (
    OriginBodyError,
    OriginClosed,
    OriginConnectError,
    OriginError,
    OriginProtocolError,
    OriginTimeout,
)
from gateway.edge.origin.pool import OriginAddress, OriginPool

WAIT = 5.0  # the longest any single step may take before the test gives up
HOST = "origin.test"


# The scripted origin.


class ServerConn:
    """The origin's side of one accepted connection, as seen by a handler."""

    def __init__(
        self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.index = index  # 0 for the server's first connection
        self.reader = reader
        self.writer = writer
        self.heads: list[bytes] = []  # request heads, in order
        self.raw_bodies: list[bytes] = []  # request bodies as framed on the wire
        self.bodies: list[bytes] = []  # request bodies, decoded
        self.eof = asyncio.Event()  # the client closed its side
        self.ended = asyncio.Event()  # the handler returned and the server closed

    async def read_head(self) -> bytes | None:
        """The next request's head (up to the blank line); None once the client closed."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            self.eof.set()
            return None
        except ConnectionError:
            self.eof.set()
            return None
        self.heads.append(head)
        return head

    async def read_request(self) -> bytes | None:
        """The next request's head, its body read by its framing (see raw_bodies, bodies)."""
        head = await self.read_head()
        if head is None:
            return None
        lines = head.lower().split(b"\r\n")
        if b"transfer-encoding: chunked" in lines:
            raw, body = await read_chunked(self.reader)
        else:
            lengths = [line for line in lines if line.startswith(b"content-length:")]
            size = int(lengths[0].partition(b":")[2]) if lengths else 0
            raw = body = await self.reader.readexactly(size)
        self.raw_bodies.append(raw)
        self.bodies.append(body)
        return head

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def wait_eof(self) -> bytes:
        """Everything the client still sends until it closes the connection."""
        try:
            data = await self.reader.read()
        except ConnectionError:
            data = b""
        self.eof.set()
        return data


Handler = Callable[[ServerConn], Awaitable[None]]


class RawServer:
    """asyncio.start_server on 127.0.0.1:0 running `handler` for each connection."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.conns: list[ServerConn] = []
        self.open_now = 0
        self.max_open = 0
        self.errors: list[BaseException] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def address(self) -> OriginAddress:
        return OriginAddress("127.0.0.1", self.port, None)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = ServerConn(len(self.conns), reader, writer)
        self.conns.append(conn)
        self.open_now += 1
        self.max_open = max(self.max_open, self.open_now)
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await self._handler(conn)
        except Exception as exc:  # a failed assertion in a handler fails the test at teardown
            self.errors.append(exc)
        finally:
            self.open_now -= 1
            writer.close()
            conn.ended.set()
            self._tasks.discard(task)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for conn in self.conns:
            conn.writer.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()


class Harness:
    """Starts servers and pools for a test and stops them after it."""

    def __init__(self) -> None:
        self.servers: list[RawServer] = []
        self.pools: list[OriginPool] = []

    async def server(self, handler: Handler) -> RawServer:
        server = RawServer(handler)
        await server.start()
        self.servers.append(server)
        return server

    def pool(
        self,
        *,
        limit_per_origin: int = 10,
        keepalive: float = 30.0,
        connect_timeout: float = 2.0,
        idle: float = 3.0,
    ) -> OriginPool:
        pool = OriginPool(
            limit_per_origin=limit_per_origin,
            keepalive=keepalive,
            connect_timeout=connect_timeout,
            idle=idle,
        )
        self.pools.append(pool)
        return pool

    async def close(self) -> list[BaseException]:
        for pool in self.pools:
            await pool.close()
        errors: list[BaseException] = []
        for server in self.servers:
            await server.stop()
            errors.extend(server.errors)
        return errors


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    harness = Harness()
    yield harness
    errors = await harness.close()
    assert not errors, f"the scripted origin failed: {errors!r}"


# Small helpers.


def ok(body: bytes = b"ok", extra: bytes = b"") -> bytes:
    """A keep-alive 200 with a Content-Length body; `extra`: more header lines."""
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def answer_each(reply: bytes) -> Handler:
    """A handler answering every request on its connection with `reply`."""

    async def handler(conn: ServerConn) -> None:
        while await conn.read_request() is not None:
            await conn.send(reply)

    return handler


async def read_chunked(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """A chunked body: as framed on the wire, and decoded (no trailers expected)."""
    raw = bytearray()
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        raw += line
        size = int(line.strip(), 16)
        if size == 0:
            end = await reader.readexactly(2)
            raw += end
            assert end == b"\r\n", raw
            return bytes(raw), bytes(body)
        data = await reader.readexactly(size + 2)
        raw += data
        assert data.endswith(b"\r\n"), raw
        body += data[:-2]


def host_headers(*extra: tuple[str, str]) -> CIMultiDict[str]:
    return CIMultiDict([("Host", HOST), *extra])


async def fetch(
    pool: OriginPool,
    server: RawServer,
    *,
    method: str = "GET",
    target: str = "/",
    headers: CIMultiDict[str] | None = None,
    body: AsyncIterator[bytes] | None = None,
) -> OriginResponse:
    request = pool.request(
        server.address, method, target, headers if headers is not None else host_headers(), body
    )
    return await asyncio.wait_for(request, WAIT)


async def read_body(response: OriginResponse) -> bytes:
    async def read() -> bytes:
        return b"".join([chunk async for chunk in response.content.iter_any()])

    return await asyncio.wait_for(read(), WAIT)


async def get_body(pool: OriginPool, server: RawServer, target: str = "/") -> bytes:
    """A GET, its body read whole, the response released."""
    response = await fetch(pool, server, target=target)
    assert response.status == 200
    body = await read_body(response)
    response.release()
    return body


async def parts(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def bounded(awaitable: Awaitable[object]) -> None:
    await asyncio.wait_for(awaitable, WAIT)


async def until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` until it holds; fail after WAIT seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.01)


# 1. Keep-alive.


async def test_sequential_requests_reuse_one_connection_and_are_sent_as_given(
    harness: Harness,
) -> None:
    server = await harness.server(answer_each(ok(b"hello")))
    pool = harness.pool()

    for i in range(20):
        headers = host_headers(
            ("X-Request", str(i)), ("Accept", "text/plain"), ("Accept", "text/html")
        )
        response = await fetch(pool, server, target="/path?q=1", headers=headers)
        assert (response.status, response.reason) == (200, "OK")
        assert response.content_length == 5
        assert await read_body(response) == b"hello"
        assert response.content.is_eof()
        response.release()

    assert len(server.conns) == 1
    heads = server.conns[0].heads
    assert len(heads) == 20
    for i, head in enumerate(heads):
        assert head == (
            b"GET /path?q=1 HTTP/1.1\r\n"
            b"Host: origin.test\r\n"
            b"X-Request: %d\r\n"
            b"Accept: text/plain\r\n"
            b"Accept: text/html\r\n"
            b"\r\n" % i
        )


# 2. A response closed instead of released.


async def test_closed_response_does_not_give_its_connection_back(harness: Harness) -> None:
    server = await harness.server(answer_each(ok(b"x" * 1000)))
    pool = harness.pool()

    # Body read whole, but close(): the connection goes although it could have been kept.
    first = await fetch(pool, server)
    assert await read_body(first) == b"x" * 1000
    first.close()
    await bounded(server.conns[0].eof.wait())

    # Body not read at all.
    second = await fetch(pool, server)
    second.close()

    assert await get_body(pool, server) == b"x" * 1000
    assert len(server.conns) == 3
    assert [len(conn.heads) for conn in server.conns] == [1, 1, 1]
    await bounded(server.conns[1].eof.wait())


# 3. The limit per origin.


async def test_limit_per_origin_queues_requests_beyond_it(harness: Harness) -> None:
    answer = asyncio.Event()
    arrived: list[bytes] = []

    async def held(conn: ServerConn) -> None:
        while (head := await conn.read_request()) is not None:
            arrived.append(head)
            await answer.wait()
            await conn.send(ok(b"done"))

    server = await harness.server(held)
    pool = harness.pool(limit_per_origin=2)

    async def one(i: int) -> bytes:
        response = await pool.request(
            server.address, "GET", f"/{i}", host_headers(), None
        )  # bounded by the gather below
        body = await read_body(response)
        response.release()
        return body

    tasks = [asyncio.create_task(one(i)) for i in range(6)]
    try:
        await until(lambda: len(arrived) == 2, "the first two requests")
        # Room for a pool that ignores its limit to open more (not needed for passing).
        await asyncio.sleep(0.2)
        assert len(arrived) == 2
        assert len(server.conns) == 2
        answer.set()
        results = await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
    finally:
        for task in tasks:
            task.cancel()

    assert results == [b"done"] * 6
    assert len(arrived) == 6
    assert server.max_open == 2
    assert len(server.conns) == 2  # the queued requests took over released connections


# 4. Connections the origin closed while idle.


async def test_bodiless_get_on_a_reused_connection_the_origin_closed_is_retried_once(
    harness: Harness,
) -> None:
    async def closes_on_second_request(conn: ServerConn) -> None:
        if conn.index == 0:
            assert await conn.read_request() is not None
            await conn.send(ok(b"first"))
            # The next request arrives as the origin's keep-alive timer fires: read, no answer.
            assert await conn.read_request() is not None
            return
        await answer_each(ok(b"second"))(conn)

    server = await harness.server(closes_on_second_request)
    pool = harness.pool()

    assert await get_body(pool, server, "/a") == b"first"
    assert await get_body(pool, server, "/b") == b"second"

    assert len(server.conns) == 2
    first, second = server.conns
    assert [head.split(b"\r\n")[0] for head in first.heads] == [
        b"GET /a HTTP/1.1",
        b"GET /b HTTP/1.1",
    ]
    assert second.heads == first.heads[1:]  # the same request, sent again


async def test_get_after_the_origin_closed_right_after_answering_succeeds(
    harness: Harness,
) -> None:
    async def closes_after_first(conn: ServerConn) -> None:
        if conn.index == 0:
            assert await conn.read_request() is not None
            await conn.send(ok(b"first"))  # keep-alive announced, then closed at once
            return
        await answer_each(ok(b"second"))(conn)

    server = await harness.server(closes_after_first)
    pool = harness.pool()

    assert await get_body(pool, server) == b"first"
    # Whether or not the pool saw the close yet: a new connection, no error.
    assert await get_body(pool, server) == b"second"
    assert len(server.conns) == 2


async def test_post_with_body_on_a_reused_connection_the_origin_closed_is_not_retried(
    harness: Harness,
) -> None:
    async def closes_on_second_request(conn: ServerConn) -> None:
        if conn.index == 0:
            assert await conn.read_request() is not None
            await conn.send(ok(b"first"))
            assert await conn.read_request() is not None  # the POST, body included
            return
        await answer_each(ok(b"resent"))(conn)  # reached only if the POST is sent again

    server = await harness.server(closes_on_second_request)
    pool = harness.pool()

    assert await get_body(pool, server) == b"first"
    headers = host_headers(("Content-Length", "4"))
    with pytest.raises(OriginClosed):
        await fetch(
            pool, server, method="POST", target="/order", headers=headers, body=parts(b"data")
        )

    assert server.conns[0].bodies == [b"", b"data"]
    assert len(server.conns) == 1


# 5. Keep-alive expiry.


async def test_idle_connection_is_closed_after_the_keepalive_time(harness: Harness) -> None:
    server = await harness.server(answer_each(ok()))
    pool = harness.pool(keepalive=0.2)

    assert await get_body(pool, server) == b"ok"
    await bounded(server.conns[0].eof.wait())  # the pool closed it, unasked

    assert await get_body(pool, server) == b"ok"
    assert len(server.conns) == 2


# 6. HEAD.


async def test_head_response_has_no_body_and_its_connection_is_not_reused(
    harness: Harness,
) -> None:
    async def handler(conn: ServerConn) -> None:
        while (head := await conn.read_request()) is not None:
            if head.startswith(b"HEAD "):
                await conn.send(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n"
                )
            else:
                await conn.send(ok(b"after"))

    server = await harness.server(handler)
    pool = harness.pool()

    response = await fetch(pool, server, method="HEAD")
    assert response.status == 200
    assert response.content_length == 5
    assert response.content_type == "text/plain"
    assert await read_body(response) == b""
    assert response.content.is_eof()
    response.release()

    assert await get_body(pool, server) == b"after"
    assert len(server.conns) == 2
    await bounded(server.conns[0].eof.wait())


# 7. Interim responses.


async def test_interim_responses_are_skipped(harness: Harness) -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
    final = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Final: yes\r\n\r\nfinal"

    async def handler(conn: ServerConn) -> None:
        assert await conn.read_request() is not None
        await conn.send(interim + final)  # all in one packet
        assert await conn.read_request() is not None
        await conn.send(interim)  # then apart
        await conn.send(final)
        await conn.wait_eof()

    server = await harness.server(handler)
    pool = harness.pool()

    for _ in range(2):
        response = await fetch(pool, server)
        assert (response.status, response.reason) == (200, "OK")
        assert "Link" not in response.headers
        assert response.headers["X-Final"] == "yes"
        assert [name.lower() for name, _ in response.raw_headers] == [
            b"content-length",
            b"x-final",
        ]
        assert await read_body(response) == b"final"
        response.release()
    assert len(server.conns) == 1


# 8. A body delimited by the end of the connection.


async def test_body_until_close_is_read_whole_and_the_connection_not_reused(
    harness: Harness,
) -> None:
    payload = bytes(range(256)) * 400  # 100 KiB: several reads

    async def handler(conn: ServerConn) -> None:
        if conn.index == 0:
            assert await conn.read_request() is not None
            await conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/data\r\n\r\n")
            for start in range(0, len(payload), 30000):
                await conn.send(payload[start : start + 30000])
            return
        await answer_each(ok(b"next"))(conn)

    server = await harness.server(handler)
    pool = harness.pool()

    response = await fetch(pool, server)
    assert response.status == 200
    assert response.content_length is None
    assert await read_body(response) == payload
    assert response.content.is_eof()
    response.release()

    assert await get_body(pool, server) == b"next"
    assert len(server.conns) == 2


# 9. A body cut short.


async def test_body_shorter_than_its_content_length_raises(harness: Harness) -> None:
    async def handler(conn: ServerConn) -> None:
        assert await conn.read_request() is not None
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")

    server = await harness.server(handler)
    pool = harness.pool()

    response = await fetch(pool, server)
    assert response.status == 200
    received = b""
    with pytest.raises(OriginBodyError):
        async with asyncio.timeout(WAIT):
            while chunk := await response.content.readany():
                received += chunk
    assert received == b"0123456789"
    assert not response.content.is_eof()
    response.close()


# 10. Chunked responses with trailers.


async def test_chunked_body_with_trailers(harness: Harness) -> None:
    reply = (
        b"HTTP/1.1 200 OK\r\n"
        b"Transfer-Encoding: chunked\r\n"
        b"Trailer: X-Checksum\r\n"
        b"\r\n"
        b"5\r\nhello\r\n"
        b"6;ext=1\r\n world\r\n"
        b"0\r\n"
        b"X-Checksum: abc123\r\n"
        b"\r\n"
    )
    server = await harness.server(answer_each(reply))
    pool = harness.pool()

    for _ in range(2):
        response = await fetch(pool, server)
        assert response.status == 200
        assert await read_body(response) == b"hello world"
        assert "X-Checksum" not in response.headers
        assert response.headers["Trailer"] == "X-Checksum"
        assert all(name.lower() != b"x-checksum" for name, _ in response.raw_headers)
        response.release()
    assert len(server.conns) == 1  # the connection survives the trailers


# 11. Request bodies.


async def test_request_body_is_chunked_without_content_length_and_raw_with_it(
    harness: Harness,
) -> None:
    server = await harness.server(answer_each(ok()))
    pool = harness.pool()

    response = await fetch(
        pool,
        server,
        method="POST",
        target="/upload",
        body=parts(b"alpha", b"", b"beta", b"gamma"),
    )
    assert await read_body(response) == b"ok"
    response.release()

    response = await fetch(
        pool,
        server,
        method="POST",
        target="/upload",
        headers=host_headers(("Content-Length", "14")),
        body=parts(b"alpha", b"beta", b"gamma"),
    )
    assert await read_body(response) == b"ok"
    response.release()

    assert await get_body(pool, server, "/after") == b"ok"

    (conn,) = server.conns
    assert conn.heads == [
        b"POST /upload HTTP/1.1\r\nHost: origin.test\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /upload HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 14\r\n\r\n",
        b"GET /after HTTP/1.1\r\nHost: origin.test\r\n\r\n",
    ]
    assert conn.raw_bodies[0] == b"5\r\nalpha\r\n4\r\nbeta\r\n5\r\ngamma\r\n0\r\n\r\n"
    assert conn.bodies[0] == b"alphabetagamma"
    assert conn.raw_bodies[1] == b"alphabetagamma"


# 12. POST without a body.


async def test_post_without_body_says_content_length_zero(harness: Harness) -> None:
    server = await harness.server(answer_each(ok()))
    pool = harness.pool()

    response = await fetch(pool, server, method="POST", target="/submit")
    assert await read_body(response) == b"ok"
    response.release()

    assert server.conns[0].heads == [
        b"POST /submit HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 0\r\n\r\n"
    ]


# 13. Connecting, and the caller's own timeout.


async def test_refused_connection_raises_connect_error(harness: Harness) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pool = harness.pool()

    with pytest.raises(OriginConnectError):
        await asyncio.wait_for(
            pool.request(OriginAddress("127.0.0.1", port, None), "GET", "/", host_headers(), None),
            WAIT,
        )


async def test_connect_that_hangs_raises_origin_timeout(harness: Harness) -> None:
    # A listener never accepting, its queue full: Linux drops further SYNs, connects hang.
    loop = asyncio.get_running_loop()
    with contextlib.ExitStack() as sockets:
        listener = sockets.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(8):
            filler = sockets.enter_context(socket.socket())
            filler.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(filler, ("127.0.0.1", port)), 0.2)
            except TimeoutError:
                break  # the queue is full: the next connect hangs too
        else:
            raise AssertionError("could not fill the listen queue")

        pool = harness.pool(connect_timeout=0.3)
        with pytest.raises(OriginTimeout) as caught:
            await asyncio.wait_for(
                pool.request(
                    OriginAddress("127.0.0.1", port, None), "GET", "/", host_headers(), None
                ),
                WAIT,
            )
        assert isinstance(caught.value, TimeoutError)


async def test_caller_timeout_closes_the_connection_and_frees_its_slot(
    harness: Harness,
) -> None:
    async def handler(conn: ServerConn) -> None:
        if conn.index == 0:
            assert await conn.read_request() is not None
            await conn.wait_eof()  # never answers
            return
        await answer_each(ok(b"second"))(conn)

    server = await harness.server(handler)
    pool = harness.pool(limit_per_origin=1)

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await pool.request(server.address, "GET", "/", host_headers(), None)
    await bounded(server.conns[0].eof.wait())

    # With a limit of 1, this waits forever if the timed-out request kept its slot.
    assert await get_body(pool, server) == b"second"


# 14. The idle timeout while streaming.


async def test_stalled_body_raises_origin_timeout(harness: Harness) -> None:
    async def handler(conn: ServerConn) -> None:
        assert await conn.read_request() is not None
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        await conn.wait_eof()  # then nothing more

    server = await harness.server(handler)
    pool = harness.pool(idle=0.3)

    response = await fetch(pool, server)
    assert response.status == 200
    received = b""
    with pytest.raises(OriginTimeout):
        async with asyncio.timeout(WAIT):
            while chunk := await response.content.readany():
                received += chunk
    assert received == b"0123456789"
    response.close()
    await bounded(server.conns[0].eof.wait())


async def test_origin_that_takes_no_more_upload_and_never_answers_times_out(
    harness: Harness,
) -> None:
    release = asyncio.Event()

    async def handler(conn: ServerConn) -> None:
        assert await conn.read_head() is not None
        await release.wait()  # reads nothing more: the upload backs up to the client

    server = await harness.server(handler)
    pool = harness.pool(idle=0.3)

    async def upload() -> AsyncIterator[bytes]:
        for _ in range(256):  # 64 MiB: far more than the socket buffers hold
            yield b"u" * (256 * 1024)

    headers = host_headers()
    headers["Content-Length"] = str(256 * 256 * 1024)
    try:
        with pytest.raises(OriginTimeout, match="took no request bytes"):
            await fetch(pool, server, method="POST", headers=headers, body=upload())
    finally:
        release.set()


# 15. Invalid answers.


@pytest.mark.parametrize(
    ("reply", "errors"),
    [
        (b"NOT HTTP\r\n\r\n", (OriginProtocolError,)),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            (OriginProtocolError,),
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
            (OriginProtocolError, OriginBodyError),
        ),
    ],
    ids=["not-http", "two-content-lengths", "broken-chunk-in-first-packet"],
)
async def test_invalid_answer_raises_and_closes(
    harness: Harness, reply: bytes, errors: tuple[type[OriginError], ...]
) -> None:
    async def handler(conn: ServerConn) -> None:
        assert await conn.read_request() is not None
        await conn.send(reply)  # one write: one packet on loopback
        await conn.wait_eof()

    server = await harness.server(handler)
    pool = harness.pool()

    with pytest.raises(errors):
        await fetch(pool, server)
    await bounded(server.conns[0].eof.wait())


async def test_endless_headers_are_refused_past_the_bound(harness: Harness) -> None:
    async def handler(conn: ServerConn) -> None:
        assert await conn.read_request() is not None
        await conn.send(b"HTTP/1.1 200 OK\r\n")
        line = b"X-Filler: " + b"f" * 1000 + b"\r\n"
        with contextlib.suppress(ConnectionError):
            for _ in range(MAX_HEAD_BYTES // len(line) + 10):  # never ends the head
                await conn.send(line)
        await conn.wait_eof()

    server = await harness.server(handler)
    with pytest.raises(OriginProtocolError, match="larger than"):
        await fetch(harness.pool(), server)
    await bounded(server.conns[0].eof.wait())


# 16. Back-pressure.


async def test_unread_body_stops_the_client_reading(harness: Harness) -> None:
    size = 8 * 1024 * 1024
    pattern = bytes(range(256)) * 4096  # 1 MiB
    payload = pattern * (size // len(pattern))
    writers: list[asyncio.StreamWriter] = []

    async def handler(conn: ServerConn) -> None:
        assert await conn.read_request() is not None
        writers.append(conn.writer)
        conn.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        conn.writer.write(payload)  # all at once: what TCP refuses waits in the buffer
        await conn.writer.drain()
        await conn.wait_eof()

    server = await harness.server(handler)
    pool = harness.pool()

    response = await fetch(pool, server)
    assert response.status == 200
    await until(lambda: bool(writers), "the server to start writing")
    transport = writers[0].transport

    # The client reads nothing: the server's buffer must stop shrinking, well above zero.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    history: list[int] = []
    while len(history) < 10 or len(set(history[-10:])) != 1:
        assert loop.time() < deadline, f"the server's buffer never settled: {history[-10:]}"
        history.append(transport.get_write_buffer_size())
        await asyncio.sleep(0.03)
    assert history[-1] > 1024 * 1024, history[-10:]

    received = hashlib.sha256()
    length = 0
    async with asyncio.timeout(WAIT):
        async for chunk in response.content.iter_any():
            received.update(chunk)
            length += len(chunk)
    assert length == size
    assert received.hexdigest() == hashlib.sha256(payload).hexdigest()
    response.release()


# 17. Header injection.


@pytest.mark.parametrize(
    ("target", "header"),
    [
        ("/", ("X-Evil", "a\r\nInjected: 1")),
        ("/", ("X-Evil", "a\nInjected: 1")),
        ("/", ("X-Evil", "a\rInjected: 1")),
        ("/", ("X-Evil\r\nInjected", "1")),
        ("/ HTTP/1.1\r\nInjected: 1\r\nX:", ("X-Fine", "1")),
    ],
    ids=["crlf-in-value", "lf-in-value", "cr-in-value", "crlf-in-name", "crlf-in-target"],
)
async def test_line_break_in_request_is_refused_before_sending(
    harness: Harness, target: str, header: tuple[str, str]
) -> None:
    server = await harness.server(answer_each(ok()))
    pool = harness.pool()

    with pytest.raises(ValueError):
        await fetch(pool, server, target=target, headers=host_headers(header))
    assert server.conns == []

    # Whatever reaches the origin next is the next request alone.
    assert await get_body(pool, server, "/clean") == b"ok"
    assert [conn.heads for conn in server.conns] == [
        [b"GET /clean HTTP/1.1\r\nHost: origin.test\r\n\r\n"]
    ]


# 18. Bytes the origin sends out of turn.


async def test_unsolicited_bytes_on_an_idle_connection_retire_it(harness: Harness) -> None:
    released = asyncio.Event()

    async def handler(conn: ServerConn) -> None:
        if conn.index == 0:
            assert await conn.read_request() is not None
            await conn.send(ok(b"one"))
            await released.wait()
            await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextra")
            await conn.wait_eof()
            return
        await answer_each(ok(b"two"))(conn)

    server = await harness.server(handler)
    pool = harness.pool()

    assert await get_body(pool, server) == b"one"
    released.set()
    await bounded(server.conns[0].eof.wait())  # the pool dropped the connection

    assert await get_body(pool, server) == b"two"
    assert len(server.conns) == 2
    assert len(server.conns[0].heads) == 1


@pytest.mark.parametrize(
    "extra",
    [b"garbage after the body", b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"],
    ids=["garbage", "second-response"],
)
async def test_bytes_after_a_complete_response_in_the_same_packet(
    harness: Harness, extra: bytes
) -> None:
    # As above, but the extra bytes arrive with the response (an origin whose body is
    # longer than its Content-Length, or that answers twice): the response is complete
    # and valid, so it is handed over intact; the connection is not reused.
    async def handler(conn: ServerConn) -> None:
        if conn.index == 0:
            assert await conn.read_request() is not None
            await conn.send(ok(b"one", b"X-First: yes\r\n") + extra)
            await conn.wait_eof()
            return
        await answer_each(ok(b"two"))(conn)

    server = await harness.server(handler)
    pool = harness.pool()

    response = await fetch(pool, server)
    assert (response.status, response.reason) == (200, "OK")
    assert response.headers["X-First"] == "yes"
    assert await read_body(response) == b"one"
    response.release()

    assert await get_body(pool, server) == b"two"
    assert len(server.conns) == 2


# Waiting for a connection.


async def test_cancelled_waiter_does_not_swallow_the_free_connection(harness: Harness) -> None:
    # limit 1: A holds the connection, B and C wait. A is released and B is cancelled
    # in the same instant (its caller gave up): C must get the connection.
    server = await harness.server(answer_each(ok()))
    pool = harness.pool(limit_per_origin=1)

    first = await fetch(pool, server)
    assert await read_body(first) == b"ok"

    def waiting() -> asyncio.Task[OriginResponse]:
        return asyncio.create_task(pool.request(server.address, "GET", "/", host_headers(), None))

    second, third = waiting(), waiting()
    for _ in range(3):
        await asyncio.sleep(0)  # both now wait for the connection
    assert not second.done() and not third.done()

    first.release()
    second.cancel()
    try:
        response = await asyncio.wait_for(third, 2.0)
    finally:
        third.cancel()
    assert second.cancelled()
    assert await read_body(response) == b"ok"
    response.release()
    assert len(server.conns) == 1
