"""Defects a review found, each pinned by a test: memory, stalls, bypasses, statuses."""

from __future__ import annotations

import asyncio
import struct
import zlib

import aiohttp
import pytest

from tests.integration.conftest import (
    BROWSER_UA,
    GatewayFactory,
    Origin,
    RawOrigin,
    RunningGateway,
    raw_exchange,
    site_config,
    status_of,
)
from tests.integration.origin_app import PAGE


def _gzip_with_comment(payload: bytes, comment_size: int) -> bytes:
    """A valid gzip member whose header carries a huge comment (decodes to nothing)."""
    header = b"\x1f\x8b\x08\x10" + b"\x00\x00\x00\x00" + b"\x00\xff"
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = compressor.compress(payload) + compressor.flush()
    trailer = struct.pack("<II", zlib.crc32(payload), len(payload))
    return header + b"c" * comment_size + b"\x00" + body + trailer


async def test_encoded_bytes_that_decode_to_nothing_are_not_held(
    make_gateway: GatewayFactory, raw_origin: RawOrigin, client: aiohttp.ClientSession
) -> None:
    body = _gzip_with_comment(PAGE, 4 * 1024 * 1024)
    url = await raw_origin(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    gw = await make_gateway(site_config(url))
    async with client.get(gw.url + "/", headers={"Accept-Encoding": "gzip"}) as response:
        assert response.status == 200
        assert await response.read() == body
    # Given up after scan_limit raw bytes, passed through untouched.
    assert gw.metric("gateway_injections_total", site="shop", outcome="no_marker") == 1


async def test_origin_failure_while_scanning_head_is_502(
    make_gateway: GatewayFactory, raw_origin: RawOrigin, client: aiohttp.ClientSession
) -> None:
    url = await raw_origin(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5000\r\n\r\n<!doctype html>"
    )
    gw = await make_gateway(site_config(url))
    async with client.get(gw.url + "/") as response:
        assert response.status == 502
        assert (await response.json())["error"] == "bad_gateway"


async def test_client_that_stops_reading_is_cut_off(
    make_gateway: GatewayFactory, origin: Origin
) -> None:
    gw = await make_gateway(extra_proxy="idle_timeout = 1.0")
    _reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    # Ask for far more than the socket buffers hold, then read nothing.
    writer.write(b"GET /download?mib=256 HTTP/1.1\r\nHost: shop.test\r\n\r\n")
    await writer.drain()
    await asyncio.wait_for(origin.state.cancelled.wait(), 15)
    assert await gw.metric_becomes("gateway_client_disconnects_total", 1, site="shop") == 1
    writer.close()


async def test_client_that_stops_sending_its_body_gets_408(
    make_gateway: GatewayFactory, origin: Origin
) -> None:
    gw = await make_gateway(extra_proxy="idle_timeout = 1.0")
    answer = await raw_exchange(
        gw.port,
        b"POST /upload HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 100000\r\n\r\nonly a little",
        read_timeout=5,
    )
    assert status_of(answer) == 408
    assert b'"request_timeout"' in answer
    # Closed after aiohttp's lingering read of the rest of the body.
    assert b"Connection: close" in answer


@pytest.mark.parametrize(
    "path",
    [
        "//admin/x",
        "/./admin/x",
        "/y/../admin/x",
        "/Admin/x",
        "/admin;p=1/x",
        "/%61dmin/x",
        "/admin\\x",
        "/admin/%0Ax",
    ],
)
async def test_exclusion_rules_see_through_path_tricks(
    make_gateway: GatewayFactory, raw_origin: RawOrigin, path: str
) -> None:
    url = await raw_origin(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
        + f"Content-Length: {len(PAGE)}\r\n\r\n".encode()
        + PAGE
    )
    gw = await make_gateway(site_config(url))
    answer = await raw_exchange(
        gw.port,
        f"GET {path} HTTP/1.1\r\nHost: shop.test\r\nUser-Agent: {BROWSER_UA}\r\nConnection: close\r\n\r\n".encode(),
    )
    assert status_of(answer) == 200
    assert b"/__rec/recorder.js" not in answer
    assert gw.metric("gateway_injections_total", site="shop", outcome="excluded") == 1


@pytest.mark.parametrize(
    "host", ['a"><script>.shop.test', "evil.example,x.shop.test", "x;y.shop.test", "*.shop.test"]
)
async def test_hosts_with_foreign_characters_are_400(
    gw: RunningGateway, origin: Origin, host: str
) -> None:
    answer = await raw_exchange(
        gw.port, f"GET /echo HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    )
    assert status_of(answer) == 400
    assert b'"bad_host"' in answer
    assert origin.state.requests == []


async def test_location_under_origin_path_maps_back(
    make_gateway: GatewayFactory, raw_origin: RawOrigin, client: aiohttp.ClientSession
) -> None:
    url = await raw_origin(
        b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/app/next?a=1\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    gw = await make_gateway(site_config(url + "/app"))
    async with client.get(gw.url + "/start", allow_redirects=False) as response:
        assert response.headers["Location"] == "http://shop.test/next?a=1"
    other = await raw_origin(
        b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/elsewhere\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    gw = await make_gateway(site_config(other + "/app"))
    async with client.get(gw.url + "/start", allow_redirects=False) as response:
        # Outside the origin path: no public URL maps to it, so it is left alone.
        assert response.headers["Location"].endswith("/elsewhere")
        assert response.headers["Location"].startswith("http://127.0.0.1:")


async def test_origin_form_path_containing_a_url_is_not_absolute_form(
    gw: RunningGateway, origin: Origin
) -> None:
    answer = await raw_exchange(
        gw.port,
        b"GET /echo/web/2020/http://example.com/ HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
    )
    assert status_of(answer) == 200
    assert origin.state.requests[-1]["raw_path"] == "/echo/web/2020/http://example.com/"


async def test_options_asterisk_answered_locally(gw: RunningGateway, origin: Origin) -> None:
    answer = await raw_exchange(
        gw.port, b"OPTIONS * HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n"
    )
    assert status_of(answer) == 204
    assert b"Allow: GET" in answer
    assert origin.state.requests == []


async def test_oversized_lines_beyond_parser_get_414_and_431(gw: RunningGateway) -> None:
    line = b"GET /echo?" + b"a" * 20000 + b" HTTP/1.1\r\nHost: shop.test\r\n\r\n"
    answer = await raw_exchange(gw.port, line)
    assert status_of(answer) == 414
    assert b'"uri_too_long"' in answer
    header = b"GET /echo HTTP/1.1\r\nHost: shop.test\r\nX-Big: " + b"b" * 40000 + b"\r\n\r\n"
    answer = await raw_exchange(gw.port, header)
    assert status_of(answer) == 431
    assert b'"headers_too_large"' in answer
