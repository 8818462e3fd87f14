"""Relay of an HTML page that may get the recorder tag.

The response headers are held back until the injector has decided (it reads
at most the head of the page, bounded by `scan_limit`): then either the page
goes out exactly as the origin sent it (raw bytes, original Content-Length,
ETag and encoding), or with the tag, re-encoded for the client, its length
dropped and its validators marked (validators.py). The rest of the body then
streams chunk by chunk with an encoder flush per chunk.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from gateway.edge.codecs import CodecError, choose_encoding, make_decoder, make_encoder
from gateway.edge.csp import CspPlan, plan_csp
from gateway.edge.eligibility import Candidate
from gateway.edge.inject import HtmlInjector
from gateway.edge.relay import abort, relay_untouched
from gateway.edge.responses import RelayedResponse
from gateway.edge.sites import Site
from gateway.edge.validators import add_vary, mark_injected
from gateway.metrics import Metrics


class _CspDecision:
    """Holds what the injector's decide callback learned about CSP."""

    __slots__ = ("plan",)

    def __init__(self) -> None:
        self.plan: CspPlan | None = None


def _looks_like_data(first: bytes) -> bool:
    # JSON (or JSONP arrays) mislabelled as text/html is not a page.
    stripped = first.lstrip(b"\xef\xbb\xbf \t\r\n")
    return stripped[:1] in (b"{", b"[")


async def relay_injected(
    request: web.BaseRequest,
    site: Site,
    origin: aiohttp.ClientResponse,
    headers: CIMultiDict[str],
    *,
    candidate: Candidate,
    client_host: str,
    scan_limit: int,
    metrics: Metrics,
) -> web.StreamResponse:
    scheme = "https" if request.secure else "http"
    source = f"{scheme}://{client_host}{site.prefix}"
    header_policies = origin.headers.getall("Content-Security-Policy", [])
    csp = _CspDecision()

    def decide(meta_policies: list[str]) -> bytes | str:
        if not header_policies and not meta_policies:
            return site.tag()
        plan = plan_csp(header_policies, meta_policies, script_source=source, connect_source=source)
        if not plan.allowed:
            return plan.reason or "csp_blocked"
        csp.plan = plan
        return site.tag(plan.nonce)

    injector = HtmlInjector(
        decide, own_marker=site.own_marker, conflicts=site.conflicts, limit=scan_limit
    )
    decoder = make_decoder(candidate.coding)
    held: list[bytes] = []
    ready: list[bytes] = []
    outcome: str | None = None
    first = True
    try:
        while not injector.decided:
            chunk = await origin.content.readany()
            if not chunk:
                ready.append(injector.feed(decoder.finish()))
                ready.append(injector.finish())
                break
            held.append(chunk)
            for piece in decoder.decompress(chunk):
                if first and piece:
                    first = False
                    if _looks_like_data(piece):
                        outcome = "not_html"
                        break
                ready.append(injector.feed(piece))
            if outcome:
                break
    except CodecError:
        outcome = "bad_encoding"
    outcome = outcome or injector.outcome or "no_marker"
    metrics.injections.labels(site=site.key, outcome=outcome).inc()
    if outcome != "injected":
        return await relay_untouched(request, site, origin, headers, metrics, held=held)

    coding = choose_encoding(request.headers.get("Accept-Encoding"), candidate.coding)
    headers.popall("Content-Encoding", None)
    if coding != "identity":
        headers["Content-Encoding"] = coding
    add_vary(headers, "Accept-Encoding")
    mark_injected(headers, site.snippet_version)
    if csp.plan is not None and csp.plan.headers is not None:
        headers.popall("Content-Security-Policy")
        for value in csp.plan.headers:
            headers.add("Content-Security-Policy", value)
    response = RelayedResponse(status=origin.status, reason=origin.reason, headers=headers)
    await response.prepare(request)
    encoder = make_encoder(coding)
    sent = 0
    try:
        out = encoder.compress(b"".join(ready))
        await response.write(out)
        sent += len(out)
        async for chunk in origin.content.iter_any():
            # Piece by piece: a compression bomb never sits whole in memory.
            for piece in decoder.decompress(chunk):
                out = encoder.compress(piece)
                if out:
                    await response.write(out)
                    sent += len(out)
        out = encoder.compress(decoder.finish()) + encoder.finish()
        await response.write(out)
        sent += len(out)
    except (TimeoutError, aiohttp.ClientError, CodecError):
        metrics.origin_errors.labels(site=site.key, kind="aborted").inc()
        abort(request)
        return response
    finally:
        metrics.response_bytes.labels(site=site.key).inc(sent)
    await response.write_eof()
    return response
