"""JSON error answers: every 4xx/5xx the gateway makes is `{"error", "detail"}`."""

from __future__ import annotations

import msgspec
from aiohttp import web

_encoder = msgspec.json.Encoder()


class ErrorBody(msgspec.Struct):
    error: str
    detail: str


def json_error(
    status: int, code: str, detail: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=_encoder.encode(ErrorBody(code, detail)),
        content_type="application/json",
        headers=headers,
    )
