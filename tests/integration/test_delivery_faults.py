"""Faults between the edge and the store, on loopback, bounded in time.

Each test counts the batches sent and acknowledged (200 {"record": true}) and
what the store holds in the end, and asserts: every acknowledged event is
stored, exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.integration.conftest import FORWARDING, GatewayFactory, Origin, site_config
from tests.integration.recordings import (
    EVENTS_PER_BATCH,
    NO_RATE_LIMITS,
    Api,
    GatewayProcess,
    Ledger,
    StoreProcess,
    assert_exactly_once,
    free_port,
    send_load,
)


@pytest.fixture
def store_node(tmp_path: Path) -> Iterator[StoreProcess]:
    node = StoreProcess(tmp_path)
    yield node
    node.stop(signal.SIGKILL)


def edge_config(origin: Origin, store_url: str, *, extra_upstream: str = "", extra_spool: str = ""):  # type: ignore[no-untyped-def]
    return site_config(
        origin.url,
        extra_collect=NO_RATE_LIMITS,
        extra_spool=extra_spool,
        upstream=f'url = "{store_url}"\ntimeout = 2.0\n{FORWARDING}\n{extra_upstream}',
    )


async def settle(api: Api, ledger: Ledger, within: float = 60.0) -> None:
    await api.wait_for_events(len(ledger.acked) * EVENTS_PER_BATCH, within=within)


async def test_store_down_under_load_then_back(
    origin: Origin, make_gateway: GatewayFactory, store_node: StoreProcess
) -> None:
    await asyncio.to_thread(store_node.start)
    gw = await make_gateway(edge_config(origin, store_node.url))
    ledger = Ledger()
    load = asyncio.create_task(
        send_load(gw.url, ledger, sessions=6, batches_per_session=40, pause=0.03)
    )
    await asyncio.sleep(0.5)
    store_node.stop(signal.SIGKILL)
    acked_before_outage = len(ledger.acked)
    await asyncio.sleep(2.0)
    acked_during_outage = len(ledger.acked) - acked_before_outage
    await asyncio.to_thread(store_node.start)
    await load
    await settle(store_node.api, ledger)
    assert acked_during_outage > 0  # the spool took them while the store was away
    assert len(ledger.acked) == len(ledger.sent) == 240
    assert_exactly_once(await store_node.api.stored_timestamps(), ledger)
    assert gw.metric("gateway_exports_total", exporter="http", outcome="retry") > 0
    assert gw.metric("gateway_exports_total", exporter="http", outcome="ok") > 0
    assert gw.metric("gateway_spool_batches") == 0


@pytest.fixture
async def chaos(store_node: StoreProcess) -> AsyncIterator[tuple[str, dict[str, int]]]:
    """A proxy in front of the store: slow answers, 503s, and connections cut after the
    store has already stored the batch (so the edge retries what is in fact done)."""
    rng = random.Random(20261123)
    seen = {"slow": 0, "503": 0, "cut_before": 0, "cut_after": 0, "passed": 0}
    upstream = aiohttp.ClientSession()

    async def forward(request: web.Request, body: bytes) -> tuple[int, bytes]:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with upstream.post(
            store_node.url + request.path, data=body, headers=headers
        ) as answer:
            return answer.status, await answer.read()

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        roll = rng.random()
        if roll < 0.15:
            seen["503"] += 1
            return web.json_response(
                {"error": "busy", "detail": "chaos"}, status=503, headers={"Retry-After": "0"}
            )
        if roll < 0.25:
            seen["cut_before"] += 1
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        if roll < 0.40:
            seen["slow"] += 1
            await asyncio.sleep(rng.choice([0.5, 1.0, 2.5]))  # 2.5 s: beyond the edge's timeout
        status, answer = await forward(request, body)
        if roll > 0.88:
            seen["cut_after"] += 1
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        seen["passed"] += 1
        return web.Response(status=status, body=answer, content_type="application/json")

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/ingest/v1/batches", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()
    await upstream.close()


async def test_slow_and_flapping_store(
    origin: Origin,
    make_gateway: GatewayFactory,
    store_node: StoreProcess,
    chaos: tuple[str, dict[str, int]],
) -> None:
    chaos_url, seen = chaos
    await asyncio.to_thread(store_node.start)
    # Small batches, so there are many exports for the chaos to act on.
    gw = await make_gateway(
        edge_config(origin, chaos_url, extra_upstream="batch_bytes = 2048\ncircuit_failures = 50")
    )
    ledger = Ledger()
    await send_load(gw.url, ledger, sessions=4, batches_per_session=40, pause=0.01)
    await settle(store_node.api, ledger, within=90)
    assert len(ledger.acked) == 160
    assert_exactly_once(await store_node.api.stored_timestamps(), ledger)
    for kind in ("slow", "503", "cut_before", "cut_after", "passed"):
        assert seen[kind] > 0, seen
    # Batches the store had stored but whose answer was lost came back as duplicates.
    duplicates = await store_metric(store_node, "gateway_store_ingest_total", outcome="duplicate")
    assert duplicates > 0


async def store_metric(node: StoreProcess, name: str, **labels: str) -> float:
    async with aiohttp.ClientSession() as client, client.get(node.admin_url + "/metrics") as r:
        text = await r.text()
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_gateway_killed_under_load_loses_nothing_acknowledged(
    origin: Origin, tmp_path: Path
) -> None:
    edge = GatewayProcess(tmp_path, origin.url, upstream=f'url = "local"\n{FORWARDING}')
    await asyncio.to_thread(edge.start)
    try:
        ledger = Ledger()
        load = asyncio.create_task(
            send_load(edge.url, ledger, sessions=8, batches_per_session=60, pause=0.005)
        )
        # Mid-load by what was acknowledged, not by the clock: a faster gateway could
        # otherwise finish all 480 before a fixed delay ran out.
        while len(ledger.acked) < 120 and not load.done():
            await asyncio.sleep(0.005)
        edge.kill()  # SIGKILL, mid-load
        await load  # the rest fail to connect: not acknowledged
        assert 0 < len(ledger.acked) < len(ledger.sent)
        await asyncio.to_thread(edge.start)
        api = Api(edge.admin_url)
        await settle(api, ledger)
        assert_exactly_once(await api.stored_timestamps(), ledger, unanswered_may_be_stored=True)
    finally:
        edge.kill()


async def test_spool_full_is_503_and_nothing_acknowledged_is_lost(
    origin: Origin, make_gateway: GatewayFactory, store_node: StoreProcess
) -> None:
    # The store is not running yet: everything waits in a small spool.
    gw = await make_gateway(
        edge_config(origin, store_node.url, extra_spool="max_bytes = 65536\nsegment_bytes = 8192")
    )
    ledger = Ledger()
    await send_load(gw.url, ledger, sessions=4, batches_per_session=100)
    assert ledger.refused.get(503, 0) > 0
    assert ledger.retry_after and all(int(v) > 0 for v in ledger.retry_after)
    assert 50 < len(ledger.acked) < len(ledger.sent)
    assert gw.metric("gateway_collect_batches_total", site="shop", outcome="sink_full") > 0
    await asyncio.to_thread(store_node.start)
    await settle(store_node.api, ledger)
    assert_exactly_once(await store_node.api.stored_timestamps(), ledger)


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[None]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    # The suite runs as root (make test installs packages with apt-get): a refused
    # mount is a broken machine, not a reason to leave the full-disk case untested.
    assert mounted.returncode == 0, f"cannot mount a small tmpfs: {mounted.stderr.strip()}"
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Write until the disk is full; the filler file is returned to be removed later."""
    filler = directory / "filler"
    with filler.open("wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()
            os.fsync(f.fileno())
    return filler


async def test_store_disk_full_is_5xx_and_the_edge_keeps_retrying(
    origin: Origin, make_gateway: GatewayFactory, store_node: StoreProcess
) -> None:
    with small_disk(store_node.data_dir, "8m"):
        await asyncio.to_thread(store_node.start)
        gw = await make_gateway(edge_config(origin, store_node.url))
        ledger = Ledger()
        await send_load(gw.url, ledger, sessions=2, batches_per_session=5)
        await settle(store_node.api, ledger)
        filler = fill(store_node.data_dir)
        await send_load(gw.url, ledger, sessions=3, batches_per_session=30, first_seq=5)
        assert len(ledger.acked) == len(ledger.sent)  # the edge acknowledges from its spool
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if await store_metric(store_node, "gateway_store_ingest_total", outcome="error"):
                break
            await asyncio.sleep(0.1)
        assert await store_metric(store_node, "gateway_store_ingest_total", outcome="error") > 0
        assert gw.metric("gateway_exports_total", exporter="http", outcome="retry") > 0
        assert gw.metric("gateway_spool_batches") > 0
        filler.unlink()  # room again: the retries go through
        await settle(store_node.api, ledger)
        assert_exactly_once(await store_node.api.stored_timestamps(), ledger)
        store_node.stop()


async def test_sigterm_flushes_the_batcher_and_exits_within_the_grace(
    origin: Origin, tmp_path: Path, store_node: StoreProcess
) -> None:
    await asyncio.to_thread(store_node.start)
    # A long batch_wait: nothing would be forwarded before the signal without the flush.
    edge = GatewayProcess(
        tmp_path, origin.url, upstream=f'url = "{store_node.url}"\nbatch_wait = 60.0'
    )
    await asyncio.to_thread(edge.start)
    try:
        ledger = Ledger()
        await send_load(edge.url, ledger, sessions=3, batches_per_session=10)
        assert await store_node.api.recordings() == []
        started = time.monotonic()
        edge.signal(signal.SIGTERM)
        assert await asyncio.to_thread(edge.wait, 15) == 0
        assert (
            time.monotonic() - started < 3.0 + 5.0
        )  # shutdown_grace, plus slack: a bound, not a speed target
        assert_exactly_once(await store_node.api.stored_timestamps(), ledger)
    finally:
        edge.kill()


async def test_sigterm_with_the_store_down_keeps_the_spool_for_the_next_start(
    origin: Origin, tmp_path: Path, store_node: StoreProcess
) -> None:
    edge = GatewayProcess(tmp_path, origin.url, upstream=f'url = "{store_node.url}"\n{FORWARDING}')
    await asyncio.to_thread(edge.start)
    try:
        ledger = Ledger()
        await send_load(edge.url, ledger, sessions=2, batches_per_session=10)
        started = time.monotonic()
        edge.signal(signal.SIGTERM)
        assert await asyncio.to_thread(edge.wait, 15) == 0
        assert time.monotonic() - started < 3.0 + 5.0
        await asyncio.to_thread(store_node.start)
        await asyncio.to_thread(edge.start)  # replays the spool on start
        await settle(store_node.api, ledger)
        assert_exactly_once(await store_node.api.stored_timestamps(), ledger)
    finally:
        edge.kill()
