"""RecordingStore: the embedded store that turns upstream batches into recordings.

On disk under `directory`:

* `index.sqlite3`: the index (index.py);
* `segments/<id[:2]>/<id>.seg`: each recording's chunks (segments.py).

An ingest appends each new browser batch as a chunk to its recording's
segment file and fsyncs it, then records the chunks, pages, recordings and the
batch id in ONE SQLite transaction. The batch is stored once that commit
returns; if anything fails first, nothing of it is visible (bytes already
appended are unreferenced) and the sender retries the whole batch. Deletes
commit first and unlink after; `open` removes the files a crash left behind.

All SQLite work and all writes run on one worker thread, so calls are
serialised and the event loop never blocks. Building a replay (reading and
decoding chunks, encoding JSON) runs on two reader threads of its own: they
only read committed byte ranges, so they need no lock and do not hold up
ingest.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from gateway.pipeline.batcher import UpstreamBatch, new_batch_id
from gateway.pipeline.sink import MaskedBatch
from gateway.store.index import ChunkRow, Erasure, Index, PageRow, check_query
from gateway.store.recordings import (
    ChunkSummary,
    Draft,
    IngestResult,
    Recording,
    RecordingQuery,
    StoreError,
    choose,
    summarize,
)
from gateway.store.replay import merge_chunks, replay_json
from gateway.store.segments import (
    ChunkRef,
    SegmentWriter,
    encode_chunk,
    read_chunks,
    remove_segment,
    segment_files,
    segment_path,
)

_T = TypeVar("_T")
INDEX_FILE = "index.sqlite3"
SEGMENTS_DIR = "segments"
_MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")

log = logging.getLogger(__name__)


def _month(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m")


@dataclass
class _Planned:
    key: tuple[str, str, str, int]  # site, session, page, seq
    summary: ChunkSummary
    frame: bytes
    raw_length: int
    draft: Draft


class RecordingStore:
    def __init__(
        self,
        directory: Path,
        index: Index,
        writer: ThreadPoolExecutor,
        reader: ThreadPoolExecutor,
        *,
        session_gap: float,
        clock: Callable[[], float],
    ) -> None:
        self.directory = directory
        self._segments = directory / SEGMENTS_DIR
        self._index = index
        self._writer = writer
        self._reader = reader
        self._gap_ms = session_gap * 1000.0
        self._clock = clock
        self._closed = False

    @classmethod
    async def open(
        cls,
        directory: Path,
        *,
        session_gap: float = 1800.0,
        clock: Callable[[], float] = time.time,
    ) -> RecordingStore:
        if not session_gap > 0:
            raise ValueError(f"session_gap: must be positive, got {session_gap!r}")
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-write")
        try:
            index = await asyncio.get_running_loop().run_in_executor(
                writer, _guard, _open_index, directory
            )
        except BaseException:
            writer.shutdown(wait=False)
            raise
        reader = ThreadPoolExecutor(max_workers=2, thread_name_prefix="store-read")
        return cls(directory, index, writer, reader, session_gap=session_gap, clock=clock)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.get_running_loop().run_in_executor(self._writer, self._index.close)
        finally:
            self._writer.shutdown(wait=True)  # idle by now: close() ran last on it
            self._reader.shutdown(wait=False)  # a replay being built may finish

    # ------------------------------------------------------------ API

    async def ingest(self, batch: UpstreamBatch) -> IngestResult:
        """Store a batch durably; StoreError if it could not be (nothing is visible then)."""
        return await self._run(self._ingest, batch)

    async def get(self, recording_id: str) -> Recording | None:
        return await self._run(self._index.get, recording_id)

    async def list(self, query: RecordingQuery) -> tuple[list[Recording], str | None]:
        """Newest first (started_at, then id, descending) and the next page's cursor.

        ValueError ("limit: ...", "cursor: ...") on a bad query.
        """
        check_query(query)  # raises here, not as a StoreError from the thread
        return await self._run(self._index.find, query)

    async def events_json(self, recording_id: str) -> bytes | None:
        refs = await self._run(self._index.chunk_refs, recording_id)
        if refs is None:
            return None
        if self._closed:  # while the refs were read
            raise StoreError(f"{self.directory}: recording store is closed")
        path = segment_path(self._segments, recording_id)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, _guard, _build_replay, path, refs)

    async def erase_visitor(self, visitor: str, site: str | None = None) -> dict[str, int]:
        """Delete every recording of a visitor id (exact match); site -> count."""
        # The visitor and their sessions are marked erased too: batches received before
        # now that are still on their way (edge spools, retries) are dropped on arrival.
        erasure = Erasure(visitor=visitor, site=site, at=self._clock())
        if site is None:
            return await self._run(self._delete, "visitor = ?", (visitor,), None, erasure)
        where, params = "visitor = ? AND site = ?", (visitor, site)
        return await self._run(self._delete, where, params, None, erasure)

    async def finalize_idle(self, finalize_after: float) -> dict[str, int]:
        """Finalize recordings with no ingest for `finalize_after` seconds; site -> count."""
        return await self._run(self._finalize, finalize_after)

    async def expire(self, retention_days: float) -> dict[str, int]:
        """Delete recordings created `retention_days` ago or earlier; site -> count.

        Batch ids stored before the same cutoff are forgotten too.
        """
        if not retention_days > 0:  # 0 would delete everything
            raise ValueError(f"retention_days: must be positive, got {retention_days!r}")
        return await self._run(self._expire, retention_days)

    async def stored(self, site: str) -> int:
        return await self._run(self._index.stored, site)

    async def created_in_month(self, site: str, month: str) -> int:
        """Recordings created in a UTC month ("YYYY-MM"), deleted ones included."""
        if not _MONTH.fullmatch(month):
            raise ValueError(f"month: expected YYYY-MM, got {month!r}")
        return await self._run(self._index.created_in_month, site, month)

    # ------------------------------------------------------------ on the worker thread

    async def _run(self, call: Callable[..., _T], *args: object) -> _T:
        if self._closed:
            raise StoreError(f"{self.directory}: recording store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, _guard, call, *args)

    def _ingest(self, batch: UpstreamBatch) -> IngestResult:
        return _ingest(self._index, self._segments, batch, self._clock(), self._gap_ms)

    def _finalize(self, finalize_after: float) -> dict[str, int]:
        return self._index.finalize(self._clock() - finalize_after)

    def _expire(self, retention_days: float) -> dict[str, int]:
        cutoff = self._clock() - retention_days * 86400.0
        return self._delete("created_at <= ?", (cutoff,), cutoff)

    def _delete(
        self,
        where: str,
        params: tuple[object, ...],
        batches_before: float | None,
        erasure: Erasure | None = None,
    ) -> dict[str, int]:
        gone = self._index.delete(where, params, batches_before=batches_before, erasure=erasure)
        counts: dict[str, int] = defaultdict(int)
        for recording_id, site in gone:
            remove_segment(self._segments, recording_id)
            counts[site] += 1
        return dict(counts)


def _ingest(
    index: Index, root: Path, batch: UpstreamBatch, now: float, gap_ms: float
) -> IngestResult:
    """One upstream batch: segments appended and fsynced, then one index transaction."""
    segments = SegmentWriter(root)
    index.begin()
    try:
        if index.has_batch(batch.id):
            index.rollback()
            return IngestResult(duplicate=True, chunks=0, skipped=0, events={}, started={})
        planned, skipped, erased = _plan(index, batch, now, gap_ms)
        chunks, pages = _write(segments, planned)
        index.save(
            {id(p.draft): p.draft for p in planned}.values(),
            chunks,
            pages,
            batch_id=batch.id,
            node=batch.node,
            now=now,
            month=_month(now),
        )
    except BaseException:
        index.rollback()
        segments.undo()  # the commit was never tried: take the bytes back
        raise
    index.commit()  # if this fails the appended bytes stay, unreferenced
    events: dict[str, int] = defaultdict(int)
    started: dict[str, int] = defaultdict(int)
    seen: set[int] = set()
    for p in planned:
        events[p.key[0]] += len(p.summary.events)
        if p.draft.new and id(p.draft) not in seen:
            seen.add(id(p.draft))
            started[p.key[0]] += 1
    return IngestResult(
        duplicate=False,
        chunks=len(planned),
        skipped=skipped,
        events=dict(events),
        started=dict(started),
        erased=erased,
    )


def _plan(
    index: Index, batch: UpstreamBatch, now: float, gap_ms: float
) -> tuple[list[_Planned], int, int]:
    """Which recording each new browser batch goes to, and its encoded chunk; also how
    many were already stored, and how many belong to an erasure."""
    planned: list[_Planned] = []
    skipped = 0
    erased = 0
    marks: dict[tuple[str, str, str], float | None] = {}

    def erased_at(kind: str, site: str, key: str) -> float | None:
        if (kind, site, key) not in marks:
            marks[kind, site, key] = index.erased_at(kind, site, key)
        return marks[kind, site, key]

    keys: set[tuple[str, str, str, int]] = set()
    sessions: dict[tuple[str, str], list[Draft]] = {}
    for record in batch.records:
        browser_batch = record.batch
        key = (record.site, browser_batch.session, browser_batch.page, browser_batch.seq)
        if not browser_batch.events:
            continue
        if key in keys or index.has_chunk(*key):
            skipped += 1
            continue
        if _erased(record, erased_at):
            erased += 1
            continue
        summary = summarize(browser_batch.url, browser_batch.events)
        if summary is None:
            log.warning("batch %s: %s has no event with a usable timestamp", batch.id, key)
            continue
        keys.add(key)
        session = (record.site, browser_batch.session)
        drafts = sessions.get(session)
        if drafts is None:
            drafts = sessions[session] = index.session_drafts(*session)
        draft = choose(drafts, summary.first_ts, summary.last_ts, gap_ms)
        if draft is None:
            draft = Draft(
                id=new_batch_id(),
                site=record.site,
                session=browser_batch.session,
                started_at=summary.first_ts,
                ended_at=summary.last_ts,
                created_at=now,
                last_seen_at=now,
                new=True,
            )
            drafts.append(draft)
        frame, raw_length = encode_chunk(summary.events)
        draft.absorb(
            summary,
            length=len(frame),
            visitor=browser_batch.visitor,
            device=record.device,
            browser=record.browser,
            now=now,
        )
        planned.append(_Planned(key, summary, frame, raw_length, draft))
    return planned, skipped, erased


def _erased(record: MaskedBatch, erased_at: Callable[[str, str, str], float | None]) -> bool:
    """Received before its visitor, or its recording's session, was erased."""
    visitor = record.batch.visitor
    for kind, key in (("visitor", visitor), ("session", record.batch.session)):
        if key is None:
            continue
        at = erased_at(kind, record.site, key)
        if at is not None and record.received_at <= at:
            return True
    return False


def _write(
    segments: SegmentWriter, planned: list[_Planned]
) -> tuple[list[ChunkRow], list[PageRow]]:
    """Append the chunks, one fsync per recording file; their index rows."""
    by_recording: dict[str, list[_Planned]] = defaultdict(list)
    for p in planned:
        by_recording[p.draft.id].append(p)
    chunks: list[ChunkRow] = []
    pages: list[PageRow] = []
    for recording_id, items in by_recording.items():
        offsets = segments.append(recording_id, [p.frame for p in items])
        for p, offset in zip(items, offsets, strict=True):
            s = p.summary
            ref = ChunkRef(offset, len(p.frame), p.raw_length)
            chunks.append(ChunkRow(p.key, recording_id, ref, s.first_ts, s.last_ts, len(s.events)))
            pages += [
                PageRow(recording_id, url, s.first_ts, position)
                for position, url in enumerate(s.pages)
            ]
    segments.sync_dirs()  # the new files' names, once per directory
    return chunks, pages


def _guard(call: Callable[..., _T], *args: object) -> _T:
    """Run `call`, turning a refusal of the disk or the database into StoreError."""
    try:
        return call(*args)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"recording store: {exc}") from exc


def _open_index(directory: Path) -> Index:
    segments = directory / SEGMENTS_DIR
    segments.mkdir(parents=True, exist_ok=True)
    index = Index.open(directory / INDEX_FILE)
    try:
        # Files of recordings the index does not know: a crash after their
        # delete committed, or before their first chunk's commit.
        known = index.recording_ids()
        for recording_id in segment_files(segments).keys() - known:
            log.info("removing segment %s: no such recording in the index", recording_id)
            remove_segment(segments, recording_id)
    except BaseException:
        index.close()
        raise
    return index


def _build_replay(path: Path, refs: list[ChunkRef]) -> bytes:
    return replay_json(merge_chunks(read_chunks(path, refs)))
