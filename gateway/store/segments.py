"""Segment files: the events of each recording, on disk.

Layout: `segments/<id[:2]>/<id>.seg`, one file per recording. A segment file
is an append-only run of chunks with nothing between them: a chunk is one lz4
frame (content checksum on) of the msgpack encoding of one browser batch's
`list[Event]`. The file has no header and no framing of its own: the index
holds each chunk's (offset, length, decoded length), and only those ranges are
ever read. Bytes appended by an ingest whose index commit never happened are
therefore never referenced and harmless; `SegmentWriter.undo` takes them back
when it still can. Whole files of recordings the index does not know (a crash
between a new recording's file write and its commit, or between a delete's
commit and its unlink) are found with `segment_files` and removed at open.

Chunks are kept in arrival order; readers sort events by timestamp.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lz4.frame
import msgspec

from gateway.collect.schema import Event

SUFFIX = ".seg"
_ID = re.compile(r"[0-9a-f]{32}")

log = logging.getLogger(__name__)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[Event])


class ChunkCorrupt(Exception):
    """A chunk that does not decode (bad checksum, truncated, not events)."""


@dataclass(frozen=True)
class ChunkRef:
    offset: int
    length: int  # compressed bytes in the file
    raw_length: int  # msgpack bytes once decompressed


def segment_path(root: Path, recording_id: str) -> Path:
    return root / recording_id[:2] / f"{recording_id}{SUFFIX}"


def encode_chunk(events: list[Event]) -> tuple[bytes, int]:
    """(the lz4 frame to append, the length of the msgpack inside it)."""
    raw = _encoder.encode(events)
    frame: bytes = lz4.frame.compress(raw, content_checksum=True)
    return frame, len(raw)


def decode_chunk(frame: bytes, raw_length: int) -> list[Event]:
    # Never trust the size a damaged frame header claims: decode at most one
    # byte more than the index says is there.
    decompressor = lz4.frame.LZ4FrameDecompressor()
    out = bytearray()
    data = frame
    try:
        while not decompressor.eof and len(out) <= raw_length:
            piece = decompressor.decompress(data, max_length=raw_length + 1 - len(out))
            data = b""
            if not piece:  # truncated, or no progress: the checks below tell
                break
            out += piece
    except (RuntimeError, ValueError) as exc:  # bad block or content checksum
        raise ChunkCorrupt(f"invalid lz4 frame: {exc}") from exc
    if not decompressor.eof:
        raise ChunkCorrupt("lz4 frame is truncated or larger than the index says")
    trailing = len(decompressor.unused_data or b"")
    if len(out) != raw_length or trailing:
        raise ChunkCorrupt(
            f"lz4 frame holds {len(out)} bytes (+{trailing} after it), the index says {raw_length}"
        )
    try:
        return _decoder.decode(out)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ChunkCorrupt(f"not a list of events: {exc}") from exc


def read_chunks(path: Path, refs: list[ChunkRef]) -> Iterator[list[Event]]:
    """Each referenced chunk's events; a chunk that cannot be read is logged and skipped.

    A missing file (the recording was deleted meanwhile) yields nothing; any
    other failure to open it raises OSError.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        log.warning("segment %s is missing: its %d chunks are skipped", path, len(refs))
        return
    try:
        for ref in refs:
            try:
                frame = os.pread(fd, ref.length, ref.offset)
                if len(frame) != ref.length:
                    raise ChunkCorrupt(f"file ends {ref.length - len(frame)} bytes early")
                events = decode_chunk(frame, ref.raw_length)
            except (ChunkCorrupt, OSError) as exc:
                # One bad chunk costs its own events, never the whole replay.
                log.error(
                    "segment %s: skipping the chunk at offset %d (%d bytes): %s",
                    path,
                    ref.offset,
                    ref.length,
                    exc,
                )
                continue
            yield events
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class _Appended:
    path: Path
    size_before: int  # -1: the file did not exist


class SegmentWriter:
    """Appends one ingest's chunks; call `sync_dirs` once they are all appended.

    Each file is flushed and fsynced as it is written, and `sync_dirs` fsyncs
    the directories that got a new entry (once each), so that when the index
    commit follows, every byte and name it refers to survives a power cut.
    `undo` takes the bytes back (truncates, or removes a file it created) when
    the commit was never attempted; after a commit attempt they are left
    alone, unreferenced if it failed.
    """

    def __init__(self, root: Path) -> None:
        self._root = root
        self._appended: list[_Appended] = []
        self._new_entries: set[Path] = set()  # directories to fsync

    def append(self, recording_id: str, frames: list[bytes]) -> list[int]:
        """Append frames to the recording's segment file; their offsets in it."""
        path = segment_path(self._root, recording_id)
        if not path.parent.is_dir():
            path.parent.mkdir()
            self._new_entries.add(path.parent.parent)
        created = not path.exists()
        with open(path, "ab") as file:
            start = file.tell()
            self._appended.append(_Appended(path, -1 if created else start))
            if created:
                self._new_entries.add(path.parent)
            offsets = []
            for frame in frames:
                offsets.append(file.tell())
                file.write(frame)
            file.flush()
            os.fsync(file.fileno())
        return offsets

    def sync_dirs(self) -> None:
        for directory in sorted(self._new_entries, key=lambda p: len(p.parts), reverse=True):
            _fsync_dir(directory)
        self._new_entries.clear()

    def undo(self) -> None:
        for appended in reversed(self._appended):
            try:
                if appended.size_before < 0:
                    appended.path.unlink(missing_ok=True)
                else:
                    os.truncate(appended.path, appended.size_before)
            except OSError as exc:  # harmless: the bytes are unreferenced
                log.warning("cannot take back bytes appended to %s: %s", appended.path, exc)
        self._appended.clear()


def remove_segment(root: Path, recording_id: str) -> None:
    """Unlink a deleted recording's file; a failure is logged (open() retries it)."""
    path = segment_path(root, recording_id)
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot remove segment %s: %s", path, exc)


def segment_files(root: Path) -> dict[str, Path]:
    """recording id -> path of every segment file under root."""
    found: dict[str, Path] = {}
    if not root.is_dir():
        return found
    for directory in root.iterdir():
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            name = path.name.removesuffix(SUFFIX)
            if path.name.endswith(SUFFIX) and _ID.fullmatch(name) and path.is_file():
                found[name] = path
    return found
