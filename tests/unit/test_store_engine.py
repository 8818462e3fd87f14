"""The recording store's ingest: batches -> recordings, dedupe, order, sessions, restarts."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.collect.schema import Custom, CustomEvent, Event
from gateway.store.engine import RecordingStore
from gateway.store.recordings import Recording, RecordingQuery, StoreError
from tests.unit.test_store_support import (
    MINUTE_MS,
    MONTH,
    MS,
    T0,
    URL,
    Clock,
    click,
    clicks,
    identify,
    meta,
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
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(tmp_path: Path, clock: Clock) -> AsyncIterator[RecordingStore]:
    opened = await RecordingStore.open(tmp_path, clock=clock)
    yield opened
    await opened.close()


async def all_recordings(store: RecordingStore) -> list[Recording]:
    found, _ = await store.list(LIVE)
    return found


async def only_recording(store: RecordingStore) -> Recording:
    found = await all_recordings(store)
    assert len(found) == 1, found
    return found[0]


async def test_a_batch_becomes_one_recording_with_its_metadata(
    store: RecordingStore, tmp_path: Path
) -> None:
    first: list[Event] = [
        *page_load(MS),
        *clicks(MS + 100, 3),
        identify(MS + 500, id="u-42", name="Ada Lovelace", email="ada@example.com"),
        typed(MS + 600),
    ]
    second: list[Event] = [
        meta(MS + 3000, "https://shop.test/checkout"),
        click(MS + 3100),
        identify(MS + 3200, id="u-42", name="Ada L."),  # the last call wins whole
        meta(MS + 3300, URL),  # seen before: not listed twice
        click(MS + 4000),
    ]
    result = await store.ingest(
        upstream(
            record(first, seq=0, visitor="v-1", device="mobile", browser="Safari"),
            record(second, seq=1, visitor="v-1", device="mobile", browser="Safari"),
        )
    )
    assert not result.duplicate
    assert (result.chunks, result.skipped) == (2, 0)
    assert result.events == {"shop": len(first) + len(second)}
    assert result.started == {"shop": 1}

    got = await only_recording(store)
    assert len(got.id) == 32 and int(got.id, 16) >= 0
    assert (got.site, got.session, got.visitor) == ("shop", "sess-1", "v-1")
    assert (got.identified_id, got.name, got.email) == ("u-42", "Ada L.", None)
    assert got.pages == [URL, "https://shop.test/checkout"]
    assert (got.device, got.browser) == ("mobile", "Safari")
    assert got.events == len(first) + len(second)
    assert (got.started_at, got.ended_at, got.duration_ms) == (MS, MS + 4000, 4000)
    assert (got.created_at, got.last_seen_at) == (T0, T0)
    assert not got.finalized
    [segment] = segment_files(tmp_path)
    assert segment.name == f"{got.id}.seg"
    assert got.bytes == segment.stat().st_size > 0
    assert await store.get(got.id) == got
    assert await store.stored("shop") == 1
    assert await store.created_in_month("shop", MONTH) == 1
    body = await store.events_json(got.id)
    assert timestamps(body) == sorted(e.timestamp for e in first + second)


async def test_a_repeated_batch_id_is_a_duplicate_and_stores_nothing(
    store: RecordingStore, tmp_path: Path
) -> None:
    batch = upstream(record([*page_load(MS), *clicks(MS + 10, 5)]))
    assert not (await store.ingest(batch)).duplicate
    before = await only_recording(store)
    size = segment_files(tmp_path)[0].stat().st_size

    again = await store.ingest(batch)
    assert again.duplicate
    assert (again.chunks, again.skipped, again.events, again.started) == (0, 0, {}, {})
    assert await only_recording(store) == before
    assert segment_files(tmp_path)[0].stat().st_size == size
    assert rows(tmp_path, "SELECT count(*) FROM chunks") == [(1,)]
    assert await store.created_in_month("shop", MONTH) == 1


async def test_a_browser_batch_sent_again_in_another_batch_is_stored_once(
    store: RecordingStore,
) -> None:
    r0 = record([*page_load(MS), click(MS + 10)], seq=0)
    r1 = record(clicks(MS + 100, 2), seq=1)
    await store.ingest(upstream(r0))
    result = await store.ingest(upstream(r0, r1))  # the edge re-sent r0 after a failure
    assert (result.duplicate, result.chunks, result.skipped) == (False, 1, 1)
    assert result.events == {"shop": 2}
    got = await only_recording(store)
    assert got.events == 7
    assert timestamps(await store.events_json(got.id)) == [
        MS,
        MS,
        MS + 1,
        MS + 2,
        MS + 10,
        MS + 100,
        MS + 200,
    ]


async def test_the_same_browser_batch_twice_in_one_batch_is_stored_once(
    store: RecordingStore,
) -> None:
    r0 = record([*page_load(MS)], seq=0)
    result = await store.ingest(upstream(r0, r0))
    assert (result.chunks, result.skipped) == (1, 1)
    assert (await only_recording(store)).events == 4


async def test_out_of_order_arrival_replays_in_timestamp_order(store: RecordingStore) -> None:
    a, b, c = "https://shop.test/a", "https://shop.test/b", "https://shop.test/c"
    seq1: list[Event] = [*page_load(MS, a), *clicks(MS + 10, 3)]
    seq2: list[Event] = [meta(MS + 1000, b), *clicks(MS + 1010, 3)]
    seq3: list[Event] = [meta(MS + 2000, c), typed(MS + 2010), click(MS + 2020)]
    await store.ingest(upstream(record(seq3, seq=3, url=c)))
    await store.ingest(upstream(record(seq2, seq=2, url=b), record(seq1, seq=1, url=a)))

    got = await only_recording(store)
    everything = seq1 + seq2 + seq3
    assert got.events == len(everything)
    assert (got.started_at, got.ended_at) == (MS, MS + 2020)
    assert got.pages == [a, b, c]  # in the order visited, not the order received
    body = await store.events_json(got.id)
    assert body is not None
    assert timestamps(body) == [e.timestamp for e in everything]
    assert [e["type"] for e in json.loads(body)] == [e.__struct_config__.tag for e in everything]


async def test_pages_are_listed_in_the_order_visited(store: RecordingStore) -> None:
    a, b = "https://shop.test/a", "https://shop.test/b"
    # A at 0, B at 1 s, A again at 2 s; the chunks arrive last first.
    await store.ingest(upstream(record([meta(MS + 2000, a)], page="p3", url=a)))
    await store.ingest(upstream(record([meta(MS + 1000, b)], page="p2", url=b)))
    assert (await only_recording(store)).pages == [b, a]  # as far as the store knows
    await store.ingest(upstream(record(page_load(MS, a), page="p1", url=a)))
    assert (await only_recording(store)).pages == [a, b]


async def test_two_sessions_make_two_recordings(store: RecordingStore) -> None:
    result = await store.ingest(
        upstream(
            record([*page_load(MS), click(MS + 5)], session="alice"),
            record([*page_load(MS + 50), *clicks(MS + 60, 4)], session="bob"),
        )
    )
    assert result.started == {"shop": 2}
    by_session = {r.session: r for r in await all_recordings(store)}
    assert set(by_session) == {"alice", "bob"}
    assert by_session["alice"].events == 5
    assert by_session["bob"].events == 8
    assert by_session["alice"].id != by_session["bob"].id
    assert len(timestamps(await store.events_json(by_session["bob"].id))) == 8
    await store.ingest(upstream(record(page_load(MS + 90), session="carol")))
    assert await store.created_in_month("shop", MONTH) == 3


async def test_a_long_pause_starts_a_new_recording_and_late_chunks_find_theirs(
    store: RecordingStore,
) -> None:
    later = MS + 120 * MINUTE_MS  # two hours on: well past the 30 minute gap
    await store.ingest(upstream(record([*page_load(MS), click(MS + 1000)], seq=0)))
    result = await store.ingest(upstream(record([*page_load(later), click(later + 5)], seq=5)))
    assert result.started == {"shop": 1}
    assert len(await all_recordings(store)) == 2

    # Late arrivals: one ten minutes after the first visit, one just before the second.
    await store.ingest(
        upstream(
            record([click(later - 5 * MINUTE_MS)], seq=4),
            record([click(MS + 10 * MINUTE_MS)], seq=1),
        )
    )
    second, first = await all_recordings(store)  # newest first
    assert first.started_at == MS
    assert first.ended_at == MS + 10 * MINUTE_MS
    assert second.started_at == later - 5 * MINUTE_MS
    assert timestamps(await store.events_json(first.id)) == [
        MS,
        MS,
        MS + 1,
        MS + 2,
        MS + 1000,
        MS + 10 * MINUTE_MS,
    ]
    assert timestamps(await store.events_json(second.id))[0] == later - 5 * MINUTE_MS
    assert (first.events, second.events) == (6, 6)


async def test_a_chunk_within_the_gap_of_two_recordings_joins_the_closest(
    tmp_path: Path, clock: Clock
) -> None:
    store = await RecordingStore.open(tmp_path, session_gap=600, clock=clock)  # 10 minutes
    try:
        await store.ingest(upstream(record([click(MS)], seq=0)))
        await store.ingest(upstream(record([click(MS + 25 * MINUTE_MS)], seq=1)))
        assert len(await all_recordings(store)) == 2
        # 8 minutes after the first, 17 before the second: only the first is in reach.
        await store.ingest(upstream(record([click(MS + 8 * MINUTE_MS)], seq=2)))
        # 17 minutes: 9 after the first's end, 8 before the second: both in reach, the
        # second is closer.
        await store.ingest(upstream(record([click(MS + 17 * MINUTE_MS)], seq=3)))
        # 12 minutes: 4 after the first's end, 5 before the second: the first is closer.
        await store.ingest(upstream(record([click(MS + 12 * MINUTE_MS)], seq=4)))
        second, first = await all_recordings(store)
        assert timestamps(await store.events_json(first.id)) == [
            MS,
            MS + 8 * MINUTE_MS,
            MS + 12 * MINUTE_MS,
        ]
        assert timestamps(await store.events_json(second.id)) == [
            MS + 17 * MINUTE_MS,
            MS + 25 * MINUTE_MS,
        ]
    finally:
        await store.close()


async def test_several_edge_nodes_feed_one_session(store: RecordingStore, tmp_path: Path) -> None:
    # The visitor's requests were balanced over three edge nodes; their batches interleave.
    page_a = [*page_load(MS), *clicks(MS + 10, 2)]
    page_a_more = clicks(MS + 500, 2)
    page_b = [*page_load(MS + 1000, "https://shop.test/b"), typed(MS + 1100)]
    await store.ingest(upstream(record(page_a_more, seq=1), node="edge-b"))
    await store.ingest(
        upstream(record(page_b, page="page-2", url="https://shop.test/b"), node="edge-c")
    )
    await store.ingest(upstream(record(page_a, seq=0), node="edge-a"))

    got = await only_recording(store)
    everything = page_a + page_a_more + page_b
    assert got.events == len(everything)
    assert got.pages == [URL, "https://shop.test/b"]
    assert timestamps(await store.events_json(got.id)) == [e.timestamp for e in everything]
    nodes = rows(tmp_path, "SELECT node FROM batches ORDER BY node")
    assert nodes == [("edge-a",), ("edge-b",), ("edge-c",)]


async def test_a_restart_keeps_everything(tmp_path: Path, clock: Clock) -> None:
    batch = upstream(record([*page_load(MS), *clicks(MS + 10, 3)], visitor="v-1"))
    store = await RecordingStore.open(tmp_path, clock=clock)
    await store.ingest(batch)
    before = await only_recording(store)
    replay = await store.events_json(before.id)
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.get(before.id)

    clock.advance(60)
    store = await RecordingStore.open(tmp_path, clock=clock)
    try:
        assert await store.get(before.id) == before
        assert await store.events_json(before.id) == replay
        assert (await store.ingest(batch)).duplicate
        # The session goes on: its next batch joins the same recording.
        result = await store.ingest(upstream(record([click(MS + 60_000)], seq=1)))
        assert result.started == {}
        after = await only_recording(store)
        assert after.id == before.id
        assert (after.events, after.last_seen_at) == (before.events + 1, T0 + 60)
        assert await store.created_in_month("shop", MONTH) == 1
    finally:
        await store.close()


async def test_the_latest_identify_call_wins_whatever_the_arrival_order(
    store: RecordingStore,
) -> None:
    late = record([identify(MS + 5000, id="u-2", name="Later", email="later@x.test")], seq=2)
    early = record([*page_load(MS), identify(MS + 10, id="u-1", name="Early")], seq=1)
    ignored = record(
        [
            identify(MS + 20, id=7, name=["not", "text"]),  # not strings: not kept
            CustomEvent(timestamp=MS + 30, data=Custom(tag="identify", payload="u-9")),
        ],
        seq=3,
    )
    await store.ingest(upstream(late))
    await store.ingest(upstream(early, ignored))
    got = await only_recording(store)
    assert (got.identified_id, got.name, got.email) == ("u-2", "Later", "later@x.test")


async def test_identify_with_non_string_values_keeps_only_strings(store: RecordingStore) -> None:
    await store.ingest(
        upstream(record([*page_load(MS), identify(MS + 10, id=7, name="Bo", email=None)]))
    )
    got = await only_recording(store)
    assert (got.identified_id, got.name, got.email) == (None, "Bo", None)


async def test_visitor_device_and_browser_take_the_first_known_value(
    store: RecordingStore,
) -> None:
    await store.ingest(
        upstream(
            record(page_load(MS), seq=0, visitor=None, device="", browser=""),
            record([click(MS + 10)], seq=1, visitor="v-1", device="mobile", browser="Safari"),
            record([click(MS + 20)], seq=2, visitor="v-2", device="desktop", browser="Chrome"),
        )
    )
    got = await only_recording(store)
    assert (got.visitor, got.device, got.browser) == ("v-1", "mobile", "Safari")


async def test_a_late_chunk_joins_a_finalized_recording_which_stays_finalized(
    store: RecordingStore, clock: Clock
) -> None:
    await store.ingest(upstream(record(page_load(MS), seq=0)))
    clock.advance(200)
    assert await store.finalize_idle(180) == {"shop": 1}
    clock.advance(5)
    result = await store.ingest(upstream(record([click(MS + 100)], seq=1)))
    assert result.started == {}
    got = await only_recording(store)
    assert got.finalized
    assert (got.events, got.last_seen_at) == (5, T0 + 205)
    assert await store.finalize_idle(180) == {}


async def test_sites_are_counted_apart_and_empty_or_timeless_batches_are_ignored(
    store: RecordingStore,
) -> None:
    result = await store.ingest(
        upstream(
            record(page_load(MS), site="shop"),
            record([*page_load(MS), click(MS + 3)], site="blog"),
            record([], site="shop", session="empty"),
            record([click(math.inf), click(math.nan)], site="shop", session="timeless"),
            record([click(MS + 9), click(math.inf)], site="shop", seq=1),
        )
    )
    assert result.events == {"shop": 5, "blog": 5}
    assert result.started == {"shop": 1, "blog": 1}
    assert result.chunks == 3
    assert await store.stored("shop") == 1
    assert await store.stored("blog") == 1
    assert await store.stored("nowhere") == 0
    shop = (await store.list(RecordingQuery(site="shop", live=True)))[0][0]
    assert (shop.events, shop.ended_at) == (5, MS + 9)


async def test_event_times_no_date_can_show_are_timeless_too(store: RecordingStore) -> None:
    # Browser clocks are untrusted: a time past year 9999 (or before year 1) cannot be
    # shown in RFC 3339, so it must not become a recording's start or end.
    result = await store.ingest(
        upstream(
            record([*page_load(MS), click(1e18), click(-1e18)]),
            record([click(2.6e14), click(-6.3e13)], session="far"),
        )
    )
    assert result.chunks == 1 and result.events == {"shop": 4}
    got = await only_recording(store)
    assert (got.events, got.started_at, got.ended_at) == (4, MS, MS + 2)
    assert timestamps(await store.events_json(got.id)) == [MS, MS, MS + 1, MS + 2]


async def test_unknown_ids_and_bad_arguments(store: RecordingStore) -> None:
    assert await store.get("0" * 32) is None
    assert await store.events_json("0" * 32) is None
    assert await store.created_in_month("shop", MONTH) == 0
    for month in ("May 2026", "2026-5", "2026-13", "2026-05-01"):
        with pytest.raises(ValueError, match=r"^month: "):
            await store.created_in_month("shop", month)
    with pytest.raises(ValueError, match=r"^retention_days: "):
        await store.expire(0)


async def test_session_gap_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^session_gap: "):
        await RecordingStore.open(tmp_path, session_gap=0)
