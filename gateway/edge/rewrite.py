"""Relay of an HTML page that may get the recorder tag.

The response headers are held back until the injector has decided (it reads
at most the head of the page, bounded by `scan_limit`): then either the page
goes out exactly as the origin sent it (raw bytes, original Content-Length,
ETag and encoding), or with the tag, re-encoded for the client, its length
dropped and its validators marked (validators.py). The rest of the body then
streams chunk by chunk with an encoder flush per chunk; except that a page the
origin declared small is read whole first and sent in one write with its new
Content-Length (fewer syscalls and no chunked framing on the common case).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict

from gateway.edge.codecs import (
    CodecError,
    Decoder,
    Encoder,
    choose_encoding,
    make_decoder,
    make_encoder,
)
from gateway.edge.csp import CspPlan, plan_csp
from gateway.edge.eligibility import Candidate
from gateway.edge.inject import HtmlInjector
from gateway.edge.origin.connection import OriginResponse
from gateway.edge.origin.errors import OriginError
from gateway.edge.relay import ClientSender, OriginFailed, relay_untouched, stream_body
from gateway.edge.responses import RelayedResponse
from gateway.edge.sites import Site
from gateway.edge.validators import add_vary, mark_injected
from gateway.metrics import Metrics

# Pages the origin declares at most this long are gathered and sent in one write
# (as long as they decode to at most four times as much).
SMALL_PAGE_BYTES = 256 * 1024


class _CspDecision:
    """Holds what the injector's decide callback learned about CSP."""

    __slots__ = ("plan",)

    def __init__(self) -> None:
        self.plan: CspPlan | None = None


def csp_source(request: web.BaseRequest, site: Site, client_host: str) -> str:
    """The CSP source expression that allows our script and collect path."""
    scheme = "https" if request.secure else "http"
    return f"{scheme}://{client_host}{site.prefix}"


def injected_coding(request: web.BaseRequest, candidate: Candidate) -> str:
    """The content coding of the injected page sent to this client.

    An origin that did not compress keeps it that way (no new CPU cost on
    the hot path); a compressed page is re-encoded for what the client takes.
    """
    if candidate.coding == "identity":
        return "identity"
    return choose_encoding(request.headers.get("Accept-Encoding"), candidate.coding)


def describe_injected(headers: CIMultiDict[str], site: Site, coding: str) -> None:
    """Headers of the injected representation (GET, HEAD and 304 alike)."""
    headers.popall("Content-Encoding", None)
    if coding != "identity":
        headers["Content-Encoding"] = coding
    add_vary(headers, "Accept-Encoding")
    mark_injected(headers, site.snippet_version)


def keep_csp_allowing_tag(headers: CIMultiDict[str], source: str) -> None:
    """For HEAD and 304: the header CSP the injected GET would have carried."""
    policies = headers.getall("Content-Security-Policy", [])
    if policies:
        plan = plan_csp(policies, [], script_source=source, connect_source=source)
        if plan.allowed:
            _replace_csp(headers, plan)


def _replace_csp(headers: CIMultiDict[str], plan: CspPlan) -> None:
    if plan.headers is not None:
        headers.popall("Content-Security-Policy")
        for value in plan.headers:
            headers.add("Content-Security-Policy", value)


def _first_byte(piece: bytes) -> bytes:
    """The first byte after any BOM and whitespace; b"" when the piece has none."""
    return piece.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]


def _looks_like_data(first: bytes) -> bool:
    # JSON (or JSONP arrays) mislabelled as text/html is not a page.
    return first in (b"{", b"[")


async def relay_injected(
    request: web.BaseRequest,
    site: Site,
    origin: OriginResponse,
    headers: CIMultiDict[str],
    *,
    candidate: Candidate,
    client_host: str,
    scan_limit: int,
    idle: float,
    metrics: Metrics,
) -> web.StreamResponse:
    source = csp_source(request, site, client_host)
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
        decide,
        own_marker=site.own_marker,
        conflicts=site.conflicts,
        limit=scan_limit,
        xml=candidate.xml,
        decisions=site.head_decisions,
    )
    decoder = make_decoder(candidate.coding)
    held: list[bytes] = []
    held_bytes = 0
    ready: list[bytes] = []
    # Output of the chunk the injector decided in, still to be decoded: a small chunk
    # can inflate to megabytes, so it streams piece by piece like the rest.
    pending: Iterator[bytes] = iter(())
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
            held_bytes += len(chunk)
            pieces = decoder.decompress(chunk)
            for piece in pieces:
                # Leading blanks may come in pieces of their own: judge the first real byte.
                lead = _first_byte(piece) if first else b""
                if lead:
                    first = False
                    if _looks_like_data(lead):
                        outcome = "not_html"
                        break
                ready.append(injector.feed(piece))
                if injector.decided:
                    pending = pieces
                    break
            if outcome:
                break
            if not injector.decided and held_bytes > scan_limit:
                # Encoded bytes that decode to (almost) nothing: never hold more
                # than the scan limit of them, whatever the decoder makes of it.
                outcome = "no_marker"
                break
    except CodecError:
        outcome = "bad_encoding"
    except (OriginError, TimeoutError) as exc:
        raise OriginFailed from exc
    outcome = outcome or injector.outcome or "no_marker"
    metrics.child(metrics.injections, site.key, outcome).inc()
    if outcome != "injected":
        return await relay_untouched(request, site, origin, headers, metrics, idle=idle, held=held)

    coding = injected_coding(request, candidate)
    describe_injected(headers, site, coding)
    if csp.plan is not None:
        _replace_csp(headers, csp.plan)
    response = RelayedResponse(status=origin.status, reason=origin.reason, headers=headers)
    if coding == "identity" and candidate.coding == "identity" and origin.content.complete:
        # The usual page: all of it here, nothing to decode or encode. One write.
        page = b"".join((*ready, *pending, origin.content.take()))
        response.content_length = len(page)
        response.send_headers_with_body()
        body: AsyncIterator[bytes] = _once(page)
    else:
        body = _encoded(make_encoder(coding), decoder, b"".join(ready), pending, origin)
        if origin.content_length is not None and origin.content_length <= SMALL_PAGE_BYTES:
            gathered = await _gather(body, SMALL_PAGE_BYTES * 4)
            if gathered.complete:
                # A small page goes out in one write with its length: no chunks, fewer syscalls.
                response.content_length = sum(len(p) for p in gathered.parts)
                response.send_headers_with_body()
            body = gathered.replay(body)
    await response.prepare(request)
    if await stream_body(request, ClientSender(response, idle), body, site, metrics):
        await response.write_eof()
    return response


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


@dataclass
class _Gathered:
    parts: list[bytes]
    complete: bool
    error: BaseException | None

    async def replay(self, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """What was gathered (as one piece), then the rest or the error that stopped it."""
        if self.parts:
            yield b"".join(self.parts)
        if self.error is not None:
            raise self.error
        if not self.complete:
            async for part in rest:
                yield part


async def _gather(body: AsyncIterator[bytes], limit: int) -> _Gathered:
    """Read `body` to its end unless it grows past `limit` or fails (kept for replay)."""
    parts: list[bytes] = []
    size = 0
    try:
        async for part in body:
            parts.append(part)
            size += len(part)
            if size > limit:
                return _Gathered(parts, complete=False, error=None)
    except Exception as exc:  # replayed to stream_body, which handles it as before
        return _Gathered(parts, complete=False, error=exc)
    return _Gathered(parts, complete=True, error=None)


async def _encoded(
    encoder: Encoder,
    decoder: Decoder,
    ready: bytes,
    pending: Iterator[bytes],
    origin: OriginResponse,
) -> AsyncIterator[bytes]:
    """The injected page, encoded for the client and flushed chunk by chunk."""
    yield encoder.compress(ready)
    for piece in pending:
        yield encoder.compress(piece)
    async for chunk in origin.content.iter_any():
        # Piece by piece: a compression bomb never sits whole in memory.
        for piece in decoder.decompress(chunk):
            yield encoder.compress(piece)
    yield encoder.compress(decoder.finish()) + encoder.finish()
