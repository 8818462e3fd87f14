"""PROXY-CHECKLIST 12, 20, 23-26, 34 and bodiless answers: bodies that stream."""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib

import aiohttp
import pytest

from tests.integration.conftest import (
    GatewayFactory,
    Origin,
    RunningGateway,
    raw_exchange,
    site_config,
)


async def test_non_html_passes_byte_identical(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    body = "binary-ish \u00e9 <head> content"
    async with client.get(
        gw.url + "/html",
        params={"type": "image/png", "encoding": "gzip", "body": body, "h": 'ETag: "img1"'},
    ) as response:
        data = await response.read()
        assert response.headers["Content-Encoding"] == "gzip"
        assert response.headers["Content-Length"] == str(len(data))
        assert response.headers["ETag"] == '"img1"'
        assert response.headers["Content-Type"] == "image/png"

    assert gzip.decompress(data) == body.encode()


async def test_chunked_upload_reframed_and_intact(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    blocks = [bytes([i]) * 70_000 for i in range(40)]

    async def body() -> object:
        for block in blocks:
            yield block

    async with client.post(gw.url + "/upload", data=body()) as response:
        answer = await response.json()
    payload = b"".join(blocks)
    assert answer["received"] == len(payload)
    assert answer["crc32"] == zlib.crc32(payload)
    assert answer["chunked"] == "chunked"


async def test_upload_with_content_length(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    payload = bytes(range(256)) * 4000
    async with client.put(gw.url + "/upload", data=payload) as response:
        answer = await response.json()
    assert answer == {"received": len(payload), "crc32": zlib.crc32(payload), "chunked": None}


async def test_expect_100_continue(gw: RunningGateway, origin: Origin) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(
        b"POST /echo HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 5\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    await writer.drain()
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    assert interim.startswith(b"HTTP/1.1 100")
    writer.write(b"hello")
    await writer.drain()
    final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    assert final.startswith(b"HTTP/1.1 200")
    writer.close()
    seen = origin.state.requests[-1]
    assert seen["body_len"] == 5
    assert all(k.lower() != "expect" for k, _ in seen["headers"])


async def test_expect_refused_before_body_for_unknown_host(gw: RunningGateway) -> None:
    answer = await raw_exchange(
        gw.port,
        b"POST /echo HTTP/1.1\r\nHost: nope.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        read_timeout=1,
    )
    assert answer.startswith(b"HTTP/1.1 421")
    assert b"100 Continue" not in answer


async def test_server_sent_events_flushed_as_they_come(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    started = time.monotonic()
    async with client.get(gw.url + "/sse", params={"gap": "1.0"}) as response:
        first = await response.content.readuntil(b"\n\n")
        first_at = time.monotonic() - started
        rest = await response.read()
        total = time.monotonic() - started
    assert first == b"data: event 0\n\n"
    # The origin needs 3 s to finish; the first event must not wait for that.
    assert first_at < 1.0 < total
    assert rest.count(b"data:") == 2


async def test_head_204_304_have_no_body(gw: RunningGateway) -> None:
    head = await raw_exchange(
        gw.port,
        b"HEAD /html?type=image/png HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
    )
    assert head.startswith(b"HTTP/1.1 200")
    assert head.endswith(b"\r\n\r\n")
    for code in (204, 304):
        answer = await raw_exchange(
            gw.port,
            f"GET /status/{code} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n".encode(),
        )
        assert answer.startswith(f"HTTP/1.1 {code}".encode())
        assert answer.endswith(b"\r\n\r\n"), answer
        assert b"Transfer-Encoding" not in answer
        assert b"Content-Type" not in answer


async def test_websocket_relayed_both_ways(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    async with client.ws_connect(gw.url + "/ws", protocols=("chat.v1",)) as socket:
        assert socket.protocol == "chat.v1"
        await socket.send_str("hi")
        assert (await socket.receive()).data == "echo:hi"
        await socket.send_bytes(b"\x01\x02\x03")
        assert (await socket.receive()).data == b"\x03\x02\x01"
        await socket.send_str("close:4001")
        message = await socket.receive()
        assert message.type == aiohttp.WSMsgType.CLOSE
        assert message.data == 4001
    assert await gw.metric_becomes("gateway_upgraded_connections", 0, site="shop") == 0


async def test_websocket_refusal_relayed_as_is(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(gw.url + "/ws-refuse")
    assert refused.value.status == 403
    answer = await raw_exchange(
        gw.port,
        b"GET /ws-refuse HTTP/1.1\r\nHost: shop.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        read_timeout=1,
    )
    assert answer.startswith(b"HTTP/1.1 403")
    assert b'{"error": "no sockets here"}' in answer


async def test_declined_websocket_upgrade_streams_whole_answer(gw: RunningGateway) -> None:
    answer = await raw_exchange(
        gw.port,
        b"GET /download?mib=1 HTTP/1.1\r\nHost: shop.test\r\nConnection: Upgrade\r\n"
        b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        read_timeout=2,
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"Content-Length: 1048576" in head
    assert body.removesuffix(b"<<open>>") == bytes(range(256)) * 4096


async def test_other_upgrades_are_proxied_as_plain_requests(
    gw: RunningGateway, origin: Origin
) -> None:
    answer = await raw_exchange(
        gw.port,
        b"GET /echo HTTP/1.1\r\nHost: shop.test\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        read_timeout=1,
    )
    assert answer.startswith(b"HTTP/1.1 200")
    names = {name.lower() for name, _ in origin.state.requests[-1]["headers"]}
    assert not names & {"upgrade", "http2-settings", "connection"}


async def test_request_framing_is_redone_not_copied(make_gateway: GatewayFactory) -> None:
    """Chunk extensions and trailers of the client never reach the origin as sent."""
    received = bytearray()
    done = asyncio.Event()

    async def capture(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        received.extend(head)
        while not received.endswith(b"0\r\n\r\n"):
            received.extend(await reader.read(65536))
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        writer.close()
        done.set()

    server = await asyncio.start_server(capture, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    gw = await make_gateway(site_config(f"http://127.0.0.1:{port}"))
    answer = await raw_exchange(
        gw.port,
        b"POST /x HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n"
        b"Trailer: X-Sum\r\nConnection: close\r\n\r\n"
        b"5;ext=secret\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n",
    )
    server.close()
    assert answer.startswith(b"HTTP/1.1 204")
    await asyncio.wait_for(done.wait(), 3)
    assert b"Transfer-Encoding: chunked" in received
    assert b"ext=secret" not in received
    assert b"X-Sum" not in received
    body = bytes(received.split(b"\r\n\r\n", 1)[1])
    assert body.replace(b"\r\n", b"").endswith(b"0")
    assert b"hello" in body and b" world" in body


async def test_origin_pool_limit_is_respected(make_gateway: GatewayFactory, origin: Origin) -> None:
    gw = await make_gateway(extra_proxy="max_connections_per_origin = 2")
    async with aiohttp.ClientSession(headers={"Host": "shop.test"}) as session:

        async def slow() -> int:
            async with session.get(gw.url + "/slow-headers?s=0.3") as response:
                await response.read()
                return response.status

        statuses = await asyncio.gather(*(slow() for _ in range(6)))
    assert statuses == [200] * 6
    # Six requests over at most two origin connections: three rounds of 0.3 s.
    assert len(origin.connections) == 2


async def test_compressed_upload_reaches_origin_as_sent(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    payload = b"compressible upload " * 5000
    async with client.post(
        gw.url + "/upload",
        data=gzip.compress(payload),
        headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"},
    ) as response:
        answer = await response.json()
    # The origin inflated it itself: the gateway passed the gzip bytes untouched.
    assert answer["received"] == len(payload)
    assert answer["crc32"] == zlib.crc32(payload)
