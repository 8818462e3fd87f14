"""The demo a newcomer runs: every page works through the gateway, tags where promised."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import pytest
from aiohttp import web

from gateway.app import Gateway
from gateway.config import load_config
from gateway.demo.origin import build_demo_origin, demo_pages
from tests.integration.conftest import BROWSER_UA

CONFIG = Path(__file__).resolve().parents[2] / "config" / "gateway.toml"
TAG = b'<script src="/__rec/recorder.js?v='


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[str]:
    runner = web.AppRunner(build_demo_origin(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    config = load_config(
        CONFIG,
        env={
            "GATEWAY_LISTEN": "127.0.0.1:0",
            "GATEWAY_ADMIN_LISTEN": "127.0.0.1:0",
            "GATEWAY_DATA_DIR": str(tmp_path),
        },
    )
    config.sites[0] = msgspec.structs.replace(config.sites[0], origin=f"http://127.0.0.1:{port}")
    gateway = Gateway(config)
    listening = await gateway.start()
    yield f"http://127.0.0.1:{listening.edge[1]}"
    await gateway.stop()
    await runner.cleanup()


async def test_every_demo_page_works_and_carries_the_tag_where_promised(demo: str) -> None:
    expectations = {"/admin/": False, "/partner": False}
    async with aiohttp.ClientSession(
        headers={"User-Agent": BROWSER_UA, "Host": "localhost"}
    ) as session:
        for path, _title in demo_pages():
            async with session.get(demo + path, headers={"Accept-Encoding": "gzip"}) as response:
                assert response.status == 200, path
                body = await response.read()
            assert body.count(TAG) == (1 if expectations.get(path, True) else 0), path
            if expectations.get(path, True):
                # Right after the charset meta, at the top of <head>.
                assert b'<meta charset="utf-8">' + TAG in body, path
        for asset in ("/static/site.css", "/static/app.js", "/vendor/smartlook-recorder.js"):
            async with session.get(demo + asset) as response:
                assert response.status == 200, asset
        async with session.post(
            demo + "/signup",
            data={"name": "A", "email": "a@example.com", "phone": "123", "password": "pw"},
            allow_redirects=False,
        ) as response:
            assert response.status == 303
        async with session.get(demo + "/__rec/recorder.js") as response:
            assert response.status == 200
            assert response.content_type == "application/javascript"
