"""Segment files and failures: chunk codec, damaged chunks, failed ingests, replay JSON."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import lz4.frame
import msgspec
import pytest

from gateway.collect.schema import (
    Event,
    FullSnapshot,
    FullSnapshotEvent,
    Offset,
    PluginEvent,
)
from gateway.pipeline.batcher import new_batch_id
from gateway.store import segments as segments_mod
from gateway.store.engine import RecordingStore
from gateway.store.recordings import Recording, RecordingQuery, StoreError
from gateway.store.replay import merge_chunks, replay_json
from gateway.store.segments import ChunkCorrupt, decode_chunk, encode_chunk
from tests.unit.test_store_support import (
    MONTH,
    MS,
    Clock,
    click,
    clicks,
    document,
    loaded,
    page_load,
    record,
    rows,
    segment_files,
    timestamps,
    typed,
    upstream,
)

LIVE = RecordingQuery(live=True, limit=500)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RecordingStore]:
    opened = await RecordingStore.open(tmp_path, clock=Clock())
    yield opened
    await opened.close()


async def recordings(store: RecordingStore) -> dict[str, Recording]:
    found, _ = await store.list(LIVE)
    return {r.session: r for r in found}


def chunk_places(directory: Path, recording_id: str) -> list[tuple[int, int]]:
    return [
        (int(offset), int(length))
        for offset, length in rows(
            directory,
            "SELECT file_offset, length FROM chunks"
            f" WHERE recording_id = '{recording_id}' ORDER BY rowid",
        )
    ]


# ---------------------------------------------------------------- the chunk codec


def test_a_chunk_round_trips_and_is_an_lz4_frame_with_a_checksum() -> None:
    events = [*page_load(MS), *clicks(MS + 10, 50), typed(MS + 9000, "***")]
    frame, raw_length = encode_chunk(events)
    assert lz4.frame.get_frame_info(frame)["content_checksum"]
    assert len(lz4.frame.decompress(frame)) == raw_length
    assert decode_chunk(frame, raw_length) == events


def test_a_damaged_chunk_is_refused() -> None:
    frame, raw_length = encode_chunk([*page_load(MS), typed(MS + 5, "hello there")])
    damaged = bytearray(frame)
    damaged[len(frame) // 2] ^= 0xFF
    with pytest.raises(ChunkCorrupt):
        decode_chunk(bytes(damaged), raw_length)
    with pytest.raises(ChunkCorrupt):
        decode_chunk(frame[:-3], raw_length)  # truncated
    with pytest.raises(ChunkCorrupt):
        decode_chunk(frame, raw_length - 1)  # not what the index says
    with pytest.raises(ChunkCorrupt):
        decode_chunk(frame + b"\0", raw_length)
    not_events = lz4.frame.compress(msgspec.msgpack.encode({"a": 1}), content_checksum=True)
    with pytest.raises(ChunkCorrupt, match="not a list of events"):
        decode_chunk(not_events, len(msgspec.msgpack.encode({"a": 1})))


# ---------------------------------------------------------------- damage on disk


async def test_a_corrupted_chunk_is_skipped_and_the_rest_replays(
    store: RecordingStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = [*page_load(MS), *clicks(MS + 10, 20)]
    second = clicks(MS + 5000, 3)
    third: list[Event] = [typed(MS + 6000)]
    await store.ingest(upstream(record(first, seq=0)))
    await store.ingest(upstream(record(second, seq=1)))
    await store.ingest(upstream(record(third, seq=2)))
    got = (await recordings(store))["sess-1"]
    [segment] = segment_files(tmp_path)
    places = chunk_places(tmp_path, got.id)
    assert len(places) == 3
    offset, length = places[1]
    with open(segment, "r+b") as file:
        file.seek(offset + length // 2)
        byte = file.read(1)
        file.seek(offset + length // 2)
        file.write(bytes([byte[0] ^ 0xFF]))

    with caplog.at_level(logging.ERROR):
        body = await store.events_json(got.id)
    assert timestamps(body) == [e.timestamp for e in first + third]
    assert "skipping the chunk at offset" in caplog.text


async def test_a_missing_segment_file_replays_as_empty(
    store: RecordingStore, tmp_path: Path
) -> None:
    await store.ingest(upstream(record(page_load(MS))))
    got = (await recordings(store))["sess-1"]
    segment_files(tmp_path)[0].unlink()
    assert await store.events_json(got.id) == b"[]"


async def test_bytes_left_by_a_crash_before_the_commit_are_never_read(
    store: RecordingStore, tmp_path: Path
) -> None:
    first = [*page_load(MS), click(MS + 10)]
    await store.ingest(upstream(record(first, seq=0)))
    [segment] = segment_files(tmp_path)
    # A crash after appending (half of) a chunk, before the index commit.
    frame, _ = encode_chunk(clicks(MS + 20, 5))
    with open(segment, "ab") as file:
        file.write(frame[: len(frame) // 2])

    later = clicks(MS + 1000, 2)
    await store.ingest(upstream(record(later, seq=1)))
    got = (await recordings(store))["sess-1"]
    assert timestamps(await store.events_json(got.id)) == [e.timestamp for e in first + later]
    assert got.bytes < segment.stat().st_size


async def test_files_and_new_names_are_fsynced_once_each(
    store: RecordingStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced_files: list[str] = []
    synced_dirs: list[Path] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced_files.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(segments_mod.os, "fsync", fsync)
    monkeypatch.setattr(segments_mod, "_fsync_dir", synced_dirs.append)
    three_chunks_two_sessions = upstream(
        record(page_load(MS), session="a", seq=0),
        record(page_load(MS), session="b", seq=0),
        record([click(MS + 5)], session="a", seq=1),
    )
    await store.ingest(three_chunks_two_sessions)
    found = await recordings(store)
    paths = {str(tmp_path / "segments" / r.id[:2] / f"{r.id}.seg") for r in found.values()}
    assert sorted(synced_files) == sorted(paths)
    prefix = tmp_path / "segments" / found["a"].id[:2]
    assert synced_dirs == [prefix, tmp_path / "segments"]  # the new files, then the new dir

    synced_files.clear()
    synced_dirs.clear()
    await store.ingest(upstream(record([click(MS + 9)], session="b", seq=1)))
    assert synced_files == [str(prefix / f"{found['b'].id}.seg")]
    assert synced_dirs == []  # no new name


# ---------------------------------------------------------------- failed ingests


async def nothing_stored(store: RecordingStore, tmp_path: Path) -> None:
    assert await recordings(store) == {}
    assert await store.stored("shop") == 0
    assert await store.created_in_month("shop", MONTH) == 0
    assert rows(tmp_path, "SELECT count(*) FROM batches") == [(0,)]
    assert rows(tmp_path, "SELECT count(*) FROM chunks") == [(0,)]
    assert rows(tmp_path, "SELECT count(*) FROM pages") == [(0,)]


async def test_a_new_recording_whose_file_cannot_be_made_stores_nothing_until_retried(
    store: RecordingStore, tmp_path: Path
) -> None:
    # A plain file where the recording's segment directory must go: mkdir fails.
    blocker = tmp_path / "segments" / new_batch_id()[:2]
    blocker.write_bytes(b"")
    batch = upstream(record(page_load(MS), visitor="v-1"))
    with pytest.raises(StoreError):
        await store.ingest(batch)
    await nothing_stored(store, tmp_path)

    blocker.unlink()
    result = await store.ingest(batch)
    assert not result.duplicate
    assert result.started == {"shop": 1}
    got = (await recordings(store))["sess-1"]
    assert got.events == 4
    assert len(timestamps(await store.events_json(got.id))) == 4


async def test_a_failed_ingest_takes_back_what_it_appended_and_a_retry_works(
    store: RecordingStore, tmp_path: Path
) -> None:
    await store.ingest(
        upstream(record(page_load(MS), session="a"), record(page_load(MS), session="b"))
    )
    before = await recordings(store)
    a_path, b_path = (
        tmp_path / "segments" / before[s].id[:2] / f"{before[s].id}.seg" for s in ("a", "b")
    )
    a_size = a_path.stat().st_size
    # b's segment file is in the way of a directory of the same name: appending fails.
    b_path.rename(tmp_path / "b.seg")
    b_path.mkdir()
    batch = upstream(
        record(clicks(MS + 100, 3), session="a", seq=1),
        record(clicks(MS + 100, 3), session="b", seq=1),
    )
    with pytest.raises(StoreError):
        await store.ingest(batch)
    assert await recordings(store) == before
    assert a_path.stat().st_size == a_size  # a's new chunk was taken back
    assert rows(tmp_path, "SELECT count(*) FROM chunks") == [(2,)]

    b_path.rmdir()
    (tmp_path / "b.seg").rename(b_path)
    result = await store.ingest(batch)
    assert (result.duplicate, result.chunks) == (False, 2)
    after = await recordings(store)
    for session in ("a", "b"):
        assert after[session].events == 7
        assert len(timestamps(await store.events_json(after[session].id))) == 7


async def test_an_index_failure_after_the_files_were_written_stores_nothing(
    store: RecordingStore, tmp_path: Path
) -> None:
    await store.ingest(upstream(record(page_load(MS), seq=0)))
    before = await recordings(store)
    [segment] = segment_files(tmp_path)
    size = segment.stat().st_size
    # SQLite refuses the last write of the ingest transaction, after the fsyncs.
    with closing(sqlite3.connect(tmp_path / "index.sqlite3")) as db:
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON batches"
            " BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
    batch = upstream(record(clicks(MS + 100, 2), seq=1), record(page_load(MS), session="new"))
    with pytest.raises(StoreError, match="disk says no"):
        await store.ingest(batch)
    assert await recordings(store) == before
    assert segment_files(tmp_path) == [segment]  # the new recording's file is gone
    assert segment.stat().st_size == size
    assert await store.created_in_month("shop", MONTH) == 1

    with closing(sqlite3.connect(tmp_path / "index.sqlite3")) as db:
        db.execute("DROP TRIGGER refuse")
    result = await store.ingest(batch)
    assert (result.chunks, result.started) == (2, {"shop": 1})
    after = await recordings(store)
    assert after["sess-1"].events == 6
    assert after["new"].events == 4


# ---------------------------------------------------------------- replay JSON


def test_replay_json_puts_back_what_the_replayer_needs() -> None:
    events: list[Event] = [
        *loaded(MS),
        FullSnapshotEvent(timestamp=MS + 1, data=FullSnapshot(node=document())),
        FullSnapshotEvent(
            timestamp=MS + 2,
            data=FullSnapshot(node=document(), initialOffset=Offset(top=120, left=0)),
        ),
        PluginEvent(timestamp=MS + 3),
        click(MS + 4),
    ]
    body = replay_json(events)
    items = json.loads(body)
    assert [item["type"] for item in items] == [0, 1, 2, 2, 6, 3]
    assert all("data" in item for item in items)
    assert items[0]["data"] == items[1]["data"] == items[4]["data"] == {}
    assert items[2]["data"]["initialOffset"] == {"top": 0, "left": 0}
    assert items[3]["data"]["initialOffset"] == {"top": 120, "left": 0}
    assert items[2]["data"]["node"]["childNodes"][0]["tagName"] == "html"
    assert items[5]["data"] == {"source": 2, "type": 2, "id": 5, "x": 10.0, "y": 20.0}
    assert msgspec.json.decode(body, type=list[Event]) == events


def test_merge_chunks_orders_by_time_and_keeps_ties_in_order() -> None:
    a: list[Event] = [click(MS), typed(MS + 10, "a"), typed(MS + 30, "c")]
    b: list[Event] = [typed(MS + 10, "b"), click(MS + 20)]
    merged = merge_chunks([a, b])
    assert [(e.timestamp, getattr(getattr(e, "data", None), "text", None)) for e in merged] == [
        (MS, None),
        (MS + 10, "a"),
        (MS + 10, "b"),
        (MS + 20, None),
        (MS + 30, "c"),
    ]


async def test_events_json_is_the_replayers_input(store: RecordingStore) -> None:
    await store.ingest(upstream(record([*page_load(MS), typed(MS + 5, "***")])))
    got = (await recordings(store))["sess-1"]
    body = await store.events_json(got.id)
    assert body is not None
    items = json.loads(body)
    assert [item["type"] for item in items] == [0, 1, 4, 2, 3]
    assert items[0]["data"] == {} and items[1]["data"] == {}
    assert items[3]["data"]["initialOffset"] == {"top": 0, "left": 0}
    assert items[2]["data"]["href"] == "https://shop.test/"
