"""Builders shared by the store tests (test_store_*.py): real schema structs, a clock.

This module holds no tests.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from gateway.collect.schema import (
    Batch,
    Custom,
    CustomEvent,
    DocumentNode,
    DomContentLoadedEvent,
    ElementNode,
    Event,
    FullSnapshot,
    FullSnapshotEvent,
    IncrementalSnapshotEvent,
    InputData,
    LoadEvent,
    Meta,
    MetaEvent,
    MouseInteractionData,
    TextNode,
)
from gateway.pipeline.batcher import UpstreamBatch, new_batch_id
from gateway.pipeline.sink import MaskedBatch

T0 = 1_780_000_000.0  # store clock (Unix seconds): 2026-05-28 20:26:40 UTC
MONTH = "2026-05"
MS = T0 * 1000  # event time (ms) of the first event of most recordings
MINUTE_MS = 60_000.0
URL = "https://shop.test/"


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def document() -> DocumentNode:
    body = ElementNode(
        id=3,
        tagName="body",
        childNodes=[
            TextNode(id=4, textContent="Welcome"),
            ElementNode(id=5, tagName="input", attributes={"type": "text", "value": "***"}),
        ],
    )
    return DocumentNode(id=1, childNodes=[ElementNode(id=2, tagName="html", childNodes=[body])])


def loaded(t: float) -> list[Event]:
    return [DomContentLoadedEvent(timestamp=t), LoadEvent(timestamp=t)]


def meta(t: float, href: str = URL) -> MetaEvent:
    return MetaEvent(timestamp=t, data=Meta(href=href, width=1280, height=800))


def snapshot(t: float) -> FullSnapshotEvent:
    return FullSnapshotEvent(timestamp=t, data=FullSnapshot(node=document()))


def click(t: float) -> IncrementalSnapshotEvent:
    return IncrementalSnapshotEvent(
        timestamp=t, data=MouseInteractionData(type=2, id=5, x=10.0, y=20.0)
    )


def typed(t: float, text: str = "***") -> IncrementalSnapshotEvent:
    return IncrementalSnapshotEvent(timestamp=t, data=InputData(id=5, text=text))


def identify(t: float, **payload: Any) -> CustomEvent:
    return CustomEvent(timestamp=t, data=Custom(tag="identify", payload=payload))


def page_load(t: float, href: str = URL) -> list[Event]:
    """What a page sends first: load events, Meta, a full snapshot."""
    return [*loaded(t), meta(t + 1, href), snapshot(t + 2)]


def clicks(t: float, count: int, step: float = 100.0) -> list[Event]:
    return [click(t + i * step) for i in range(count)]


def record(
    events: list[Event],
    *,
    site: str = "shop",
    session: str = "sess-1",
    page: str = "page-1",
    seq: int = 0,
    url: str = URL,
    visitor: str | None = None,
    device: str = "desktop",
    browser: str = "Chrome",
) -> MaskedBatch:
    batch = Batch(session=session, page=page, seq=seq, url=url, events=events, visitor=visitor)
    return MaskedBatch(site=site, received_at=T0, batch=batch, device=device, browser=browser)


def upstream(*records: MaskedBatch, node: str = "edge-1") -> UpstreamBatch:
    return UpstreamBatch(id=new_batch_id(), node=node, created_at=T0, records=list(records))


def timestamps(body: bytes | None) -> list[float]:
    assert body is not None
    return [event["timestamp"] for event in json.loads(body)]


def segment_files(directory: Path) -> list[Path]:
    return sorted((directory / "segments").glob("*/*.seg"))


def rows(directory: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(directory / "index.sqlite3")) as db:
        return db.execute(sql).fetchall()
