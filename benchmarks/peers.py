"""The Python reference servers of the benchmarks, one per process (`python -m benchmarks.peers`).

- `ceiling`: a minimal aiohttp handler answering the origin's files from memory (and
  POSTs with a plain 204 after reading the body): what any aiohttp server can reach.
- `naive`: a naive aiohttp proxy: read the whole origin body, put the tag after <head>,
  answer. The Python peer the gateway is measured against.
- `floor`: the least any gateway built on aiohttp must do, with nothing else: GETs
  through aiohttp's low-level server and the gateway's own origin client (pooled,
  httptools), the tag put in, answered; POSTs read, their JSON decoded (masking needs
  it), lz4-compressed, 204. No checks, no masking, no storage, no error handling. What
  it reaches bounds what the gateway can reach (see the targets in the README).
All run on uvloop, like the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import lz4.frame
import msgspec
import uvloop
from aiohttp import web
from multidict import CIMultiDict

from gateway.edge.origin.pool import OriginAddress, OriginPool

TAG = (
    b'<script async src="/__rec/recorder.js?v=0123456789abcdef" '
    b'data-rec=\'{"site":"bench","v":1}\'></script>'
)


def ceiling_app(root: Path) -> web.Application:
    files = {
        f"/{p.name}": (
            p.read_bytes(),
            mimetypes.guess_type(p.name)[0] or "application/octet-stream",
        )
        for p in root.iterdir()
        if p.is_file()
    }

    async def get(request: web.Request) -> web.Response:
        found = files.get(request.path)
        if found is None:
            raise web.HTTPNotFound()
        return web.Response(body=found[0], content_type=found[1])

    async def post(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    app = web.Application(client_max_size=16 << 20)
    app.router.add_get("/{name}", get)
    app.router.add_post("/{tail:.*}", post)
    return app


def naive_app(origin: str) -> web.Application:
    async def start(app: web.Application) -> None:
        app["client"] = aiohttp.ClientSession(auto_decompress=False)

    async def stop(app: web.Application) -> None:
        await app["client"].close()

    async def proxy(request: web.Request) -> web.Response:
        client: aiohttp.ClientSession = request.app["client"]
        async with client.get(origin + request.path_qs) as answer:
            body = await answer.read()
            kind = answer.headers.get("Content-Type", "application/octet-stream")
        if kind.startswith("text/html"):
            body = body.replace(b"<head>", b"<head>" + TAG, 1)
        return web.Response(body=body, headers={"Content-Type": kind})

    app = web.Application()
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_get("/{tail:.*}", proxy)
    return app


async def serve_floor(origin: str, port: int) -> None:
    parts = urlsplit(origin)
    address = OriginAddress(parts.hostname or "127.0.0.1", parts.port or 80, None)
    pool = OriginPool(limit_per_origin=256, keepalive=60, connect_timeout=5, idle=60)
    decode = msgspec.json.Decoder()

    async def handle(request: web.BaseRequest) -> web.Response:
        if request.method == "POST":
            lz4.frame.compress(msgspec.json.encode(decode.decode(await request.read())))
            return web.Response(status=204)
        headers = CIMultiDict({"Host": request.host})
        answer = await pool.request(address, "GET", request.path_qs, headers, None)
        chunks = []
        while chunk := await answer.content.readany():
            chunks.append(chunk)
        answer.release()
        body = b"".join(chunks)
        kind = answer.headers.get("Content-Type", "application/octet-stream")
        if kind.startswith("text/html"):
            body = body.replace(b"<head>", b"<head>" + TAG, 1)
        return web.Response(status=answer.status, body=body, headers={"Content-Type": kind})

    server = web.Server(handle, access_log=None)
    await asyncio.get_running_loop().create_server(server, "127.0.0.1", port)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["ceiling", "naive", "floor"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", type=Path)
    parser.add_argument("--origin")
    args = parser.parse_args()
    if args.kind == "floor":
        uvloop.run(serve_floor(args.origin, args.port))
        return
    app = ceiling_app(args.root) if args.kind == "ceiling" else naive_app(args.origin)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
