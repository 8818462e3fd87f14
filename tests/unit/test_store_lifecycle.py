"""Finalizing, retention, erasure, crash leftovers and the sweeper, on a real store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import msgspec
import pytest

from gateway.metrics import Metrics
from gateway.pipeline.batcher import new_batch_id
from gateway.store.engine import RecordingStore
from gateway.store.lifecycle import Sweeper
from gateway.store.recordings import Recording, RecordingQuery, StoreError
from tests.unit.test_store_support import (
    MINUTE_MS,
    MS,
    T0,
    Clock,
    click,
    clicks,
    page_load,
    record,
    rows,
    segment_files,
    upstream,
)

DAY = 86400.0
LIVE = RecordingQuery(live=True, limit=500)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(tmp_path: Path, clock: Clock) -> AsyncIterator[RecordingStore]:
    opened = await RecordingStore.open(tmp_path, clock=clock)
    yield opened
    await opened.close()


async def sessions(store: RecordingStore, query: RecordingQuery = LIVE) -> set[str]:
    found, _ = await store.list(query)
    return {r.session for r in found}


async def by_session(store: RecordingStore) -> dict[str, Recording]:
    found, _ = await store.list(LIVE)
    return {r.session: r for r in found}


async def test_finalize_idle_waits_finalize_after_since_the_last_ingest(
    store: RecordingStore, clock: Clock
) -> None:
    await store.ingest(upstream(record(page_load(MS), session="early")))
    clock.advance(100)
    await store.ingest(upstream(record(page_load(MS), session="late", site="blog")))
    clock.advance(79)
    assert await store.finalize_idle(180) == {}
    assert await sessions(store, RecordingQuery()) == set()

    clock.advance(1)  # "early" has now been idle for exactly 180 s
    assert await store.finalize_idle(180) == {"shop": 1}
    assert await sessions(store, RecordingQuery()) == {"early"}
    assert await sessions(store) == {"early", "late"}

    clock.advance(100)
    assert await store.finalize_idle(180) == {"blog": 1}
    assert await store.finalize_idle(180) == {}  # counted once
    assert await sessions(store, RecordingQuery()) == {"early", "late"}


async def test_new_events_put_finalizing_off(store: RecordingStore, clock: Clock) -> None:
    await store.ingest(upstream(record(page_load(MS), seq=0)))
    clock.advance(170)
    await store.ingest(upstream(record([click(MS + 170_000)], seq=1)))
    clock.advance(170)
    assert await store.finalize_idle(180) == {}
    clock.advance(10)
    assert await store.finalize_idle(180) == {"shop": 1}


async def test_expire_deletes_rows_and_files_but_not_the_monthly_count(
    store: RecordingStore, clock: Clock, tmp_path: Path
) -> None:
    old_batch = upstream(record(page_load(MS), session="old", visitor="v-1"))
    await store.ingest(old_batch)
    clock.advance(5 * DAY)  # now in June
    await store.ingest(upstream(record(page_load(MS + 5 * DAY * 1000), session="new")))
    assert await store.created_in_month("shop", "2026-05") == 1
    assert await store.created_in_month("shop", "2026-06") == 1
    recordings = await by_session(store)
    old, new = recordings["old"], recordings["new"]

    clock.advance(5 * DAY - 1)
    assert await store.expire(10) == {}
    clock.advance(1)  # "old" was created exactly 10 days ago
    assert await store.expire(10) == {"shop": 1}

    assert await store.get(old.id) is None
    assert await store.events_json(old.id) is None
    assert await store.get(new.id) == new
    assert [p.stem for p in segment_files(tmp_path)] == [new.id]
    assert rows(tmp_path, "SELECT DISTINCT recording_id FROM chunks") == [(new.id,)]
    assert rows(tmp_path, "SELECT DISTINCT recording_id FROM pages") == [(new.id,)]
    assert await store.stored("shop") == 1
    # Usage is what was created, deleted or not.
    assert await store.created_in_month("shop", "2026-05") == 1
    assert await store.created_in_month("shop", "2026-06") == 1
    # The idempotency table forgets batches as old as the recordings it deleted.
    assert rows(tmp_path, f"SELECT id FROM batches WHERE id = '{old_batch.id}'") == []
    assert len(rows(tmp_path, "SELECT id FROM batches")) == 1


async def test_erase_visitor_deletes_only_that_visitors_recordings(
    store: RecordingStore, tmp_path: Path
) -> None:
    await store.ingest(
        upstream(
            record(page_load(MS), session="a", visitor="v-1"),
            record(page_load(MS), session="b", visitor="v-1", site="blog"),
            record(page_load(MS), session="c", visitor="v-10"),
            record(page_load(MS), session="d", visitor=None),
        )
    )
    recordings = await by_session(store)
    assert await store.erase_visitor("v-1", site="shop") == {"shop": 1}
    assert await sessions(store) == {"b", "c", "d"}
    assert await store.erase_visitor("v-1") == {"blog": 1}
    assert await store.erase_visitor("v-1") == {}
    assert await sessions(store) == {"c", "d"}
    assert await store.get(recordings["a"].id) is None
    assert await store.events_json(recordings["b"].id) is None
    kept = sorted(recordings[s].id for s in ("c", "d"))
    assert [p.stem for p in segment_files(tmp_path)] == kept
    assert {r[0] for r in rows(tmp_path, "SELECT recording_id FROM chunks")} == set(kept)
    assert await store.created_in_month("shop", "2026-05") == 3


async def test_open_removes_segment_files_of_unknown_recordings(
    tmp_path: Path, clock: Clock
) -> None:
    store = await RecordingStore.open(tmp_path, clock=clock)
    await store.ingest(upstream(record(page_load(MS))))
    [kept] = segment_files(tmp_path)
    await store.close()
    # A crash after a delete's commit, or before a new recording's first commit.
    orphan_id = new_batch_id()
    orphan = tmp_path / "segments" / orphan_id[:2] / f"{orphan_id}.seg"
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"half a chunk")
    stranger = tmp_path / "segments" / "notes.txt"
    stranger.write_text("not ours")

    store = await RecordingStore.open(tmp_path, clock=clock)
    try:
        assert segment_files(tmp_path) == [kept]
        assert stranger.exists()  # only segment files are ours to remove
        assert len((await store.list(LIVE))[0]) == 1
    finally:
        await store.close()


async def test_a_sweep_finalizes_expires_and_counts(store: RecordingStore, clock: Clock) -> None:
    metrics = Metrics()
    sweeper = Sweeper(store, finalize_after=180, retention_days=10, interval=60, metrics=metrics)

    def count(name: str, site: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"site": site})

    await store.ingest(upstream(record(page_load(MS))))
    await sweeper.sweep_once()
    assert count("gateway_recordings_finalized_total", "shop") is None
    clock.advance(180)
    await sweeper.sweep_once()
    assert count("gateway_recordings_finalized_total", "shop") == 1
    await sweeper.sweep_once()
    assert count("gateway_recordings_finalized_total", "shop") == 1
    assert count("gateway_recordings_expired_total", "shop") is None
    clock.advance(10 * DAY)
    await sweeper.sweep_once()
    assert count("gateway_recordings_expired_total", "shop") == 1
    assert await store.stored("shop") == 0


async def test_a_sweep_without_metrics(store: RecordingStore, clock: Clock) -> None:
    sweeper = Sweeper(store, finalize_after=0, retention_days=1, interval=1)
    await store.ingest(upstream(record(page_load(MS))))
    await sweeper.sweep_once()
    assert await sessions(store, RecordingQuery()) == {"sess-1"}


class FlakyStore:
    """Fails its first finalize with StoreError, then reports each call."""

    def __init__(self) -> None:
        self.calls = 0
        self.recovered = asyncio.Event()

    async def finalize_idle(self, finalize_after: float) -> dict[str, int]:
        self.calls += 1
        if self.calls == 1:
            raise StoreError("disk full")
        return {}

    async def expire(self, retention_days: float) -> dict[str, int]:
        self.recovered.set()
        return {}


async def test_the_sweeper_survives_a_store_error(caplog: pytest.LogCaptureFixture) -> None:
    flaky = FlakyStore()
    sweeper = Sweeper(
        cast(RecordingStore, flaky), finalize_after=180, retention_days=10, interval=0.001
    )
    task = asyncio.create_task(sweeper.run())
    try:
        await asyncio.wait_for(flaky.recovered.wait(), timeout=10)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert flaky.calls >= 2
    assert "recording sweep failed" in caplog.text


@pytest.mark.parametrize(
    ("finalize_after", "retention_days", "interval", "name"),
    [(-1, 10, 60, "finalize_after"), (180, 0, 60, "retention_days"), (180, 10, 0, "interval")],
)
def test_sweeper_settings_are_checked(
    finalize_after: float, retention_days: float, interval: float, name: str
) -> None:
    with pytest.raises(ValueError, match=f"^{name}: "):
        Sweeper(
            cast(RecordingStore, None),
            finalize_after=finalize_after,
            retention_days=retention_days,
            interval=interval,
        )


def test_t0_is_in_may() -> None:
    # The month assertions above rely on it.
    assert T0 < 1_780_358_400  # 2026-06-01T00:00:00Z
    assert T0 + 5 * DAY >= 1_780_358_400


async def test_an_erasure_stays_an_erasure_when_old_batches_arrive_late(
    store: RecordingStore, clock: Clock
) -> None:
    """Batches received before the erasure (still in an edge's spool, or retried) are
    dropped on arrival; a visit after it is recorded again."""
    await store.ingest(upstream(record(page_load(MS), session="a", visitor="v-1")))
    clock.advance(60)
    assert await store.erase_visitor("v-1") == {"shop": 1}
    late = [
        record(clicks(MS + 1000, 3), session="a", seq=1, visitor="v-1"),  # same visitor
        record(clicks(MS + 2000, 3), session="a", seq=2),  # the erased session, no visitor
        record(page_load(MS), session="z", visitor="v-1", site="blog"),  # erased everywhere
    ]
    result = await store.ingest(upstream(*late))
    assert result.erased == 3 and result.chunks == 0
    assert await sessions(store) == set()
    # A new visit, received after the erasure, is a new recording.
    after = msgspec.structs.replace(
        record(page_load(MS + 10 * MINUTE_MS), session="b", visitor="v-1"),
        received_at=clock.now + 1,
    )
    result = await store.ingest(upstream(after))
    assert result.erased == 0 and result.chunks == 1
    assert await sessions(store) == {"b"}


async def test_an_erasure_for_one_site_leaves_the_others(
    store: RecordingStore, clock: Clock
) -> None:
    clock.advance(60)
    assert await store.erase_visitor("v-1", site="shop") == {}
    result = await store.ingest(
        upstream(
            record(page_load(MS), session="a", visitor="v-1"),
            record(page_load(MS), session="b", visitor="v-1", site="blog"),
        )
    )
    assert result.erased == 1
    assert await sessions(store) == {"b"}
