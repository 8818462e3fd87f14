"""The durable spool: an append-only queue of segment files on disk.

A batch is acknowledged to the browser only once it is in the spool
(ARCHITECTURE.md, section 5), so `append` returns only after the record is
written as durably as the fsync policy asks, and a crashed process loses
nothing that was acknowledged.

Layout of `directory`:

* `00000001.seg`, `00000002.seg`, ...: segments, each a run of records
  `[magic 2 bytes][payload length u32 LE][crc32 of payload u32 LE][payload]`.
  A new segment starts when the current one would grow past `segment_bytes`
  (a single larger record gets a segment of its own). Numbers only grow, also
  across restarts, so a position is never reused.
* `ack`: the durable ack cursor `(segment, offset)`: every record that starts
  before it is confirmed upstream. Replaced atomically (tmp + fsync + rename).

A `SpoolRecord.position` is `(segment, offset of the record's first byte)`;
`ack(position)` confirms that record and everything before it.

On open, segments before the ack cursor are deleted and the rest is scanned:
a torn record at the end of the last segment (crash mid-write) is truncated
away (metric `torn_tail`); a damaged record with valid records after it is
skipped by searching for the next magic whose header and CRC validate (metric
`corrupt_skipped`). Opening never fails because of what is in a segment; it
fails (SpoolError) only when the disk itself refuses.

All blocking file I/O runs in one worker thread, so the event loop never
blocks and appends, acks and reads are serialized. Under the "grouped" policy
the appends of one group_ms window go to that thread together: one trip
writes them in order and fsyncs once. Metric hooks are called on
the event loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import time
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from gateway.pipeline.sink import SinkFull

MAGIC = b"\xd5\x5a"
_HEADER = struct.Struct("<2sII")
HEADER_SIZE = _HEADER.size  # 10 bytes
MAX_PAYLOAD = 2**32 - 1
SEGMENT_SUFFIX = ".seg"
ACK_FILE = "ack"
_ACK_TMP = "ack.tmp"
_ACK = struct.Struct("<2sQQI")
_ACK_MAGIC = b"AK"
# Metric event carrying one fsync's duration in nanoseconds (others carry damaged bytes).
FSYNC_EVENT = "fsync_ns"

_T = TypeVar("_T")
log = logging.getLogger(__name__)


class FsyncPolicy(StrEnum):
    ALWAYS = "always"  # fsync before every append returns
    GROUPED = "grouped"  # appends within group_ms share one fsync (group commit)
    NEVER = "never"  # write() only: survives a process crash, not a power loss


class SpoolFull(SinkFull):
    """max_bytes of unacknowledged records are on disk: answer 503 + Retry-After."""


class SpoolError(Exception):
    """The disk refused (ENOSPC, EIO, ...): what raised this was not acknowledged."""


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    position: tuple[int, int]  # (segment number, offset): pass to ack()
    data: bytes


class _Segment:
    __slots__ = ("ends", "number", "path", "size", "starts")

    def __init__(self, number: int, path: Path, size: int) -> None:
        self.number = number
        self.path = path
        self.size = size  # bytes in the file
        self.starts: array[int] = array("Q")  # offsets of unacknowledged valid records
        self.ends: array[int] = array("Q")


@dataclass
class _Group:
    """Appends waiting for the same trip to the worker thread and the same fsync."""

    records: list[bytes] = field(default_factory=list)
    outcomes: list[asyncio.Future[None]] = field(default_factory=list)

    def settle(self, errors: list[Exception | None]) -> None:
        for outcome, error in zip(self.outcomes, errors, strict=True):
            if outcome.done():
                continue
            if error is None:
                outcome.set_result(None)
            else:
                outcome.set_exception(error)

    def fail(self, error: Exception) -> None:
        for outcome in self.outcomes:
            if not outcome.done():
                outcome.set_exception(error)


def segment_name(number: int) -> str:
    return f"{number:08d}{SEGMENT_SUFFIX}"


def encode_record(data: bytes) -> bytes:
    return _HEADER.pack(MAGIC, len(data), zlib.crc32(data)) + data


def _record_end(buf: bytes, pos: int) -> int | None:
    """End offset of the valid record starting at `pos` in `buf`, or None."""
    if len(buf) - pos < HEADER_SIZE:
        return None
    magic, length, crc = _HEADER.unpack_from(buf, pos)
    if magic != MAGIC:
        return None
    end: int = pos + HEADER_SIZE + length
    if end > len(buf) or zlib.crc32(memoryview(buf)[pos + HEADER_SIZE : end]) != crc:
        return None
    return end


def _resync(buf: bytes, pos: int) -> int | None:
    """Offset of the next valid record at or after `pos`, or None."""
    while True:
        pos = buf.find(MAGIC, pos)
        if pos < 0:
            return None
        if _record_end(buf, pos) is not None:
            return pos
        pos += 1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class Spool:
    """Append-only segment-file queue. Create with `await Spool.open(...)`."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        segment_bytes: int,
        fsync: FsyncPolicy,
        group_ms: float,
        metrics_hook: Callable[[str, int], None] | None,
    ) -> None:
        if max_bytes <= HEADER_SIZE:
            raise ValueError(f"max_bytes must be more than {HEADER_SIZE}, got {max_bytes}")
        if segment_bytes <= HEADER_SIZE:
            raise ValueError(f"segment_bytes must be more than {HEADER_SIZE}, got {segment_bytes}")
        if group_ms < 0:
            raise ValueError(f"group_ms must not be negative, got {group_ms}")
        self._dir = Path(directory)
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._policy = FsyncPolicy(fsync)
        self._group_s = group_ms / 1000.0
        self._hook = metrics_hook
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        # Owned by the worker thread (the loop only reads the ints and tuples).
        self._segments: dict[int, _Segment] = {}
        self._write_seg: _Segment | None = None
        self._fd = -1
        self._retired: list[int] = []  # rolled-over fds awaiting the group fsync (GROUPED)
        self._dir_dirty = False
        self._write_broken = False  # a failed write could not be cut off: roll first
        self._ack_cursor: tuple[int, int] = (0, 0)
        self._depth_records = 0
        self._depth_bytes = 0
        self._events: list[tuple[str, int]] = []
        # Owned by the event loop.
        self._read_cursor: tuple[int, int] = (0, 0)
        self._rewinds = 0
        self._read_lock = asyncio.Lock()
        self._group: _Group | None = None
        self._group_tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._closed_event = asyncio.Event()
        self._close_ok = False

    # -- public API ---------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        directory: Path,
        *,
        max_bytes: int,
        segment_bytes: int = 16 * 1024 * 1024,
        fsync: FsyncPolicy = FsyncPolicy.GROUPED,
        group_ms: float = 5.0,
        metrics_hook: Callable[[str, int], None] | None = None,
    ) -> Spool:
        spool = cls(
            directory,
            max_bytes=max_bytes,
            segment_bytes=segment_bytes,
            fsync=fsync,
            group_ms=group_ms,
            metrics_hook=metrics_hook,
        )
        try:
            await spool._run(spool._open_sync)
        except BaseException:
            spool._closed = True
            spool._executor.submit(spool._close_fds)
            spool._executor.shutdown(wait=False)
            raise
        spool._read_cursor = spool._ack_cursor
        return spool

    async def append(self, data: bytes) -> None:
        """Write one record; returns once it is as durable as the fsync policy says.

        SpoolFull: no room (nothing written). SpoolError: the disk refused; the
        partial record is cut off. Neither is an acknowledgement.
        """
        if self._closed:
            raise SpoolError("spool is closed")
        if len(data) > MAX_PAYLOAD or HEADER_SIZE + len(data) > self._max_bytes:
            raise ValueError(f"record of {len(data)} bytes can never fit in the spool")
        if self._policy is FsyncPolicy.GROUPED:
            await self._join_group(bytes(data))
        else:
            await self._run(self._append_sync, bytes(data))

    async def read(
        self, max_records: int = 1000, max_bytes: int = 1024 * 1024
    ) -> list[SpoolRecord]:
        """The next records after the read cursor (at least one if any, however large)."""
        if max_records < 1 or max_bytes < 1:
            raise ValueError("max_records and max_bytes must be positive")
        if self._closed:
            raise SpoolError("spool is closed")
        async with self._read_lock:
            rewinds = self._rewinds
            cursor = max(self._read_cursor, self._ack_cursor)
            records, after = await self._run(self._read_sync, cursor, max_records, max_bytes)
            if rewinds == self._rewinds:
                self._read_cursor = after
            return records

    async def peek(
        self, after: tuple[int, int] | None = None, max_records: int = 1000
    ) -> list[SpoolRecord]:
        """Unacknowledged records after `after` (default: from the ack cursor), oldest
        first, without moving the read cursor: for inspection while a reader runs."""
        if max_records < 1:
            raise ValueError("max_records must be positive")
        if self._closed:
            raise SpoolError("spool is closed")
        cursor = self._ack_cursor if after is None else max(after, self._ack_cursor)
        records, _ = await self._run(self._read_sync, cursor, max_records, 1 << 62)
        if after is not None and records and records[0].position == after:
            records = records[1:]  # `after` itself was already seen
        return records

    async def ack(self, position: tuple[int, int]) -> None:
        """Confirm the record at `position` and everything before it (durably)."""
        if self._closed:
            raise SpoolError("spool is closed")
        cursor = await self._run(self._ack_sync, (int(position[0]), int(position[1])))
        if self._read_cursor < cursor:
            self._read_cursor = cursor

    def rewind(self) -> None:
        """Read again from the ack cursor (after an upstream failure)."""
        self._rewinds += 1
        self._read_cursor = self._ack_cursor

    @property
    def depth_records(self) -> int:
        return self._depth_records

    @property
    def depth_bytes(self) -> int:
        return self._depth_bytes

    @property
    def ack_cursor(self) -> tuple[int, int]:
        return self._ack_cursor

    async def close(self) -> None:
        if self._closed:
            await self._closed_event.wait()
            return
        self._closed = True
        try:
            if self._group_tasks:
                await asyncio.gather(*self._group_tasks, return_exceptions=True)
            await self._run(self._close_sync)
            self._close_ok = True
        finally:
            self._executor.shutdown(wait=False)
            self._closed_event.set()

    async def __aenter__(self) -> Spool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- event loop helpers -------------------------------------------------------------------

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except OSError as exc:
            raise SpoolError(f"spool I/O failed in {self._dir}: {exc}") from exc
        finally:
            self._flush_events()

    def _flush_events(self) -> None:
        while self._events:
            name, value = self._events.pop(0)
            if self._hook is not None:
                try:
                    self._hook(name, value)
                except Exception:  # a metrics failure must not fail an append
                    log.exception("spool metrics hook failed for %s", name)

    async def _join_group(self, data: bytes) -> None:
        """Queue a record for the next group: one trip to the worker thread writes
        every record of the group in order and fsyncs once."""
        group = self._group
        if group is None:
            group = self._group = _Group()
            task = asyncio.create_task(self._commit_group(group))
            self._group_tasks.add(task)
            task.add_done_callback(self._group_tasks.discard)
        outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Mark the exception retrieved even if the waiter was cancelled.
        outcome.add_done_callback(lambda f: f.cancelled() or f.exception())
        group.records.append(data)
        group.outcomes.append(outcome)
        await asyncio.shield(outcome)

    async def _commit_group(self, group: _Group) -> None:
        try:
            await asyncio.sleep(self._group_s)
        except BaseException:
            self._group = None if self._group is group else self._group
            group.fail(SpoolError("group fsync cancelled"))
            raise
        # Appends from now on join the next group.
        if self._group is group:
            self._group = None
        try:
            errors = await self._run(self._write_group, group.records)
        except Exception as exc:
            group.fail(exc)
        except BaseException:
            group.fail(SpoolError("group fsync cancelled"))
            raise
        else:
            group.settle(errors)

    # -- worker thread ------------------------------------------------------------------------

    def _event(self, name: str, value: int) -> None:
        self._events.append((name, value))

    def _durable(self) -> bool:
        return self._policy is not FsyncPolicy.NEVER

    def _fsync_dir(self) -> None:
        fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _open_sync(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        (self._dir / _ACK_TMP).unlink(missing_ok=True)
        numbers = sorted(
            int(p.name[:8])
            for p in self._dir.iterdir()
            if p.name.endswith(SEGMENT_SUFFIX)
            and len(p.name) == 8 + len(SEGMENT_SUFFIX)
            and p.name[:8].isdigit()
        )
        ack_seg, ack_off = self._load_ack()
        kept: list[int] = []
        for number in numbers:
            if number < ack_seg:  # fully acknowledged; its deletion was interrupted
                (self._dir / segment_name(number)).unlink(missing_ok=True)
            else:
                kept.append(number)
        if not kept:
            number = max([*numbers, ack_seg]) + 1
            self._ack_cursor = (number, 0)
            self._create_segment(number)
            return
        if kept[0] > ack_seg:
            ack_seg, ack_off = kept[0], 0
        for number in kept:
            seg = self._scan_segment(
                number, ack_off if number == ack_seg else 0, number == kept[-1]
            )
            if number == ack_seg:
                ack_off = min(ack_off, seg.size)  # acked bytes lost (fsync=never + power loss)
            self._segments[number] = seg
        self._ack_cursor = (ack_seg, ack_off)
        last = self._segments[kept[-1]]
        self._fd = os.open(last.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self._write_seg = last
        self._recount()

    def _load_ack(self) -> tuple[int, int]:
        try:
            blob = (self._dir / ACK_FILE).read_bytes()
        except FileNotFoundError:
            return (0, 0)
        if len(blob) == _ACK.size:
            magic, seg, off, crc = _ACK.unpack(blob)
            if magic == _ACK_MAGIC and zlib.crc32(blob[2:18]) == crc:
                return (seg, off)
        # Unreadable cursor: replay everything still on disk (duplicates, never loss).
        self._event("ack_cursor_invalid", len(blob))
        return (0, 0)

    def _scan_segment(self, number: int, from_off: int, is_last: bool) -> _Segment:
        path = self._dir / segment_name(number)
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(from_off)
            buf = f.read()
        seg = _Segment(number, path, size)
        pos = 0
        while pos < len(buf):
            end = _record_end(buf, pos)
            if end is not None:
                seg.starts.append(from_off + pos)
                seg.ends.append(from_off + end)
                pos = end
                continue
            nxt = _resync(buf, pos + 1)
            if nxt is None:
                if is_last:  # a record torn by a crash mid-write: cut it off
                    os.truncate(path, from_off + pos)
                    seg.size = from_off + pos
                    self._event("torn_tail", len(buf) - pos)
                else:
                    self._event("corrupt_skipped", len(buf) - pos)
                break
            self._event("corrupt_skipped", nxt - pos)
            pos = nxt
        return seg

    def _create_segment(self, number: int) -> None:
        path = self._dir / segment_name(number)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            size = os.fstat(fd).st_size
        except OSError:
            os.close(fd)
            raise
        seg = _Segment(number, path, size)
        self._segments[number] = seg
        old_fd, self._fd, self._write_seg = self._fd, fd, seg
        if old_fd >= 0:
            if self._policy is FsyncPolicy.GROUPED:
                self._retired.append(old_fd)  # fsynced by the group its appends wait for
            else:
                os.close(old_fd)  # ALWAYS: already synced; NEVER: not wanted
        if self._policy is FsyncPolicy.ALWAYS or (old_fd < 0 and self._durable()):
            self._fsync_dir()
        elif self._policy is FsyncPolicy.GROUPED:
            self._dir_dirty = True

    def _append_sync(self, data: bytes) -> None:
        size = HEADER_SIZE + len(data)
        if self._depth_bytes + size > self._max_bytes:
            raise SpoolFull(
                f"spool holds {self._depth_bytes} unacknowledged bytes of {self._max_bytes}"
            )
        seg = self._write_seg
        assert seg is not None
        if self._write_broken or (seg.size > 0 and seg.size + size > self._segment_bytes):
            self._create_segment(seg.number + 1)
            self._write_broken = False
            self._gc()
            seg = self._write_seg
            assert seg is not None
        start = seg.size
        try:
            _write_all(self._fd, encode_record(data))
            if self._policy is FsyncPolicy.ALWAYS:
                self._timed_fsync(self._fd)
        except OSError as exc:
            self._cut(seg, start)
            raise SpoolError(f"append to {seg.path} failed: {exc}") from exc
        seg.starts.append(start)
        seg.ends.append(start + size)
        seg.size = start + size
        self._depth_records += 1
        self._depth_bytes += size

    def _write_group(self, records: list[bytes]) -> list[Exception | None]:
        """Append each record (SpoolFull or SpoolError for those that failed, the
        others are written), then one fsync that covers every written one."""
        errors: list[Exception | None] = []
        for data in records:
            try:
                self._append_sync(data)
            except (SpoolFull, SpoolError) as exc:
                errors.append(exc)
            except OSError as exc:  # rolling over to a new segment failed
                errors.append(SpoolError(f"spool I/O failed in {self._dir}: {exc}"))
            else:
                errors.append(None)
        if any(error is None for error in errors):
            self._commit_sync()
        return errors

    def _cut(self, seg: _Segment, start: int) -> None:
        """Remove a partly written record so the segment stays valid."""
        try:
            os.ftruncate(self._fd, start)
        except OSError:
            # Leave it for the scan on the next open; never write after it.
            self._write_broken = True
            with contextlib.suppress(OSError):
                seg.size = os.fstat(self._fd).st_size
            self._recount()

    def _commit_sync(self) -> None:
        error: OSError | None = None
        retired, self._retired = self._retired, []
        for fd in retired:
            try:
                os.fsync(fd)
            except OSError as exc:
                error = error or exc
            finally:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self._dir_dirty:
            self._fsync_dir()
            self._dir_dirty = False
        if self._fd >= 0:
            self._timed_fsync(self._fd)
        if error is not None:
            raise error

    def _timed_fsync(self, fd: int) -> None:
        started = time.perf_counter_ns()
        os.fsync(fd)
        self._event(FSYNC_EVENT, time.perf_counter_ns() - started)

    def _read_sync(
        self, cursor: tuple[int, int], max_records: int, max_bytes: int
    ) -> tuple[list[SpoolRecord], tuple[int, int]]:
        records: list[SpoolRecord] = []
        total = 0
        for number in sorted(self._segments):
            if number < cursor[0]:
                continue
            seg = self._segments[number]
            first = bisect_left(seg.starts, cursor[1]) if number == cursor[0] else 0
            last = first
            while last < len(seg.starts) and len(records) + (last - first) < max_records:
                length = seg.ends[last] - seg.starts[last] - HEADER_SIZE
                if (records or last > first) and total + length > max_bytes:
                    break
                total += length
                last += 1
            if last == first:
                if len(seg.starts) > first:
                    break  # limits reached
                continue
            base = seg.starts[first]
            with open(seg.path, "rb", buffering=0) as f:
                blob = os.pread(f.fileno(), seg.ends[last - 1] - base, base)
            for i in range(first, last):
                start, end = seg.starts[i] - base, seg.ends[i] - base
                if _record_end(blob, start) == end:
                    payload = blob[start + HEADER_SIZE : end]
                    records.append(SpoolRecord((number, seg.starts[i]), payload))
                else:  # damaged on disk after it was written
                    self._event("corrupt_skipped", end - start)
            cursor = (number, seg.ends[last - 1])
            if len(records) >= max_records or last < len(seg.starts):
                break
        return records, cursor

    def _ack_sync(self, position: tuple[int, int]) -> tuple[int, int]:
        if position < self._ack_cursor:
            return self._ack_cursor  # already acknowledged
        number, offset = position
        seg = self._segments.get(number)
        i = bisect_left(seg.starts, offset) if seg is not None else 0
        if seg is None or i == len(seg.starts) or seg.starts[i] != offset:
            raise ValueError(f"no record at position {position}")
        end = seg.ends[i]
        if i == len(seg.starts) - 1 and seg is not self._write_seg:
            end = seg.size  # also past any damaged bytes after the last record
        self._write_ack((number, end))
        self._ack_cursor = (number, end)
        self._gc()
        self._recount()
        return self._ack_cursor

    def _write_ack(self, cursor: tuple[int, int]) -> None:
        body = struct.pack("<QQ", *cursor)
        blob = _ACK_MAGIC + body + struct.pack("<I", zlib.crc32(body))
        tmp = self._dir / _ACK_TMP
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            _write_all(fd, blob)
            if self._durable():
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self._dir / ACK_FILE)
        if self._durable():
            self._fsync_dir()

    def _gc(self) -> None:
        """Delete sealed segments whose every byte is acknowledged."""
        ack_seg, ack_off = self._ack_cursor
        for number in list(self._segments):
            seg = self._segments[number]
            if seg is self._write_seg:
                continue
            if number < ack_seg or (number == ack_seg and ack_off >= seg.size):
                seg.path.unlink(missing_ok=True)
                del self._segments[number]

    def _recount(self) -> None:
        ack_seg, ack_off = self._ack_cursor
        records = size = 0
        for number, seg in self._segments.items():
            if number > ack_seg:
                records += len(seg.starts)
                size += seg.size
            elif number == ack_seg:
                records += len(seg.starts) - bisect_left(seg.starts, ack_off)
                size += max(0, seg.size - ack_off)
        self._depth_records = records
        self._depth_bytes = size

    def _close_sync(self) -> None:
        try:
            if self._policy is FsyncPolicy.GROUPED:
                self._commit_sync()
        finally:
            self._close_fds()

    def _close_fds(self) -> None:
        for fd in [*self._retired, self._fd]:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._retired = []
        self._fd = -1
