"""Routes of share links: made and revoked with the admin token, opened without it.

The shared view is read-only and shows less: no visitor id and no identify
data (name, email) go to whoever holds a link.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec
from aiohttp import web

from gateway.edge.errors import json_error
from gateway.store.api import Identity, RecordingView, rfc3339
from gateway.store.engine import RecordingStore
from gateway.store.recordings import Recording
from gateway.store.shares import Share, ShareRefusal, ShareStore

_encoder = msgspec.json.Encoder()
# A link may be asked for at most this long; the recording's deletion bounds it anyway.
MAX_SHARE_DAYS = 365.0


class ShareView(msgspec.Struct):
    id: str
    url: str
    created_at: str
    expires_at: str
    revoked: bool


class ShareApi:
    def __init__(
        self,
        store: RecordingStore,
        shares: ShareStore,
        *,
        view: Callable[[Recording], RecordingView],
        default_days: float,
        retention_days: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._shares = shares
        self._view = view
        self._default_days = default_days
        self._retention_s = retention_days * 86400.0
        self._clock = clock

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/v1/recordings/{id}/share", self.create),
            web.get("/api/v1/recordings/{id}/shares", self.list_shares),
            web.delete("/api/v1/shares/{share_id}", self.revoke),
            web.get("/share/{token}/api/recording", self.shared_recording),
            web.get("/share/{token}/api/events", self.shared_events),
        ]

    async def create(self, request: web.Request) -> web.Response:
        recording = await self._store.get(request.match_info["id"])
        if recording is None:
            return json_error(404, "not_found", f"no recording {request.match_info['id']!r}")
        days = await _requested_days(request, self._default_days)
        if isinstance(days, web.Response):
            return days
        now = self._clock()
        # Never past the recording's own deletion.
        expires_at = min(now + days * 86400.0, recording.created_at + self._retention_s)
        if expires_at <= now:
            return json_error(410, "expired", "the recording is due for deletion")
        share = await self._shares.create(recording.id, recording.site, expires_at)
        body = self._share_view(request, share)
        return web.Response(status=201, body=_encoder.encode(body), content_type="application/json")

    async def list_shares(self, request: web.Request) -> web.Response:
        shares = await self._shares.of_recording(request.match_info["id"])
        body = {"shares": [self._share_view(request, s) for s in shares]}
        return web.Response(body=_encoder.encode(body), content_type="application/json")

    async def revoke(self, request: web.Request) -> web.Response:
        share = await self._shares.revoke(request.match_info["share_id"])
        if share is None:
            return json_error(404, "not_found", f"no share {request.match_info['share_id']!r}")
        return web.Response(status=204)

    async def shared_recording(self, request: web.Request) -> web.Response:
        found = await self._open(request)
        if isinstance(found, web.Response):
            return found
        share, recording = found
        view = msgspec.structs.replace(self._view(recording), visitor=None, identity=Identity())
        # The recording object, plus when this link stops working.
        body = {**msgspec.to_builtins(view), "share": {"expires_at": rfc3339(share.expires_at)}}
        return _private(web.Response(body=_encoder.encode(body), content_type="application/json"))

    async def shared_events(self, request: web.Request) -> web.Response:
        found = await self._open(request)
        if isinstance(found, web.Response):
            return found
        events = await self._store.events_json(found[1].id)
        if events is None:
            return json_error(404, "not_found", "this recording no longer exists")
        response = web.Response(body=events, content_type="application/json")
        response.enable_compression()
        return _private(response)

    async def _open(self, request: web.Request) -> tuple[Share, Recording] | web.Response:
        share = await self._shares.resolve(request.match_info["token"])
        if share is ShareRefusal.UNKNOWN:
            return json_error(404, "not_found", "no such share link")
        if isinstance(share, ShareRefusal):
            return json_error(410, share.value, f"this share link has {share.value}")
        recording = await self._store.get(share.recording_id)
        if recording is None:
            return json_error(404, "not_found", "this recording no longer exists")
        return share, recording

    def _share_view(self, request: web.Request, share: Share) -> ShareView:
        return ShareView(
            id=share.id,
            url=f"{request.scheme}://{request.host}/share/{share.token(self._shares.key)}",
            created_at=rfc3339(share.created_at),
            expires_at=rfc3339(share.expires_at),
            revoked=share.revoked_at is not None,
        )


async def _requested_days(request: web.Request, default: float) -> float | web.Response:
    if not request.can_read_body:
        return default
    try:
        body = msgspec.json.decode(await request.read())
    except msgspec.DecodeError as exc:
        return json_error(400, "bad_request", f"body: not JSON ({exc})")
    if not isinstance(body, dict):
        return json_error(400, "bad_request", "body: expected a JSON object")
    days = body.get("days", default)
    if (
        isinstance(days, bool)
        or not isinstance(days, int | float)
        or not 0 < days <= MAX_SHARE_DAYS
    ):
        return json_error(400, "bad_request", f"days: expected a number in (0, {MAX_SHARE_DAYS:g}]")
    return float(days)


def _private(response: web.Response) -> web.Response:
    # Whoever holds the link sees it; no cache in between keeps a copy.
    response.headers["Cache-Control"] = "private, no-store"
    return response
