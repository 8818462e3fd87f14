"""POST /ingest/v1/batches of a `gateway store` node: what it accepts and what it refuses."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import lz4.frame
import msgspec
import pytest

from gateway.collect.schema import decode_batch
from gateway.config import parse_config
from gateway.pipeline.batcher import (
    CONTENT_TYPE,
    UpstreamBatch,
    decode_upstream,
    encode_upstream,
    new_batch_id,
)
from gateway.pipeline.sink import MaskedBatch
from gateway.store import receiver
from gateway.store.node import StoreNode
from tests.integration import batches as b
from tests.integration.recordings import Api, load_batch, store_config_text

INGEST_TOKEN = "edge-secret"


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[StoreNode]:
    text = store_config_text(
        0,
        0,
        tmp_path / "data",
        extra_store=f'ingest_token = "{INGEST_TOKEN}"\nmax_batch_bytes = 1048576',
    )
    store = StoreNode(parse_config(text, env={}))
    await store.start()
    yield store
    await store.stop()


def urls(node: StoreNode) -> tuple[str, str]:
    assert node.listening is not None
    host, port = node.listening.edge
    admin_host, admin_port = node.listening.admin
    return f"http://{host}:{port}/ingest/v1/batches", f"http://{admin_host}:{admin_port}"


def upstream_batch(*records: MaskedBatch, batch_id: str | None = None) -> UpstreamBatch:
    return UpstreamBatch(
        id=batch_id or new_batch_id(), node="edge-1", created_at=1.0, records=list(records)
    )


def record(session_index: int, seq: int) -> MaskedBatch:
    batch = decode_batch(b.encoded(load_batch(session_index, seq)))
    return MaskedBatch(
        site="shop", received_at=1.0, batch=batch, device="desktop", browser="Chrome"
    )


async def send(
    url: str,
    body: bytes,
    *,
    key: str | None,
    token: str | None = INGEST_TOKEN,
    content_type: str = CONTENT_TYPE,
) -> tuple[int, dict[str, object]]:
    headers = {"Content-Type": content_type}
    if key is not None:
        headers["Idempotency-Key"] = key
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as client, client.post(url, data=body, headers=headers) as r:
        return r.status, await r.json()


async def stored_events(admin: str) -> int:
    return sum(r["events"] for r in await Api(admin).recordings())


async def test_a_batch_is_stored_once_whatever_the_repeats(node: StoreNode) -> None:
    url, admin = urls(node)
    batch = upstream_batch(record(0, 0), record(0, 1), record(1, 0))
    body = encode_upstream(batch)
    status, answer = await send(url, body, key=batch.id)
    assert status == 200 and answer["status"] == "stored" and answer["records"] == 3
    for _ in range(2):
        status, answer = await send(url, body, key=batch.id)
        assert status == 200 and answer["status"] == "duplicate"
    # The same records in a new batch (an edge that restarted and batched again).
    again = upstream_batch(record(0, 1), record(1, 0), record(1, 1))
    status, answer = await send(url, encode_upstream(again), key=again.id)
    assert status == 200 and answer["records"] == 1
    assert await stored_events(admin) == 4 * 3
    sample = node.metrics.registry.get_sample_value
    assert sample("gateway_store_ingest_total", {"outcome": "stored"}) == 2
    assert sample("gateway_store_ingest_total", {"outcome": "duplicate"}) == 2


@pytest.mark.parametrize(
    ("case", "status", "error"),
    [
        ("no token", 401, "unauthorized"),
        ("wrong token", 401, "unauthorized"),
        ("json type", 415, "unsupported_media_type"),
        ("no key", 400, "bad_batch"),
        ("key is not the id", 400, "bad_batch"),
        ("not lz4", 400, "bad_batch"),
        ("truncated frame", 400, "bad_batch"),
        ("flipped byte", 400, "bad_batch"),
        ("no checksum", 400, "bad_batch"),
        ("not a batch", 400, "bad_batch"),
        ("bad record", 400, "bad_batch"),
        ("too large as sent", 413, "too_large"),
        ("bomb", 413, "too_large"),
    ],
)
async def test_bad_bodies_are_refused_and_nothing_is_half_written(
    node: StoreNode, case: str, status: int, error: str
) -> None:
    url, admin = urls(node)
    batch = upstream_batch(record(0, 0), record(0, 1))
    good = encode_upstream(batch)
    key: str | None = batch.id
    token: str | None = INGEST_TOKEN
    content_type = CONTENT_TYPE
    body = good
    if case == "no token":
        token = None
    elif case == "wrong token":
        token = "guess"
    elif case == "json type":
        content_type = "application/json"
    elif case == "no key":
        key = None
    elif case == "key is not the id":
        key = new_batch_id()
    elif case == "not lz4":
        body = b"hello, store"
    elif case == "truncated frame":
        body = good[:-7]
    elif case == "flipped byte":
        middle = len(good) // 2
        body = good[:middle] + bytes([good[middle] ^ 0x40]) + good[middle + 1 :]
    elif case == "no checksum":
        body = lz4.frame.compress(msgspec.msgpack.encode(batch), content_checksum=False)
    elif case == "not a batch":
        body = lz4.frame.compress(msgspec.msgpack.encode({"id": 1}), content_checksum=True)
    elif case == "bad record":
        raw = msgspec.to_builtins(batch)
        raw["records"][1]["batch"]["session"] = "not valid!"
        body = lz4.frame.compress(msgspec.msgpack.encode(raw), content_checksum=True)
    elif case == "too large as sent":
        body = good + b"\0" * (1 << 20)
    elif case == "bomb":
        # 64 MiB of zeros claimed as a batch: a few KiB on the wire, refused while inflating.
        body = lz4.frame.compress(b"\0" * (64 << 20), content_checksum=True)
        assert len(body) < 400_000
    answer_status, answer = await send(url, body, key=key, token=token, content_type=content_type)
    assert answer_status == status
    assert answer["error"] == error
    assert isinstance(answer["detail"], str) and answer["detail"]
    assert await stored_events(admin) == 0  # nothing of a refused batch is visible
    # And the good batch still goes in afterwards.
    assert (await send(url, good, key=batch.id))[0] == 200
    assert await stored_events(admin) == 2 * 3


async def test_get_is_405(node: StoreNode) -> None:
    url, _ = urls(node)
    async with aiohttp.ClientSession() as client, client.get(url) as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST"


async def test_bodies_are_decoded_off_the_event_loop(
    node: StoreNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Decompressing and decoding up to store.max_batch_bytes (64 MiB by default) takes
    # long enough to stall every other request of the node if it ran on the loop.
    threads: list[int] = []

    def spy(body: bytes, *, max_decoded: int) -> UpstreamBatch:
        threads.append(threading.get_ident())
        return decode_upstream(body, max_decoded=max_decoded)

    monkeypatch.setattr(receiver, "decode_upstream", spy)
    url, admin = urls(node)
    batch = upstream_batch(record(0, 0))
    assert (await send(url, encode_upstream(batch), key=batch.id))[0] == 200
    assert threads and threading.get_ident() not in threads
    assert await stored_events(admin) == 3


async def test_a_token_that_is_not_utf8_is_401_not_500(node: StoreNode) -> None:
    url, _ = urls(node)
    host, port = url.removeprefix("http://").split("/", 1)[0].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"POST /ingest/v1/batches HTTP/1.1\r\nHost: store\r\n"
            b"Authorization: Bearer \xff\xfe\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        assert (await reader.readline()).split()[1] == b"401"
    finally:
        writer.close()


async def test_too_many_bodies_at_once_are_503_not_memory(node: StoreNode) -> None:
    from gateway.store.receiver import MAX_BODIES_IN_FLIGHT

    url, _ = urls(node)
    host, port = url.split("/")[2].split(":")
    stalled = []
    for _ in range(MAX_BODIES_IN_FLIGHT):
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            (
                f"POST /ingest/v1/batches HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {INGEST_TOKEN}\r\nContent-Type: {CONTENT_TYPE}\r\n"
                "Idempotency-Key: x\r\nContent-Length: 100000\r\n\r\npartial"
            ).encode()
        )
        await writer.drain()
        stalled.append(writer)
    # A probe that would be a 400 if it were read: once all slots hold a body, it is a 503.
    for _ in range(100):
        status, answer = await send(url, b"probe", key="probe")
        if status == 503:
            break
        await asyncio.sleep(0.05)
    assert status == 503 and answer["error"] == "busy"
    batch = upstream_batch(record(0, 0))
    for writer in stalled:
        writer.close()
    await asyncio.sleep(0.3)
    assert (await send(url, encode_upstream(batch), key=batch.id))[0] == 200
