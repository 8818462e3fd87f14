"""Streaming a response body to the client unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from aiohttp import web
from multidict import CIMultiDict

from gateway.edge.codecs import CodecError
from gateway.edge.deadline import within
from gateway.edge.origin.connection import OriginResponse
from gateway.edge.origin.errors import OriginError
from gateway.edge.responses import RelayedResponse
from gateway.edge.sites import Site
from gateway.metrics import Metrics


def abort(request: web.BaseRequest) -> None:
    """End the client connection without a clean end of message.

    Used when the origin fails after the headers went out: the client must see
    a broken transfer, never a short body that looks complete.
    """
    if request.transport is not None:
        request.transport.close()


class OriginFailed(Exception):
    """The origin failed before any response headers went to the client."""


class ClientStalled(Exception):
    """The client took no data for longer than the idle timeout."""


class ClientSender:
    """Writes a response body with an idle deadline per write, counting bytes.

    A client that stops reading would otherwise hold its handler and an origin
    connection forever (aiohttp's write waits for the socket to drain).
    """

    __slots__ = ("_idle", "_response", "sent")

    def __init__(self, response: web.StreamResponse, idle: float) -> None:
        self._response = response
        self._idle = idle
        self.sent = 0

    async def send(self, data: bytes) -> None:
        if not data:
            return
        try:
            with within(self._idle):
                await self._response.write(data)
        except TimeoutError as exc:
            raise ClientStalled from exc
        self.sent += len(data)


async def stream_body(
    request: web.BaseRequest,
    sender: ClientSender,
    body: AsyncIterator[bytes],
    site: Site,
    metrics: Metrics,
) -> bool:
    """Send `body` through `sender`; False when the transfer was cut short.

    On any failure the client connection is aborted, never ended cleanly.
    """
    try:
        async for chunk in body:
            await sender.send(chunk)
    except (ClientStalled, ConnectionError):
        metrics.client_disconnects.labels(site=site.key).inc()
        abort(request)
        return False
    except (TimeoutError, OriginError, CodecError):
        metrics.origin_errors.labels(site=site.key, kind="aborted").inc()
        abort(request)
        return False
    finally:
        metrics.child(metrics.response_bytes, site.key).inc(sender.sent)
    return True


async def _held_then_rest(held: Iterable[bytes], origin: OriginResponse) -> AsyncIterator[bytes]:
    for chunk in held:
        yield chunk
    async for chunk in origin.content.iter_any():
        yield chunk


async def relay_untouched(
    request: web.BaseRequest,
    site: Site,
    origin: OriginResponse,
    headers: CIMultiDict[str],
    metrics: Metrics,
    *,
    idle: float,
    keep_length: bool = True,
    held: Iterable[bytes] = (),
) -> web.StreamResponse:
    """Send the origin's status, `headers` and body bytes as they come.

    `held` are body bytes already read from the origin (by the injector).
    """
    response = RelayedResponse(status=origin.status, reason=origin.reason, headers=headers)
    length = origin.headers.get("Content-Length")
    if keep_length and length is not None and length.isdigit():
        response.content_length = int(length)
    await response.prepare(request)
    sender = ClientSender(response, idle)
    if await stream_body(request, sender, _held_then_rest(held, origin), site, metrics):
        await response.write_eof()
    return response
