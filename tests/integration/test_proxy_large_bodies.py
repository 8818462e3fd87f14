"""PROXY-CHECKLIST 23 and the back-pressure promise: 1 GiB each way, bounded memory.

The gateway runs as its own process (as in production) so that its RSS can
be measured apart from the test's client and origin.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import psutil
import pytest

from tests.integration.conftest import BROWSER_UA, Origin

SIZE_MIB = 1024
# The gateway's whole resident set must stay under this while 1 GiB streams through.
RSS_BOUND = 150 * 1024 * 1024


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class GatewayProcess:
    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.peak_rss = 0
        self._ps = psutil.Process(process.pid)

    async def sample_rss(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.peak_rss = max(self.peak_rss, self._ps.memory_info().rss)
            await asyncio.sleep(0.05)


@pytest.fixture
async def gateway_process(origin: Origin, tmp_path: Path) -> AsyncIterator[GatewayProcess]:
    port = _free_port()
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""
[server]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{_free_port()}"
max_body_bytes = {2 * SIZE_MIB * 1024 * 1024}
data_dir = "{tmp_path / "data"}"

[[sites]]
key = "shop"
hosts = ["shop.test"]
origin = "{origin.url}"
"""
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "-c",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 20)
    assert b"edge listening" in line, line
    yield GatewayProcess(process, port)
    process.terminate()
    await asyncio.wait_for(process.wait(), 20)


async def test_one_gib_download_streams_with_bounded_memory(
    gateway_process: GatewayProcess,
) -> None:
    stop = asyncio.Event()
    sampler = asyncio.ensure_future(gateway_process.sample_rss(stop))
    received = 0
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.get(
            f"http://127.0.0.1:{gateway_process.port}/download",
            params={"mib": str(SIZE_MIB)},
            headers={"Host": "shop.test", "User-Agent": BROWSER_UA},
            timeout=aiohttp.ClientTimeout(total=300),
        ) as response,
    ):
        assert response.headers["Content-Length"] == str(SIZE_MIB * 1024 * 1024)
        async for chunk in response.content.iter_any():
            received += len(chunk)
    stop.set()
    await sampler
    assert received == SIZE_MIB * 1024 * 1024
    print(f"download peak gateway RSS: {gateway_process.peak_rss >> 20} MiB")
    assert gateway_process.peak_rss < RSS_BOUND, f"peak RSS {gateway_process.peak_rss >> 20} MiB"


async def test_one_gib_upload_streams_with_bounded_memory(
    gateway_process: GatewayProcess,
) -> None:
    block = os.urandom(1024 * 1024)
    expected = 0
    for _ in range(SIZE_MIB):
        expected = zlib.crc32(block, expected)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(SIZE_MIB):
            yield block

    stop = asyncio.Event()
    sampler = asyncio.ensure_future(gateway_process.sample_rss(stop))
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{gateway_process.port}/upload",
            data=body(),
            headers={"Host": "shop.test", "User-Agent": BROWSER_UA},
            timeout=aiohttp.ClientTimeout(total=300),
        ) as response,
    ):
        answer = await response.json()
    stop.set()
    await sampler
    assert answer["received"] == SIZE_MIB * 1024 * 1024
    print(f"upload peak gateway RSS: {gateway_process.peak_rss >> 20} MiB")
    assert answer["crc32"] == expected
    assert gateway_process.peak_rss < RSS_BOUND, f"peak RSS {gateway_process.peak_rss >> 20} MiB"
