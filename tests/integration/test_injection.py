"""PROXY-CHECKLIST 1-13 and 34: the recorder tag, end to end through a real gateway.

Every test goes client -> gateway -> real aiohttp origin and asserts on the bytes
the client receives: the page with exactly one tag at the expected place, or the
origin's bytes untouched (with their own length, validators and coding).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import re
import time
import tracemalloc
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from xml.etree import ElementTree

import aiohttp
import brotli
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDictProxy

from gateway.edge.sites import Site
from tests.integration.conftest import (
    GatewayFactory,
    Origin,
    RunningGateway,
    raw_exchange,
)
from tests.integration.origin_app import PAGE, compress

CHROME_AE = "gzip, deflate, br, zstd"
MARKER = b"/__rec/recorder.js"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
CONFLICT_SCRIPT = '<script src="https://rec.smartlook.com/recorder.js"></script>'

Params = Sequence[tuple[str, str]] | Mapping[str, str]


# --------------------------------------------------------------------------- helpers


@dataclass
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    raw: bytes  # the bytes on the wire (after de-chunking)

    @property
    def coding(self) -> str:
        return self.headers.get("Content-Encoding", "identity")

    @property
    def data(self) -> bytes:
        """The body decoded as its Content-Encoding says (proves the label matches the bytes)."""
        return decode(self.raw, self.coding)


def decode(raw: bytes, coding: str) -> bytes:
    coding = coding.strip().lower()
    if coding in ("identity", ""):
        return raw
    if coding == "gzip":
        return gzip.decompress(raw)
    if coding == "deflate":
        return zlib.decompress(raw)  # RFC 9110: deflate is the zlib format
    if coding == "br":
        return bytes(brotli.decompress(raw))
    if coding == "zstd":
        return bytes(zstandard.ZstdDecompressor().decompressobj().decompress(raw))
    raise AssertionError(f"unexpected Content-Encoding {coding!r}")


def encode(data: bytes, coding: str) -> bytes:
    return compress(coding, data)


async def fetch(
    client: aiohttp.ClientSession,
    url: str,
    params: Params | None = None,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    accept_encoding: str | None = CHROME_AE,
) -> Reply:
    sent = dict(headers or {})
    skip: list[str] = []
    if accept_encoding is None:
        skip.append("Accept-Encoding")
    else:
        sent.setdefault("Accept-Encoding", accept_encoding)
    async with client.request(
        method, url, params=params, headers=sent, skip_auto_headers=skip, allow_redirects=False
    ) as response:
        raw = await response.read()
        return Reply(response.status, response.headers, raw)


async def from_origin(origin: Origin, path: str, params: Params | None = None) -> Reply:
    """What the origin itself answers: the reference for untouched bodies."""
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.get(
            origin.url + path,
            params=params,
            skip_auto_headers=["Accept-Encoding"],
            allow_redirects=False,
        ) as response,
    ):
        return Reply(response.status, response.headers, await response.read())


def site_of(gw: RunningGateway) -> Site:
    return gw.gateway.sites[0]


def tag_of(gw: RunningGateway, nonce: str | None = None) -> bytes:
    return site_of(gw).tag(nonce)


def inserted(
    doc: bytes, tag: bytes, *, after: bytes | None = None, before: bytes | None = None
) -> bytes:
    """`doc` with `tag` right after the first `after` (or right before the first `before`)."""
    if after is not None:
        point = doc.index(after) + len(after)
    else:
        assert before is not None
        point = doc.index(before)
    return doc[:point] + tag + doc[point:]


def assert_one_tag(data: bytes, original: bytes, tag: bytes) -> None:
    assert data.count(tag) == 1, data
    assert data.count(MARKER) == original.count(MARKER) + 1
    assert data.replace(tag, b"", 1) == original


def injections(gw: RunningGateway, outcome: str) -> float:
    return gw.metric("gateway_injections_total", site="shop", outcome=outcome)


async def counted(gw: RunningGateway, outcome: str, expected: float) -> bool:
    """Whether gateway_injections_total{outcome} reaches `expected` (it settles just after)."""
    value = await gw.metric_becomes(
        "gateway_injections_total", expected, site="shop", outcome=outcome
    )
    return value == expected


def vary_tokens(headers: CIMultiDictProxy[str]) -> list[str]:
    return [
        t.strip().lower() for v in headers.getall("Vary", []) for t in v.split(",") if t.strip()
    ]


def html_params(body: str | bytes, **extra: str) -> list[tuple[str, str]]:
    text = body.decode() if isinstance(body, bytes) else body
    return [("body", text), *extra.items()]


# ---------------------------------------------------------------- 1, 2: one tag, any chunking

PAGE_EXPECTED_AFTER = b'<meta charset="utf-8">'


async def test_one_tag_in_html_page(gw: RunningGateway, client: aiohttp.ClientSession) -> None:
    reply = await fetch(client, gw.url + "/html", accept_encoding="identity")
    assert reply.status == 200
    assert reply.coding == "identity"
    assert reply.raw == inserted(PAGE, tag_of(gw), after=PAGE_EXPECTED_AFTER)
    assert_one_tag(reply.raw, PAGE, tag_of(gw))
    assert await counted(gw, "injected", 1)


async def test_one_tag_with_one_byte_chunks(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    reply = await fetch(
        client,
        gw.url + "/html",
        {"chunk": "1", "delay": "0.002"},
        accept_encoding="identity",
    )
    assert reply.status == 200
    assert reply.raw == inserted(PAGE, tag_of(gw), after=PAGE_EXPECTED_AFTER)


async def test_one_tag_with_one_byte_chunks_of_gzip(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    reply = await fetch(
        client, gw.url + "/html", {"chunk": "1", "encoding": "gzip"}, accept_encoding="gzip"
    )
    assert reply.coding == "gzip"
    assert reply.data == inserted(PAGE, tag_of(gw), after=PAGE_EXPECTED_AFTER)


UPPER = (
    b"<!DOCTYPE HTML>\n<HTML LANG=en>\n<HEAD>\n<META CHARSET=UTF-8>\n<TITLE>Up</TITLE>\n"
    b"</HEAD>\n<BODY><P>text</P></BODY></HTML>"
)


@pytest.mark.parametrize("chunk", range(1, 24))
async def test_marker_split_at_any_boundary_and_in_upper_case(
    gw: RunningGateway, client: aiohttp.ClientSession, chunk: int
) -> None:
    reply = await fetch(
        client,
        gw.url + "/html",
        html_params(UPPER, chunk=str(chunk), delay="0.001"),
        accept_encoding="identity",
    )
    assert reply.raw == inserted(UPPER, tag_of(gw), after=b"<META CHARSET=UTF-8>")


async def test_head_split_as_he_ad(gw: RunningGateway, client: aiohttp.ClientSession) -> None:
    doc = b"<html><he" + b"ad><title>x</title></head><body>b</body></html>"
    # chunk=9 cuts exactly between "<he" and "ad>"; the delay keeps the pieces apart.
    reply = await fetch(
        client,
        gw.url + "/html",
        html_params(doc, chunk="9", delay="0.05"),
        accept_encoding="identity",
    )
    assert reply.raw == inserted(doc, tag_of(gw), after=b"<head>")


# ---------------------------------------------------------------- 3: where the tag goes

PLACEMENTS = [
    pytest.param(
        b'<!doctype html><html><head><meta charset="utf-8"><title>t</title></head><body>x</body></html>',
        {"after": b'<meta charset="utf-8">'},
        id="after-meta-charset",
    ),
    pytest.param(
        b'<!doctype html><html><head>\n  <meta charset="utf-8">\n  '
        b'<meta http-equiv="X-UA-Compatible" content="IE=edge">\n  <title>t</title></head><body>x</body></html>',
        {"after": b'<meta http-equiv="X-UA-Compatible" content="IE=edge">'},
        id="after-x-ua-compatible",
    ),
    pytest.param(
        b'<!doctype html><html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
        b"<title>t</title></head><body>x</body></html>",
        {"after": b'charset=utf-8">'},
        id="after-http-equiv-content-type",
    ),
    pytest.param(
        b'<!doctype html><html><head><meta name="viewport" content="width=device-width">'
        b"<title>t</title></head><body>x</body></html>",
        {"after": b"<head>"},
        id="after-head-when-no-charset",
    ),
    pytest.param(
        b'<!doctype html><html><head class="h"><title>t</title></head><body>x</body></html>',
        {"after": b'<head class="h">'},
        id="after-head-with-attributes",
    ),
    pytest.param(
        b'<!doctype html><meta charset="utf-8"><title>t</title><p>x</p>',
        {"after": b'<meta charset="utf-8">'},
        id="implied-head",
    ),
    pytest.param(
        b"<!doctype html><html><body><p>x</p></body></html>",
        {"after": b"<body>"},
        id="no-head-after-body-tag",
    ),
    pytest.param(
        b"<!doctype html>\n<p>first content</p>",
        {"before": b"<p>"},
        id="no-head-before-first-element",
    ),
    pytest.param(
        b"<!doctype html>\nJust text <b>bold</b>",
        {"before": b"Just text"},
        id="no-head-before-first-text",
    ),
]


@pytest.mark.parametrize(("doc", "where"), PLACEMENTS)
@pytest.mark.parametrize("chunk", ["0", "1"])
async def test_tag_placement(
    gw: RunningGateway,
    client: aiohttp.ClientSession,
    doc: bytes,
    where: dict[str, bytes],
    chunk: str,
) -> None:
    reply = await fetch(
        client, gw.url + "/html", html_params(doc, chunk=chunk), accept_encoding="identity"
    )
    assert reply.status == 200
    assert reply.raw == inserted(doc, tag_of(gw), **where)


# ---------------------------------------------------------------- 4: decoys

DECOYS = [
    pytest.param(
        b"<!doctype html><!-- <head><body> --><html><head><title>t</title></head><body>x</body></html>",
        {"after": b"<html><head>"},
        id="comment-before-head",
    ),
    pytest.param(
        b"<!doctype html><html data-x=\"<head><body>\" title='<head>'><head><title>t</title>"
        b"</head><body>x</body></html>",
        {"after": b"'><head>"},
        id="attribute-values",
    ),
    pytest.param(
        b"<!doctype html><html><head><script>var s = '<meta charset=\"utf-8\"></head><body>';</script>"
        b"<title>t</title></head><body>x</body></html>",
        {"after": b"<html><head>"},
        id="script-text",
    ),
    pytest.param(
        b'<!doctype html><html><head><!-- <meta charset="utf-8"> --><title>a <body> b</title>'
        b"</head><body>x</body></html>",
        {"after": b"<html><head>"},
        id="comment-and-title-in-head",
    ),
    pytest.param(
        b"<!doctype html><html><head><!-- " + CONFLICT_SCRIPT.encode() + b" -->"
        b'<!-- <script src="/__rec/recorder.js"></script> --><title>t</title></head><body>x</body></html>',
        {"after": b"<html><head>"},
        id="commented-out-recorders",
    ),
]


@pytest.mark.parametrize(("doc", "where"), DECOYS)
@pytest.mark.parametrize("chunk", ["0", "1", "3"])
async def test_decoy_markers_ignored(
    gw: RunningGateway,
    client: aiohttp.ClientSession,
    doc: bytes,
    where: dict[str, bytes],
    chunk: str,
) -> None:
    reply = await fetch(
        client, gw.url + "/html", html_params(doc, chunk=chunk), accept_encoding="identity"
    )
    assert reply.raw == inserted(doc, tag_of(gw), **where)


# ---------------------------------------------------------------- 5: nothing in the first 64 KiB


@pytest.mark.parametrize("chunk", ["0", "4096"])
async def test_no_insertion_point_in_first_64k_passes_unchanged(
    gw: RunningGateway, client: aiohttp.ClientSession, origin: Origin, chunk: str
) -> None:
    params = {
        "before": "<!doctype html><!--",
        "fill": "x",
        "n": str(70_000),
        "after": "--><html><head><title>t</title></head><body>late</body></html>",
        "chunk": chunk,
    }
    reference = await from_origin(origin, "/padded", params)
    reply = await fetch(client, gw.url + "/padded", params)
    assert reply.status == 200
    assert reply.raw == reference.raw
    assert MARKER not in reply.raw
    assert "Content-Encoding" not in reply.headers
    if chunk == "0":
        assert reply.headers["Content-Length"] == str(len(reference.raw))
    else:
        assert "Content-Length" not in reply.headers
    assert await counted(gw, "no_marker", 1)


async def test_head_found_just_under_the_scan_limit_is_injected(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    before = "<!doctype html><!--"
    after = "--><html><head><title>t</title></head><body>x</body></html>"
    n = 60_000
    reply = await fetch(
        client,
        gw.url + "/padded",
        {"before": before, "n": str(n), "after": after, "chunk": "1000"},
        accept_encoding="identity",
    )
    doc = (before + "x" * n + after).encode()
    assert reply.raw == inserted(doc, tag_of(gw), after=b"--><html><head>")


# ---------------------------------------------------------------- 6: streaming


@pytest.mark.parametrize("accept", ["identity", "gzip"])
async def test_first_bytes_arrive_before_slow_origin_finishes(
    gw: RunningGateway, client: aiohttp.ClientSession, accept: str
) -> None:
    head = '<!doctype html><html><head><meta charset="utf-8"><title>slow</title></head><body>'
    # Hex digests barely compress, so a gzip origin's page also comes in many pieces.
    paragraphs = "".join(
        f"<p>paragraph {i:03d} {hashlib.sha256(str(i).encode()).hexdigest()}</p>" for i in range(24)
    )
    body = head + paragraphs + "</body></html>"
    # 40-byte pieces, 0.05 s apart: the whole page takes well over a second.
    # The origin compresses when the client takes gzip (an identity origin stays identity).
    extra = {"encoding": "gzip"} if accept == "gzip" else {}
    params = html_params(body, chunk="40", delay="0.05", **extra)
    started = time.monotonic()
    async with client.get(
        gw.url + "/html", params=params, headers={"Accept-Encoding": accept}
    ) as response:
        assert response.status == 200
        first = await response.content.readany()
        first_at = time.monotonic() - started
        rest = await response.read()
        total_at = time.monotonic() - started
        coding = response.headers.get("Content-Encoding", "identity")
    assert coding == accept
    assert total_at > 1.2
    assert first_at < total_at / 2, (first_at, total_at)
    # Sync-flushed gzip: the first bytes decode on their own, tag included.
    gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
    early = gunzip.decompress(first) if coding == "gzip" else first
    assert tag_of(gw) in early
    assert decode(first + rest, coding) == inserted(
        body.encode(), tag_of(gw), after=b'<meta charset="utf-8">'
    )


# ---------------------------------------------------------------- 7: never injected


NEVER = [
    pytest.param("/html", {"type": "text/plain; charset=utf-8"}, "not_html", id="text-plain"),
    pytest.param("/html", {"type": "application/json"}, "not_html", id="application-json"),
    pytest.param("/html", {"type": "image/svg+xml"}, "not_html", id="svg"),
    pytest.param("/json-as-html", {}, "not_html", id="json-as-html"),
    pytest.param(
        "/html",
        {"body": '\n  {"a": "<head>", "b": [1, 2]}', "chunk": "1", "delay": "0.01"},
        "not_html",
        id="json-as-html-whitespace-then-1-byte-chunks",
    ),
    pytest.param(
        "/html",
        {"body": '\ufeff[{"a": "<body>"}]', "chunk": "1", "delay": "0.01"},
        "not_html",
        id="json-array-with-bom-1-byte-chunks",
    ),
    pytest.param("/html", {"status": "206"}, "status", id="206"),
    pytest.param("/html", {"status": "203"}, "status", id="203"),
    pytest.param("/html", {"status": "404"}, "status", id="404-page"),
    pytest.param("/html", {"status": "302", "h": "Location: /elsewhere"}, "status", id="302"),
    pytest.param(
        "/html",
        {"h": 'Content-Disposition: attachment; filename="p.html"'},
        "attachment",
        id="attachment",
    ),
    pytest.param(
        "/html",
        {"h": "Cache-Control: public, max-age=60, no-transform"},
        "no_transform",
        id="no-transform",
    ),
    pytest.param(
        "/html",
        {
            "body": "<!doctype html><html amp lang=en><head><meta charset=utf-8><title>a</title></head><body>x</body></html>"
        },
        "amp",
        id="amp",
    ),
    pytest.param(
        "/html",
        {
            "body": "<!doctype html><html \u26a1><head><meta charset=utf-8><title>a</title></head><body>x</body></html>"
        },
        "amp",
        id="amp-lightning",
    ),
    pytest.param(
        "/html",
        {
            "body": "<!doctype html><HTML AMP><head><title>a</title></head><body>x</body></html>",
            "chunk": "1",
        },
        "amp",
        id="amp-upper-1-byte",
    ),
    pytest.param(
        "/html",
        {"body": PAGE.decode(), "charset_enc": "utf-16", "type": "text/html"},
        "utf16",
        id="utf16-bom",
    ),
    pytest.param(
        "/html",
        {"body": PAGE.decode(), "charset_enc": "utf-16", "type": "text/html", "chunk": "1"},
        "utf16",
        id="utf16-bom-1-byte",
    ),
    pytest.param(
        "/html",
        {"body": PAGE.decode(), "charset_enc": "utf-16-le", "type": "text/html; charset=UTF-16LE"},
        "utf16",
        id="utf16-charset",
    ),
    pytest.param(
        "/html",
        {"body": PAGE.decode(), "charset_enc": "utf-16-be", "type": 'text/html; charset="UTF-16"'},
        "utf16",
        id="utf16-quoted-charset",
    ),
    pytest.param("/html", {"body": ""}, "no_marker", id="empty-body"),
    pytest.param("/html", {"body": "   \n\t  ", "chunk": "2"}, "no_marker", id="blank-body"),
    pytest.param(
        "/html",
        {
            "body": '<!doctype html><html><head><meta charset="utf-8">'
            '<script src="/__rec/recorder.js?v=old" async></script></head><body>x</body></html>'
        },
        "already",
        id="already-tagged",
    ),
    pytest.param(
        "/html",
        {
            "body": "<!doctype html><html><head><title>t</title>"
            "<SCRIPT SRC='/__REC/RECORDER.JS'></SCRIPT></head><body>x</body></html>",
            "chunk": "2",
        },
        "already",
        id="already-tagged-upper",
    ),
    pytest.param(
        "/html",
        {
            "body": '<!doctype html><html><head><meta charset="utf-8"><title>t</title>'
            + CONFLICT_SCRIPT
            + "</head><body>x</body></html>"
        },
        "conflict",
        id="conflicting-recorder",
    ),
    pytest.param(
        "/html",
        {
            "body": "<!doctype html><html><head><script>(function(h,o,t,j){h.hj=h.hj||function(){};"
            "t=o.createElement('script');t.src='https://static.hotjar.com/c/hotjar-1.js';})"
            "(window,document);</script></head><body>x</body></html>",
            "chunk": "5",
        },
        "conflict",
        id="conflicting-inline-recorder",
    ),
]


@pytest.mark.parametrize(("path", "params", "outcome"), NEVER)
async def test_never_injected(
    gw: RunningGateway,
    client: aiohttp.ClientSession,
    origin: Origin,
    path: str,
    params: dict[str, str],
    outcome: str,
) -> None:
    reference = await from_origin(origin, path, params)
    reply = await fetch(client, gw.url + path, params)
    assert reply.status == reference.status
    assert reply.raw == reference.raw
    assert reply.headers.get("Content-Length") == reference.headers.get("Content-Length")
    assert reply.headers.get("Content-Type") == reference.headers.get("Content-Type")
    assert "Accept-Ranges" not in reply.headers
    assert await gw.metric_becomes("gateway_injections_total", 1, site="shop", outcome=outcome) == 1
    assert injections(gw, "injected") == 0


async def test_conflict_is_counted_per_page(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    body = "<!doctype html><html><head>" + CONFLICT_SCRIPT + "</head><body>x</body></html>"
    for _ in range(3):
        reply = await fetch(client, gw.url + "/html", {"body": body}, accept_encoding="identity")
        assert reply.raw == body.encode()
    assert await counted(gw, "conflict", 3)


async def test_204_passes_through(gw: RunningGateway, client: aiohttp.ClientSession) -> None:
    reply = await fetch(client, gw.url + "/status/204")
    assert reply.status == 204
    assert reply.raw == b""
    assert reply.headers["ETag"] == '"s"'
    assert injections(gw, "injected") == 0


async def test_304_for_origin_tag_passes_through(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    reply = await fetch(client, gw.url + "/page", headers={"If-None-Match": '"v1"'})
    assert reply.status == 304
    assert reply.raw == b""
    assert reply.headers["ETag"] == '"v1"'
    assert injections(gw, "injected") == 0


async def test_head_is_never_given_a_body(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    reply = await fetch(client, gw.url + "/html", method="HEAD")
    assert reply.status == 200
    assert reply.raw == b""
    assert injections(gw, "injected") == 0


async def test_post_html_answer_not_injected(
    gw: RunningGateway, client: aiohttp.ClientSession, origin: Origin
) -> None:
    # /echo answers JSON; a POST is never a page load we record.
    async with client.post(gw.url + "/echo", data=b"x") as response:
        assert MARKER not in await response.read()
    assert injections(gw, "injected") == 0


# ---------------------------------------------------------------- 8: validators of a modified page


async def test_injected_response_validators(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    version = site_of(gw).snippet_version
    reply = await fetch(client, gw.url + "/page", accept_encoding="identity")
    assert reply.status == 200
    assert reply.raw == inserted(PAGE, tag_of(gw), after=PAGE_EXPECTED_AFTER)
    length = reply.headers.get("Content-Length")
    assert length is None or length == str(len(reply.raw))
    assert reply.headers.getall("ETag") == [f'W/"v1-rec{version}"']
    assert re.fullmatch(r"[0-9a-f]{10}", version)
    assert "Last-Modified" not in reply.headers
    assert reply.headers["Accept-Ranges"] == "none"


async def test_unmodified_response_keeps_validators(
    gw: RunningGateway, client: aiohttp.ClientSession, origin: Origin
) -> None:
    # A candidate page whose head never came: held, then sent exactly as received.
    params = [
        ("body", "<!doctype html><!-- only a comment -->"),
        ("h", 'ETag: "strong-1"'),
        ("h", "Last-Modified: Mon, 02 Nov 2026 10:00:00 GMT"),
        ("h", "Accept-Ranges: bytes"),
    ]
    reference = await from_origin(origin, "/html", params)
    reply = await fetch(client, gw.url + "/html", params)
    assert reply.raw == reference.raw == b"<!doctype html><!-- only a comment -->"
    assert reply.headers["Content-Length"] == reference.headers["Content-Length"]
    assert reply.headers.getall("ETag") == ['"strong-1"']
    assert reply.headers["Last-Modified"] == "Mon, 02 Nov 2026 10:00:00 GMT"
    assert reply.headers["Accept-Ranges"] == "bytes"
    assert "Content-Encoding" not in reply.headers
    # And a non-HTML file.
    image = [
        ("type", "image/png"),
        ("body", "\x89PNG\r\n\x1a\nimage"),
        ("charset_enc", "latin-1"),
        ("h", 'ETag: "img-7"'),
    ]
    reply = await fetch(client, gw.url + "/html", image)
    assert reply.headers.getall("ETag") == ['"img-7"']
    assert reply.raw == b"\x89PNG\r\n\x1a\nimage"
    assert reply.headers["Content-Length"] == "13"


DIGESTS = [
    ("Content-MD5", "Q2hlY2sgSW50ZWdyaXR5IQ=="),
    ("Digest", "SHA-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE="),
    ("Content-Digest", "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"),
    ("Repr-Digest", "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"),
]


async def test_injected_response_drops_origin_digests(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    """Digests describe the origin's bytes; after injection they would be wrong."""
    params = [("h", f"{name}: {value}") for name, value in DIGESTS]
    reply = await fetch(client, gw.url + "/html", params)
    assert_one_tag(reply.data, PAGE, tag_of(gw))
    for name, _ in DIGESTS:
        assert name not in reply.headers, name
    # Untouched pages keep them.
    untouched = await fetch(
        client, gw.url + "/html", [*params, ("h", "Cache-Control: no-transform")]
    )
    assert untouched.raw == PAGE
    for name, value in DIGESTS:
        assert untouched.headers.getall(name) == [value]


async def test_weak_origin_etag_stays_weak_and_gets_version(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    version = site_of(gw).snippet_version
    reply = await fetch(client, gw.url + "/html", {"h": 'ETag: W/"abc"'})
    assert reply.headers.getall("ETag") == [f'W/"abc-rec{version}"']


# ---------------------------------------------------------------- 9: revalidation


async def test_current_injected_etag_revalidates_to_304(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    first = await fetch(client, gw.url + "/page")
    etag = first.headers["ETag"]
    again = await fetch(client, gw.url + "/page", headers={"If-None-Match": etag})
    assert again.status == 304
    assert again.raw == b""
    assert again.headers.getall("ETag") == [etag]
    assert "Last-Modified" not in again.headers


async def test_other_snippet_version_gets_fresh_page(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    assert site_of(gw).snippet_version != "0123456789"
    reply = await fetch(
        client,
        gw.url + "/page",
        headers={"If-None-Match": 'W/"v1-rec0123456789"'},
        accept_encoding="identity",
    )
    assert reply.status == 200
    assert reply.raw == inserted(PAGE, tag_of(gw), after=PAGE_EXPECTED_AFTER)
    assert reply.headers["ETag"] == f'W/"v1-rec{site_of(gw).snippet_version}"'


@pytest.mark.parametrize(
    ("sent", "forwarded"),
    [
        ('"other", W/"v1-rec0123456789", W/"v1-rec{current}"', ['"other", W/"v1"']),
        ('W/"v1-rec0123456789"', []),
        ('W/"v1-rec0123456789", "v1"', ['"v1"']),
        ("*", ["*"]),
    ],
)
async def test_if_none_match_translated_for_origin(
    gw: RunningGateway,
    client: aiohttp.ClientSession,
    origin: Origin,
    sent: str,
    forwarded: list[str],
) -> None:
    """Our tags become the origin's own; tags of other snippet versions never reach it."""
    value = sent.replace("{current}", site_of(gw).snippet_version)
    async with client.get(gw.url + "/echo", headers={"If-None-Match": value}) as response:
        seen = await response.json()
    assert [v for k, v in seen["headers"] if k.lower() == "if-none-match"] == forwarded


# ---------------------------------------------------------------- 10: content codings


CODING_CASES = [
    # (origin coding, client Accept-Encoding or None for no header, expected output coding)
    *[(c, CHROME_AE, c) for c in ("gzip", "deflate", "br", "zstd")],
    *[(c, f"{c}, identity", c) for c in ("gzip", "deflate", "br", "zstd")],
    *[(c, "gzip, deflate", "gzip") for c in ("br", "zstd")],
    *[(c, "gzip", "gzip") for c in ("deflate", "br", "zstd")],
    *[(c, "identity", "identity") for c in ("gzip", "deflate", "br", "zstd")],
    *[(c, None, "identity") for c in ("gzip", "br")],
    ("br", "gzip;q=0, br;q=0, identity", "identity"),
    ("gzip", "GZIP", "gzip"),
    ("br", "x-gzip", "gzip"),
]


@pytest.mark.parametrize(("origin_coding", "accept", "expected"), CODING_CASES)
@pytest.mark.parametrize("chunk", ["0", "7"])
async def test_encoded_origin_injected_and_reencoded(
    gw: RunningGateway,
    client: aiohttp.ClientSession,
    origin_coding: str,
    accept: str | None,
    expected: str,
    chunk: str,
) -> None:
    reply = await fetch(
        client,
        gw.url + "/html",
        {"encoding": origin_coding, "chunk": chunk},
        accept_encoding=accept,
    )
    assert reply.status == 200
    assert reply.coding == expected
    if expected == "identity":
        assert "Content-Encoding" not in reply.headers
    assert reply.data == inserted(PAGE, tag_of(gw), after=PAGE_EXPECTED_AFTER)
    assert "accept-encoding" in vary_tokens(reply.headers)
    length = reply.headers.get("Content-Length")
    assert length is None or length == str(len(reply.raw))


async def test_identity_client_of_identity_origin_gets_identity(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    reply = await fetch(client, gw.url + "/html", accept_encoding="identity")
    assert "Content-Encoding" not in reply.headers
    assert reply.raw == inserted(PAGE, tag_of(gw), after=PAGE_EXPECTED_AFTER)


async def test_existing_vary_is_kept_and_extended(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    reply = await fetch(client, gw.url + "/html", {"encoding": "gzip", "h": "Vary: Cookie"})
    tokens = vary_tokens(reply.headers)
    assert "cookie" in tokens
    assert "accept-encoding" in tokens
    assert tokens.count("accept-encoding") == 1


async def test_corrupt_gzip_origin_is_not_injected(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    junk = "\x1f\x8b\x08\x00garbage that is not deflate"
    reply = await fetch(
        client,
        gw.url + "/html",
        [("body", junk), ("charset_enc", "latin-1"), ("h", "Content-Encoding: gzip")],
    )
    assert reply.raw == junk.encode("latin-1")
    assert reply.headers["Content-Encoding"] == "gzip"
    assert injections(gw, "injected") == 0


async def test_truncated_gzip_after_injection_aborts_the_client(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    """Checklist 28 for codecs: headers went out, then the gzip stream ends early.

    HTTP framing is intact (exact Content-Length), only the gzip trailer is missing: the
    client must see a broken transfer, never a clean end of a truncated page.
    """
    page = PAGE + b"<!-- " + b"filler " * 2000 + b"-->"
    packer = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    cut = packer.compress(page) + packer.flush(zlib.Z_SYNC_FLUSH)  # no final block, no trailer
    params = [("body", cut.decode("latin-1")), ("charset_enc", "latin-1")]
    params.append(("h", "Content-Encoding: gzip"))
    with pytest.raises(aiohttp.ClientPayloadError):
        async with client.get(
            gw.url + "/html", params=params, headers={"Accept-Encoding": "identity"}
        ) as response:
            assert response.status == 200
            await response.read()


async def test_xhtml_page_stays_well_formed_xml(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    """application/xhtml+xml goes to the browser's XML parser: one bad byte and the page
    is an error screen. Whatever the gateway does, the document must stay well-formed."""
    doc = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE html>\n'
        '<html xmlns="http://www.w3.org/1999/xhtml"><head><meta charset="UTF-8"/>'
        "<title>x</title></head><body><p>x</p></body></html>"
    )
    reply = await fetch(
        client,
        gw.url + "/html",
        {"body": doc, "type": "application/xhtml+xml; charset=utf-8"},
    )
    assert reply.status == 200
    ElementTree.fromstring(reply.data)  # raises ParseError when not well-formed
    assert reply.data.count(tag_of(gw)) == 1


# ---------------------------------------------------------------- 11: stacked or unknown codings


@pytest.mark.parametrize(
    ("label", "raw"),
    [
        ("gzip, br", encode(encode(PAGE, "gzip"), "br")),
        ("br, gzip", encode(encode(PAGE, "br"), "gzip")),
        ("compress", b"\x1f\x9d\x90<!doctype html>fake lzw"),
        ("x-custom", PAGE),
        ("aes128gcm", b"\x00" * 21 + PAGE),
    ],
)
async def test_stacked_or_unknown_coding_passes_untouched(
    gw: RunningGateway, client: aiohttp.ClientSession, label: str, raw: bytes
) -> None:
    params = [
        ("body", raw.decode("latin-1")),
        ("charset_enc", "latin-1"),
        ("h", f"Content-Encoding: {label}"),
    ]
    reply = await fetch(client, gw.url + "/html", params)
    assert reply.status == 200
    assert reply.raw == raw
    assert reply.headers.getall("Content-Encoding") == [label]
    assert reply.headers["Content-Length"] == str(len(raw))
    assert "Accept-Ranges" not in reply.headers
    assert await counted(gw, "encoding", 1)


# ---------------------------------------------------------------- 13: CSP


def directives(policy: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            out.setdefault(words[0].lower(), words[1:])
    return out


async def test_csp_nonce_policy_lends_its_nonce(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    policy = "script-src 'nonce-R4nd0m+/=' 'strict-dynamic'; object-src 'none'; base-uri 'none'"
    reply = await fetch(
        client,
        gw.url + "/html",
        [("h", f"Content-Security-Policy: {policy}")],
        accept_encoding="identity",
    )
    assert reply.raw == inserted(PAGE, tag_of(gw, "R4nd0m+/="), after=PAGE_EXPECTED_AFTER)
    assert b' nonce="R4nd0m+/="' in reply.raw
    assert reply.headers.getall("Content-Security-Policy") == [policy]


async def test_csp_host_list_policy_is_rewritten(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    policy = "default-src 'self'; script-src https://cdn.example.com; img-src *"
    reply = await fetch(
        client,
        gw.url + "/html",
        [("h", f"Content-Security-Policy: {policy}")],
        accept_encoding="identity",
    )
    assert reply.raw == inserted(PAGE, tag_of(gw), after=PAGE_EXPECTED_AFTER)
    (rewritten,) = reply.headers.getall("Content-Security-Policy")
    got = directives(rewritten)
    assert got["script-src"] == ["https://cdn.example.com", "http://shop.test/__rec/"]
    assert got["default-src"] == ["'self'"]
    assert got["img-src"] == ["*"]
    assert set(got) == {"default-src", "script-src", "img-src"}


async def test_csp_default_src_only_gets_script_and_connect(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    policy = "default-src https://cdn.example.com"
    reply = await fetch(
        client,
        gw.url + "/html",
        [("h", f"Content-Security-Policy: {policy}")],
        accept_encoding="identity",
    )
    assert reply.raw == inserted(PAGE, tag_of(gw), after=PAGE_EXPECTED_AFTER)
    got = directives(reply.headers["Content-Security-Policy"])
    assert got["default-src"] == ["https://cdn.example.com"]
    assert "http://shop.test/__rec/" in got["script-src"]
    assert "http://shop.test/__rec/" in got["connect-src"]


async def test_csp_strict_dynamic_without_nonce_is_skipped_and_counted(
    gw: RunningGateway, client: aiohttp.ClientSession, origin: Origin
) -> None:
    policy = "script-src 'strict-dynamic' 'sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='"
    params = [("h", f"Content-Security-Policy: {policy}")]
    reference = await from_origin(origin, "/html", params)
    reply = await fetch(client, gw.url + "/html", params)
    assert reply.raw == reference.raw == PAGE
    assert reply.headers["Content-Length"] == str(len(PAGE))
    assert reply.headers.getall("Content-Security-Policy") == [policy]
    assert await counted(gw, "csp_script", 1)
    assert injections(gw, "injected") == 0


async def test_csp_several_headers_all_satisfied(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    nonce_policy = "script-src 'nonce-abc123'"
    host_policy = "script-src https://cdn.example.com"
    reply = await fetch(
        client,
        gw.url + "/html",
        [
            ("h", f"Content-Security-Policy: {nonce_policy}"),
            ("h", f"Content-Security-Policy: {host_policy}"),
        ],
        accept_encoding="identity",
    )
    assert reply.raw == inserted(PAGE, tag_of(gw, "abc123"), after=PAGE_EXPECTED_AFTER)
    first, second = reply.headers.getall("Content-Security-Policy")
    assert first == nonce_policy
    got = directives(second)["script-src"]
    # Either our source or the nonce lets the tag through the second policy.
    assert "http://shop.test/__rec/" in got or "'nonce-abc123'" in got


async def test_csp_rewrite_survives_revalidation(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    """A 304 updates the cached response's headers (RFC 9111 4.3.4). If it carried the
    origin's policy back, the cached injected page would block its own tag."""
    policy = "script-src https://cdn.example.com"
    first = await fetch(client, gw.url + "/csp-page", {"csp": policy})
    assert_one_tag(first.data, PAGE, tag_of(gw))
    rewritten = first.headers.getall("Content-Security-Policy")
    assert rewritten != [policy]
    again = await fetch(
        client,
        gw.url + "/csp-page",
        {"csp": policy},
        headers={"If-None-Match": first.headers["ETag"]},
    )
    assert again.status == 304
    assert again.headers.getall("Content-Security-Policy") in ([], rewritten)


async def test_csp_meta_nonce_is_used(gw: RunningGateway, client: aiohttp.ClientSession) -> None:
    doc = (
        '<!doctype html><html><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"script-src 'nonce-m3ta' 'strict-dynamic'\">"
        "<title>t</title></head><body>x</body></html>"
    )
    for chunk in ("0", "1"):
        reply = await fetch(
            client, gw.url + "/html", html_params(doc, chunk=chunk), accept_encoding="identity"
        )
        assert reply.raw == inserted(
            doc.encode(), tag_of(gw, "m3ta"), after=b'<meta charset="utf-8">'
        )
        assert "Content-Security-Policy" not in reply.headers


async def test_csp_meta_strict_dynamic_without_nonce_skipped(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    doc = (
        '<!doctype html><html><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"script-src 'strict-dynamic' 'sha256-x'\">"
        "<title>t</title></head><body>x</body></html>"
    )
    reply = await fetch(client, gw.url + "/html", {"body": doc})
    assert reply.raw == doc.encode()
    assert reply.headers["Content-Length"] == str(len(doc))
    assert await counted(gw, "csp_script", 1)


async def test_csp_report_only_never_blocks(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    policy = "script-src 'none'; report-uri /csp"
    reply = await fetch(
        client,
        gw.url + "/html",
        [("h", f"Content-Security-Policy-Report-Only: {policy}")],
        accept_encoding="identity",
    )
    assert reply.raw == inserted(PAGE, tag_of(gw), after=PAGE_EXPECTED_AFTER)
    assert reply.headers.getall("Content-Security-Policy-Report-Only") == [policy]
    assert "Content-Security-Policy" not in reply.headers


# ---------------------------------------------------------------- 34: HEAD


async def test_head_of_injectable_page_matches_get(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    get = await fetch(client, gw.url + "/page")
    request = (
        "HEAD /page HTTP/1.1\r\nHost: shop.test\r\n"
        f"User-Agent: {client.headers['User-Agent']}\r\n"
        f"Accept-Encoding: {CHROME_AE}\r\nConnection: close\r\n\r\n"
    ).encode()
    answer = await raw_exchange(gw.port, request)
    head, sep, rest = answer.partition(b"\r\n\r\n")
    assert sep, answer
    assert rest == b"", rest  # no body, not even a chunked terminator
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 200")
    fields = [line.split(":", 1) for line in lines[1:]]
    names = {name.strip().lower(): value.strip() for name, value in fields}
    assert "content-length" not in names
    assert names["etag"] == get.headers["ETag"]
    assert "last-modified" not in names
    assert names["accept-ranges"] == "none"


@pytest.mark.parametrize(
    ("origin_coding", "accept"),
    [("gzip", "identity"), ("br", "gzip"), (None, CHROME_AE)],
)
async def test_head_of_injectable_page_describes_the_get_representation(
    gw: RunningGateway, client: aiohttp.ClientSession, origin_coding: str | None, accept: str
) -> None:
    """RFC 9110 9.3.2: HEAD sends the header fields GET would, so Content-Encoding and
    Vary must describe the injected representation, not the origin's."""
    params = {"encoding": origin_coding} if origin_coding else {}
    get = await fetch(client, gw.url + "/html", params, accept_encoding=accept)
    assert_one_tag(get.data, PAGE, tag_of(gw))
    head = await fetch(client, gw.url + "/html", params, method="HEAD", accept_encoding=accept)
    assert head.raw == b""
    assert "Content-Length" not in head.headers
    assert head.headers.get("ETag") == get.headers.get("ETag")
    assert head.headers.get("Content-Encoding") == get.headers.get("Content-Encoding")
    assert sorted(vary_tokens(head.headers)) == sorted(vary_tokens(get.headers))


# ---------------------------------------------------------------- policy: who is not recorded


async def test_excluded_path_not_injected(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    reply = await fetch(client, gw.url + "/admin/orders", accept_encoding="identity")
    assert reply.status == 200
    assert reply.raw == PAGE
    assert reply.headers["Content-Length"] == str(len(PAGE))
    assert await counted(gw, "excluded", 1)


async def test_recording_disabled(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(recording="enabled = false")
    reply = await fetch(client, gw.url + "/html")
    assert reply.raw == PAGE
    assert await counted(gw, "disabled", 1)


@pytest.mark.parametrize(
    "agent",
    [
        GOOGLEBOT,
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    ],
)
async def test_bot_not_injected(
    gw: RunningGateway, client: aiohttp.ClientSession, agent: str
) -> None:
    reply = await fetch(client, gw.url + "/html", headers={"User-Agent": agent})
    assert reply.raw == PAGE
    assert await counted(gw, "bot", 1)


async def test_gpc_not_injected_and_varies(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    reply = await fetch(client, gw.url + "/html", headers={"Sec-GPC": "1"})
    assert reply.raw == PAGE
    assert reply.headers["Content-Length"] == str(len(PAGE))
    assert "sec-gpc" in vary_tokens(reply.headers)
    assert await counted(gw, "gpc", 1)
    # The injected answer to a client without GPC varies on it too.
    injected = await fetch(client, gw.url + "/html")
    assert_one_tag(injected.data, PAGE, tag_of(gw))
    assert "sec-gpc" in vary_tokens(injected.headers)
    assert "accept-encoding" in vary_tokens(injected.headers)


async def test_gpc_ignored_when_site_does_not_respect_it(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(recording="respect_gpc = false")
    reply = await fetch(client, gw.url + "/html", headers={"Sec-GPC": "1"})
    assert_one_tag(reply.data, PAGE, tag_of(gw))
    assert "sec-gpc" not in vary_tokens(reply.headers)


async def test_mobile_not_injected_when_record_mobile_false(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(recording="record_mobile = false")
    reply = await fetch(client, gw.url + "/html", headers={"User-Agent": IPHONE})
    assert reply.raw == PAGE
    assert await counted(gw, "mobile", 1)
    desktop = await fetch(client, gw.url + "/html")
    assert_one_tag(desktop.data, PAGE, tag_of(gw))


async def test_mobile_injected_by_default(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    reply = await fetch(client, gw.url + "/html", headers={"User-Agent": IPHONE})
    assert_one_tag(reply.data, PAGE, tag_of(gw))


# ---------------------------------------------------------------- charsets


CHARSET_PAGES = [
    pytest.param(
        "utf-8",
        "text/html; charset=utf-8",
        '<!doctype html><html><head><meta charset="utf-8"><title>Caf\u00e9 \u65e5\u672c \u26a1</title></head>'
        "<body><p>\u00fcber \U0001f600 \u2014 \u00e9</p></body></html>",
        b'<meta charset="utf-8">',
        id="utf-8",
    ),
    pytest.param(
        "latin-1",
        "text/html; charset=ISO-8859-1",
        '<!doctype html><html><head><meta charset="iso-8859-1"><title>Caf\u00e9 \u00bd</title></head>'
        "<body><p>\u00fcber \u00e9\u00e8\u00ff\u00fe</p></body></html>",
        b'<meta charset="iso-8859-1">',
        id="iso-8859-1",
    ),
    pytest.param(
        "shift_jis",
        "text/html; charset=Shift_JIS",
        '<!doctype html><html><head><meta charset="Shift_JIS"><title>\u8868\u30bd\u80fd</title></head>'
        '<body><p title="\u30bd\u8868">\u65e5\u672c\u8a9e\u306e\u30da\u30fc\u30b8 \u5341\u8868</p></body></html>',
        b'<meta charset="Shift_JIS">',
        id="shift_jis",
    ),
    pytest.param(
        "shift_jis",
        "text/html",
        '<!doctype html><html><head><meta http-equiv="Content-Type" content="text/html; charset=Shift_JIS">'
        "<title>\u30bd\u8868</title></head><body>\u80fd</body></html>",
        b'charset=Shift_JIS">',
        id="shift_jis-meta-only",
    ),
]


@pytest.mark.parametrize(("encoding", "ctype", "text", "after"), CHARSET_PAGES)
@pytest.mark.parametrize("chunk", ["0", "1"])
async def test_charsets_keep_every_byte(
    gw: RunningGateway,
    client: aiohttp.ClientSession,
    encoding: str,
    ctype: str,
    text: str,
    after: bytes,
    chunk: str,
) -> None:
    raw = text.encode(encoding)
    reply = await fetch(
        client,
        gw.url + "/html",
        {"body": text, "charset_enc": encoding, "type": ctype, "chunk": chunk},
    )
    assert reply.headers["Content-Type"] == ctype
    assert reply.data == inserted(raw, tag_of(gw), after=after)


# ---------------------------------------------------------------- ranges


def origin_saw(origin: Origin, name: str) -> list[str]:
    seen = origin.state.requests[-1]
    return [v for k, v in seen["headers"] if k.lower() == name.lower()]


async def test_navigation_range_gets_full_injected_page(
    gw: RunningGateway, client: aiohttp.ClientSession, origin: Origin
) -> None:
    reply = await fetch(
        client,
        gw.url + "/ranged",
        headers={"Range": "bytes=0-10", "If-Range": '"r1"', "Sec-Fetch-Dest": "document"},
        accept_encoding="identity",
    )
    assert reply.status == 200
    assert reply.raw == inserted(PAGE, tag_of(gw), after=PAGE_EXPECTED_AFTER)
    assert "Content-Range" not in reply.headers
    assert reply.headers["Accept-Ranges"] == "none"
    assert origin_saw(origin, "Range") == []
    assert origin_saw(origin, "If-Range") == []


async def test_navigation_without_fetch_metadata_uses_accept(
    gw: RunningGateway, client: aiohttp.ClientSession, origin: Origin
) -> None:
    reply = await fetch(
        client,
        gw.url + "/ranged",
        headers={"Range": "bytes=0-10", "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"},
        accept_encoding="identity",
    )
    assert reply.status == 200
    assert_one_tag(reply.raw, PAGE, tag_of(gw))
    assert origin_saw(origin, "Range") == []


async def test_non_navigation_range_passes_206(
    gw: RunningGateway, client: aiohttp.ClientSession, origin: Origin
) -> None:
    body = "0123456789abcdefghij"
    reply = await fetch(
        client,
        gw.url + "/ranged",
        {"type": "image/png", "body": body},
        headers={"Range": "bytes=0-10", "Sec-Fetch-Dest": "image", "Accept": "image/*"},
    )
    assert reply.status == 206
    assert reply.raw == b"0123456789a"
    assert reply.headers["Content-Range"] == f"bytes 0-10/{len(body)}"
    assert reply.headers["Content-Length"] == "11"
    assert reply.headers["ETag"] == '"r1"'
    assert origin_saw(origin, "Range") == ["bytes=0-10"]


async def test_non_navigation_range_of_html_passes_206_untouched(
    gw: RunningGateway, client: aiohttp.ClientSession, origin: Origin
) -> None:
    reply = await fetch(
        client,
        gw.url + "/ranged",
        headers={"Range": "bytes=0-40", "Sec-Fetch-Dest": "empty", "Accept": "*/*"},
    )
    assert reply.status == 206
    assert reply.raw == PAGE[:41]
    assert MARKER not in reply.raw


# ---------------------------------------------------------------- property: any doc, chunking, coding

_PIECES = {
    "prefix": [
        "",
        "\ufeff",
        "\n",
        "<!doctype html>",
        "<!DOCTYPE html>\n",
        "<?xml version='1.0'?>",
        '\n {"json": 1}',
    ],
    "comment": [
        "",
        "<!-- <head> -->",
        "<!-- <script src='/__rec/recorder.js'></script> -->",
        "<!---->",
    ],
    "html": ["", "<html>", "<HTML lang=en>", '<html data-x="<head>">', "<html amp>", "<html\n>"],
    "head": ["", "<head>", "<HEAD>", "<head >", '<head data-h="</head>">'],
    "in_head": [
        '<meta charset="utf-8">',
        '<META HTTP-EQUIV="X-UA-Compatible" CONTENT="IE=edge">',
        '<meta name="viewport" content="width=device-width">',
        "<title>a <head> b</title>",
        "<script>var s='<head></head><body>';</script>",
        '<link rel="stylesheet" href="/s.css">',
        "<style>p::before{content:'<body>'}</style>",
        "<!-- <body> -->",
        " ",
        "\n",
        CONFLICT_SCRIPT,
    ],
    "head_end": ["", "</head>", "</HEAD >"],
    "body": ["", "<body>", "<BODY class=x>", "<body onload='f(\"<head>\")'>"],
    "content": [
        "",
        "<p>hi</p>",
        "text \u00e9 \u65e5",
        "<div title='<head>'>x</div>",
        "  ",
        "<textarea><head></textarea>",
    ],
    "tail": ["", "</body></html>", "</html>\n"],
}


@st.composite
def html_docs(draw: st.DrawFn) -> str:
    parts = [
        draw(st.sampled_from(_PIECES["prefix"])),
        draw(st.sampled_from(_PIECES["comment"])),
        draw(st.sampled_from(_PIECES["html"])),
        draw(st.sampled_from(_PIECES["head"])),
        *draw(st.lists(st.sampled_from(_PIECES["in_head"]), max_size=5)),
        draw(st.sampled_from(_PIECES["head_end"])),
        draw(st.sampled_from(_PIECES["body"])),
        *draw(st.lists(st.sampled_from(_PIECES["content"]), max_size=3)),
        draw(st.sampled_from(_PIECES["tail"])),
    ]
    return "".join(parts)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    doc=html_docs(),
    chunk=st.integers(min_value=0, max_value=40),
    coding=st.sampled_from([None, "gzip", "deflate", "br", "zstd"]),
    accept=st.sampled_from(["identity", "gzip", "br", CHROME_AE]),
)
async def test_property_one_tag_or_unchanged(
    gw: RunningGateway,
    client: aiohttp.ClientSession,
    doc: str,
    chunk: int,
    coding: str | None,
    accept: str,
) -> None:
    source = doc.encode()
    tag = tag_of(gw)
    params = {"body": doc, "chunk": str(chunk)}
    if coding:
        params["encoding"] = coding
    reply = await fetch(client, gw.url + "/html", params, accept_encoding=accept)
    assert reply.status == 200
    data = reply.data
    if tag in data:
        assert_one_tag(data, source, tag)
        out = reply.headers.get("Content-Encoding", "identity")
        accepted = [t.strip() for t in accept.split(",")]
        assert out == "identity" or out in accepted
        if coding in accepted:
            assert out == coding
        assert "accept-encoding" in vary_tokens(reply.headers)
    else:
        assert data == source
        assert reply.headers.get("Content-Encoding") == coding
        if chunk == 0:
            assert reply.headers["Content-Length"] == str(len(reply.raw))
    # The outcome never depends on how the origin chunks or encodes the page.
    whole = await fetch(client, gw.url + "/html", {"body": doc}, accept_encoding="identity")
    assert whole.raw == data


async def test_gateway_survives_many_pages_concurrently(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    async def one(i: int) -> bytes:
        params = {"chunk": str(1 + i % 9), "encoding": ("gzip", "br", "zstd", "deflate")[i % 4]}
        return (await fetch(client, gw.url + "/html", params)).data

    results = await asyncio.gather(*(one(i) for i in range(24)))
    expected = inserted(PAGE, tag_of(gw), after=PAGE_EXPECTED_AFTER)
    assert all(r == expected for r in results)
    assert await counted(gw, "injected", 24)


async def test_highly_compressed_page_is_never_inflated_whole(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    """Checklist 5 and codecs.py: the page streams piece by piece, however well it compresses.

    The origin sends ~32 KiB of gzip that inflates to 32 MiB, all in one write, so the
    gateway's first read holds nearly all of it; the injector decides in its first bytes.
    """
    mib = 32
    gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
    inflated = 0
    start = b""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        async with client.get(
            gw.url + "/gzip-bomb-page",
            params={"mib": str(mib)},
            headers={"Accept-Encoding": "gzip"},
        ) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            async for chunk in response.content.iter_any():
                while chunk:
                    piece = gunzip.decompress(chunk, 65536)
                    chunk = gunzip.unconsumed_tail
                    if len(start) < 1024:
                        start += piece[:1024]
                    inflated += len(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert tag_of(gw) in start
    frame = b'<!doctype html><html><head><meta charset="utf-8"><title>b</title></head><body><pre>'
    frame += b"</pre></body></html>"
    assert inflated == mib * 1024 * 1024 + len(frame) + len(tag_of(gw))
    assert peak < 8 * 1024 * 1024, f"peak traced memory {peak / 2**20:.1f} MiB"


async def test_uncompressed_origin_page_stays_uncompressed(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    """Compression the origin did not choose is not added on the hot path."""
    reply = await fetch(client, gw.url + "/html", accept_encoding=CHROME_AE)
    assert "Content-Encoding" not in reply.headers
    assert reply.raw.count(tag_of(gw)) == 1
    head = await fetch(client, gw.url + "/html", method="HEAD", accept_encoding=CHROME_AE)
    assert "Content-Encoding" not in head.headers
    assert "Content-Length" not in head.headers
    assert head.headers.get("ETag") == reply.headers.get("ETag")
    assert head.headers.get("Accept-Ranges") == reply.headers.get("Accept-Ranges") == "none"


async def test_xhtml_with_another_root_is_left_alone(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    doc = '<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>'
    reply = await fetch(client, gw.url + "/html", {"body": doc, "type": "application/xhtml+xml"})
    assert reply.raw == doc.encode()
    ElementTree.fromstring(reply.raw)
