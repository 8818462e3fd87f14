"""Streaming a response body to the client unchanged."""

from __future__ import annotations

from collections.abc import Iterable

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

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


async def relay_untouched(
    request: web.BaseRequest,
    site: Site,
    origin: aiohttp.ClientResponse,
    headers: CIMultiDict[str],
    metrics: Metrics,
    *,
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
    sent = 0
    try:
        for chunk in held:
            await response.write(chunk)
            sent += len(chunk)
        async for chunk in origin.content.iter_any():
            await response.write(chunk)
            sent += len(chunk)
    except (TimeoutError, aiohttp.ClientError):
        metrics.origin_errors.labels(site=site.key, kind="aborted").inc()
        abort(request)
        return response
    finally:
        metrics.response_bytes.labels(site=site.key).inc(sent)
    await response.write_eof()
    return response
