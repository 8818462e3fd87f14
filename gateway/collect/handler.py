"""`POST {prefix}v1/batch`: receive, check, mask, hand over.

Order matters: cheap refusals first (method, type, origin, size, rate), then
decoding, then policy (the gateway is the authority, whatever the browser
claims), then masking, and only a masked batch ever reaches the sink. The
browser gets `{"record": true}` once the sink has taken the batch.
"""

from __future__ import annotations

import ipaddress
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlsplit

import msgspec
from aiohttp import web

from gateway.collect.client import describe_client
from gateway.collect.masking import MaskerCache, MaskRules
from gateway.collect.policy import BatchContext, Refusal, check_static
from gateway.collect.quota import QuotaStore
from gateway.collect.ratelimit import RateLimiter
from gateway.collect.schema import (
    ACTIVITY_SOURCES,
    MAX_URL_LENGTH,
    AssetEvent,
    Batch,
    BatchError,
    CanvasMutationData,
    CustomElementData,
    CustomEvent,
    Event,
    FontData,
    IncrementalSnapshotEvent,
    LogData,
    MetaEvent,
    PluginEvent,
    decode_batch,
)
from gateway.config import CollectConfig
from gateway.edge.admission import normalize_path
from gateway.edge.errors import json_error
from gateway.edge.expect import send_continue
from gateway.edge.headers import TrustedProxies, client_address
from gateway.edge.sites import Site
from gateway.memo import remember
from gateway.metrics import Metrics
from gateway.pipeline.sink import BatchSink, MaskedBatch, SinkFull

_JSON_TYPES = frozenset({"application/json", "text/plain"})
_ACCEPTED = msgspec.json.encode({"record": True})
# Custom events the loader makes on the site owner's behalf; others are free-form.
_KEPT_CUSTOM_TAGS = frozenset({"identify"})
_UNMODELLED_EVENTS = frozenset({PluginEvent, AssetEvent})
_UNMODELLED_DATA = frozenset({CanvasMutationData, LogData, FontData, CustomElementData})
_ACTIVITY_DATA = frozenset(ACTIVITY_SOURCES)


class _Seen:
    """Recently stored (session, page, seq): a retried batch is not stored twice."""

    def __init__(self, capacity: int = 200_000) -> None:
        self._keys: OrderedDict[tuple[str, str, str, int], None] = OrderedDict()
        self._capacity = capacity

    def __contains__(self, key: tuple[str, str, str, int]) -> bool:
        return key in self._keys

    def add(self, key: tuple[str, str, str, int]) -> None:
        self._keys[key] = None
        if len(self._keys) > self._capacity:
            self._keys.popitem(last=False)


class CollectEndpoint:
    def __init__(
        self,
        config: CollectConfig,
        *,
        metrics: Metrics,
        quota: QuotaStore,
        sink: BatchSink,
        trusted: TrustedProxies,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._metrics = metrics
        self._quota = quota
        self._sink = sink
        self._trusted = trusted
        self._clock = clock
        self._by_ip = RateLimiter(config.ip_rate, config.ip_burst)
        self._by_session = RateLimiter(config.session_rate, config.session_burst)
        # (site, session) -> batches of it waiting for the start of its recording.
        self._starting: dict[tuple[str, str], int] = {}
        self._refreshing: set[str] = set()  # sites whose quota gauges are being read
        self._refresh_again: set[str] = set()  # ... and must be read once more after
        self._new_sessions = RateLimiter(
            config.new_sessions_per_hour / 3600, config.new_sessions_burst
        )
        self._seen = _Seen()
        self._maskers = MaskerCache()

    async def handle(self, request: web.BaseRequest, site: Site, client_host: str) -> web.Response:
        if request.method != "POST":
            return json_error(405, "method_not_allowed", "use POST", headers={"Allow": "POST"})
        kind = request.content_type
        if kind not in _JSON_TYPES:
            return self._refuse_input(site, 415, "unsupported_media_type", f"{kind!r} is not JSON")
        origin = request.headers.get("Origin")
        if origin is not None and not _same_host(origin, client_host):
            # Host only: behind a TLS-terminating proxy the scheme seen here differs.
            return self._refuse_input(
                site, 403, "forbidden_origin", f"origin {origin!r} is not this site"
            )
        peer = client_address(request.raw_headers, request.remote or "", self._trusted)
        now = self._clock()
        wait = self._by_ip.take(_rate_key(peer), now)
        if wait:
            return self._rate_limited(site, wait)
        length = request.content_length
        if length is not None and length > self._config.max_body_bytes:
            limit = self._config.max_body_bytes
            return json_error(413, "body_too_large", f"batch larger than {limit} bytes")
        await send_continue(request)
        body = await self._read_body(request)
        if isinstance(body, web.Response):
            self._metrics.collect_batches.labels(site=site.key, outcome="too_large").inc()
            return body
        try:
            batch = decode_batch(body)
        except BatchError as exc:
            return self._refuse_input(site, 400, "bad_batch", str(exc))
        wait = self._by_session.take(batch.session, now)
        if wait:
            return self._rate_limited(site, wait)
        self._metrics.child(self._metrics.collect_bytes, site.key).inc(len(body))
        key = (site.key, batch.session, batch.page, batch.seq)
        if key in self._seen:
            self._metrics.collect_batches.labels(site=site.key, outcome="duplicate").inc()
            return web.Response(body=_ACCEPTED, content_type="application/json")
        try:
            paths = _page_paths(batch)
        except ValueError as exc:
            return self._refuse_input(site, 400, "bad_batch", str(exc))
        refusal = await self._judge(request, site, batch, peer, now, paths)
        if isinstance(refusal, float):
            return self._rate_limited(site, refusal)
        if refusal is not None:
            return self._refused(site, batch, refusal)
        kept = _storable(batch.events)
        dropped = len(batch.events) - len(kept)
        batch.events = kept
        masked = self._maskers.get(
            site.key, batch.session, batch.page, MaskRules.of(site.config.recording)
        ).mask(batch)
        for what, count in masked.items():
            self._metrics.child(self._metrics.masked_values, site.key, what).inc(count)
        if len(batch.url) > MAX_URL_LENGTH:
            # Masks are longer than short values: keep the stored batch valid to the schema.
            batch.url = batch.url[:MAX_URL_LENGTH]
        try:
            await self._sink.put(_masked(site.key, now, batch, request))
        except SinkFull as exc:
            self._metrics.collect_batches.labels(site=site.key, outcome="sink_full").inc()
            return json_error(503, "busy", str(exc), headers={"Retry-After": "5"})
        self._seen.add(key)
        events = self._metrics.collect_events
        self._metrics.child(events, site.key, "stored").inc(len(kept))
        self._metrics.child(events, site.key, "dropped").inc(dropped)
        self._metrics.child(self._metrics.collect_batches, site.key, "stored").inc()
        return web.Response(body=_ACCEPTED, content_type="application/json")

    async def _read_body(self, request: web.BaseRequest) -> bytes | web.Response:
        limit = self._config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return json_error(413, "body_too_large", f"batch larger than {limit} bytes")
        raw = bytearray()
        async for chunk in request.content.iter_any():
            raw += chunk
            if len(raw) > limit:
                return json_error(413, "body_too_large", f"batch larger than {limit} bytes")
        coding = (
            (request.headers.get("Content-Encoding") or request.headers.get("X-Rec-Encoding") or "")
            .strip()
            .lower()
        )
        if coding in ("", "identity"):
            return bytes(raw)
        if coding != "gzip":
            return json_error(415, "unsupported_encoding", f"content coding {coding!r} is not gzip")
        return self._gunzip(bytes(raw))

    def _gunzip(self, data: bytes) -> bytes | web.Response:
        limit = self._config.max_decoded_bytes
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            # Never inflate past the limit: a bomb is refused, not expanded.
            out = inflater.decompress(data, limit + 1)
        except zlib.error as exc:
            return json_error(400, "bad_batch", f"body: not valid gzip ({exc})")
        if len(out) > limit or inflater.unconsumed_tail:
            return json_error(413, "body_too_large", f"batch decodes to more than {limit} bytes")
        if not inflater.eof:
            return json_error(400, "bad_batch", "body: truncated gzip")
        if inflater.unused_data:
            return json_error(400, "bad_batch", "body: data after the gzip stream")
        return out

    async def _judge(
        self,
        request: web.BaseRequest,
        site: Site,
        batch: Batch,
        peer: str,
        now: float,
        paths: tuple[str, list[str]],
    ) -> Refusal | float | None:
        """A policy refusal, seconds to wait (too many new sessions), or None: go on."""
        hints = request.headers.get("Sec-CH-UA-Mobile")
        context = BatchContext(
            site=site,
            url_path=paths[0],
            meta_paths=paths[1],
            peer=peer,
            user_agent=request.headers.get("User-Agent", ""),
            client_hints_mobile=None if hints is None else hints.strip() == "?1",
            gpc=request.headers.get("Sec-GPC", "").strip() == "1",
            consent_flag=batch.consent,
            cookies=_consent_cookies(request, site),
            visitor=batch.visitor,
            session=batch.session,
            has_activity=any(
                type(e) is IncrementalSnapshotEvent and type(e.data) in _ACTIVITY_DATA
                for e in batch.events
            ),
        )
        refusal = check_static(context)
        if refusal is not None:
            return refusal
        moment = datetime.fromtimestamp(now, UTC)
        limit = site.config.limit
        running = await self._quota.started(site.key, batch.session, moment)
        if running:
            return None  # counted when it started; its later batches go on
        if not context.has_activity:
            # A recording starts with a visitor's own activity, never before.
            return Refusal.NO_ACTIVITY
        starting = (site.key, batch.session)
        if starting not in self._starting:
            # Session ids are the client's choice: bound how fast one address
            # opens new recordings, so nobody can burn a site's monthly quota.
            # (Once per recording: its batches arriving together are one start.)
            wait = self._new_sessions.take(_rate_key(peer), now)
            if wait:
                return wait
        self._starting[starting] = self._starting.get(starting, 0) + 1
        try:
            if not await self._quota.try_start(site.key, batch.session, limit, moment):
                return Refusal.QUOTA
        finally:
            if self._starting[starting] == 1:
                del self._starting[starting]
            else:
                self._starting[starting] -= 1
        await self._refresh_quota_gauges(site.key, limit, moment)
        return None

    async def _refresh_quota_gauges(self, site: str, limit: int, moment: datetime) -> None:
        """The gauges move only when a recording starts: no database call per batch,
        and one at a time per site (a herd of starts asks once, then once more)."""
        self._metrics.quota_limit.labels(site=site).set(limit)
        if site in self._refreshing:
            self._refresh_again.add(site)
            return
        self._refreshing.add(site)
        try:
            while True:
                self._refresh_again.discard(site)
                used = await self._quota.usage(site, moment)
                self._metrics.quota_used.labels(site=site).set(used)
                if site not in self._refresh_again:
                    return
        finally:
            self._refreshing.discard(site)

    def _refused(self, site: Site, batch: Batch, refusal: Refusal) -> web.Response:
        self._metrics.collect_batches.labels(site=site.key, outcome="refused").inc()
        self._metrics.collect_refusals.labels(site=site.key, reason=refusal.value).inc()
        self._metrics.collect_events.labels(site=site.key, outcome="refused").inc(len(batch.events))
        body = msgspec.json.encode({"record": False, "reason": refusal.value})
        return web.Response(body=body, content_type="application/json")

    def _refuse_input(self, site: Site, status: int, code: str, detail: str) -> web.Response:
        self._metrics.collect_batches.labels(site=site.key, outcome=code).inc()
        return json_error(status, code, detail)

    def _rate_limited(self, site: Site, wait: float) -> web.Response:
        self._metrics.collect_batches.labels(site=site.key, outcome="rate_limited").inc()
        seconds = max(1, int(wait + 0.999))
        return json_error(
            429,
            "rate_limited",
            f"too many batches; retry in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )


def _storable(events: list[Event]) -> list[Event]:
    """Events whose every field is modelled and masked; free-form payloads go."""
    # Exact types (what the decoder makes): a set lookup, where isinstance on
    # msgspec's metaclass costs ~0.2 us a check, several per event.
    kept: list[Event] = []
    for event in events:
        if type(event) is IncrementalSnapshotEvent:
            modelled = type(event.data) not in _UNMODELLED_DATA
        elif type(event) is CustomEvent:
            modelled = event.data.tag in _KEPT_CUSTOM_TAGS
        else:
            modelled = type(event) not in _UNMODELLED_EVENTS
        if modelled:
            kept.append(event)
    return kept


def _page_paths(batch: Batch) -> tuple[str, list[str]]:
    """The batch URL's path, and every other path the page was seen at: Meta
    hrefs and hash routes (`/#/admin/x`), all checked against exclusions."""
    page, *routes = _paths_of(batch.url, "url")
    others = list(routes)
    for index, event in enumerate(batch.events):
        if isinstance(event, MetaEvent):
            others.extend(_paths_of(event.data.href, f"events[{index}].data.href"))
    return page, others


def _paths_of(url: str, field: str) -> list[str]:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed authority
    except ValueError as exc:
        raise ValueError(f"{field}: not a URL ({exc})") from exc
    paths = [normalize_path(parts.path or "/")]
    route = parts.fragment.lstrip("!")
    if route.startswith("/"):
        paths.append(normalize_path(route.split("?", 1)[0]))
    return paths


def _same_host(origin: str, client_host: str) -> bool:
    try:
        return urlsplit(origin).netloc.lower() == client_host.lower()
    except ValueError:
        return False


@remember(longest=64, maxsize=4096)  # an address is at most 45 characters
def _rate_key(address: str) -> str:
    """IPv6 clients get a /64 each: one machine can rotate through its prefix."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return address


def _consent_cookies(request: web.BaseRequest, site: Site) -> dict[str, str]:
    """The request's cookies when the site's consent rule reads one, else none: a
    browser's Cookie header takes ~60 us to parse, for nothing on most sites."""
    rec = site.config.recording
    if rec.consent == "none" or not rec.consent_cookie.name:
        return {}
    jar: SimpleCookie = SimpleCookie()
    for header in request.headers.getall("Cookie", []):
        try:
            jar.load(header)
        except CookieError:
            continue
    return {name: morsel.value for name, morsel in jar.items()}


def _masked(site: str, now: float, batch: Batch, request: web.BaseRequest) -> MaskedBatch:
    hint = request.headers.get("Sec-CH-UA-Mobile")
    client = describe_client(
        request.headers.get("User-Agent", ""), None if hint is None else hint.strip() == "?1"
    )
    return MaskedBatch(
        site=site, received_at=now, batch=batch, device=client.device, browser=client.browser
    )
