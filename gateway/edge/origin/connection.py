"""One HTTP/1.1 connection to an origin: a request out, its response parsed in C.

An asyncio Protocol with httptools (llhttp) doing the parsing: per response
a handful of Python calls, where aiohttp's client spends most of a proxied
request's time. One exchange at a time; the pool decides about reuse.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Protocol, cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.edge.headers import decode_response_headers, header_text
from gateway.edge.origin.body import OriginBody
from gateway.edge.origin.errors import (
    OriginBodyError,
    OriginClosed,
    OriginProtocolError,
    OriginTimeout,
)

RawHeaders = tuple[tuple[bytes, bytes], ...]

# Status line and headers of one answer, as nginx's proxy_buffer_size bounds them
# (nginx: 4-8 KiB by default; generous here for large cookies and policies).
MAX_HEAD_BYTES = 64 * 1024


class OriginResponse:
    """Status, headers and streaming body of an origin's answer."""

    __slots__ = ("_fields", "_headers", "_on_done", "content", "raw_headers", "reason", "status")

    def __init__(
        self,
        status: int,
        reason: str,
        raw_headers: RawHeaders,
        content: OriginBody,
        on_done: Callable[[bool], None],
    ) -> None:
        self.status = status
        self.reason = reason
        self.raw_headers = raw_headers
        self.content = content
        self._on_done = on_done
        self._fields: tuple[tuple[str, str], ...] | None = None
        self._headers: CIMultiDictProxy[str] | None = None

    @property
    def fields(self) -> tuple[tuple[str, str], ...]:
        """The header fields as text, in order (decoded once)."""
        if self._fields is None:
            self._fields = tuple(decode_response_headers(self.raw_headers))
        return self._fields

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        if self._headers is None:
            self._headers = CIMultiDictProxy(CIMultiDict(self.fields))
        return self._headers

    @property
    def content_type(self) -> str:
        value = self.headers.get("Content-Type")
        if not value:
            return "application/octet-stream"
        return value.partition(";")[0].strip().lower()

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        return int(value) if value is not None and value.isdigit() else None

    def release(self) -> None:
        """Done with a fully read body: the connection may serve another request."""
        self._on_done(True)

    def close(self) -> None:
        """Done, body read or not: the connection is closed."""
        self._on_done(False)


class ConnectionOwner(Protocol):
    """The pool: told when a response's user is done and when a connection is gone."""

    def done(self, connection: OriginConnection, keep: bool) -> None: ...

    def lost(self, connection: OriginConnection) -> None: ...


class OriginConnection(asyncio.Protocol):
    def __init__(self, idle: float, owner: ConnectionOwner) -> None:
        self._idle = idle
        self._owner = owner
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.alive = True
        self.counted = True  # held in its pool's count until gone
        self.idle_since = 0.0
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self._head: asyncio.Future[OriginResponse] | None = None
        self._response: OriginResponse | None = None
        self._body: OriginBody | None = None
        self._reason = b""
        self._raw: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._in_head = True
        self._interim = False
        self._head_only = False
        self._until_eof = False
        self._finished = False
        self._keep_alive = False

    # The exchange.

    async def exchange(
        self, head: bytes, body: AsyncIterator[bytes] | None, *, chunked: bool, head_only: bool
    ) -> OriginResponse:
        """Send a request (`head`, then `body` if any); the response once its headers are in."""
        assert self.transport is not None and self._head is None
        loop = asyncio.get_running_loop()
        self._head = loop.create_future()
        self._head_only = head_only
        self.transport.write(head)
        if body is None:
            return await self._head
        self._sender = loop.create_task(self._send(body, chunked))
        while True:
            # Uploads take their time; once one is sent, the answer gets the idle timeout.
            try:
                return await asyncio.wait_for(asyncio.shield(self._head), self._idle)
            except TimeoutError:
                if self._head.done():  # decided in the same instant: its own reason wins
                    return self._head.result()
                if not self.sending:
                    raise OriginTimeout(f"the origin sent nothing for {self._idle:g} s") from None

    @property
    def sending(self) -> bool:
        return self._sender is not None and not self._sender.done()

    @property
    def reusable(self) -> bool:
        """The last response ended cleanly and the origin keeps the connection open."""
        return self.alive and self._finished and self._keep_alive and not self.sending

    def ready_for_next(self) -> None:
        self._sender = None
        self._reset()

    def close(self) -> None:
        self.alive = False
        if self._sender is not None:
            self._sender.cancel()
        if self.transport is not None:
            self.transport.close()

    async def _send(self, body: AsyncIterator[bytes], chunked: bool) -> None:
        transport = self.transport
        assert transport is not None
        try:
            async for chunk in body:
                if not chunk:
                    continue
                if not self.alive:
                    return
                if chunked:
                    transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
                else:
                    transport.write(chunk)
                if self._write_paused:
                    await self._drained()
            if chunked and self.alive:
                transport.write(b"0\r\n\r\n")
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the client's body failed: the exchange fails with it
            self._fail(exc)

    async def _drained(self) -> None:
        drain = self._drain = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(self._idle):
                await drain
        except TimeoutError:
            # An origin that takes no more of the body and never answers must not hold us.
            raise OriginTimeout(f"the origin took no request bytes for {self._idle:g} s") from None

    # Protocol callbacks.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._head is None or self._finished:
            # Nothing was asked: an origin talking out of turn cannot be trusted with the next one.
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if self._finished:
                # The answer was whole: what came after it (a longer body than announced,
                # a second answer) is not read, and the connection is not used again.
                self._keep_alive = False
                self._hand_over()
                self.close()
            elif isinstance(exc, httptools.HttpParserUpgrade):
                self._fail(OriginProtocolError("the origin switched protocols unasked"))
            elif isinstance(exc.__context__, OriginProtocolError):
                self._fail(exc.__context__)  # raised by one of our callbacks
            else:
                error = OriginProtocolError if self._in_head else OriginBodyError
                self._fail(error(str(exc)))
            return
        self._hand_over()

    def _hand_over(self) -> None:
        """Give the response to the caller once the bytes that came with its headers are
        parsed: an answer broken in its first packet is a 502, not a 200 cut short."""
        head, response = self._head, self._response
        if head is not None and response is not None and not head.done():
            head.set_result(response)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        if self._head is not None and not self._finished:
            if not self._head.done():
                self._head.set_exception(
                    OriginClosed("the origin closed the connection without an answer")
                )
            elif self._until_eof and self._body is not None:
                self._finished = True  # this body's end is the connection's end
                self._body.feed_eof()
            elif self._body is not None:
                self._body.fail(OriginBodyError("the origin closed the connection mid-body"))
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(OriginClosed("the origin closed the connection"))
        if self._sender is not None:
            self._sender.cancel()
        self._owner.lost(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and self.alive:
            self.transport.resume_reading()

    # Parser callbacks (httptools).

    def on_message_begin(self) -> None:
        if self._finished:
            raise _Surplus  # stops the parser: a second answer to one request

    def on_status(self, reason: bytes) -> None:
        self._reason += reason
        self._count_head(len(reason))

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:  # later ones are trailers: dropped
            self._raw.append((name, value))
            self._count_head(len(name) + len(value) + 4)

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            # llhttp sets no limit: an origin must not grow our memory without end.
            raise OriginProtocolError(f"response headers larger than {MAX_HEAD_BYTES} bytes")

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            # 100 Continue, 103 Early Hints: interim answers, the real one follows.
            self._interim = True
            self._raw = []
            self._reason = b""
            self._head_bytes = 0
            return
        self._in_head = False
        self._keep_alive = self._parser.should_keep_alive() and not self._head_only
        self._until_eof = _until_eof(self._raw, status)
        body = self._body = OriginBody(self, self._idle)
        response = OriginResponse(
            status,
            header_text(self._reason),
            tuple(self._raw),
            body,
            lambda keep: self._owner.done(self, keep),
        )
        if self._head_only:
            # llhttp cannot be told the answer is to HEAD; the connection is not reused.
            self._finished = True
            body.feed_eof()
        self._response = response

    def on_body(self, data: bytes) -> None:
        if self._body is not None and not self._head_only:
            self._body.feed(data)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._finished = True
        if self._body is not None:
            self._body.feed_eof()

    def _fail(self, error: BaseException) -> None:
        head = self._head
        if head is not None and not head.done():
            head.set_exception(error)
        elif self._body is not None and not self._finished:
            self._body.fail(error)
        self.close()


class _Surplus(Exception):
    """Bytes after a complete answer: the parser is stopped there."""


def _until_eof(raw: list[tuple[bytes, bytes]], status: int) -> bool:
    """A body without length or chunking runs to the end of the connection."""
    if status in (204, 304):
        return False
    codings = b""
    for name, value in raw:
        lower = name.lower()
        if lower == b"content-length":
            return False
        if lower == b"transfer-encoding":
            codings = value
    return not codings.rstrip().lower().endswith(b"chunked")
