"""Decoded batches stay out of the cyclic collector's sight, and no step of the
collect path makes a cycle through them (which, untracked, would never be freed)."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import msgspec
import pytest

from gateway.collect.masking import MaskerCache, MaskRules
from gateway.collect.schema import Batch, decode_batch
from gateway.config import RecordingConfig
from gateway.pipeline.batcher import UpstreamBatch, decode_upstream, encode_upstream
from gateway.pipeline.sink import MaskedBatch
from gateway.store.recordings import summarize
from gateway.store.segments import decode_chunk, encode_chunk

FIXTURES = Path(__file__).resolve().parents[2] / "benchmarks" / "fixtures"


@pytest.fixture(params=["incremental", "full_snapshot"])
def body(request: pytest.FixtureRequest) -> bytes:
    return (FIXTURES / f"{request.param}.json").read_bytes()


def _structs(value: object) -> list[msgspec.Struct]:
    """Every Struct reachable from `value` through fields, lists and dicts."""
    found: list[msgspec.Struct] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, msgspec.Struct):
            found.append(item)
            stack.extend(getattr(item, name) for name in item.__struct_fields__)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return found


def _collect_path(body: bytes, masks: MaskerCache, seq: int) -> None:
    """What the gateway does with one batch, from the body to the stored chunk."""
    batch = decode_batch(body)
    batch.seq = seq
    masks.get("site", batch.session, batch.page, MaskRules.of(RecordingConfig())).mask(batch)
    item = MaskedBatch(site="site", received_at=1.0, batch=batch)
    again = msgspec.msgpack.decode(msgspec.msgpack.encode(item), type=MaskedBatch)
    upstream = decode_upstream(
        encode_upstream(UpstreamBatch(id="0" * 32, node="n", created_at=1.0, records=[again])),
        max_decoded=1 << 26,
    )
    events = upstream.records[0].batch.events
    assert summarize(upstream.records[0].batch.url, events) is not None
    frame, raw_length = encode_chunk(events)
    assert decode_chunk(frame, raw_length) == events


def test_decoded_batches_are_not_tracked_by_the_collector(body: bytes) -> None:
    batch = decode_batch(body)
    structs = _structs(MaskedBatch(site="s", received_at=1.0, batch=batch))
    assert len(structs) > 40  # the fixture's events, their data, nodes...
    tracked = [type(s).__name__ for s in structs if gc.is_tracked(s)]
    assert tracked == []
    assert any(isinstance(s, Batch) for s in structs)


def test_the_collect_path_leaks_nothing_through_untracked_structs(body: bytes) -> None:
    masks = MaskerCache()
    _collect_path(body, masks, 0)  # caches, interned names, the masker: made once
    gc.collect()
    tracemalloc.start()
    try:
        _collect_path(body, masks, 1)
        gc.collect()
        baseline, _ = tracemalloc.get_traced_memory()
        for seq in range(2, 42):
            _collect_path(body, masks, seq)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The masker remembers some node ids per batch; a cycle through a batch would
    # keep each of the 40 whole, more than its body's size each.
    assert after - baseline < 10 * len(body)
