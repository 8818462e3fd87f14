"""A recording's events as the JSON array rrweb's Replayer takes.

The schema structs are encoded with omit_defaults, which drops fields equal to
their defaults; the Replayer, though, reads `event.data` of every event and
`data.initialOffset` of full snapshots unconditionally. Those are put back
here. Everything else is encoded as stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import attrgetter
from typing import Any

import msgspec

from gateway.collect.schema import (
    AssetEvent,
    DomContentLoadedEvent,
    Event,
    FullSnapshotEvent,
    LoadEvent,
    PluginEvent,
)

# Events whose encoding may lack what the Replayer reads; all others are encoded as
# they are, so the few of these (a handful per page load) are the only dicts built.
_INCOMPLETE = (DomContentLoadedEvent, LoadEvent, PluginEvent, AssetEvent, FullSnapshotEvent)
_by_time = attrgetter("timestamp")
_encoder = msgspec.json.Encoder()


def merge_chunks(chunks: Iterable[list[Event]]) -> list[Event]:
    """All events in timestamp order; equal timestamps keep chunk order, then event order."""
    events: list[Event] = []
    for chunk in chunks:
        events += chunk
    # Chunks come sorted by their first event, so this is mostly a merge of sorted runs.
    events.sort(key=_by_time)
    return events


def _completed(event: Event) -> dict[str, Any]:
    item: dict[str, Any] = msgspec.to_builtins(event)
    data = item.setdefault("data", {})
    if isinstance(event, FullSnapshotEvent):
        data.setdefault("initialOffset", {"top": 0, "left": 0})
    return item


def replay_json(events: list[Event]) -> bytes:
    return _encoder.encode([_completed(e) if isinstance(e, _INCOMPLETE) else e for e in events])
