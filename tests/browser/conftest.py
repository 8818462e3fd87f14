"""Real Chromium (Debian's) driven by Playwright against the demo shop behind a gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, async_playwright

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.demo.origin import build_demo_origin
from gateway.pipeline.sink import MaskedBatch

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
# Headless Chromium says "HeadlessChrome": a recorded visitor looks like a person.
DESKTOP_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36"
)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs Debian's chromium")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=ARGS
        )
        yield launched
        await launched.close()


async def new_context(browser: Browser, **options: object) -> BrowserContext:
    return await browser.new_context(user_agent=DESKTOP_UA, **options)  # type: ignore[arg-type]


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@dataclass
class Shop:
    """The demo shop behind a running gateway; `url` is the public base URL."""

    gateway: Gateway
    url: str
    admin_url: str

    async def spooled(self) -> list[MaskedBatch]:
        """What the gateway acknowledged to the browser: the batches in its spool."""
        assert self.gateway.sink is not None
        return await self.gateway.sink.pending()

    async def passed_on(self) -> bytes:
        """Everything the gateway handed to the pipeline, as stored bytes."""
        return b"\n".join(msgspec.json.encode(item) for item in await self.spooled())

    async def wait_for_batches(self, count: int = 1, timeout: float = 15) -> None:
        for _ in range(int(timeout / 0.1)):
            if len(await self.spooled()) >= count:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"no batch reached the gateway within {timeout} s")


ShopFactory = Callable[..., Awaitable[Shop]]
# Batches stay in the spool (an hour's batch window) unless a test forwards them: what
# the browser got a 200 for is inspected there.
HELD_IN_SPOOL = "batch_wait = 3600.0"


@pytest.fixture
async def make_shop(tmp_path: Path) -> AsyncIterator[ShopFactory]:
    runners: list[web.AppRunner] = []
    gateways: list[Gateway] = []

    async def factory(
        recording: str = "",
        origin_app: web.Application | None = None,
        exclude: tuple[str, ...] = ("/admin/*",),
        server: str = "",
        upstream: str = HELD_IN_SPOOL,
        store: str = "",
        site: str = "",
    ) -> Shop:
        runner, port = await serve(origin_app or build_demo_origin())
        runners.append(runner)
        config = parse_config(
            f"""
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
data_dir = "{tmp_path / f"data{len(gateways)}"}"
{server}

[upstream]
{upstream}

[store]
{store}

[[sites]]
key = "demo"
hosts = ["localhost", "127.0.0.1"]
origin = "http://127.0.0.1:{port}"
{site}

[sites.recording]
exclude = {list(exclude)!r}
{recording}
""",
            env={},
        )
        gateway = Gateway(config)
        listening = await gateway.start()
        gateways.append(gateway)
        admin = f"http://127.0.0.1:{listening.admin[1]}"
        return Shop(gateway, f"http://localhost:{listening.edge[1]}", admin)

    yield factory
    for gateway in gateways:
        await gateway.stop()
    for runner in runners:
        await runner.cleanup()
