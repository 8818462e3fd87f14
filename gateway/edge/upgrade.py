"""Upgraded connections (WebSocket): handshake relayed, then a byte tunnel.

Like Go's ReverseProxy, the gateway does not speak WebSocket itself: it sends
the handshake to the origin, relays the origin's answer, and on 101 copies
bytes both ways until either side closes. Frames, subprotocols and close
codes therefore pass through exactly as the peers sent them. A non-101
answer is relayed as an ordinary response.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from gateway.edge.errors import json_error
from gateway.edge.headers import response_headers
from gateway.edge.relay import abort
from gateway.edge.responses import RelayedResponse
from gateway.edge.sites import Site
from gateway.metrics import Metrics

_CHUNK = 65536
_HEAD_LIMIT = 65536
# Pause the client when this much is waiting to reach the origin.
_HIGH_WATER = 256 * 1024


class _ClientToOrigin:
    """Takes aiohttp's place as payload parser once the connection is upgraded."""

    def __init__(self, request: web.BaseRequest, origin: asyncio.StreamWriter) -> None:
        self._request = request
        self._origin = origin
        self._draining: asyncio.Task[None] | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self._origin.is_closing():
            return False, b""
        self._origin.write(data)
        transport = self._origin.transport
        if transport.get_write_buffer_size() > _HIGH_WATER and self._draining is None:
            client = self._request.transport
            if client is not None:
                client.pause_reading()
            self._draining = asyncio.ensure_future(self._drain())
        return False, b""

    async def _drain(self) -> None:
        try:
            await self._origin.drain()
        except ConnectionError:
            pass
        finally:
            self._draining = None
            client = self._request.transport
            if client is not None and not client.is_closing():
                client.resume_reading()

    def feed_eof(self) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def _open(site: Site, timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host = site.origin.host or ""
    port = site.origin.port or (443 if site.origin.scheme == "https" else 80)
    context = site.ssl if isinstance(site.ssl, ssl.SSLContext) else None  # https origins
    return await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=context, server_hostname=host if context else None),
        timeout,
    )


def _parse_head(head: bytes) -> tuple[int, str, list[tuple[bytes, bytes]]]:
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code, _, reason = rest.partition(b" ")
    if not version.startswith(b"HTTP/1.") or not code.isdigit():
        raise ValueError("bad status line")
    raw: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise ValueError("bad header line")
        raw.append((name, value.strip()))
    return int(code), reason.decode("latin-1"), raw


async def tunnel_upgrade(
    request: web.BaseRequest,
    site: Site,
    *,
    headers: CIMultiDict[str],
    target: str,
    connect_timeout: float,
    response_timeout: float,
    via: str,
    metrics: Metrics,
) -> web.StreamResponse:
    try:
        reader, writer = await _open(site, connect_timeout)
    except (TimeoutError, OSError) as exc:
        kind = "timeout" if isinstance(exc, asyncio.TimeoutError) else "refused"
        metrics.origin_errors.labels(site=site.key, kind=kind).inc()
        status = 504 if kind == "timeout" else 502
        return json_error(status, "bad_gateway", "cannot connect to the origin")
    try:
        head = f"{request.method} {site.origin_path}{target} HTTP/1.1\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        writer.write(head.encode("latin-1") + b"\r\n")
        raw_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), response_timeout)
        if len(raw_head) > _HEAD_LIMIT:
            raise ValueError("response head too large")
        status, reason, raw = _parse_head(raw_head[:-4])
    except TimeoutError:
        writer.close()
        metrics.origin_errors.labels(site=site.key, kind="timeout").inc()
        return json_error(504, "origin_timeout", "the origin did not answer the upgrade in time")
    except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        writer.close()
        metrics.origin_errors.labels(site=site.key, kind="bad_response").inc()
        return json_error(502, "bad_gateway", "the origin sent an invalid upgrade answer")
    relayed = response_headers(raw, via=via)
    if status != 101:
        return await _relay_refusal(
            request, reader, writer, status, reason, relayed, raw, response_timeout
        )
    relayed["Connection"] = "Upgrade"
    relayed["Upgrade"] = dict((n.lower(), v) for n, v in raw).get(b"upgrade", b"").decode("latin-1")
    response = RelayedResponse(status=101, reason=reason, headers=relayed)
    response.force_close()
    await response.prepare(request)
    gauge = metrics.websocket_sessions.labels(site=site.key)
    gauge.inc()
    try:
        await _pump(request, reader, writer)
    finally:
        gauge.dec()
        writer.close()
    return response


async def _pump(
    request: web.BaseRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    upstream = _ClientToOrigin(request, writer)
    protocol: Any = request.protocol
    protocol.set_parser(upstream)
    transport = request.transport

    async def origin_to_client() -> None:
        while True:
            data = await reader.read(_CHUNK)
            if not data or transport is None or transport.is_closing():
                return
            transport.write(data)
            if protocol.writing_paused:
                await protocol._drain_helper()

    downstream = asyncio.ensure_future(origin_to_client())
    try:
        await asyncio.wait({downstream, upstream.closed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        downstream.cancel()
        if transport is not None:
            transport.close()


async def _relay_refusal(
    request: web.BaseRequest,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    status: int,
    reason: str,
    headers: CIMultiDict[str],
    raw: list[tuple[bytes, bytes]],
    timeout: float,
) -> web.StreamResponse:
    """The origin declined the upgrade: pass its answer on as it is, streamed."""
    lengths = [v for n, v in raw if n.lower() == b"content-length"]
    chunked = any(n.lower() == b"transfer-encoding" for n, _ in raw)
    response = RelayedResponse(status=status, reason=reason, headers=headers)
    length = int(lengths[0]) if lengths and lengths[0].isdigit() else None
    if request.method == "HEAD" or status in (204, 304):
        body: AsyncIterator[bytes] = _nothing()
    elif length is not None:
        response.content_length = length
        body = _fixed_body(reader, length, timeout)
    elif chunked:
        body = _chunked_body(reader, timeout)
    else:
        body = _body_until_close(reader, timeout)
    await response.prepare(request)
    try:
        async for piece in body:
            await response.write(piece)
    except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
        abort(request)
        return response
    finally:
        writer.close()
    await response.write_eof()
    return response


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield


async def _fixed_body(
    reader: asyncio.StreamReader, length: int, timeout: float
) -> AsyncIterator[bytes]:
    remaining = length
    while remaining:
        data = await asyncio.wait_for(reader.read(min(_CHUNK, remaining)), timeout)
        if not data:
            raise asyncio.IncompleteReadError(b"", remaining)
        remaining -= len(data)
        yield data


async def _chunked_body(reader: asyncio.StreamReader, timeout: float) -> AsyncIterator[bytes]:
    while True:
        size_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            # Trailers (dropped) up to the empty line.
            while await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout) != b"\r\n":
                pass
            return
        async for piece in _fixed_body(reader, size, timeout):
            yield piece
        if await asyncio.wait_for(reader.readexactly(2), timeout) != b"\r\n":
            raise ValueError("bad chunk end")


async def _body_until_close(reader: asyncio.StreamReader, timeout: float) -> AsyncIterator[bytes]:
    while data := await asyncio.wait_for(reader.read(_CHUNK), timeout):
        yield data
