"""Listing recordings: every filter, live or finalized, cursor paging, bad input."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.collect.schema import Event
from gateway.store.engine import RecordingStore
from gateway.store.recordings import Recording, RecordingQuery
from tests.unit.test_store_support import (
    MS,
    URL,
    Clock,
    click,
    identify,
    meta,
    page_load,
    record,
    upstream,
)

HOUR_MS = 3_600_000.0


def visit(start: float, duration_ms: float, *urls: str) -> list[Event]:
    events: list[Event] = [*page_load(start, urls[0])]
    events += [meta(start + 10 + i, url) for i, url in enumerate(urls[1:])]
    events.append(click(start + duration_ms))
    return events


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RecordingStore]:
    """Three finalized recordings and a live one:

    * ada: shop, MS, 10 s, /home then /pricing, desktop Chrome, v-1, identified u-1
    * ben: shop, MS + 1 h, 60 s, /blog, mobile Safari, v-2
    * cy: blog site, MS + 2 h, 2 s, /checkout?step=1, tablet Firefox, no visitor
    * dan: shop, MS + 3 h, live
    """
    clock = Clock()
    opened = await RecordingStore.open(tmp_path, clock=clock)
    ada = [
        *visit(MS, 10_000, "https://shop.test/home", "https://shop.test/Pricing"),
        identify(MS + 50, id="u-1", name="Ada Lovelace", email="Ada@Example.com"),
    ]
    await opened.ingest(
        upstream(
            record(ada, session="ada", visitor="v-1", url="https://shop.test/home"),
            record(
                visit(MS + HOUR_MS, 60_000, "https://shop.test/blog"),
                session="ben",
                url="https://shop.test/blog",
                visitor="v-2",
                device="mobile",
                browser="Safari",
            ),
            record(
                visit(MS + 2 * HOUR_MS, 2_000, "https://blog.test/checkout?step=1"),
                site="blog",
                session="cy",
                url="https://blog.test/checkout?step=1",
                device="tablet",
                browser="Firefox",
            ),
        )
    )
    clock.advance(200)
    await opened.finalize_idle(180)
    await opened.ingest(
        upstream(record(visit(MS + 3 * HOUR_MS, 1_000, "https://shop.test/"), session="dan"))
    )
    yield opened
    await opened.close()


async def sessions(store: RecordingStore, **query: object) -> list[str]:
    found, cursor = await store.list(RecordingQuery(**query))  # type: ignore[arg-type]
    assert cursor is None
    return [r.session for r in found]


async def test_newest_first_finalized_only_unless_live(store: RecordingStore) -> None:
    assert await sessions(store) == ["cy", "ben", "ada"]
    assert await sessions(store, live=True) == ["dan", "cy", "ben", "ada"]


async def test_filter_by_site(store: RecordingStore) -> None:
    assert await sessions(store, site="blog") == ["cy"]
    assert await sessions(store, site="shop", live=True) == ["dan", "ben", "ada"]
    assert await sessions(store, site="nowhere") == []


async def test_filter_by_start_time(store: RecordingStore) -> None:
    assert await sessions(store, started_from=MS + HOUR_MS) == ["cy", "ben"]
    assert await sessions(store, started_to=MS + HOUR_MS) == ["ada"]  # exclusive
    assert await sessions(store, started_from=MS + 1, started_to=MS + 2 * HOUR_MS) == ["ben"]
    assert await sessions(store, started_from=MS + 2 * HOUR_MS + 1) == []


async def test_filter_by_duration(store: RecordingStore) -> None:
    assert await sessions(store, min_duration_ms=10_000) == ["ben", "ada"]
    assert await sessions(store, min_duration_ms=10_001) == ["ben"]
    assert await sessions(store, min_duration_ms=0) == ["cy", "ben", "ada"]


async def test_filter_by_url(store: RecordingStore) -> None:
    assert await sessions(store, url="PRICING") == ["ada"]  # any page, any case
    assert await sessions(store, url="shop.test/") == ["ben", "ada"]
    assert await sessions(store, url="checkout?step=1") == ["cy"]
    assert await sessions(store, url="%") == []  # no LIKE wildcards
    assert await sessions(store, url="/cart") == []


async def test_filter_by_device_and_browser(store: RecordingStore) -> None:
    assert await sessions(store, device="MOBILE") == ["ben"]
    assert await sessions(store, device="mob") == []  # exact
    assert await sessions(store, browser="firefox") == ["cy"]
    assert await sessions(store, browser="chrome", device="desktop") == ["ada"]


@pytest.mark.parametrize(
    ("visitor", "expected"),
    [
        ("v-2", ["ben"]),  # visitor id
        ("u-1", ["ada"]),  # identified id
        ("lovelace", ["ada"]),  # part of the name, any case
        ("ada@example", ["ada"]),  # part of the email
        ("v-", []),  # ids match exactly
        ("nobody", []),
        ("", []),  # not "every named visitor"
    ],
)
async def test_filter_by_visitor(store: RecordingStore, visitor: str, expected: list[str]) -> None:
    assert await sessions(store, visitor=visitor) == expected


async def test_cursor_pages_through_everything_without_gaps_or_repeats(tmp_path: Path) -> None:
    store = await RecordingStore.open(tmp_path / "paging", clock=Clock())
    try:
        # Seven recordings, started in pairs at the same millisecond (the id breaks ties).
        await store.ingest(
            upstream(
                *[record(visit(MS + (i // 2) * 1000, 10, URL), session=f"s{i}") for i in range(7)]
            )
        )
        everything, cursor = await store.list(RecordingQuery(live=True, limit=500))
        assert cursor is None and len(everything) == 7
        keys = [(r.started_at, r.id) for r in everything]
        assert keys == sorted(keys, reverse=True)

        pages: list[list[Recording]] = []
        cursor = None
        while True:
            found, cursor = await store.list(RecordingQuery(live=True, limit=3, cursor=cursor))
            pages.append(found)
            if cursor is None:
                break
            assert isinstance(cursor, str) and cursor.isascii()
        assert [len(p) for p in pages] == [3, 3, 1]
        assert [r.id for p in pages for r in p] == [r.id for r in everything]
        # A full last page says there is none after it only when nothing is left.
        found, cursor = await store.list(RecordingQuery(live=True, limit=7))
        assert cursor is None
        found, cursor = await store.list(RecordingQuery(live=True, limit=6))
        assert cursor is not None
        rest, end = await store.list(RecordingQuery(live=True, limit=6, cursor=cursor))
        assert [r.id for r in found + rest] == [r.id for r in everything]
        assert end is None
    finally:
        await store.close()


async def test_the_cursor_keeps_the_filters_own_order(store: RecordingStore) -> None:
    first, cursor = await store.list(RecordingQuery(site="shop", live=True, limit=2))
    assert [r.session for r in first] == ["dan", "ben"]
    rest, end = await store.list(RecordingQuery(site="shop", live=True, limit=2, cursor=cursor))
    assert [r.session for r in rest] == ["ada"]
    assert end is None


@pytest.mark.parametrize("limit", [0, -1, 501, 10_000])
async def test_a_limit_out_of_range_is_refused(store: RecordingStore, limit: int) -> None:
    with pytest.raises(ValueError, match=r"^limit: "):
        await store.list(RecordingQuery(limit=limit))


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "!!!",
        "abc",
        "é",
        b64(b"not json"),
        b64(b"[1.0]"),
        b64(b'[1.0, "not-an-id"]'),
        b64(b'["x", "0123456789abcdef0123456789abcdef"]'),
        b64(b'[1e999, "0123456789abcdef0123456789abcdef"]'),
        "A" * 1000,
    ],
)
async def test_a_malformed_cursor_is_refused(store: RecordingStore, cursor: str) -> None:
    with pytest.raises(ValueError, match=r"^cursor: "):
        await store.list(RecordingQuery(cursor=cursor))


async def test_a_well_formed_cursor_from_elsewhere_just_continues(store: RecordingStore) -> None:
    cursor = b64(b'[%r, "ffffffffffffffffffffffffffffffff"]' % (MS + HOUR_MS,))
    found, _ = await store.list(RecordingQuery(live=True, cursor=cursor))
    assert [r.session for r in found] == ["ben", "ada"]
