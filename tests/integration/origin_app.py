"""A real origin server for integration tests: every behaviour a test needs."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from typing import Any

import brotli
import zstandard
from aiohttp import web

PAGE = (
    b'<!doctype html><html><head><meta charset="utf-8"><title>T</title></head>'
    b"<body><h1>Hello</h1><p>page body</p></body></html>"
)
CHUNK_MIB = 1024 * 1024


def compress(coding: str, data: bytes) -> bytes:
    """`data` in a content coding, the same bytes every time (gzip mtime 0)."""
    if coding == "gzip":
        return gzip.compress(data, mtime=0)
    if coding == "deflate":
        return zlib.compress(data)
    if coding == "br":
        return bytes(brotli.compress(data))
    if coding == "zstd":
        return bytes(zstandard.ZstdCompressor().compress(data))
    raise ValueError(coding)


class OriginState:
    """What the origin saw, for tests to assert on."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.peers: set[int] = set()
        self.cancelled = asyncio.Event()
        self.upload_sizes: list[int] = []


def build_origin(state: OriginState) -> web.Application:
    routes = web.RouteTableDef()

    @routes.route("*", "/echo{tail:.*}")
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        seen = {
            "method": request.method,
            "raw_path": request.raw_path,
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers],
            "body_len": len(body),
        }
        state.requests.append(seen)
        return web.json_response(seen)

    @routes.get("/page")
    async def page(request: web.Request) -> web.Response:
        headers = {"ETag": '"v1"', "Last-Modified": "Mon, 02 Nov 2026 10:00:00 GMT"}
        if request.headers.get("If-None-Match") in ('"v1"', 'W/"v1"'):
            return web.Response(status=304, headers=headers)
        return web.Response(body=PAGE, content_type="text/html", charset="utf-8", headers=headers)

    @routes.get("/html")
    async def html(request: web.Request) -> web.StreamResponse:
        """Serve `body` (query) with the given type/encoding/headers, in `chunk` sized pieces."""
        q = request.query
        body = q.get("body", PAGE.decode()).encode(q.get("charset_enc", "utf-8"))
        coding = q.get("encoding")
        if coding:
            body = compress(coding, body)
        response = web.StreamResponse(status=int(q.get("status", "200")))
        response.headers["Content-Type"] = q.get("type", "text/html; charset=utf-8")
        if coding:
            response.headers["Content-Encoding"] = coding
        for item in q.getall("h", []):
            name, _, value = item.partition(":")
            response.headers.add(name, value.strip())
        chunk = int(q.get("chunk", "0"))
        delay = float(q.get("delay", "0"))
        if not chunk:
            response.content_length = len(body)
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        step = chunk or len(body) or 1
        for i in range(0, len(body), step):
            await response.write(body[i : i + step])
            if delay:
                await asyncio.sleep(delay)
        await response.write_eof()
        return response

    @routes.get("/cookies")
    async def cookies(request: web.Request) -> web.Response:
        response = web.Response(text="ok")
        response.headers.add("Set-Cookie", "a=1; Path=/; HttpOnly")
        response.headers.add("Set-Cookie", "b=2, with comma; Expires=Wed, 21 Oct 2026 07:28:00 GMT")
        response.headers.add("X-Multi", "one")
        response.headers.add("X-Multi", "two")
        return response

    @routes.get("/hop")
    async def hop(request: web.Request) -> web.Response:
        return web.Response(
            text="ok",
            headers={
                "Connection": "X-Private",
                "X-Private": "secret",
                "Keep-Alive": "timeout=5",
                "X-Public": "yes",
            },
        )

    @routes.get("/redirect")
    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": request.query["to"]})

    @routes.get("/status/{code}")
    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.Response(status=code, headers={"ETag": '"s"'})

    @routes.get("/slow-headers")
    async def slow_headers(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("s", "5")))
        return web.Response(text="late")

    @routes.get("/sse")
    async def sse(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(3):
            await response.write(f"data: event {i}\n\n".encode())
            await asyncio.sleep(float(request.query.get("gap", "0.5")))
        await response.write_eof()
        return response

    @routes.get("/hang-body")
    async def hang_body(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        await response.write(b"first")
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            state.cancelled.set()
            raise
        return response

    @routes.get("/download")
    async def download(request: web.Request) -> web.StreamResponse:
        mib = int(request.query.get("mib", "1"))
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        if request.query.get("length", "1") == "1":
            response.content_length = mib * CHUNK_MIB
        await response.prepare(request)
        block = bytes(range(256)) * (CHUNK_MIB // 256)
        try:
            for _ in range(mib):
                await response.write(block)
        except (asyncio.CancelledError, ConnectionError):
            state.cancelled.set()
            raise
        await response.write_eof()
        return response

    @routes.route("*", "/upload")
    async def upload(request: web.Request) -> web.Response:
        total = 0
        digest = zlib.crc32(b"")
        async for chunk in request.content.iter_any():
            total += len(chunk)
            digest = zlib.crc32(chunk, digest)
        state.upload_sizes.append(total)
        return web.json_response(
            {
                "received": total,
                "crc32": digest,
                "chunked": request.headers.get("Transfer-Encoding"),
            }
        )

    @routes.get("/ws")
    async def ws(request: web.Request) -> web.StreamResponse:
        socket = web.WebSocketResponse(protocols=("chat.v2", "chat.v1"))
        await socket.prepare(request)
        async for message in socket:
            if message.type == web.WSMsgType.TEXT:
                if message.data.startswith("close:"):
                    await socket.close(code=int(message.data[6:]), message=b"bye")
                    break
                await socket.send_str("echo:" + message.data)
            elif message.type == web.WSMsgType.BINARY:
                await socket.send_bytes(message.data[::-1])
        return socket

    @routes.get("/ws-refuse")
    async def ws_refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": "no sockets here"}, status=403)

    @routes.get("/json-as-html")
    async def json_as_html(request: web.Request) -> web.Response:
        return web.Response(body=json.dumps({"a": "<head>"}).encode(), content_type="text/html")

    @routes.get("/admin/{tail:.*}")
    async def admin_page(request: web.Request) -> web.Response:
        """An HTML page under a path the test site excludes from recording."""
        return web.Response(body=PAGE, content_type="text/html", charset="utf-8")

    @routes.get("/padded")
    async def padded(request: web.Request) -> web.StreamResponse:
        """`before` + `fill` * `n` + `after` as text/html: bodies too long for a query string."""
        q = request.query
        body = (q.get("before", "") + q.get("fill", "x") * int(q.get("n", "0"))).encode()
        body += q.get("after", "").encode()
        response = web.StreamResponse()
        response.headers["Content-Type"] = q.get("type", "text/html; charset=utf-8")
        chunk = int(q.get("chunk", "0"))
        if not chunk:
            response.content_length = len(body)
        await response.prepare(request)
        step = chunk or len(body) or 1
        for i in range(0, len(body), step):
            await response.write(body[i : i + step])
        await response.write_eof()
        return response

    @routes.get("/ranged")
    async def ranged(request: web.Request) -> web.Response:
        """`body` (default PAGE) as `type`, honouring a single `Range: bytes=a-b`."""
        state.requests.append(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "headers": [
                    [k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers
                ],
                "body_len": 0,
            }
        )
        q = request.query
        body = q["body"].encode() if "body" in q else PAGE
        headers = {"Content-Type": q.get("type", "text/html; charset=utf-8"), "ETag": '"r1"'}
        headers["Accept-Ranges"] = "bytes"
        spec = request.headers.get("Range", "")
        if spec.startswith("bytes=") and "," not in spec:
            first, _, last = spec[6:].partition("-")
            start = int(first)
            end = min(int(last) if last else len(body) - 1, len(body) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
            return web.Response(status=206, body=body[start : end + 1], headers=headers)
        return web.Response(body=body, headers=headers)

    @routes.get("/gzip-bomb-page")
    async def gzip_bomb_page(request: web.Request) -> web.Response:
        """A small gzip body that inflates to `mib` MiB of page, built without holding it whole."""
        mib = int(request.query.get("mib", "32"))
        head = (
            b'<!doctype html><html><head><meta charset="utf-8"><title>b</title></head><body><pre>'
        )
        packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        parts = [packer.compress(head)]
        block = b" " * CHUNK_MIB
        for _ in range(mib):
            parts.append(packer.compress(block))
        parts.append(packer.compress(b"</pre></body></html>") + packer.flush())
        return web.Response(
            body=b"".join(parts),
            headers={"Content-Type": "text/html; charset=utf-8", "Content-Encoding": "gzip"},
        )

    @routes.get("/csp-page")
    async def csp_page(request: web.Request) -> web.Response:
        """PAGE with ETag "c1" and the `csp` query as its policy, on the 200 and on the 304."""
        headers = {"ETag": '"c1"', "Content-Security-Policy": request.query["csp"]}
        if request.headers.get("If-None-Match") in ('"c1"', 'W/"c1"'):
            return web.Response(status=304, headers=headers)
        return web.Response(body=PAGE, content_type="text/html", charset="utf-8", headers=headers)

    @web.middleware
    async def note_connection(request: web.Request, handler: Any) -> web.StreamResponse:
        # One client port per TCP connection: counts how many the gateway opened.
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            state.peers.add(peer[1])
        return await handler(request)  # type: ignore[no-any-return]

    app = web.Application(middlewares=[note_connection])
    app.add_routes(routes)
    return app
