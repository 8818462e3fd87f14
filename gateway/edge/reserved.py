"""Paths under the reserved prefix: served by the gateway, never by an origin."""

from __future__ import annotations

from aiohttp import web

from gateway.collect.handler import CollectEndpoint
from gateway.edge.admission import Admitted
from gateway.edge.errors import json_error
from gateway.edge.headers import has_token
from gateway.edge.recorder_asset import RecorderAsset

_YEAR = "public, max-age=31536000, immutable"
# An unversioned URL must pick up a new bundle soon.
_SHORT = "public, max-age=300"


async def serve_reserved(
    request: web.BaseRequest,
    admitted: Admitted,
    prefix: str,
    recorder: RecorderAsset,
    collect: CollectEndpoint,
) -> web.Response:
    path = admitted.target.split("?", 1)[0]
    if path == f"{prefix}v1/batch":
        return await collect.handle(request, admitted.site, admitted.client_host)
    if path == f"{prefix}recorder.js":
        if request.method not in ("GET", "HEAD"):
            return json_error(405, "method_not_allowed", "use GET", headers={"Allow": "GET, HEAD"})
        return _recorder(request, recorder)
    return json_error(404, "not_found", f"nothing is served at {path!r}")


def _recorder(request: web.BaseRequest, recorder: RecorderAsset) -> web.Response:
    versioned = request.query.get("v") == recorder.digest
    headers = {
        "ETag": recorder.etag,
        "Cache-Control": _YEAR if versioned else _SHORT,
        "X-Content-Type-Options": "nosniff",
    }
    inm = request.headers.get("If-None-Match", "")
    if has_token(inm, recorder.etag) or has_token(inm, f"W/{recorder.etag}") or inm.strip() == "*":
        return web.Response(status=304, headers=headers)
    return web.Response(
        body=recorder.body,
        headers=headers,
        content_type="application/javascript",
        charset="utf-8",
    )
