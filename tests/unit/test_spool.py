"""The durable spool: round trip, segments, replay, damage on disk, limits, fsync, crashes."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.pipeline import spool as spool_mod
from gateway.pipeline.sink import SinkFull
from gateway.pipeline.spool import (
    HEADER_SIZE,
    FsyncPolicy,
    Spool,
    SpoolError,
    SpoolFull,
    SpoolRecord,
    encode_record,
)

ROOT = Path(__file__).resolve().parents[2]


def payload(i: int, size: int = 20) -> bytes:
    return f"rec-{i:06d}-".encode().ljust(size, b"x")


async def read_all(spool: Spool) -> list[SpoolRecord]:
    out: list[SpoolRecord] = []
    while batch := await spool.read():
        out.extend(batch)
    return out


async def datas(spool: Spool) -> list[bytes]:
    return [r.data for r in await read_all(spool)]


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


class Hook:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, name: str, value: int) -> None:
        self.calls.append((name, value))

    def total(self, name: str) -> int:
        return sum(v for n, v in self.calls if n == name)


async def test_append_read_ack_round_trip(tmp_path: Path) -> None:
    spool = await Spool.open(tmp_path, max_bytes=1 << 20, fsync=FsyncPolicy.NEVER)
    items = [payload(i) for i in range(10)]
    for item in items:
        await spool.append(item)
    assert spool.depth_records == 10
    assert spool.depth_bytes == sum(HEADER_SIZE + len(i) for i in items)

    first = await spool.read(max_records=4)
    assert [r.data for r in first] == items[:4]
    rest = await spool.read()
    assert [r.data for r in rest] == items[4:]
    assert await spool.read() == []

    await spool.ack(first[-1].position)
    assert spool.depth_records == 6
    assert spool.depth_bytes == sum(HEADER_SIZE + len(i) for i in items[4:])
    spool.rewind()  # back to the ack cursor: the unconfirmed six again
    assert await datas(spool) == items[4:]

    await spool.ack(rest[-1].position)
    assert spool.depth_records == 0
    assert spool.depth_bytes == 0
    spool.rewind()
    assert await spool.read() == []
    await spool.ack(first[0].position)  # acking an acknowledged record again is a no-op
    await spool.append(b"one more")
    (pos,) = [r.position for r in await spool.read()]
    with pytest.raises(ValueError):
        await spool.ack((pos[0], pos[1] + 1))  # not the start of a record
    with pytest.raises(ValueError):
        await spool.ack((pos[0] + 1, 0))  # not written yet
    await spool.close()


async def test_read_respects_max_bytes_but_returns_one_large_record(tmp_path: Path) -> None:
    async with await Spool.open(tmp_path, max_bytes=1 << 20, fsync=FsyncPolicy.NEVER) as spool:
        await spool.append(b"a" * 100)
        await spool.append(b"b" * 100)
        await spool.append(b"c" * 10)
        assert [r.data for r in await spool.read(max_bytes=50)] == [b"a" * 100]
        assert [r.data for r in await spool.read(max_bytes=109)] == [b"b" * 100]
        assert [r.data for r in await spool.read(max_bytes=109)] == [b"c" * 10]
        spool.rewind()
        assert len(await spool.read(max_bytes=110)) == 1
        assert len(await spool.read(max_bytes=110)) == 2


async def test_rewind_during_a_read_wins(tmp_path: Path) -> None:
    async with await Spool.open(tmp_path, max_bytes=1 << 20, fsync=FsyncPolicy.NEVER) as spool:
        for i in range(3):
            await spool.append(payload(i))
        pending = asyncio.create_task(spool.read())
        await asyncio.sleep(0)  # the read is in the worker thread now
        spool.rewind()
        assert len(await pending) == 3
        assert await datas(spool) == [payload(i) for i in range(3)]


async def test_segments_roll_and_acked_segments_are_deleted(tmp_path: Path) -> None:
    record = HEADER_SIZE + 20
    spool = await Spool.open(
        tmp_path, max_bytes=1 << 20, segment_bytes=3 * record, fsync=FsyncPolicy.GROUPED
    )
    for i in range(10):
        await spool.append(payload(i))
    segs = segments(tmp_path)
    assert [p.name for p in segs] == [f"{n:08d}.seg" for n in (1, 2, 3, 4)]
    assert [p.stat().st_size for p in segs] == [3 * record] * 3 + [record]

    records = await read_all(spool)
    assert [r.data for r in records] == [payload(i) for i in range(10)]
    assert [r.position for r in records[:4]] == [(1, 0), (1, record), (1, 2 * record), (2, 0)]

    await spool.ack(records[4].position)  # middle of segment 2
    assert [p.name for p in segments(tmp_path)] == ["00000002.seg", "00000003.seg", "00000004.seg"]
    await spool.ack(records[5].position)  # end of segment 2
    assert [p.name for p in segments(tmp_path)] == ["00000003.seg", "00000004.seg"]
    await spool.ack(records[9].position)  # all; the open segment stays
    assert [p.name for p in segments(tmp_path)] == ["00000004.seg"]
    assert spool.depth_records == 0
    # Does not fit in 4: rolls to 5, and 4 (fully acknowledged) is deleted.
    await spool.append(payload(10, size=2 * record))
    assert [p.name for p in segments(tmp_path)] == ["00000005.seg"]
    (big,) = await read_all(spool)
    await spool.ack(big.position)
    await spool.close()

    # After a restart with everything acknowledged, appends continue in segment 5.
    spool = await Spool.open(
        tmp_path, max_bytes=1 << 20, segment_bytes=3 * record, fsync=FsyncPolicy.NEVER
    )
    assert (spool.depth_records, spool.depth_bytes) == (0, 0)
    await spool.append(b"new")
    assert [r.position for r in await read_all(spool)] == [(5, 2 * record + HEADER_SIZE)]
    await spool.close()


async def test_reopen_replays_exactly_the_unacknowledged(tmp_path: Path) -> None:
    record = HEADER_SIZE + 20
    spool = await Spool.open(tmp_path, max_bytes=1 << 20, segment_bytes=4 * record)
    for i in range(10):
        await spool.append(payload(i))
    records = await spool.read(max_records=6)
    await spool.ack(records[-1].position)
    await spool.read()  # read but not acknowledged: must come back
    await spool.close()

    spool = await Spool.open(tmp_path, max_bytes=1 << 20, segment_bytes=4 * record)
    assert spool.depth_records == 4
    assert spool.depth_bytes == 4 * record
    assert await datas(spool) == [payload(i) for i in range(6, 10)]
    await spool.append(payload(10))
    assert await datas(spool) == [payload(10)]
    await spool.close()


@pytest.mark.parametrize("damage", ["cut_payload", "cut_header", "garbage", "bad_crc"])
async def test_torn_tail_is_truncated(tmp_path: Path, damage: str) -> None:
    spool = await Spool.open(tmp_path, max_bytes=1 << 20, fsync=FsyncPolicy.NEVER)
    for i in range(5):
        await spool.append(payload(i))
    await spool.close()
    seg = segments(tmp_path)[-1]
    good = seg.stat().st_size
    blob = seg.read_bytes()
    last = encode_record(payload(5))
    if damage == "cut_payload":
        blob += last[: HEADER_SIZE + 7]
    elif damage == "cut_header":
        blob += last[:5]
    elif damage == "garbage":
        blob += b"\x00\xff garbage \xd5\x5a\x01"
    else:
        blob += last[:-1] + bytes([last[-1] ^ 0xFF])
    seg.write_bytes(blob)

    hook = Hook()
    spool = await Spool.open(
        tmp_path, max_bytes=1 << 20, fsync=FsyncPolicy.NEVER, metrics_hook=hook
    )
    assert seg.stat().st_size == good
    assert hook.total("torn_tail") == len(blob) - good
    assert hook.total("corrupt_skipped") == 0
    assert await datas(spool) == [payload(i) for i in range(5)]
    await spool.append(b"after")  # appends go right after the last good record
    assert await datas(spool) == [b"after"]
    await spool.close()
    spool = await Spool.open(tmp_path, max_bytes=1 << 20, metrics_hook=hook)
    assert await datas(spool) == [*(payload(i) for i in range(5)), b"after"]
    await spool.close()


@pytest.mark.parametrize("where", ["crc", "magic", "length"])
@pytest.mark.parametrize("k", [0, 3, 6])
async def test_corrupt_middle_record_is_skipped(tmp_path: Path, where: str, k: int) -> None:
    n = 8
    record = HEADER_SIZE + 20
    spool = await Spool.open(tmp_path, max_bytes=1 << 20, fsync=FsyncPolicy.NEVER)
    for i in range(n):
        await spool.append(payload(i))
    await spool.close()
    seg = segments(tmp_path)[0]
    blob = bytearray(seg.read_bytes())
    offset = k * record + {"crc": HEADER_SIZE + 3, "magic": 0, "length": 2}[where]
    blob[offset] ^= 0x5A
    seg.write_bytes(bytes(blob))

    hook = Hook()
    spool = await Spool.open(tmp_path, max_bytes=1 << 20, metrics_hook=hook)
    assert await datas(spool) == [payload(i) for i in range(n) if i != k]
    assert hook.total("corrupt_skipped") == record
    assert hook.total("torn_tail") == 0
    assert seg.stat().st_size == n * record  # nothing after it was cut off
    # Acking the record after the damaged one and reopening replays the rest only.
    spool.rewind()
    records = await spool.read(max_records=k + 1)
    await spool.ack(records[-1].position)
    await spool.close()
    spool = await Spool.open(tmp_path, max_bytes=1 << 20)
    assert await datas(spool) == [payload(i) for i in range(n) if i != k][k + 1 :]
    await spool.close()


async def test_damage_in_a_sealed_segment_and_bit_rot_after_open(tmp_path: Path) -> None:
    record = HEADER_SIZE + 20
    hook = Hook()
    spool = await Spool.open(
        tmp_path, max_bytes=1 << 20, segment_bytes=2 * record, metrics_hook=hook
    )
    for i in range(6):
        await spool.append(payload(i))
    # A byte flips in segment 2 after it was written and indexed.
    seg2 = tmp_path / "00000002.seg"
    blob = bytearray(seg2.read_bytes())
    blob[-1] ^= 1
    seg2.write_bytes(bytes(blob))
    assert await datas(spool) == [payload(i) for i in (0, 1, 2, 4, 5)]
    assert hook.total("corrupt_skipped") == record
    await spool.close()
    # A torn end of a sealed (not last) segment is skipped, not truncated.
    seg1 = tmp_path / "00000001.seg"
    seg1.write_bytes(seg1.read_bytes() + b"\xd5\x5a\x00")
    hook = Hook()
    spool = await Spool.open(tmp_path, max_bytes=1 << 20, metrics_hook=hook)
    assert await datas(spool) == [payload(i) for i in (0, 1, 2, 4, 5)]
    assert hook.total("corrupt_skipped") == 3 + record
    assert hook.total("torn_tail") == 0
    # Acking the last good record of segment 1 also acknowledges its damaged tail.
    await spool.ack((1, record))
    assert segments(tmp_path)[0].name == "00000002.seg"
    assert spool.depth_bytes == 4 * record
    await spool.close()


async def test_segment_numbers_never_go_behind_the_ack_cursor(tmp_path: Path) -> None:
    record = HEADER_SIZE + 20
    spool = await Spool.open(tmp_path, max_bytes=1 << 20, segment_bytes=record)
    for i in range(3):
        await spool.append(payload(i))
    await spool.ack((await read_all(spool))[-1].position)
    await spool.close()
    assert [p.name for p in segments(tmp_path)] == ["00000003.seg"]
    (tmp_path / "00000003.seg").unlink()  # e.g. removed by hand while stopped

    spool = await Spool.open(tmp_path, max_bytes=1 << 20, segment_bytes=record)
    await spool.append(b"after")
    assert [r.position for r in await read_all(spool)] == [(4, 0)]
    await spool.close()
    spool = await Spool.open(tmp_path, max_bytes=1 << 20, segment_bytes=record)
    assert await datas(spool) == [b"after"]  # not mistaken for an acknowledged segment
    await spool.close()


async def test_unreadable_ack_file_replays_everything(tmp_path: Path) -> None:
    spool = await Spool.open(tmp_path, max_bytes=1 << 20)
    for i in range(3):
        await spool.append(payload(i))
    await spool.ack((await spool.read(max_records=1))[0].position)
    await spool.close()
    (tmp_path / "ack").write_bytes(b"nonsense")
    hook = Hook()
    spool = await Spool.open(tmp_path, max_bytes=1 << 20, metrics_hook=hook)
    assert await datas(spool) == [payload(i) for i in range(3)]  # duplicates, never loss
    assert hook.total("ack_cursor_invalid") == len(b"nonsense")
    await spool.close()


async def test_spool_full_and_room_after_ack(tmp_path: Path) -> None:
    record = HEADER_SIZE + 20
    spool = await Spool.open(
        tmp_path, max_bytes=5 * record, segment_bytes=2 * record, fsync=FsyncPolicy.NEVER
    )
    for i in range(5):
        await spool.append(payload(i))
    with pytest.raises(SpoolFull) as info:
        await spool.append(payload(5))
    assert isinstance(info.value, SinkFull)  # the endpoint answers 503 + Retry-After
    assert spool.depth_records == 5
    with pytest.raises(ValueError):
        await spool.append(b"x" * (5 * record))  # can never fit

    records = await spool.read(max_records=2)
    await spool.ack(records[0].position)
    await spool.append(payload(5))
    with pytest.raises(SpoolFull):
        await spool.append(payload(6))
    await spool.ack(records[1].position)
    await spool.append(payload(6))
    assert spool.depth_bytes == 5 * record
    assert await datas(spool) == [payload(i) for i in range(2, 7)]
    await spool.close()


class FsyncCounter:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self._real = os.fsync
        monkeypatch.setattr(os, "fsync", self)

    def __call__(self, fd: int) -> None:
        self.calls += 1
        self._real(fd)


async def test_fsync_always_once_per_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = FsyncCounter(monkeypatch)
    spool = await Spool.open(tmp_path, max_bytes=1 << 20, fsync=FsyncPolicy.ALWAYS)
    counter.calls = 0
    for i in range(20):
        await spool.append(payload(i))
        assert counter.calls == i + 1
    await asyncio.gather(*(spool.append(payload(i)) for i in range(30)))
    assert counter.calls == 50
    await spool.close()


async def test_fsync_grouped_shares_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = FsyncCounter(monkeypatch)
    record = HEADER_SIZE + 20
    spool = await Spool.open(
        tmp_path, max_bytes=1 << 20, segment_bytes=20 * record, fsync=FsyncPolicy.GROUPED
    )
    counter.calls = 0
    await asyncio.gather(*(spool.append(payload(i)) for i in range(50)))
    assert 1 <= counter.calls < 50
    assert len(segments(tmp_path)) == 3  # rolled segments are synced by the group too
    grouped = counter.calls

    # Each lone append still waits for its own fsync.
    await spool.append(payload(50))
    assert counter.calls == grouped + 1
    assert await datas(spool) == [payload(i) for i in range(51)]
    await spool.close()


async def test_fsync_never(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = FsyncCounter(monkeypatch)
    record = HEADER_SIZE + 20
    spool = await Spool.open(
        tmp_path, max_bytes=1 << 20, segment_bytes=10 * record, fsync=FsyncPolicy.NEVER
    )
    await asyncio.gather(*(spool.append(payload(i)) for i in range(50)))
    records = await read_all(spool)
    await spool.ack(records[-1].position)
    await spool.close()
    assert counter.calls == 0


async def test_disk_full_mid_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = await Spool.open(tmp_path, max_bytes=1 << 20, fsync=FsyncPolicy.ALWAYS)
    for i in range(3):
        await spool.append(payload(i))
    real_write = os.write

    def full_write(fd: int, data: bytes | memoryview) -> int:
        # Half the record reaches the file, then the disk is full.
        written = real_write(fd, bytes(data)[: len(data) // 2])
        assert written > 0
        monkeypatch.setattr(spool_mod.os, "write", failing_write)
        return written

    def failing_write(fd: int, data: bytes | memoryview) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(spool_mod.os, "write", full_write)
    with pytest.raises(SpoolError):
        await spool.append(payload(3, size=200))
    assert spool.depth_records == 3
    size_after = segments(tmp_path)[0].stat().st_size
    assert size_after == 3 * (HEADER_SIZE + 20)  # the partial record was cut off
    with pytest.raises(SpoolError):
        await spool.append(payload(4))
    monkeypatch.setattr(spool_mod.os, "write", real_write)
    await spool.close()

    hook = Hook()
    spool = await Spool.open(tmp_path, max_bytes=1 << 20, metrics_hook=hook)
    assert await datas(spool) == [payload(i) for i in range(3)]
    assert hook.calls == []
    await spool.close()


async def test_disk_full_when_the_cut_fails_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(tmp_path, max_bytes=1 << 20, fsync=FsyncPolicy.ALWAYS)
    await spool.append(payload(0))
    real_write = os.write

    def half_write(fd: int, data: bytes | memoryview) -> int:
        real_write(fd, bytes(data)[:7])
        raise OSError(errno.EIO, "I/O error")

    def no_truncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(spool_mod.os, "write", half_write)
    monkeypatch.setattr(spool_mod.os, "ftruncate", no_truncate)
    with pytest.raises(SpoolError):
        await spool.append(payload(1))
    monkeypatch.undo()
    await spool.append(payload(2))  # goes to a fresh segment, never after the garbage
    assert len(segments(tmp_path)) == 2
    assert await datas(spool) == [payload(0), payload(2)]
    await spool.close()
    spool = await Spool.open(tmp_path, max_bytes=1 << 20)
    assert await datas(spool) == [payload(0), payload(2)]
    await spool.close()


CRASH_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from gateway.pipeline.spool import FsyncPolicy, Spool

    async def main() -> None:
        spool = await Spool.open(
            Path(sys.argv[1]), max_bytes=1 << 30, segment_bytes=64 * 1024, fsync=FsyncPolicy.ALWAYS
        )
        for i in range(1_000_000):
            await spool.append(f"record {i} ".encode() * (1 + i % 50))
            print(i, flush=True)

    asyncio.run(main())
    """
)


def expected_crash_record(i: int) -> bytes:
    return f"record {i} ".encode() * (1 + i % 50)


async def test_crash_mid_append_keeps_an_intact_prefix(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_SCRIPT, str(tmp_path)],
        stdout=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    acknowledged = -1
    try:
        for line in proc.stdout:
            acknowledged = int(line)
            if acknowledged >= 300:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert acknowledged >= 300, "the writer died before it was killed"

    spool = await Spool.open(tmp_path, max_bytes=1 << 30, segment_bytes=64 * 1024)
    got = await datas(spool)
    assert len(got) > acknowledged  # every acknowledged record survived
    assert got == [expected_crash_record(i) for i in range(len(got))]
    await spool.close()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("append"), st.integers(0, 60)),
            st.tuples(st.just("ack"), st.integers(1, 6)),
            st.tuples(st.just("read"), st.integers(1, 3)),
            st.tuples(st.just("reopen"), st.just(0)),
            st.tuples(st.just("rewind"), st.just(0)),
        ),
        max_size=40,
    ),
    segment_bytes=st.sampled_from([40, 100, 1000]),
)
def test_property_reopen_returns_appended_minus_acked(
    ops: list[tuple[str, int]], segment_bytes: int
) -> None:
    async def scenario(directory: Path) -> None:
        async def opener() -> Spool:
            return await Spool.open(
                directory, max_bytes=1 << 20, segment_bytes=segment_bytes, fsync=FsyncPolicy.NEVER
            )

        spool = await opener()
        unacked: list[bytes] = []  # the model
        read_upto = 0  # how many of `unacked` the reader has seen since the last ack/rewind
        counter = 0
        for op, arg in ops:
            if op == "append":
                data = counter.to_bytes(4, "big") * (arg // 4 + 1)
                counter += 1
                await spool.append(data)
                unacked.append(data)
            elif op == "ack":
                records = await spool.read(max_records=arg)
                assert [r.data for r in records] == unacked[read_upto : read_upto + len(records)]
                if records:
                    await spool.ack(records[-1].position)
                    del unacked[: read_upto + len(records)]
                    read_upto = 0
            elif op == "read":
                records = await spool.read(max_records=arg)
                assert [r.data for r in records] == unacked[read_upto : read_upto + len(records)]
                read_upto += len(records)
            elif op == "rewind":
                spool.rewind()
                read_upto = 0
            else:
                await spool.close()
                spool = await opener()
                read_upto = 0
                assert spool.depth_records == len(unacked)
                assert spool.depth_bytes == sum(HEADER_SIZE + len(d) for d in unacked)
            assert spool.depth_records == len(unacked)
        await spool.close()
        spool = await opener()
        assert await datas(spool) == unacked
        await spool.close()
        # Fully acknowledged sealed segments are gone: at most the open one is left empty.
        if not unacked:
            assert len(segments(directory)) == 1

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp)))


async def test_grouped_appends_take_one_trip_to_the_disk_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(tmp_path, max_bytes=1 << 20, fsync=FsyncPolicy.GROUPED)
    trips: list[str] = []
    real_run = spool._run

    async def counted(fn: Any, *args: Any) -> Any:
        trips.append(fn.__name__)
        return await real_run(fn, *args)

    monkeypatch.setattr(spool, "_run", counted)
    counter = FsyncCounter(monkeypatch)
    await asyncio.gather(*(spool.append(payload(i)) for i in range(40)))
    assert trips == ["_write_group"]
    assert counter.calls == 1
    assert spool.depth_records == 40
    monkeypatch.undo()
    assert await datas(spool) == [payload(i) for i in range(40)]  # in append order
    await spool.close()


async def test_a_group_with_too_many_records_refuses_only_those_that_do_not_fit(
    tmp_path: Path,
) -> None:
    record = HEADER_SIZE + 20
    spool = await Spool.open(tmp_path, max_bytes=5 * record, fsync=FsyncPolicy.GROUPED)
    results = await asyncio.gather(
        *(spool.append(payload(i)) for i in range(8)), return_exceptions=True
    )
    assert results[:5] == [None] * 5
    assert all(isinstance(r, SpoolFull) for r in results[5:])
    assert await datas(spool) == [payload(i) for i in range(5)]
    await spool.close()


async def test_a_cancelled_append_of_a_group_leaves_the_others_durable(tmp_path: Path) -> None:
    spool = await Spool.open(tmp_path, max_bytes=1 << 20, fsync=FsyncPolicy.GROUPED, group_ms=50)
    appends = [asyncio.create_task(spool.append(payload(i))) for i in range(3)]
    await asyncio.sleep(0.01)  # all three wait for the group
    appends[1].cancel()
    done = await asyncio.gather(*appends, return_exceptions=True)
    assert done[0] is None and done[2] is None
    assert isinstance(done[1], asyncio.CancelledError)
    # Not acknowledged, yet written with its group: a retry is a duplicate, never a loss.
    assert await datas(spool) == [payload(i) for i in range(3)]
    await spool.close()


async def test_a_group_fsync_that_fails_fails_every_append_of_the_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(tmp_path, max_bytes=1 << 20, fsync=FsyncPolicy.GROUPED)

    def broken_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(spool_mod.os, "fsync", broken_fsync)
    results = await asyncio.gather(
        *(spool.append(payload(i)) for i in range(4)), return_exceptions=True
    )
    assert all(isinstance(r, SpoolError) and "I/O error" in str(r) for r in results)
    monkeypatch.undo()
    await spool.append(payload(4))  # the next group goes on
    assert await datas(spool) == [payload(i) for i in range(5)]
    await spool.close()


async def test_close_writes_the_group_waiting_for_its_turn(tmp_path: Path) -> None:
    spool = await Spool.open(tmp_path, max_bytes=1 << 20, fsync=FsyncPolicy.GROUPED, group_ms=200)
    appends = [asyncio.create_task(spool.append(payload(i))) for i in range(3)]
    await asyncio.sleep(0)
    await spool.close()
    assert await asyncio.gather(*appends) == [None] * 3
    with pytest.raises(SpoolError, match="closed"):
        await spool.append(payload(3))
    reopened = await Spool.open(tmp_path, max_bytes=1 << 20)
    assert await datas(reopened) == [payload(i) for i in range(3)]
    await reopened.close()


@pytest.mark.parametrize("policy", [FsyncPolicy.ALWAYS, FsyncPolicy.GROUPED, FsyncPolicy.NEVER])
async def test_each_fsync_is_reported_with_its_duration(
    tmp_path: Path, policy: FsyncPolicy
) -> None:
    hook = Hook()
    spool = await Spool.open(tmp_path, max_bytes=1 << 20, fsync=policy, metrics_hook=hook)
    for i in range(3):
        await spool.append(payload(i))
    fsyncs = [value for name, value in hook.calls if name == spool_mod.FSYNC_EVENT]
    await spool.close()
    if policy is FsyncPolicy.NEVER:
        assert fsyncs == []
    else:
        # ALWAYS: one per append; GROUPED: one per group (sequential appends: one each).
        assert len(fsyncs) == 3
        assert all(isinstance(ns, int) and ns > 0 for ns in fsyncs)


async def test_peek_leaves_the_read_cursor_alone(tmp_path: Path) -> None:
    spool = await Spool.open(tmp_path, max_bytes=1 << 20, segment_bytes=4096, fsync="never")
    for i in range(300):  # several segments
        await spool.append(payload(i))
    first = await spool.read(max_records=10)
    await spool.ack(first[4].position)
    seen: list[bytes] = []
    after = None
    while records := await spool.peek(after, max_records=7):
        seen += [r.data for r in records]
        after = records[-1].position
    assert seen == [payload(i) for i in range(5, 300)]
    # The reader goes on where it was, undisturbed.
    assert [r.data for r in await spool.read(max_records=3)] == [payload(i) for i in (10, 11, 12)]
    await spool.close()
