"""Fixtures: a real origin on loopback and a real gateway in front of it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gateway.app import Gateway
from gateway.config import Config, parse_config
from gateway.pipeline.sink import MaskedBatch
from tests.integration.origin_app import OriginState, build_origin

BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130 Safari/537.36"


@dataclass
class Origin:
    url: str
    port: int
    state: OriginState

    @property
    def connections(self) -> set[int]:
        """Client ports of the TCP connections the origin has served requests on."""
        return self.state.peers


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    state = OriginState()
    app = build_origin(state)
    # handler_cancellation: the origin notices when the gateway drops its connection.
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield Origin(url=f"http://127.0.0.1:{port}", port=port, state=state)
    await runner.cleanup()


# By default the delivery loop holds batches for an hour before forwarding them, so
# a test sees everything acknowledged in the spool (RunningGateway.spooled); tests of
# the pipeline and the store pass `upstream=FORWARDING` (or their own settings).
HELD_IN_SPOOL = "batch_wait = 3600.0"
FORWARDING = "batch_wait = 0.05\nretry_initial = 0.05\nretry_max = 0.5\ncircuit_cooldown = 0.5"


def site_config(
    origin_url: str,
    *,
    extra_site: str = "",
    extra_server: str = "",
    extra_proxy: str = "",
    extra_collect: str = "",
    extra_spool: str = "",
    upstream: str = HELD_IN_SPOOL,
    extra_store: str = "",
    recording: str = "",
) -> Config:
    text = f"""
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
node_name = "gw-test"
{extra_server}

[proxy]
{extra_proxy}

[collect]
{extra_collect}

[spool]
{extra_spool}

[upstream]
{upstream}

[store]
{extra_store}

[[sites]]
key = "shop"
hosts = ["shop.test", "*.shop.test", "127.0.0.1"]
origin = "{origin_url}"
{extra_site}

[sites.recording]
exclude = ["/admin/*"]
{recording}
"""
    return parse_config(text, env={})


@dataclass
class RunningGateway:
    gateway: Gateway
    url: str
    admin_url: str
    port: int

    async def metric_becomes(self, name: str, value: float, **labels: str) -> float:
        """Poll a metric that settles just after a response ends."""
        for _ in range(100):
            if self.metric(name, **labels) == value:
                break
            await asyncio.sleep(0.02)
        return self.metric(name, **labels)

    async def spooled(self) -> list[MaskedBatch]:
        """What the gateway acknowledged: the batches in its spool."""
        assert self.gateway.sink is not None
        return await self.gateway.sink.pending()

    def metric(self, name: str, **labels: str) -> float:
        value = self.gateway.metrics.registry.get_sample_value(name, labels)
        return value or 0.0


GatewayFactory = Callable[..., Awaitable[RunningGateway]]


@pytest.fixture
async def make_gateway(origin: Origin, tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    started: list[Gateway] = []

    async def factory(config: Config | None = None, **kwargs: str) -> RunningGateway:
        config = config or site_config(origin.url, **kwargs)
        if config.server.data_dir == "./data":
            # Quota and spool files of each gateway in a folder of its own.
            config.server.data_dir = str(tmp_path / f"data{len(started)}")
        gateway = Gateway(config)
        listening = await gateway.start()
        started.append(gateway)
        host, port = listening.edge
        admin_host, admin_port = listening.admin
        return RunningGateway(
            gateway, f"http://{host}:{port}", f"http://{admin_host}:{admin_port}", port
        )

    yield factory
    for gateway in started:
        await gateway.stop()


@pytest.fixture
async def gw(make_gateway: GatewayFactory) -> RunningGateway:
    return await make_gateway()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    session = aiohttp.ClientSession(
        auto_decompress=False,
        headers={"User-Agent": BROWSER_UA, "Host": "shop.test"},
    )
    yield session
    await session.close()


def status_of(answer: bytes) -> int:
    """The status code of a raw HTTP answer."""
    return int(answer.split(b" ", 2)[1])


def json_body_of(answer: bytes) -> dict[str, str]:
    """The JSON body of a raw HTTP answer (as read by raw_exchange)."""
    body = answer.split(b"\r\n\r\n", 1)[1].replace(b"<<open>>", b"")
    return json.loads(body)  # type: ignore[no-any-return]


async def raw_exchange(port: int, data: bytes, *, read_timeout: float = 3.0) -> bytes:
    """Send raw bytes, return everything the gateway answers until it closes or goes quiet."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    chunks: list[bytes] = []
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), read_timeout)
            if not chunk:
                break
            chunks.append(chunk)
    except TimeoutError:
        chunks.append(b"<<open>>")
    writer.close()
    return b"".join(chunks)


RawOrigin = Callable[[bytes], Awaitable[str]]


@pytest.fixture
async def raw_origin() -> AsyncIterator[RawOrigin]:
    """An origin that answers every request with the given raw bytes, then closes.

    `{port}` in the reply is replaced by the origin's own port."""
    servers: list[asyncio.Server] = []

    async def start(reply: bytes) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(reply.replace(b"{port}", str(port).encode()))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    yield start
    for server in servers:
        server.close()
