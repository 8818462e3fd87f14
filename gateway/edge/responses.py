"""A response that carries only what the origin sent (plus our own changes)."""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDict


class RelayedResponse(web.StreamResponse):
    """aiohttp adds `Server` and a default `Content-Type` to every response;
    a proxy must not invent either (a missing type lets the client sniff)."""

    def __init__(self, *, status: int, reason: str | None, headers: CIMultiDict[str]) -> None:
        super().__init__(status=status, reason=reason, headers=headers)
        self._invented = [n for n in ("Content-Type", "Server") if n not in headers]

    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        for name in self._invented:
            self.headers.popall(name, None)

    def send_headers_with_body(self) -> None:
        """Hold the headers back until the first body write: one send for a small page.

        Only for a body already in hand; a streamed one must not delay them.
        """
        self._send_headers_immediately = False
