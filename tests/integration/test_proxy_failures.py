"""PROXY-CHECKLIST 16, 17, 19, 21, 27-30 and the routing rules: what is refused, and how."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import pytest

from gateway.app import Gateway
from tests.integration.conftest import (
    GatewayFactory,
    Origin,
    RawOrigin,
    RunningGateway,
    json_body_of,
    raw_exchange,
    site_config,
    status_of,
)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /echo HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST /echo HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: shop.test\r\nX-A: b\r\n c\r\n\r\n",
        b"GET /echo HTTP/1.1\nHost: shop.test\nX-A: b\n\n",
        b"GET /echo HTTP/1.1\r\nHost: shop.test\r\nX-A: b\rc\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: shop.test\r\nX-A: b\x00c\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: shop.test\r\nHost: other.test\r\n\r\n",
        b"GET /echo HTTP/1.1\r\n\r\n",
        b"GET /echo HTTP/1.0\r\n\r\n",
    ],
    ids=[
        "cl+te",
        "two-cl",
        "te-not-chunked-last",
        "bad-chunk",
        "obs-fold",
        "bare-lf",
        "bare-cr",
        "nul",
        "two-hosts",
        "no-host-1.1",
        "no-host-1.0",
    ],
)
async def test_malformed_requests_get_400_and_close(
    gw: RunningGateway, origin: Origin, request_bytes: bytes
) -> None:
    answer = await raw_exchange(gw.port, request_bytes)
    assert status_of(answer) == 400, answer[:200]
    assert json_body_of(answer)["error"] in ("bad_request", "missing_host")
    assert not answer.endswith(b"<<open>>"), "connection must be closed"
    assert origin.state.requests == []


async def test_unknown_host_is_421_json(gw: RunningGateway, origin: Origin) -> None:
    answer = await raw_exchange(
        gw.port, b"GET /echo HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    )
    assert status_of(answer) == 421
    assert json_body_of(answer)["error"] == "unknown_host"
    assert origin.state.requests == []
    assert gw.metric("gateway_rejected_requests_total", reason="unknown_host") == 1


async def test_absolute_form_routes_on_its_authority(gw: RunningGateway, origin: Origin) -> None:
    answer = await raw_exchange(
        gw.port,
        b"GET http://evil.example/echo HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
    )
    assert status_of(answer) == 421
    answer = await raw_exchange(
        gw.port,
        b"GET http://www.shop.test/echo?q=1 HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    assert status_of(answer) == 200
    seen = origin.state.requests[-1]
    assert seen["raw_path"] == "/echo?q=1"
    assert ["Host", "www.shop.test"] in seen["headers"]


async def test_connect_is_refused(gw: RunningGateway, origin: Origin) -> None:
    answer = await raw_exchange(
        gw.port, b"CONNECT shop.test:443 HTTP/1.1\r\nHost: shop.test:443\r\n\r\n"
    )
    assert status_of(answer) == 405
    assert origin.state.requests == []


@pytest.mark.parametrize(
    "path",
    [
        "/__rec/anything",
        "/%5F%5Frec/anything",
        "/a/../__rec/x",
        "//__rec/x",
        "/__REC/x",
        # Java servers drop ;parameters from segments: these would reach /__rec/.
        "/__rec;x/v1/batch",
        "/__rec;/recorder.js",
        "/x/..;/__rec/v1/batch",
    ],
)
async def test_reserved_prefix_never_reaches_origin(
    gw: RunningGateway, origin: Origin, path: str
) -> None:
    answer = await raw_exchange(
        gw.port, f"GET {path} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n".encode()
    )
    assert status_of(answer) == 404
    assert json_body_of(answer)["error"] == "not_found"
    assert origin.state.requests == []


async def test_loop_through_the_gateway_is_508(origin: Origin, tmp_path: Path) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    config = site_config(f"http://127.0.0.1:{port}", extra_site="preserve_host = true")
    config.server.listen = f"127.0.0.1:{port}"
    config.server.data_dir = str(tmp_path)
    gateway = Gateway(config)
    await gateway.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/x", headers={"Host": "shop.test"}) as response,
        ):
            assert response.status == 508
            assert (await response.json())["error"] == "loop_detected"
    finally:
        await gateway.stop()


async def test_size_limits(make_gateway: GatewayFactory, origin: Origin) -> None:
    gw = await make_gateway(
        extra_server="max_request_line_bytes = 2048\nmax_header_bytes = 4096\nmax_body_bytes = 10000"
    )
    long_line = b"GET /echo?" + b"a" * 3000 + b" HTTP/1.1\r\nHost: shop.test\r\n\r\n"
    assert status_of(await raw_exchange(gw.port, long_line)) == 414
    big_headers = (
        b"GET /echo HTTP/1.1\r\nHost: shop.test\r\n" + b"X-Big: " + b"b" * 5000 + b"\r\n\r\n"
    )
    assert status_of(await raw_exchange(gw.port, big_headers)) == 431
    big_body = b"POST /upload HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 20000\r\n\r\n"
    answer = await raw_exchange(gw.port, big_body)
    assert status_of(answer) == 413
    assert json_body_of(answer)["error"] == "body_too_large"
    chunks = b"".join(b"1000\r\n" + b"x" * 4096 + b"\r\n" for _ in range(5)) + b"0\r\n\r\n"
    chunked = (
        b"POST /upload HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n" + chunks
    )
    assert status_of(await raw_exchange(gw.port, chunked)) == 413


async def test_origin_refused_is_502(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    dead = probe.getsockname()[1]
    probe.close()
    gw = await make_gateway(site_config(f"http://127.0.0.1:{dead}"))
    async with client.get(gw.url + "/x") as response:
        assert response.status == 502
        assert (await response.json())["error"] == "bad_gateway"
    assert gw.metric("gateway_origin_errors_total", site="shop", kind="refused") == 1


async def test_origin_timeout_is_504(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(extra_proxy="response_timeout = 0.3")
    async with client.get(gw.url + "/slow-headers?s=3") as response:
        assert response.status == 504
        assert (await response.json())["error"] == "origin_timeout"
    assert gw.metric("gateway_origin_errors_total", site="shop", kind="timeout") == 1


@pytest.mark.parametrize(
    "reply",
    [
        b"",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
    ],
    ids=["reset-before-headers", "two-cl", "bad-chunk", "garbage"],
)
async def test_invalid_origin_answers_are_502(
    make_gateway: GatewayFactory, raw_origin: RawOrigin, client: aiohttp.ClientSession, reply: bytes
) -> None:
    gw = await make_gateway(site_config(await raw_origin(reply)))
    try:
        async with client.get(gw.url + "/x") as response:
            assert response.status == 502
            assert (await response.json())["error"] == "bad_gateway"
    except aiohttp.ClientPayloadError:
        # A bad chunk may only be seen after the headers: then the client
        # connection must be aborted (never a clean, short body).
        assert b"chunked" in reply


async def test_origin_failure_after_headers_aborts_client(
    make_gateway: GatewayFactory, raw_origin: RawOrigin, client: aiohttp.ClientSession
) -> None:
    url = await raw_origin(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
    gw = await make_gateway(site_config(url))
    async with client.get(gw.url + "/x") as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


async def test_client_disconnect_cancels_origin(gw: RunningGateway, origin: Origin) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /hang-body HTTP/1.1\r\nHost: shop.test\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"first")
    assert head.startswith(b"HTTP/1.1 200")
    writer.close()
    await asyncio.wait_for(origin.state.cancelled.wait(), 5)
    assert await gw.metric_becomes("gateway_client_disconnects_total", 1, site="shop") == 1


async def test_origin_connections_are_reused(
    gw: RunningGateway, origin: Origin, client: aiohttp.ClientSession
) -> None:
    for _ in range(50):
        async with client.get(gw.url + "/echo") as response:
            assert response.status == 200
            await response.read()
    assert len(origin.connections) <= 2
    assert len(origin.state.requests) == 50


async def test_origin_trailers_dropped_body_intact(
    make_gateway: GatewayFactory, raw_origin: RawOrigin, client: aiohttp.ClientSession
) -> None:
    url = await raw_origin(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
        b"Trailer: X-Checksum\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n"
    )
    gw = await make_gateway(site_config(url))
    async with client.get(gw.url + "/x") as response:
        assert await response.read() == b"hello world"
        assert "Trailer" not in response.headers
        assert "X-Checksum" not in response.headers
