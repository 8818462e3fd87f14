"""The streaming reverse proxy: one request in, one request to the origin, one answer out.

Bodies stream both ways with back-pressure (the origin connection pauses its
socket when unread bytes pile up; every write awaits drain). Nothing is buffered whole.
Failures before the origin's headers become 502/504 JSON answers; failures
after them abort the client connection so a truncated body is never passed
off as complete.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

from aiohttp import web
from multidict import CIMultiDict

from gateway.collect.handler import CollectEndpoint
from gateway.config import Config, node_name
from gateway.edge.admission import Admitted, Limits, admit
from gateway.edge.codecs import parse_content_encoding
from gateway.edge.deadline import within
from gateway.edge.eligibility import Candidate, judge
from gateway.edge.errors import json_error
from gateway.edge.expect import send_continue
from gateway.edge.headers import TrustedProxies, has_token, request_headers, response_headers
from gateway.edge.origin.connection import OriginResponse
from gateway.edge.origin.errors import (
    OriginBodyError,
    OriginClosed,
    OriginConnectError,
    OriginProtocolError,
)
from gateway.edge.origin.pool import OriginAddress, OriginPool
from gateway.edge.recorder_asset import RecorderAsset
from gateway.edge.relay import OriginFailed, relay_untouched
from gateway.edge.reserved import serve_reserved
from gateway.edge.rewrite import (
    csp_source,
    describe_injected,
    injected_coding,
    keep_csp_allowing_tag,
    relay_injected,
)
from gateway.edge.routing import HostRouter
from gateway.edge.sites import Site
from gateway.edge.upgrade import tunnel_upgrade
from gateway.edge.validators import (
    add_vary,
    strip_range_for_navigation,
    translate_if_none_match,
)
from gateway.metrics import Metrics, method_label, status_class


class BodyTooLarge(Exception):
    pass


class Proxy:
    def __init__(
        self,
        config: Config,
        sites: list[Site],
        metrics: Metrics,
        recorder: RecorderAsset,
        collect: CollectEndpoint,
    ):
        self._config = config
        self._metrics = metrics
        self._recorder = recorder
        self._collect = collect
        self._router = HostRouter([(s.config.hosts, s) for s in sites])
        server = config.server
        self._limits = Limits(
            request_line=server.max_request_line_bytes,
            headers=server.max_header_bytes,
            body=server.max_body_bytes,
        )
        self._prefix = server.prefix
        self._pseudonym = node_name(config)
        self._via = f"1.1 {self._pseudonym}"
        self._trusted = TrustedProxies(server.trusted_proxies)
        proxy = config.proxy
        self._response_timeout = proxy.response_timeout
        self._idle = proxy.idle_timeout
        self._scan_limit = proxy.inject_scan_limit
        self._addresses = {site.key: _address_of(site) for site in sites}
        self._pool = OriginPool(
            limit_per_origin=proxy.max_connections_per_origin,
            keepalive=proxy.keepalive_timeout,
            connect_timeout=proxy.connect_timeout,
            idle=proxy.idle_timeout,
        )

    async def close(self) -> None:
        await self._pool.close()

    def _admit(self, request: web.BaseRequest) -> Admitted | web.Response:
        verdict = admit(
            request,
            self._router,
            limits=self._limits,
            prefix=self._prefix,
            pseudonym=self._pseudonym,
        )
        if isinstance(verdict, web.Response):
            self._metrics.rejected.labels(reason=_error_code(verdict)).inc()
        return verdict

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        verdict = self._admit(request)
        if isinstance(verdict, web.Response):
            return verdict
        expect = request.headers.get("Expect")
        if expect is not None and expect.lower() != "100-continue":
            return json_error(417, "expectation_failed", "only 100-continue is supported")
        if verdict.reserved:
            # The collect endpoint sends 100 Continue itself, after its own checks.
            return await serve_reserved(
                request, verdict, self._prefix, self._recorder, self._collect
            )
        site = verdict.site
        # Only WebSocket is tunnelled; other upgrades (h2c) are dropped as hop-by-hop.
        if has_token(request.headers.get("Connection"), "upgrade") and has_token(
            request.headers.get("Upgrade"), "websocket"
        ):
            return await tunnel_upgrade(
                request,
                site,
                headers=self._origin_headers(request, verdict, keep_upgrade=True),
                target=verdict.target,
                connect_timeout=self._config.proxy.connect_timeout,
                response_timeout=self._response_timeout,
                via=self._via,
                metrics=self._metrics,
            )
        # After the checks above: a refused request never sends its body.
        await send_continue(request)
        return await self._forward(request, verdict)

    def _origin_headers(
        self, request: web.BaseRequest, admitted: Admitted, keep_upgrade: bool = False
    ) -> CIMultiDict[str]:
        site = admitted.site
        peer = request.remote or ""
        headers = request_headers(
            request.raw_headers,
            host=admitted.client_host if site.config.preserve_host else site.origin_authority,
            client_host=admitted.client_host,
            peer=peer,
            scheme="https" if request.secure else "http",
            trusted=peer in self._trusted,
            via=self._via,
            keep_upgrade=keep_upgrade,
        )
        if request.content_length is not None and request.body_exists:
            headers["Content-Length"] = str(request.content_length)
        return headers

    async def _forward(self, request: web.BaseRequest, admitted: Admitted) -> web.StreamResponse:
        site = admitted.site
        headers = self._origin_headers(request, admitted)
        strip_range_for_navigation(headers)
        asked_current = False
        inm = headers.get("If-None-Match")
        if inm is not None:
            translated, asked_current = translate_if_none_match(inm, site.snippet_version)
            if translated is None:
                del headers["If-None-Match"]
            else:
                headers["If-None-Match"] = translated
        body_state = _BodyState()
        body = (
            _stream_body(request, self._limits.body, self._idle, body_state)
            if request.body_exists
            else None
        )
        metrics = self._metrics
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            # Without a body to send, the whole wait is for the origin's answer.
            with within(self._response_timeout if body is None else None):
                origin = await self._pool.request(
                    self._addresses[site.key],
                    request.method,
                    site.origin_path + admitted.target,
                    headers,
                    body,
                )
        except asyncio.CancelledError:
            metrics.client_disconnects.labels(site=site.key).inc()
            raise
        except Exception as exc:  # every origin failure maps to a JSON answer below
            if body_state.too_large:
                return self._answer(
                    request,
                    site,
                    json_error(
                        413, "body_too_large", f"request body larger than {self._limits.body} bytes"
                    ),
                )
            if body_state.stalled:
                metrics.client_disconnects.labels(site=site.key).inc()
                error = json_error(408, "request_timeout", "the request body stopped arriving")
                error.force_close()
                return self._answer(request, site, error)
            return self._answer(request, site, self._origin_failure(site, exc))
        metrics.child(metrics.origin_latency, site.key).observe(loop.time() - started)
        completed = False
        try:
            response = await self._relay(request, admitted, origin, asked_current)
            completed = True
            return response
        except OriginFailed as failure:
            # Nothing was sent yet (the injector was still reading the head).
            assert failure.__cause__ is not None
            return self._answer(request, site, self._origin_failure(site, failure.__cause__))
        except asyncio.CancelledError:
            metrics.client_disconnects.labels(site=site.key).inc()
            raise
        finally:
            metrics.child(metrics.request_bytes, site.key).inc(body_state.received)
            if completed and origin.content.is_eof():
                origin.release()
            else:
                # Never put a half-read connection back in the pool.
                origin.close()

    def _answer(self, request: web.BaseRequest, site: Site, response: web.Response) -> web.Response:
        self._count(request, site, response.status)
        return response

    def _origin_failure(self, site: Site, exc: BaseException) -> web.Response:
        kind, status, detail = _classify(exc)
        self._metrics.origin_errors.labels(site=site.key, kind=kind).inc()
        code = "origin_timeout" if status == 504 else "bad_gateway"
        return json_error(status, code, detail)

    async def _relay(
        self,
        request: web.BaseRequest,
        admitted: Admitted,
        origin: OriginResponse,
        asked_current: bool,
    ) -> web.StreamResponse:
        site = admitted.site
        headers = response_headers(origin.raw_headers, via=self._via, fields=origin.fields)
        if site.config.rewrite_location:
            _rewrite_location(headers, site, request, admitted.client_host)
        verdict = judge(
            site,
            method=request.method,
            path=admitted.path,
            status=origin.status,
            request_headers=request.headers,
            response_headers=origin.headers,
            peer=request.remote,
        )
        metrics = self._metrics
        if (
            site.config.recording.respect_gpc
            and origin.status == 200
            and request.method in ("GET", "HEAD")
            and _is_html(origin)
        ):
            # Whether the page is injected depends on Sec-GPC: caches must know.
            add_vary(headers, "Sec-GPC")
        if isinstance(verdict, Candidate):
            if request.method == "GET":
                response = await relay_injected(
                    request,
                    site,
                    origin,
                    headers,
                    candidate=verdict,
                    client_host=admitted.client_host,
                    scan_limit=self._scan_limit,
                    idle=self._idle,
                    metrics=metrics,
                )
                self._count(request, site, response.status)
                return response
            # HEAD: the headers GET would have, with no length to contradict it.
            describe_injected(headers, site, injected_coding(request, verdict))
            keep_csp_allowing_tag(headers, csp_source(request, site, admitted.client_host))
            metrics.child(metrics.injections, site.key, "head").inc()
            self._count(request, site, origin.status)
            return await relay_untouched(
                request, site, origin, headers, metrics, idle=self._idle, keep_length=False
            )
        if asked_current and origin.status == 304:
            # A 304 updates the cached injected page's headers: keep them the injected ones.
            coding = injected_coding(request, Candidate(coding=_coding_of(origin)))
            describe_injected(headers, site, coding)
            keep_csp_allowing_tag(headers, csp_source(request, site, admitted.client_host))
        metrics.child(metrics.injections, site.key, verdict).inc()
        self._count(request, site, origin.status)
        return await relay_untouched(request, site, origin, headers, metrics, idle=self._idle)

    def _count(self, request: web.BaseRequest, site: Site, status: int) -> None:
        metrics = self._metrics
        labels = (site.key, method_label(request.method), status_class(status))
        metrics.child(metrics.proxied_requests, *labels).inc()


class _BodyState:
    __slots__ = ("received", "stalled", "too_large")

    def __init__(self) -> None:
        self.received = 0
        self.too_large = False
        self.stalled = False


async def _stream_body(
    request: web.BaseRequest, limit: int, idle: float, state: _BodyState
) -> AsyncIterator[bytes]:
    """The client's body, counted, bounded, and given up when the client stalls."""
    while True:
        try:
            async with asyncio.timeout(idle):
                chunk = await request.content.readany()
        except TimeoutError:
            state.stalled = True
            raise
        if not chunk:
            return
        state.received += len(chunk)
        if state.received > limit:
            state.too_large = True
            raise BodyTooLarge(f"request body larger than {limit} bytes")
        yield chunk


def _error_code(response: web.Response) -> str:
    return {
        204: "options",
        400: "bad_request",
        405: "connect",
        413: "body_too_large",
        414: "uri_too_long",
        421: "unknown_host",
        431: "headers_too_large",
        508: "loop",
    }.get(response.status, "other")


def _classify(exc: BaseException) -> tuple[str, int, str]:
    """(metric kind, status, detail) for an origin failure."""
    if isinstance(exc, TimeoutError):  # OriginTimeout, or the wait for the headers
        return "timeout", 504, "the origin did not answer in time"
    if isinstance(exc, OriginConnectError):
        return "refused", 502, str(exc)
    if isinstance(exc, OriginClosed):
        return "reset", 502, "the origin closed the connection without an answer"
    if isinstance(exc, OriginProtocolError):
        return "bad_response", 502, f"the origin sent an invalid response: {exc}"
    if isinstance(exc, OriginBodyError):
        return "bad_response", 502, "the origin sent an invalid body"
    if isinstance(exc, OSError):
        return "reset", 502, "the connection to the origin failed"
    return "other", 502, f"the origin request failed: {type(exc).__name__}"


def _address_of(site: Site) -> OriginAddress:
    tls = site.ssl if isinstance(site.ssl, ssl.SSLContext) else None
    https = site.origin.scheme == "https"
    return OriginAddress(
        host=site.origin.host or "",
        port=site.origin.port or (443 if https else 80),
        tls=tls if https else None,
    )


def _coding_of(origin: OriginResponse) -> str:
    codings = parse_content_encoding(origin.headers.get("Content-Encoding"))
    return codings[0] if len(codings) == 1 else "identity"


def _is_html(origin: OriginResponse) -> bool:
    return origin.content_type in ("text/html", "application/xhtml+xml")


def _rewrite_location(
    headers: CIMultiDict[str], site: Site, request: web.BaseRequest, client_host: str
) -> None:
    """An origin naming its own address gets the public host instead.

    With an origin path (`http://10.0.0.5/app`), only URLs under that path map
    back, and the path comes off: the gateway puts it back on every request.
    """
    location = headers.get("Location")
    if not location:
        return
    lowered = location.lower()
    for prefix in site.origin_prefixes:
        base = prefix + site.origin_path
        if not lowered.startswith(base.lower()):
            continue
        rest = location[len(base) :]
        if rest and rest[0] not in "/?#":
            continue
        scheme = "https" if request.secure else "http"
        headers["Location"] = f"{scheme}://{client_host}{rest if rest[:1] == '/' else '/' + rest}"
        return
