"""Share links: signed, expiring, revocable links that open one recording read-only.

A link is `/share/<share id>.<signature>`: the id (16 random bytes, hex)
names a row of `shares.sqlite3`; the signature is an HMAC-SHA256, under a key
kept in `share.key` (32 random bytes, created once, mode 0600), of the id,
the recording and the expiry. A link therefore cannot be forged or pointed at
another recording even by someone who can read the database, and it stops
working when it expires, when it is revoked, or when its recording is deleted.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

import msgspec

_T = TypeVar("_T")
_KEY_FILE = "share.key"
_DB_FILE = "shares.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS shares (
    id TEXT PRIMARY KEY, recording_id TEXT NOT NULL, site TEXT NOT NULL,
    created_at REAL NOT NULL, expires_at REAL NOT NULL, revoked_at REAL
);
CREATE INDEX IF NOT EXISTS shares_by_recording ON shares (recording_id);
"""
_COLUMNS = "id, recording_id, site, created_at, expires_at, revoked_at"


class Share(msgspec.Struct, frozen=True):
    id: str
    recording_id: str
    site: str
    created_at: float  # Unix seconds
    expires_at: float
    revoked_at: float | None

    def token(self, key: bytes) -> str:
        return f"{self.id}.{_signature(key, self.id, self.recording_id, self.expires_at)}"


class ShareRefusal(StrEnum):
    UNKNOWN = "unknown"  # no such link, or a signature that does not match
    EXPIRED = "expired"
    REVOKED = "revoked"


def _signature(key: bytes, share_id: str, recording_id: str, expires_at: float) -> str:
    message = f"{share_id}.{recording_id}.{expires_at!r}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()[:18]
    return base64.urlsafe_b64encode(digest).decode()


def _load_key(directory: Path) -> bytes:
    path = directory / _KEY_FILE
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = secrets.token_bytes(32)
        # O_EXCL: two processes starting at once keep one key between them.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes()
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
    if len(key) < 32:
        raise ValueError(f"{path}: a share key must be at least 32 bytes")
    return key


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(_SCHEMA)
    return db


class ShareStore:
    def __init__(
        self,
        db: sqlite3.Connection,
        key: bytes,
        executor: ThreadPoolExecutor,
        clock: Callable[[], float],
    ) -> None:
        self._db = db
        self.key = key
        self._executor = executor
        self._clock = clock

    @classmethod
    async def open(cls, directory: Path, *, clock: Callable[[], float] = time.time) -> ShareStore:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shares-sqlite")
        loop = asyncio.get_running_loop()
        try:
            key = await loop.run_in_executor(executor, _load_key, directory)
            db = await loop.run_in_executor(executor, _connect, directory / _DB_FILE)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(db, key, executor, clock)

    async def create(self, recording_id: str, site: str, expires_at: float) -> Share:
        share = Share(
            id=secrets.token_hex(16),
            recording_id=recording_id,
            site=site,
            created_at=self._clock(),
            expires_at=expires_at,
            revoked_at=None,
        )
        await self._run(
            lambda: self._db.execute(
                f"INSERT INTO shares ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                msgspec.structs.astuple(share),
            )
        )
        return share

    async def resolve(self, token: str) -> Share | ShareRefusal:
        share_id, _, signature = token.partition(".")
        share = await self._get(share_id) if len(share_id) == 32 else None
        if share is None or not hmac.compare_digest(
            signature, _signature(self.key, share.id, share.recording_id, share.expires_at)
        ):
            return ShareRefusal.UNKNOWN
        if share.revoked_at is not None:
            return ShareRefusal.REVOKED
        if self._clock() >= share.expires_at:
            return ShareRefusal.EXPIRED
        return share

    async def of_recording(self, recording_id: str) -> list[Share]:
        rows = await self._run(
            lambda: self._db.execute(
                f"SELECT {_COLUMNS} FROM shares WHERE recording_id = ? ORDER BY created_at",
                (recording_id,),
            ).fetchall()
        )
        return [Share(*row) for row in rows]

    async def revoke(self, share_id: str) -> Share | None:
        """The share, revoked now (or earlier); None if there is no such share."""
        now = self._clock()

        def revoke() -> None:
            self._db.execute(
                "UPDATE shares SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, share_id),
            )

        await self._run(revoke)
        return await self._get(share_id)

    async def forget_expired(self, before: float) -> int:
        """Drop rows of links that expired before `before` (they can never open again)."""
        cursor = await self._run(
            lambda: self._db.execute("DELETE FROM shares WHERE expires_at < ?", (before,))
        )
        return int(cursor.rowcount)

    async def close(self) -> None:
        await self._run(self._db.close)
        self._executor.shutdown(wait=True)

    async def _get(self, share_id: str) -> Share | None:
        row = await self._run(
            lambda: self._db.execute(
                f"SELECT {_COLUMNS} FROM shares WHERE id = ?", (share_id,)
            ).fetchone()
        )
        return None if row is None else Share(*row)

    async def _run(self, call: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)
