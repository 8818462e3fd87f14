"""The gateway in front of a real nginx: gzip_static, on-the-fly gzip, static assets.

nginx is the most common origin in practice; its gzip_static variant files,
its `W/` ETags for gzipped answers and its Range support are what the injector
meets in the wild. The fixture starts /usr/sbin/nginx on a free loopback port
with a throwaway config and stops it afterwards; without nginx the tests fail.
"""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import brotli
import pytest
from multidict import CIMultiDictProxy

from tests.integration.conftest import GatewayFactory, RunningGateway, site_config

NGINX = Path("/usr/sbin/nginx")
MARKER = b"/__rec/recorder.js"

PAGE = (
    b'<!DOCTYPE html>\n<html lang="en">\n<head>\n'
    b'  <meta charset="utf-8">\n'
    b'  <meta name="viewport" content="width=device-width, initial-scale=1">\n'
    b"  <title>Static shop</title>\n"
    b'  <link rel="stylesheet" href="/static/style.css">\n'
    b"</head>\n<body>\n"
    + b"".join(b"  <p>Product %d: a fine thing at a fair price.</p>\n" % i for i in range(60))
    + b"</body>\n</html>\n"
)
# Different from PAGE so that a test can tell which file nginx served.
DYNAMIC_PAGE = PAGE.replace(b"Static shop", b"Dynamic shop")
CSS = b"body { font-family: sans-serif; }\n" * 40
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


@dataclass
class Nginx:
    url: str
    root: Path
    process: subprocess.Popen[bytes]

    def etag(self, relative: str) -> str:
        """The ETag nginx computes for a file: hex mtime and hex size."""
        st = (self.root / relative).stat()
        return f'"{int(st.st_mtime):x}-{st.st_size:x}"'


@dataclass
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    raw: bytes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _config(tmp: Path, port: int, root: Path) -> str:
    temp = {name: tmp / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(exist_ok=True)
    return f"""
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    types {{
        text/html html;
        text/css css;
        image/png png;
    }}
    default_type application/octet-stream;
    charset_types text/html;
    etag on;
    # The gateway adds Via: without this nginx would never compress for it.
    gzip_proxied any;
    gzip_vary on;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        index index.html;
        location /static/ {{
            gzip_static on;
        }}
        location /dynamic/ {{
            gzip on;
            gzip_types text/html;
            gzip_min_length 1;
        }}
    }}
}}
"""


def _wait_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            errors = log.read_text() if log.exists() else ""
            raise RuntimeError(f"nginx exited with {process.returncode}: {errors}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nginx did not start listening within 10 s")


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    if not (NGINX.is_file() and os.access(NGINX, os.X_OK)):
        pytest.fail(
            f"{NGINX} is missing or not executable: install the Debian package nginx-light or nginx"
        )
    root = tmp_path / "www"
    (root / "static").mkdir(parents=True)
    (root / "dynamic").mkdir()
    (root / "static" / "index.html").write_bytes(PAGE)
    (root / "static" / "index.html.gz").write_bytes(gzip.compress(PAGE, mtime=0))
    (root / "static" / "style.css").write_bytes(CSS)
    (root / "static" / "logo.png").write_bytes(PNG)
    (root / "dynamic" / "index.html").write_bytes(DYNAMIC_PAGE)
    os.chmod(tmp_path, 0o755)  # readable whichever user nginx runs as
    process: subprocess.Popen[bytes] | None = None
    last_error: Exception | None = None
    for _ in range(5):  # the free port may be taken between the probe and nginx's bind
        port = _free_port()
        conf = tmp_path / "nginx.conf"
        conf.write_text(_config(tmp_path, port, root))
        process = subprocess.Popen(
            [str(NGINX), "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_listening(process, port, tmp_path / "error.log")
            break
        except RuntimeError as exc:
            last_error = exc
            _stop(process)
            process = None
    if process is None:
        pytest.fail(f"could not start nginx: {last_error}")
    try:
        yield Nginx(url=f"http://127.0.0.1:{port}", root=root, process=process)
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    if process.stderr is not None:
        process.stderr.close()


@pytest.fixture
async def front(make_gateway: GatewayFactory, nginx: Nginx) -> RunningGateway:
    return await make_gateway(site_config(nginx.url))


async def fetch(
    client: aiohttp.ClientSession, url: str, accept_encoding: str, **headers: str
) -> Reply:
    sent = {
        "Accept-Encoding": accept_encoding,
        **{k.replace("_", "-"): v for k, v in headers.items()},
    }
    async with client.get(url, headers=sent, allow_redirects=False) as response:
        return Reply(response.status, response.headers, await response.read())


async def direct(nginx: Nginx, path: str, accept_encoding: str = "identity") -> Reply:
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.get(nginx.url + path, headers={"Accept-Encoding": accept_encoding}) as response,
    ):
        return Reply(response.status, response.headers, await response.read())


def with_tag(page: bytes, tag: bytes) -> bytes:
    after = b'<meta charset="utf-8">'
    point = page.index(after) + len(after)
    return page[:point] + tag + page[point:]


def vary_tokens(headers: CIMultiDictProxy[str]) -> set[str]:
    return {t.strip().lower() for v in headers.getall("Vary", []) for t in v.split(",")}


def assert_injected_headers(reply: Reply, origin_etag: str, version: str) -> None:
    length = reply.headers.get("Content-Length")
    assert length is None or length == str(len(reply.raw))
    opaque = origin_etag.removeprefix("W/").strip('"')
    assert reply.headers.getall("ETag") == [f'W/"{opaque}-rec{version}"']
    assert "Last-Modified" not in reply.headers
    assert reply.headers["Accept-Ranges"] == "none"
    assert "accept-encoding" in vary_tokens(reply.headers)


# ---------------------------------------------------------------- gzip_static


async def test_nginx_fixture_serves_both_variants(nginx: Nginx) -> None:
    """Guards the other tests: nginx really sends the .gz file to a proxied gzip client."""
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.get(
            nginx.url + "/static/",
            headers={"Accept-Encoding": "gzip", "Via": "1.1 gw-test"},
        ) as response,
    ):
        assert response.headers["Content-Encoding"] == "gzip"
        assert response.headers["ETag"] == nginx.etag("static/index.html.gz")
        assert gzip.decompress(await response.read()) == PAGE
    plain = await direct(nginx, "/static/")
    assert plain.raw == PAGE
    assert plain.headers["ETag"] == nginx.etag("static/index.html")


async def test_gzip_static_page_injected_for_gzip_client(
    front: RunningGateway, nginx: Nginx, client: aiohttp.ClientSession
) -> None:
    site = front.gateway.sites[0]
    reply = await fetch(client, front.url + "/static/", "gzip, deflate, br, zstd")
    assert reply.status == 200
    assert reply.headers["Content-Encoding"] == "gzip"
    data = gzip.decompress(reply.raw)
    assert data == with_tag(PAGE, site.tag())
    assert data.count(MARKER) == 1
    # The injected page was made from the .gz variant: its ETag says so.
    assert_injected_headers(reply, nginx.etag("static/index.html.gz"), site.snippet_version)


@pytest.mark.parametrize("accept", ["identity", "identity;q=1, *;q=0"])
async def test_gzip_static_page_injected_for_identity_client(
    front: RunningGateway, nginx: Nginx, client: aiohttp.ClientSession, accept: str
) -> None:
    site = front.gateway.sites[0]
    reply = await fetch(client, front.url + "/static/", accept)
    assert reply.status == 200
    assert "Content-Encoding" not in reply.headers
    assert reply.raw == with_tag(PAGE, site.tag())
    assert_injected_headers(reply, nginx.etag("static/index.html"), site.snippet_version)


async def test_gzip_static_revalidation(
    front: RunningGateway, nginx: Nginx, client: aiohttp.ClientSession
) -> None:
    first = await fetch(client, front.url + "/static/", "gzip")
    etag = first.headers["ETag"]
    again = await fetch(client, front.url + "/static/", "gzip", If_None_Match=etag)
    assert again.status == 304
    assert again.raw == b""
    assert again.headers["ETag"] == etag
    stale = etag.replace(front.gateway.sites[0].snippet_version, "0123456789")
    assert stale != etag
    fresh = await fetch(client, front.url + "/static/", "gzip", If_None_Match=stale)
    assert fresh.status == 200
    assert gzip.decompress(fresh.raw) == with_tag(PAGE, front.gateway.sites[0].tag())


# ---------------------------------------------------------------- gzip on the fly


async def test_on_the_fly_gzip_page_injected(
    front: RunningGateway, nginx: Nginx, client: aiohttp.ClientSession
) -> None:
    site = front.gateway.sites[0]
    origin = await direct(nginx, "/dynamic/", "gzip")
    assert origin.headers["Content-Encoding"] == "gzip"
    assert origin.headers["ETag"].startswith('W/"')  # nginx weakens what it compresses
    assert "Content-Length" not in origin.headers
    reply = await fetch(client, front.url + "/dynamic/", "gzip")
    assert reply.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(reply.raw) == with_tag(DYNAMIC_PAGE, site.tag())
    assert_injected_headers(reply, origin.headers["ETag"], site.snippet_version)


async def test_on_the_fly_gzip_identity_client(
    front: RunningGateway, nginx: Nginx, client: aiohttp.ClientSession
) -> None:
    site = front.gateway.sites[0]
    reply = await fetch(client, front.url + "/dynamic/", "identity")
    assert "Content-Encoding" not in reply.headers
    assert reply.raw == with_tag(DYNAMIC_PAGE, site.tag())
    assert_injected_headers(reply, nginx.etag("dynamic/index.html"), site.snippet_version)


async def test_on_the_fly_page_for_br_only_client(
    front: RunningGateway, client: aiohttp.ClientSession
) -> None:
    site = front.gateway.sites[0]
    reply = await fetch(client, front.url + "/dynamic/", "br")
    # nginx has no br: it sends identity, and the gateway encodes for the client.
    coding = reply.headers.get("Content-Encoding", "identity")
    assert coding in ("br", "identity")
    data = bytes(brotli.decompress(reply.raw)) if coding == "br" else reply.raw
    assert data == with_tag(DYNAMIC_PAGE, site.tag())


# ---------------------------------------------------------------- assets


@pytest.mark.parametrize(
    ("path", "body", "ctype"),
    [
        ("/static/style.css", CSS, "text/css"),
        ("/static/logo.png", PNG, "image/png"),
    ],
)
@pytest.mark.parametrize("accept", ["gzip, deflate, br, zstd", "identity"])
async def test_assets_pass_through_byte_identical(
    front: RunningGateway,
    nginx: Nginx,
    client: aiohttp.ClientSession,
    path: str,
    body: bytes,
    ctype: str,
    accept: str,
) -> None:
    origin = await direct(nginx, path, accept)
    reply = await fetch(client, front.url + path, accept)
    assert reply.status == 200
    assert reply.raw == body == origin.raw
    assert reply.headers["Content-Type"] == ctype
    assert reply.headers.getall("ETag") == [nginx.etag(path.lstrip("/"))]
    assert reply.headers["ETag"] == origin.headers["ETag"]
    assert reply.headers["Content-Length"] == str(len(body))
    assert reply.headers["Last-Modified"] == origin.headers["Last-Modified"]
    assert reply.headers["Accept-Ranges"] == "bytes"
    assert "Content-Encoding" not in reply.headers


async def test_asset_range_passes_nginx_206(
    front: RunningGateway, nginx: Nginx, client: aiohttp.ClientSession
) -> None:
    reply = await fetch(
        client,
        front.url + "/static/logo.png",
        "identity",
        Range="bytes=8-15",
        Sec_Fetch_Dest="image",
        Accept="image/*",
    )
    assert reply.status == 206
    assert reply.raw == PNG[8:16]
    assert reply.headers["Content-Range"] == f"bytes 8-15/{len(PNG)}"
    assert reply.headers["Content-Length"] == "8"


async def test_navigation_range_on_nginx_page_gets_full_injected_page(
    front: RunningGateway, client: aiohttp.ClientSession
) -> None:
    site = front.gateway.sites[0]
    reply = await fetch(
        client,
        front.url + "/static/index.html",
        "identity",
        Range="bytes=0-99",
        Sec_Fetch_Dest="document",
    )
    assert reply.status == 200
    assert "Content-Range" not in reply.headers
    assert reply.raw == with_tag(PAGE, site.tag())
