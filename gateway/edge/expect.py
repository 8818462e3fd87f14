"""`Expect: 100-continue`: the interim answer, sent once a handler wants the body."""

from __future__ import annotations

from aiohttp import web

_CONTINUED = web.RequestKey("continued", bool)


async def send_continue(request: web.BaseRequest) -> None:
    """Tell a waiting client to send its body (after the checks that could refuse it)."""
    if (
        request.version >= (1, 1)
        and request.headers.get("Expect", "").lower() == "100-continue"
        and not request.get(_CONTINUED)
    ):
        request[_CONTINUED] = True
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
