"""Dead letters: upstream batches the store refused for good, kept on disk.

A refused batch leaves the spool only once it is safe here, so nothing the
browser was told is stored is ever lost silently. For each batch:

* `<id>.lz4`: the exact body that was sent (an lz4 frame of msgpack, see
  batcher.py), so it can be inspected with `decode_upstream` or POSTed again;
  for a spool record that does not decode (never sent), the same frame around
  that record's bytes as the spool held them;
* `<id>.json`: `{"id", "reason", "status", "at", "records", "bytes"}`, written
  last: a `.json` marks a complete dead letter.

Both are written atomically (tmp file, fsync, rename, fsync of the directory)
in a worker thread, so the event loop never blocks on the disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from gateway.pipeline.batcher import Batched
from gateway.pipeline.exporters import ExportOutcome

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_json = msgspec.json.Encoder()


class DeadLetterInfo(msgspec.Struct, frozen=True):
    id: str  # the batch id (its Idempotency-Key)
    reason: str  # the exporter's detail: "HTTP 400: {...}"
    status: int | None  # HTTP status, None for the embedded store
    at: str  # RFC 3339 UTC
    records: int  # spool records (recorder batches) in it
    bytes: int  # size of the .lz4 body


def file_stem(batch_id: str) -> str:
    """The batch id when it is a safe file name, else a hash of it (never a path)."""
    if _SAFE_NAME.match(batch_id):
        return batch_id
    return "id-" + hashlib.sha256(batch_id.encode()).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DeadLetters:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    async def put(self, batched: Batched, outcome: ExportOutcome) -> Path:
        """Write the dead letter durably; returns the path of its .lz4 body.

        OSError (disk full, ...) means it is NOT safe: the caller must not ack.
        """
        info = DeadLetterInfo(
            id=batched.upstream.id,
            reason=outcome.detail,
            status=outcome.status,
            at=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            # An undecodable spool record travels alone, not in `records`.
            records=len(batched.upstream.records) or int(bool(batched.undecodable)),
            bytes=len(batched.body),
        )
        return await asyncio.to_thread(self._put_sync, batched.body, info)

    def _put_sync(self, body: bytes, info: DeadLetterInfo) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        stem = file_stem(info.id)
        body_path = self.directory / f"{stem}.lz4"
        _write_atomic(body_path, body)
        # The body's rename is durable before the .json that marks it complete appears.
        _fsync_dir(self.directory)
        _write_atomic(self.directory / f"{stem}.json", _json.encode(info) + b"\n")
        _fsync_dir(self.directory)
        return body_path

    def count(self) -> int:
        """Complete dead letters in the directory."""
        try:
            return sum(1 for p in self.directory.iterdir() if p.name.endswith(".json"))
        except FileNotFoundError:
            return 0
