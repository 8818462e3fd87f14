"""The recordings API of the admin listener (ARCHITECTURE.md section 3).

Every route needs the admin token (checked by admin/auth.py's guard). Times are RFC 3339 UTC with
milliseconds; `min_duration` is in seconds; a bad parameter is a 400 whose
detail names it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
from aiohttp import web
from multidict import MultiMapping

from gateway.edge.errors import json_error
from gateway.metrics import Metrics
from gateway.store.engine import RecordingStore
from gateway.store.recordings import Recording, RecordingQuery

# Recordings started this UTC month for a site, as the quota counts them.
UsageCounter = Callable[[str, datetime], Awaitable[int]]

_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class SitePlan:
    plan: str
    limit: int


class Identity(msgspec.Struct, omit_defaults=True):
    id: str | None = None
    name: str | None = None
    email: str | None = None


class RecordingView(msgspec.Struct):
    id: str
    site: str
    visitor: str | None
    identity: Identity
    started_at: str
    ended_at: str
    duration_ms: int
    pages: list[str]
    device: str
    browser: str
    events: int
    bytes: int
    finalized: bool
    created_at: str
    expires_at: str


class RecordingList(msgspec.Struct):
    recordings: list[RecordingView]
    next: str | None


class Usage(msgspec.Struct):
    site: str
    month: str
    used: int
    limit: int
    remaining: int
    plan: str
    stored: int


def rfc3339(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(name: str, value: str) -> float:
    """RFC 3339 or a bare date (midnight UTC) -> ms since the epoch."""
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise ValueError(f"{name}: expected an RFC 3339 time or a date, got {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() * 1000.0


class RecordingsApi:
    def __init__(
        self,
        store: RecordingStore,
        *,
        sites: dict[str, SitePlan],
        used: UsageCounter,
        retention_days: float,
        metrics: Metrics,
    ) -> None:
        self._store = store
        self._sites = sites
        self._used = used
        self._retention_s = retention_days * 86400.0
        self._metrics = metrics

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v1/recordings", self.list_recordings),
            web.get("/api/v1/recordings/{id}", self.one_recording),
            web.get("/api/v1/recordings/{id}/events", self.events),
            web.get("/api/v1/recordings/{id}/export", self.export),
            web.get("/api/v1/sites/{key}/usage", self.usage),
            web.delete("/api/v1/visitors/{visitor}", self.erase_visitor),
        ]

    async def list_recordings(self, request: web.Request) -> web.Response:
        try:
            query = self._query(request.query)
            found, cursor = await self._store.list(query)
        except ValueError as exc:
            return json_error(400, "bad_request", str(exc))
        body = RecordingList([self.view(r) for r in found], cursor)
        return web.Response(body=_encoder.encode(body), content_type="application/json")

    async def one_recording(self, request: web.Request) -> web.Response:
        found = await self._store.get(request.match_info["id"])
        if found is None:
            return _no_recording(request)
        return web.Response(body=_encoder.encode(self.view(found)), content_type="application/json")

    async def events(self, request: web.Request) -> web.StreamResponse:
        body = await self._store.events_json(request.match_info["id"])
        if body is None:
            return _no_recording(request)
        response = web.Response(body=body, content_type="application/json")
        response.enable_compression()  # large arrays compress about 10 to 1
        return response

    async def export(self, request: web.Request) -> web.StreamResponse:
        """The events as JSON lines, one rrweb event a line, as a file download."""
        recording_id = request.match_info["id"]
        body = await self._store.events_json(recording_id)
        if body is None:
            return _no_recording(request)
        lines = b"".join(_encoder.encode(e) + b"\n" for e in msgspec.json.decode(body))
        response = web.Response(
            body=lines,
            content_type="application/x-ndjson",
            headers={
                "Content-Disposition": f'attachment; filename="recording-{recording_id}.jsonl"'
            },
        )
        response.enable_compression()
        return response

    async def usage(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        site = self._sites.get(key)
        if site is None:
            return json_error(404, "not_found", f"no site with key {key!r} in the config")
        now = datetime.now(UTC)
        used = await self._used(key, now)
        body = Usage(
            site=key,
            month=now.strftime("%Y-%m"),
            used=used,
            limit=site.limit,
            remaining=max(0, site.limit - used),
            plan=site.plan,
            stored=await self._store.stored(key),
        )
        return web.Response(body=_encoder.encode(body), content_type="application/json")

    async def erase_visitor(self, request: web.Request) -> web.Response:
        visitor = request.match_info["visitor"]
        site = request.query.get("site") or None
        if site is not None and site not in self._sites:
            return json_error(404, "not_found", f"no site with key {site!r} in the config")
        erased = await self._store.erase_visitor(visitor, site)
        for key, count in erased.items():
            self._metrics.recordings_erased.labels(site=key).inc(count)
        body = {"visitor": visitor, "deleted": sum(erased.values())}
        return web.Response(body=_encoder.encode(body), content_type="application/json")

    def _query(self, params: MultiMapping[str]) -> RecordingQuery:
        def text(name: str) -> str | None:
            value = params.get(name, "").strip()
            return value or None

        site = text("site")
        if site is not None and site not in self._sites:
            raise ValueError(f"site: no site with key {site!r} in the config")
        started_from = text("from")
        started_to = text("to")
        min_duration = text("min_duration")
        limit = text("limit")
        live = text("live")
        if live not in (None, "0", "1", "true", "false"):
            raise ValueError(f"live: expected 1 or 0, got {live!r}")
        return RecordingQuery(
            site=site,
            started_from=None if started_from is None else parse_time("from", started_from),
            started_to=None if started_to is None else parse_time("to", started_to),
            min_duration_ms=None
            if min_duration is None
            else _number("min_duration", min_duration) * 1000.0,
            url=text("url"),
            device=text("device"),
            browser=text("browser"),
            visitor=text("visitor"),
            live=live in ("1", "true"),
            limit=50 if limit is None else int(_number("limit", limit, whole=True)),
            cursor=text("cursor"),
        )

    def view(self, r: Recording) -> RecordingView:
        return RecordingView(
            id=r.id,
            site=r.site,
            visitor=r.visitor,
            identity=Identity(id=r.identified_id, name=r.name, email=r.email),
            started_at=rfc3339(r.started_at / 1000.0),
            ended_at=rfc3339(r.ended_at / 1000.0),
            duration_ms=round(r.duration_ms),
            pages=r.pages,
            device=r.device,
            browser=r.browser,
            events=r.events,
            bytes=r.bytes,
            finalized=r.finalized,
            created_at=rfc3339(r.created_at),
            expires_at=rfc3339(r.created_at + self._retention_s),
        )


def _number(name: str, value: str, *, whole: bool = False) -> float:
    try:
        number = int(value) if whole else float(value)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise ValueError(f"{name}: expected {kind}, got {value!r}") from None
    if number < 0 or number != number:
        raise ValueError(f"{name}: must not be negative, got {value!r}")
    return float(number)


def _no_recording(request: web.Request) -> web.Response:
    return json_error(404, "not_found", f"no recording {request.match_info['id']!r}")
