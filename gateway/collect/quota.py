"""Monthly recording quotas: a recording counts once, when it starts.

When a site's limit for the UTC month is reached no new recording starts until
the first day of the next month; recordings already running go on. The limit
is passed on every call (it comes from config, so an upgrade applies at once
and keeps what was used). Usage is never reduced: deleting recordings does
not give quota back.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, TypeVar

_T = TypeVar("_T")
# Sessions remembered as started, so a running recording's later batches skip SQLite.
_CACHE_SIZE = 100_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    site TEXT NOT NULL, month TEXT NOT NULL, session TEXT NOT NULL,
    PRIMARY KEY (site, month, session)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS usage (
    site TEXT NOT NULL, month TEXT NOT NULL, used INTEGER NOT NULL,
    PRIMARY KEY (site, month)
) WITHOUT ROWID;
"""


class QuotaStoreError(Exception):
    """The quota database cannot be used; the message names the file."""


class QuotaStore(Protocol):
    """Where usage is counted; a shared backend (Redis) can implement it later."""

    async def try_start(self, site: str, session: str, limit: int, now: datetime) -> bool:
        """True if `session` may record: it already started (this month, or last
        month and is still running across the month's end), or there was room
        and it was counted now. False when the limit is reached."""
        ...

    async def started(self, site: str, session: str, now: datetime) -> bool:
        """Whether `session` already started, as try_start sees it; counts nothing."""
        ...

    async def usage(self, site: str, now: datetime) -> int:
        """Recordings started in `now`'s UTC month."""
        ...

    async def close(self) -> None: ...


def month_key(now: datetime) -> str:
    """The UTC month of `now` as "YYYY-MM"; a naive datetime is refused (its zone is a guess)."""
    if now.utcoffset() is None:
        raise ValueError(f"quota time must be timezone-aware, got naive {now.isoformat()}")
    utc = now.astimezone(UTC)
    return f"{utc.year:04d}-{utc.month:02d}"  # strftime costs several times more


def _previous_month(month: str) -> str:
    year, number = int(month[:4]), int(month[5:])
    return f"{year - 1}-12" if number == 1 else f"{year}-{number - 1:02d}"


class SqliteQuotaStore:
    """The embedded default: one SQLite file (WAL) under data_dir.

    Every SQLite call runs on one worker thread, so the event loop never
    blocks and calls are serialised; each check-and-count is also one
    IMMEDIATE transaction, so two processes sharing the file cannot both
    take the last slot.
    """

    def __init__(self, path: Path, executor: ThreadPoolExecutor, db: sqlite3.Connection) -> None:
        self._path = path
        self._executor = executor
        self._db = db
        # (site, session) -> the month it started, least recently used first.
        self._started: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._pruned_before = ""
        self._closed = False
        # (site, session) -> the result of the database call under way for it.
        self._pending: dict[tuple[str, str], asyncio.Future[str | None]] = {}

    @classmethod
    async def open(cls, path: Path) -> SqliteQuotaStore:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quota-sqlite")
        try:
            db = await asyncio.get_running_loop().run_in_executor(executor, _connect, path)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(path, executor, db)

    async def try_start(self, site: str, session: str, limit: int, now: datetime) -> bool:
        month = month_key(now)
        if self._known(site, session, month):
            return True
        pending = self._pending.get((site, session))
        if pending is not None:
            await asyncio.shield(pending)  # a start under way may answer this one too
            if self._known(site, session, month):
                return True
        with self._inflight(site, session) as result:
            started = await self._run(self._try_start, site, session, limit, month)
            result.set_result(started)
        return self._remember(site, session, started)

    async def started(self, site: str, session: str, now: datetime) -> bool:
        month = month_key(now)
        if self._known(site, session, month):
            return True
        pending = self._pending.get((site, session))
        if pending is not None:
            # A recorder's batches of a new session can arrive together: the
            # database call under way for one answers them all.
            return await asyncio.shield(pending) is not None
        with self._inflight(site, session) as result:
            started = await self._run(self._find, site, session, month)
            result.set_result(started)
        return self._remember(site, session, started)

    @contextlib.contextmanager
    def _inflight(self, site: str, session: str) -> Iterator[asyncio.Future[str | None]]:
        """Announce a database call about a session; its result is the month the
        session started in (None: not started, or the call failed)."""
        key = (site, session)
        result: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._pending[key] = result
        try:
            yield result
        finally:
            if self._pending.get(key) is result:
                del self._pending[key]
            if not result.done():
                result.set_result(None)

    async def usage(self, site: str, now: datetime) -> int:
        return await self._run(self._usage, site, month_key(now))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._db.close)
        finally:
            self._executor.shutdown(wait=True)

    async def _run(self, call: Callable[..., _T], *args: object) -> _T:
        if self._closed:
            raise QuotaStoreError(f"{self._path}: quota store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, call, *args)

    def _known(self, site: str, session: str, month: str) -> bool:
        key = (site, session)
        if self._started.get(key) in (month, _previous_month(month)):
            self._started.move_to_end(key)
            return True
        return False

    def _remember(self, site: str, session: str, started: str | None) -> bool:
        if started is None:
            return False
        key = (site, session)
        self._started[key] = started
        self._started.move_to_end(key)
        if len(self._started) > _CACHE_SIZE:
            self._started.popitem(last=False)
        return True

    def _find(self, site: str, session: str, month: str) -> str | None:
        """The month the session started in, if this month or last."""
        row = self._db.execute(
            "SELECT month FROM sessions WHERE site = ? AND session = ? AND month IN (?, ?) LIMIT 1",
            (site, session, _previous_month(month), month),
        ).fetchone()
        return str(row[0]) if row is not None else None

    def _try_start(self, site: str, session: str, limit: int, month: str) -> str | None:
        """The month the session started in, or None when there is no room."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")  # check and count under one write lock
        try:
            started = self._find(site, session, month)
            if started is None and self._usage(site, month) < limit:
                db.execute(
                    "INSERT INTO sessions (site, month, session) VALUES (?, ?, ?)",
                    (site, month, session),
                )
                db.execute(
                    "INSERT INTO usage (site, month, used) VALUES (?, ?, 1)"
                    " ON CONFLICT (site, month) DO UPDATE SET used = used + 1",
                    (site, month),
                )
                self._prune(month)
                started = month
            db.execute("COMMIT")
            return started
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _prune(self, month: str) -> None:
        # Sessions older than last month can no longer be running: their ids go,
        # the counters stay (usage history).
        before = _previous_month(month)
        if self._pruned_before != before:
            self._db.execute("DELETE FROM sessions WHERE month < ?", (before,))
            self._pruned_before = before

    def _usage(self, site: str, month: str) -> int:
        row = self._db.execute(
            "SELECT used FROM usage WHERE site = ? AND month = ?", (site, month)
        ).fetchone()
        return int(row[0]) if row is not None else 0


def _connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE.
        db = sqlite3.connect(path, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise QuotaStoreError(f"{path}: cannot open quota database: {exc}") from exc
    try:
        # Another process on the same file holds the write lock only briefly.
        db.execute("PRAGMA busy_timeout = 5000")
        db.execute("PRAGMA journal_mode = WAL")
        # In WAL, NORMAL survives a process crash; a power cut may lose the last
        # few counts, and a lost session is simply counted again on its next batch.
        db.execute("PRAGMA synchronous = NORMAL")
        db.executescript(_SCHEMA)
    except sqlite3.Error as exc:
        db.close()
        raise QuotaStoreError(f"{path}: cannot use quota database: {exc}") from exc
    return db
