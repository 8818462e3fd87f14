"""Monthly quotas on the real SQLite store: counting, limits, months, restarts, races."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from gateway.collect.quota import QuotaStoreError, SqliteQuotaStore, month_key

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
LAST_MINUTE_OF_NOVEMBER = datetime(2026, 11, 30, 23, 59, tzinfo=UTC)
FIRST_MINUTE_OF_DECEMBER = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteQuotaStore]:
    opened = await SqliteQuotaStore.open(tmp_path / "quota.sqlite3")
    yield opened
    await opened.close()


async def start_many(
    store: SqliteQuotaStore, count: int, limit: int, now: datetime = NOW, site: str = "shop"
) -> list[bool]:
    return [await store.try_start(site, f"s{i}", limit, now) for i in range(count)]


async def test_a_session_counts_once(store: SqliteQuotaStore) -> None:
    for _ in range(3):
        assert await store.try_start("shop", "s1", 10, NOW)
    assert await store.usage("shop", NOW) == 1
    assert await store.try_start("shop", "s2", 10, NOW)
    assert await store.usage("shop", NOW) == 2


async def test_at_the_limit_new_sessions_are_refused_running_ones_go_on(
    store: SqliteQuotaStore,
) -> None:
    assert await start_many(store, 3, limit=3) == [True] * 3
    assert not await store.try_start("shop", "late", 3, NOW)
    assert not await store.try_start("shop", "late", 3, NOW)
    for i in range(3):
        assert await store.try_start("shop", f"s{i}", 3, NOW)
    assert await store.usage("shop", NOW) == 3


async def test_a_zero_limit_starts_nothing(store: SqliteQuotaStore) -> None:
    assert not await store.try_start("shop", "s1", 0, NOW)
    assert await store.usage("shop", NOW) == 0


async def test_a_new_utc_month_starts_from_zero(store: SqliteQuotaStore) -> None:
    assert await start_many(store, 2, limit=2, now=LAST_MINUTE_OF_NOVEMBER) == [True, True]
    assert not await store.try_start("shop", "new", 2, LAST_MINUTE_OF_NOVEMBER)
    assert await store.try_start("shop", "new", 2, FIRST_MINUTE_OF_DECEMBER)
    assert await store.usage("shop", FIRST_MINUTE_OF_DECEMBER) == 1
    assert await store.usage("shop", LAST_MINUTE_OF_NOVEMBER) == 2


async def test_the_month_is_taken_in_utc(store: SqliteQuotaStore) -> None:
    # 20:00 on 30 November in New York is already December in UTC.
    new_york = timezone(timedelta(hours=-5))
    assert month_key(datetime(2026, 11, 30, 20, 0, tzinfo=new_york)) == "2026-12"
    assert await store.try_start("shop", "s1", 1, datetime(2026, 11, 30, 20, 0, tzinfo=new_york))
    assert await store.usage("shop", FIRST_MINUTE_OF_DECEMBER) == 1
    assert await store.usage("shop", LAST_MINUTE_OF_NOVEMBER) == 0


async def test_a_recording_running_across_the_month_end_counts_once(tmp_path: Path) -> None:
    path = tmp_path / "quota.sqlite3"
    first = await SqliteQuotaStore.open(path)
    assert await first.try_start("shop", "night", 5, LAST_MINUTE_OF_NOVEMBER)
    assert await first.try_start("shop", "night", 5, FIRST_MINUTE_OF_DECEMBER)
    assert await first.usage("shop", FIRST_MINUTE_OF_DECEMBER) == 0
    await first.close()
    # The same holds when the answer comes from SQLite rather than the cache.
    second = await SqliteQuotaStore.open(path)
    try:
        assert await second.try_start("shop", "night", 5, FIRST_MINUTE_OF_DECEMBER)
        assert await second.usage("shop", FIRST_MINUTE_OF_DECEMBER) == 0
        # Two months on it is a new recording.
        january = datetime(2027, 1, 1, tzinfo=UTC)
        assert await second.try_start("shop", "night", 5, january)
        assert await second.usage("shop", january) == 1
    finally:
        await second.close()


async def test_a_running_recording_is_answered_from_memory(
    store: SqliteQuotaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await store.try_start("shop", "s1", 10, NOW)

    def no_sqlite(*args: object) -> None:
        raise AssertionError("SQLite was asked about a session known to have started")

    monkeypatch.setattr(store, "_try_start", no_sqlite)
    assert await store.try_start("shop", "s1", 10, NOW)


async def test_started_tells_without_counting(tmp_path: Path) -> None:
    path = tmp_path / "quota.sqlite3"
    first = await SqliteQuotaStore.open(path)
    assert not await first.started("shop", "s1", NOW)
    assert await first.usage("shop", NOW) == 0
    assert await first.try_start("shop", "s1", 1, LAST_MINUTE_OF_NOVEMBER)
    assert await first.started("shop", "s1", FIRST_MINUTE_OF_DECEMBER)
    assert not await first.started("shop", "s2", NOW)
    await first.close()
    second = await SqliteQuotaStore.open(path)
    try:
        assert await second.started("shop", "s1", NOW)
        assert not await second.started("blog", "s1", NOW)
        assert await second.usage("shop", NOW) == 1
    finally:
        await second.close()


async def test_old_session_ids_are_pruned_but_usage_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "quota.sqlite3"
    september = datetime(2026, 9, 10, tzinfo=UTC)
    store = await SqliteQuotaStore.open(path)
    try:
        assert await store.try_start("shop", "old", 5, september)
        assert await store.try_start("shop", "recent", 5, datetime(2026, 10, 10, tzinfo=UTC))
        assert await store.try_start("shop", "new", 5, NOW)
        assert await store.usage("shop", september) == 1
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT month, session FROM sessions ORDER BY month").fetchall()
    assert rows == [("2026-10", "recent"), ("2026-11", "new")]


async def test_an_upgrade_mid_month_keeps_what_was_used(store: SqliteQuotaStore) -> None:
    assert await start_many(store, 10, limit=10) == [True] * 10
    assert not await store.try_start("shop", "more", 10, NOW)
    more = [await store.try_start("shop", f"more{i}", 50, NOW) for i in range(41)]
    assert more == [True] * 40 + [False]
    assert await store.usage("shop", NOW) == 50


async def test_usage_and_started_sessions_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "quota.sqlite3"
    first = await SqliteQuotaStore.open(path)
    assert await start_many(first, 3, limit=3) == [True] * 3
    await first.close()

    second = await SqliteQuotaStore.open(path)
    try:
        assert await second.usage("shop", NOW) == 3
        assert await second.try_start("shop", "s1", 3, NOW)
        assert not await second.try_start("shop", "s3", 3, NOW)
        assert await second.usage("shop", NOW) == 3
    finally:
        await second.close()


async def test_concurrent_starts_for_the_last_slots_never_overshoot(
    store: SqliteQuotaStore,
) -> None:
    assert await start_many(store, 7, limit=10) == [True] * 7
    results = await asyncio.gather(*(store.try_start("shop", f"r{i}", 10, NOW) for i in range(20)))
    assert results.count(True) == 3
    assert await store.usage("shop", NOW) == 10


async def test_two_stores_on_one_file_share_the_limit(tmp_path: Path) -> None:
    # Two processes (here two connections on two threads) on the same file.
    path = tmp_path / "quota.sqlite3"
    one, two = await SqliteQuotaStore.open(path), await SqliteQuotaStore.open(path)
    try:
        results = await asyncio.gather(
            *((one if i % 2 else two).try_start("shop", f"r{i}", 5, NOW) for i in range(40))
        )
        assert results.count(True) == 5
        assert await one.usage("shop", NOW) == await two.usage("shop", NOW) == 5
    finally:
        await one.close()
        await two.close()


async def test_a_naive_datetime_is_refused(store: SqliteQuotaStore) -> None:
    naive = datetime(2026, 11, 15, 12, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.try_start("shop", "s1", 10, naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.usage("shop", naive)


async def test_sites_are_counted_apart(store: SqliteQuotaStore) -> None:
    assert await start_many(store, 2, limit=2, site="shop") == [True, True]
    assert not await store.try_start("shop", "x", 2, NOW)
    # The same session id on another site is another recording.
    assert await store.try_start("blog", "s0", 2, NOW)
    assert await store.usage("blog", NOW) == 1
    assert await store.usage("shop", NOW) == 2


async def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = await SqliteQuotaStore.open(tmp_path / "quota.sqlite3")
    await store.close()
    await store.close()
    with pytest.raises(QuotaStoreError, match="closed"):
        await store.usage("shop", NOW)


async def test_a_file_that_is_not_a_database_is_named(tmp_path: Path) -> None:
    path = tmp_path / "quota.sqlite3"
    path.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(QuotaStoreError, match=r"quota\.sqlite3"):
        await SqliteQuotaStore.open(path)


async def test_the_file_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "quota.sqlite3"
    store = await SqliteQuotaStore.open(path)
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_herd_of_batches_of_one_new_session_costs_one_call_each(
    store: SqliteQuotaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    run = store._run

    async def counted(call: Any, *args: object) -> Any:
        calls.append(call.__name__)  # each database call, made on the store's thread
        return await run(call, *args)

    monkeypatch.setattr(store, "_run", counted)
    # Twenty batches of a new recording arrive together, as the handler asks for them.
    assert (
        await asyncio.gather(*(store.started("shop", "herd", NOW) for _ in range(20)))
        == [False] * 20
    )
    assert (
        await asyncio.gather(*(store.try_start("shop", "herd", 10, NOW) for _ in range(20)))
        == [True] * 20
    )
    assert calls == ["_find", "_try_start"]
    assert await store.usage("shop", NOW) == 1
