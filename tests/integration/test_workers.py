"""`gateway serve --workers 2`: two processes on one port, one store, one /metrics."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp
import psutil

from tests.integration.conftest import FORWARDING, Origin
from tests.integration.recordings import (
    Api,
    GatewayProcess,
    Ledger,
    assert_exactly_once,
    send_load,
)


def metric(text: str, name: str, labels: str = "") -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + ("{" if labels else "")) and labels in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_two_workers_share_the_port_the_store_and_the_metrics(
    origin: Origin, tmp_path: Path
) -> None:
    edge = GatewayProcess(tmp_path, origin.url, upstream=f'url = "local"\n{FORWARDING}')
    await asyncio.to_thread(edge.start, "--workers", "2")
    try:
        assert edge.proc is not None
        supervisor = psutil.Process(edge.proc.pid)
        for _ in range(100):
            if len(supervisor.children()) == 2:
                break
            await asyncio.sleep(0.1)
        workers = supervisor.children()
        assert len(workers) == 2

        def listening(worker: psutil.Process) -> bool:
            return any(
                c.status == psutil.CONN_LISTEN and c.laddr.port == edge.port
                for c in worker.net_connections(kind="tcp")
            )

        for _ in range(200):  # both workers hold a socket on the edge port
            if all(listening(w) for w in workers):
                break
            await asyncio.sleep(0.1)
        assert all(listening(w) for w in workers)
        cpu_before = [w.cpu_times().user + w.cpu_times().system for w in workers]

        # Pages over new connections: the kernel spreads them over both workers.
        async def page() -> int:
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as client,
                client.get(edge.url + "/page", headers={"Host": "shop.test"}) as r,
            ):
                await r.read()
                return r.status

        statuses = [await page() for _ in range(200)]
        assert statuses == [200] * 200
        # Batches through both workers end up in the one store, once.
        ledger = Ledger()
        await send_load(edge.url, ledger, sessions=6, batches_per_session=20, concurrency=12)
        assert len(ledger.acked) == 120
        api = Api(edge.admin_url)
        await api.wait_for_events(len(ledger.acked) * 3)
        assert_exactly_once(await api.stored_timestamps(), ledger)

        cpu_after = [w.cpu_times().user + w.cpu_times().system for w in workers]
        assert all(
            after - before > 0.05 for before, after in zip(cpu_before, cpu_after, strict=True)
        )
        async with aiohttp.ClientSession() as client, client.get(edge.admin_url + "/metrics") as r:
            text = await r.text()
        # One /metrics for both: every proxied page and every stored batch counted once.
        assert metric(text, "gateway_proxy_requests_total", 'status_class="2xx"') == 200
        assert metric(text, "gateway_collect_batches_total", 'outcome="stored"') == 120
        assert metric(text, "gateway_exports_total", 'exporter="http"') > 0  # worker 1 -> 0
        assert metric(text, "gateway_exports_total", 'exporter="local"') > 0

        started = time.monotonic()
        edge.signal(signal.SIGTERM)
        assert await asyncio.to_thread(edge.wait, 30) == 0
        assert time.monotonic() - started < 3.0 * 2 + 10
        assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    finally:
        edge.kill()
