"""Spool records -> upstream batches: wire format, untrusted decoding, grouping."""

from __future__ import annotations

import asyncio
import struct
import tracemalloc
import uuid
from pathlib import Path

import lz4.frame
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.collect.schema import decode_batch
from gateway.pipeline.batcher import (
    CONTENT_TYPE,
    Batched,
    Batcher,
    UpstreamBatch,
    UpstreamBatchError,
    decode_upstream,
    encode_upstream,
    new_batch_id,
)
from gateway.pipeline.sink import MaskedBatch
from gateway.pipeline.spool import FsyncPolicy, Spool
from tests.integration.batches import batch, click, encoded, first_batch, mouse_move, typed

MiB = 1024 * 1024
_enc = msgspec.msgpack.Encoder()


def masked(
    seq: int = 0,
    *,
    session: str = "sess-1",
    page: str = "page-1",
    site: str = "shop",
    text: str = "hello",
) -> MaskedBatch:
    events = [typed(11, text, t=1000 + seq), click(t=1001 + seq)]
    body = encoded(batch(events, session=session, page=page, seq=seq))
    return MaskedBatch(site=site, received_at=1_700_000_000.0 + seq, batch=decode_batch(body))


def upstream(records: list[MaskedBatch]) -> UpstreamBatch:
    return UpstreamBatch(id=new_batch_id(), node="edge-1", created_at=1.5, records=records)


class FakeTime:
    """A clock that moves only when the batcher sleeps; `on_sleep` may append records."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []
        self.reads = 0
        self.on_sleep: list[tuple[float, MaskedBatch]] = []  # (at time, record) to append
        self.spool: Spool | None = None

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds > 0, "a zero sleep would busy-loop"
        self.sleeps.append(seconds)
        self.now += seconds
        while self.on_sleep and self.on_sleep[0][0] <= self.now + 1e-9:
            _, item = self.on_sleep.pop(0)
            assert self.spool is not None
            await self.spool.append(_enc.encode(item))


@pytest.fixture
async def spool(tmp_path: Path) -> Spool:
    s = await Spool.open(tmp_path / "spool", max_bytes=64 * MiB, fsync=FsyncPolicy.NEVER)
    yield s  # type: ignore[misc]
    await s.close()


async def fill(spool: Spool, items: list[MaskedBatch]) -> list[tuple[int, int]]:
    """Append items; return their spool positions (the read cursor is left at the start)."""
    for item in items:
        await spool.append(_enc.encode(item))
    positions: list[tuple[int, int]] = []
    while chunk := await spool.read():
        positions.extend(r.position for r in chunk)
    spool.rewind()
    return positions


def key(item: MaskedBatch) -> tuple[str, str, str, int]:
    return (item.site, item.batch.session, item.batch.page, item.batch.seq)


# ------------------------------------------------------------------------------- wire format


def test_content_type_names_msgpack() -> None:
    assert CONTENT_TYPE == "application/vnd.recording-gateway.batch+msgpack"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 1_000_000_000),
            st.text(st.characters(blacklist_categories=("Cs",)), max_size=2000),
            st.from_regex(r"\A[A-Za-z0-9-]{1,70}\Z"),
        ),
        max_size=40,
    )
)
def test_encode_decode_round_trip(specs: list[tuple[int, str, str]]) -> None:
    records = [masked(seq, text=text, session=session) for seq, text, session in specs]
    original = upstream(records)
    body = encode_upstream(original)
    decoded = decode_upstream(body, max_decoded=16 * MiB)
    assert decoded == original
    assert [key(r) for r in decoded.records] == [key(r) for r in records]


def test_body_is_one_lz4_frame_with_checksum_and_size() -> None:
    original = upstream([masked(i) for i in range(5)])
    body = encode_upstream(original)
    raw = lz4.frame.decompress(body)
    assert raw == msgspec.msgpack.encode(original)
    assert msgspec.msgpack.decode(raw, type=UpstreamBatch) == original
    info = lz4.frame.get_frame_info(body)
    assert info["content_checksum"] is True
    assert info["content_size"] == len(raw)


def test_flipped_payload_byte_is_refused() -> None:
    # Incompressible text keeps the payload as literals: a flipped byte still
    # decompresses, so only the content checksum can catch it.
    text = uuid.UUID(int=12345).hex * 200
    body = bytearray(encode_upstream(upstream([masked(0, text=text)])))
    body[len(body) // 2] ^= 0x01
    with pytest.raises(UpstreamBatchError, match="lz4"):
        decode_upstream(bytes(body), max_decoded=MiB)


def test_flipped_checksum_byte_is_refused() -> None:
    body = bytearray(encode_upstream(upstream([masked(0)])))
    body[-1] ^= 0xFF  # the content checksum is the frame's last 4 bytes
    with pytest.raises(UpstreamBatchError, match=r"[Cc]hecksum"):
        decode_upstream(bytes(body), max_decoded=MiB)


def test_frame_without_content_checksum_is_refused() -> None:
    raw = msgspec.msgpack.encode(upstream([masked(0)]))
    body = lz4.frame.compress(raw, content_checksum=False)
    with pytest.raises(UpstreamBatchError, match="no content checksum"):
        decode_upstream(body, max_decoded=MiB)


def _with_claimed_size(frame: bytes, claimed: int) -> bytes:
    """Rewrite a frame's content-size field; find the header checksum that validates."""
    assert frame[4] & 0x08, "frame must carry a content size"
    header = bytearray(frame[:15])  # magic 4, FLG, BD, size 8, HC
    header[6:14] = struct.pack("<Q", claimed)
    for hc in range(256):
        header[14] = hc
        try:
            lz4.frame.get_frame_info(bytes(header) + frame[15:])
        except RuntimeError:
            continue
        return bytes(header) + frame[15:]
    raise AssertionError("no header checksum validates")


def test_output_over_max_decoded_refused_when_header_lies() -> None:
    raw = b"\x00" * (8 * MiB)
    frame = lz4.frame.compress(raw, content_checksum=True, store_size=True)
    lying = _with_claimed_size(frame, 100)
    assert lz4.frame.get_frame_info(lying)["content_size"] == 100
    tracemalloc.start()
    try:
        with pytest.raises(UpstreamBatchError, match="larger than max_decoded"):
            decode_upstream(lying, max_decoded=MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MiB  # never the 8 MiB the content really is


def test_output_over_max_decoded_refused_without_size() -> None:
    frame = lz4.frame.compress(b"\x00" * (8 * MiB), content_checksum=True, store_size=False)
    assert lz4.frame.get_frame_info(frame)["content_size"] == 0
    with pytest.raises(UpstreamBatchError, match="larger than max_decoded"):
        decode_upstream(frame, max_decoded=MiB)


def test_huge_claimed_size_is_not_allocated() -> None:
    body = encode_upstream(upstream([masked(0)]))
    lying = _with_claimed_size(body, 2**62)
    with pytest.raises(UpstreamBatchError, match="lz4"):
        decode_upstream(lying, max_decoded=MiB)


def test_max_decoded_is_inclusive() -> None:
    original = upstream([masked(0)])
    body = encode_upstream(original)
    size = len(msgspec.msgpack.encode(original))
    assert decode_upstream(body, max_decoded=size) == original
    with pytest.raises(UpstreamBatchError, match="larger than max_decoded"):
        decode_upstream(body, max_decoded=size - 1)


@pytest.mark.parametrize("trailer", [b"x", b"\x00" * 100, None])
def test_trailing_data_refused(trailer: bytes | None) -> None:
    body = encode_upstream(upstream([masked(0)]))
    extra = trailer if trailer is not None else encode_upstream(upstream([masked(1)]))
    with pytest.raises(UpstreamBatchError, match="trailing data"):
        decode_upstream(body + extra, max_decoded=MiB)


def test_truncated_frame_refused() -> None:
    body = encode_upstream(upstream([masked(0)]))
    with pytest.raises(UpstreamBatchError, match="truncated"):
        decode_upstream(body[:-6], max_decoded=MiB)


@pytest.mark.parametrize("body", [b"", b"not lz4 at all", b"\x04\x22\x4d"])
def test_not_a_frame_refused(body: bytes) -> None:
    with pytest.raises(UpstreamBatchError, match="not an lz4 frame"):
        decode_upstream(body, max_decoded=MiB)


def test_frame_of_wrong_content_refused() -> None:
    not_msgpack = lz4.frame.compress(b"\xc1\xc1", content_checksum=True)
    with pytest.raises(UpstreamBatchError, match="not valid msgpack"):
        decode_upstream(not_msgpack, max_decoded=MiB)
    wrong_shape = lz4.frame.compress(msgspec.msgpack.encode({"id": 1}), content_checksum=True)
    with pytest.raises(UpstreamBatchError, match="not an upstream batch"):
        decode_upstream(wrong_shape, max_decoded=MiB)


def test_ids_unique_and_time_ordered_across_10000_batches() -> None:
    ids = [new_batch_id() for _ in range(10_000)]
    assert len(set(ids)) == 10_000
    for value in ids[::1000]:
        parsed = uuid.UUID(hex=value)
        assert parsed.version == 7 and len(value) == 32 and value == value.lower()
    millis = [int(value[:12], 16) for value in ids]
    assert millis == sorted(millis)


def test_compression_ratio_on_a_realistic_batch() -> None:
    def record(seq: int) -> MaskedBatch:
        events = first_batch(seq=seq, session=f"sess-{seq % 3}")["events"]
        for i in range(10):
            move = mouse_move(t=2000 + seq * 50 + i)
            move["data"]["positions"][0].update(x=(seq * 31 + i * 7) % 1280, y=(i * 13) % 800)
            events.append(move)
        events.append(typed(15, f"note {seq}: {uuid.UUID(int=seq * 7919).hex}", t=3000 + seq))
        body = encoded(batch(events, seq=seq, session=f"sess-{seq % 3}"))
        return MaskedBatch(site="shop", received_at=1.7e9 + seq, batch=decode_batch(body))

    for records in ([record(0)], [record(seq) for seq in range(20)]):
        original = upstream(records)
        raw = msgspec.msgpack.encode(original)
        body = encode_upstream(original)
        print(
            f"\ncompression: {len(records)} realistic record(s), msgpack {len(raw)} bytes -> "
            f"lz4 frame {len(body)} bytes, ratio {len(raw) / len(body):.2f}x"
        )
        assert decode_upstream(body, max_decoded=MiB) == original


# ------------------------------------------------------------------------------- batcher


async def drain(batcher: Batcher, *, ack: bool = True) -> list[Batched]:
    out: list[Batched] = []
    while (got := await batcher.next()) is not None:
        out.append(got)
        if ack:
            await batcher.spool.ack(got.last_position)
    return out


async def test_none_on_empty_spool_without_busy_loop(spool: Spool) -> None:
    fake = FakeTime()
    reads = 0
    real_read = spool.read

    async def counting_read(max_records: int = 1000, max_bytes: int = MiB) -> list:  # type: ignore[type-arg]
        nonlocal reads
        reads += 1
        return await real_read(max_records, max_bytes)

    spool.read = counting_read  # type: ignore[method-assign]
    batcher = Batcher(
        spool, node="edge-1", max_wait=1.0, poll_interval=0.1, clock=fake.clock, sleep=fake.sleep
    )
    async with asyncio.timeout(5):  # a busy loop never moves the fake clock
        assert await batcher.next() is None
    assert fake.now - 100.0 == pytest.approx(1.0)  # waited max_wait, no longer
    assert 9 <= len(fake.sleeps) <= 11 and reads <= 12  # polled, did not spin


async def test_none_on_empty_spool_real_clock(spool: Spool) -> None:
    batcher = Batcher(spool, node="edge-1", max_wait=0.05, poll_interval=0.01)
    assert await batcher.next() is None


async def test_groups_by_size_in_order(spool: Spool) -> None:
    items = [masked(i, text="x" * (i * 37 % 300)) for i in range(60)]
    sizes = [len(_enc.encode(item)) for item in items]
    await fill(spool, items)
    max_bytes = 2000
    fake = FakeTime()  # a long window: only the size closes a batch
    batcher = Batcher(
        spool, node="edge-1", max_bytes=max_bytes, max_wait=60, clock=fake.clock, sleep=fake.sleep
    )
    got = await drain(batcher)
    assert len(got) > 3
    flat = [key(r) for b in got for r in b.upstream.records]
    assert flat == [key(item) for item in items]  # nothing lost, duplicated or reordered
    start = 0
    for b in got:
        n = len(b.upstream.records)
        assert sum(sizes[start : start + n]) <= max_bytes
        if start + n < len(items):  # greedy: the next record would not have fit
            assert sum(sizes[start : start + n + 1]) > max_bytes
        start += n


async def test_oversized_record_travels_alone(spool: Spool) -> None:
    items = [masked(0), masked(1), masked(2, text="y" * 5000), masked(3), masked(4)]
    positions = await fill(spool, items)
    fake = FakeTime()
    batcher = Batcher(
        spool, node="edge-1", max_bytes=1000, max_wait=60, clock=fake.clock, sleep=fake.sleep
    )
    got = await drain(batcher)
    seqs = [[r.batch.seq for r in b.upstream.records] for b in got]
    assert seqs == [[0, 1], [2], [3, 4]]
    assert [b.last_position for b in got] == [positions[1], positions[2], positions[4]]


async def test_groups_by_time_with_fake_clock(spool: Spool) -> None:
    fake = FakeTime()
    fake.spool = spool
    # Record 0 now; 1 and 2 arrive within the 1 s window; 3 after it closed.
    fake.on_sleep = [(100.3, masked(1)), (100.6, masked(2)), (101.5, masked(3))]
    await spool.append(_enc.encode(masked(0)))
    batcher = Batcher(
        spool,
        node="edge-1",
        max_bytes=MiB,
        max_wait=1.0,
        poll_interval=0.1,
        clock=fake.clock,
        sleep=fake.sleep,
    )
    first = await batcher.next()
    assert first is not None
    n = len(first.upstream.records)
    assert 1 < n < 6 and [r.batch.seq for r in first.upstream.records] == list(range(n))
    assert fake.now == pytest.approx(101.0)  # returned when the window closed
    await spool.ack(first.last_position)
    second = await batcher.next()
    assert second is not None
    assert [r.batch.seq for r in second.upstream.records] == [3]
    # The window opens at the first record read (101.5), not when next() was called.
    assert fake.now == pytest.approx(102.5)


async def test_keeps_site_session_page_seq_and_decodes_body(spool: Spool) -> None:
    items = [
        masked(7, site="shop", session="s-a", page="p-1"),
        masked(3, site="blog", session="s-b", page="p-9"),
        masked(8, site="shop", session="s-a", page="p-2"),
    ]
    positions = await fill(spool, items)
    batcher = Batcher(spool, node="edge-7", max_wait=0)
    got = await batcher.next()
    assert got is not None
    assert got.upstream.node == "edge-7"
    assert got.upstream.records == items
    assert got.last_position == positions[-1]
    assert decode_upstream(got.body, max_decoded=MiB) == got.upstream
    assert await batcher.next() is None


def over_long_url(seq: int) -> MaskedBatch:
    """A record that encodes but does not decode: its URL is past the schema's bound (as
    masking can make it, every short value becoming a longer mask)."""
    item = masked(seq)
    item.batch.url = "https://shop.test/?" + "&".join(["a=%2A%2A%2A%2A"] * 1000)
    assert len(item.batch.url) > 8192
    return item


async def test_undecodable_records_travel_alone_and_no_batch_covers_them(spool: Spool) -> None:
    # Each record was acknowledged to a browser: an ack that covers one the batch does not
    # hold would drop it. So a batch closes before such a record, which comes alone.
    bad = [b"\xc1 not msgpack", _enc.encode({"site": "shop"}), _enc.encode(over_long_url(9))]
    await spool.append(_enc.encode(masked(0)))
    for raw in bad[:2]:
        await spool.append(raw)
    await spool.append(_enc.encode(masked(1)))
    await spool.append(bad[2])
    positions = await fill(spool, [])
    batcher = Batcher(spool, node="edge-1", max_wait=0)
    got: list[Batched] = []
    while (one := await batcher.next()) is not None:
        got.append(one)
    assert [(b.undecodable != "", [r.batch.seq for r in b.upstream.records]) for b in got] == [
        (False, [0]),
        (True, []),
        (True, []),
        (False, [1]),
        (True, []),
    ]
    assert [b.last_position for b in got] == positions
    assert batcher.skipped == 3
    assert "url" in got[4].undecodable
    for one, raw in zip([got[1], got[2], got[4]], bad, strict=True):
        # Its body keeps the record's bytes as they are in the spool, for the dead letter.
        assert raw in lz4.frame.decompress(one.body)
        with pytest.raises(UpstreamBatchError):
            decode_upstream(one.body, max_decoded=MiB)


async def test_only_undecodable_records_come_alone(spool: Spool) -> None:
    await spool.append(b"\xc1")
    batcher = Batcher(spool, node="edge-1", max_wait=0.02, poll_interval=0.005)
    got = await batcher.next()
    assert got is not None and got.undecodable and got.upstream.records == []
    assert batcher.skipped == 1
    assert await batcher.next() is None


async def test_nothing_is_acked_and_rewind_resends(spool: Spool) -> None:
    items = [masked(i, text="z" * 200) for i in range(6)]
    await fill(spool, items)
    ack_before = spool.ack_cursor
    fake = FakeTime()  # a long window: the batcher reads ahead one record, then stops
    batcher = Batcher(
        spool, node="edge-1", max_bytes=900, max_wait=60, clock=fake.clock, sleep=fake.sleep
    )
    first = await batcher.next()
    assert first is not None
    n = len(first.upstream.records)
    assert 1 < n < 6 and [r.batch.seq for r in first.upstream.records] == list(range(n))
    assert first is not None
    assert spool.ack_cursor == ack_before  # the batcher never acks
    batcher.rewind()  # upstream failed: send the same records again
    again = await batcher.next()
    assert again is not None
    assert again.upstream.records == first.upstream.records
    assert again.last_position == first.last_position
    assert again.upstream.id != first.upstream.id
    await spool.ack(again.last_position)
    rest = await drain(batcher)
    flat = [r.batch.seq for b in [again, *rest] for r in b.upstream.records]
    assert flat == list(range(6))


async def test_batch_ids_unique_across_batches(spool: Spool) -> None:
    await fill(spool, [masked(i) for i in range(200)])
    batcher = Batcher(spool, node="edge-1", max_bytes=1, max_wait=0)  # one record per batch
    got = await drain(batcher)
    assert len(got) == 200
    assert len({b.upstream.id for b in got}) == 200


def test_rejects_bad_settings(tmp_path: Path) -> None:
    fake_spool = object()
    with pytest.raises(ValueError, match="max_bytes"):
        Batcher(fake_spool, node="n", max_bytes=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_wait"):
        Batcher(fake_spool, node="n", max_wait=-1)  # type: ignore[arg-type]
