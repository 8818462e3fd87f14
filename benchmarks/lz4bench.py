"""lz4 on recorded batches: the ratio and speed of the upstream batch format."""

from __future__ import annotations

import json
import time
from typing import Any

import lz4.frame
import msgspec

from benchmarks.scenarios import FIXTURES
from gateway.collect.schema import decode_batch
from gateway.pipeline.batcher import UpstreamBatch, encode_upstream, new_batch_id
from gateway.pipeline.sink import MaskedBatch


def _records(name: str, count: int) -> list[MaskedBatch]:
    raw = json.loads((FIXTURES / f"{name}.json").read_text())
    out = []
    for seq in range(count):
        raw["seq"] = seq
        batch = decode_batch(json.dumps(raw).encode())
        out.append(MaskedBatch(site="bench", received_at=time.time(), batch=batch))
    return out


def _speed(fn: Any, size: int, min_seconds: float = 0.3) -> float:
    """Bytes a second of `fn()` over `size` bytes, repeated for at least `min_seconds`."""
    rounds = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < min_seconds or rounds < 3:
        fn()
        rounds += 1
    return size * rounds / elapsed


def lz4_figures() -> dict[str, Any]:
    figures: dict[str, Any] = {}
    mixes = {
        "one full snapshot + 19 incremental": _records("full_snapshot", 1)
        + _records("incremental", 19),
        "one incremental batch": _records("incremental", 1),
    }
    for label, records in mixes.items():
        upstream = UpstreamBatch(id=new_batch_id(), node="bench", created_at=0.0, records=records)
        raw = msgspec.msgpack.encode(upstream)
        body = encode_upstream(upstream)
        figures[label] = {
            "msgpack_bytes": len(raw),
            "lz4_bytes": len(body),
            "ratio": round(len(raw) / len(body), 2),
            "compress_mib_per_s": round(
                _speed(lambda r=raw: lz4.frame.compress(r, content_checksum=True), len(raw)) / 2**20
            ),
            "decompress_mib_per_s": round(
                _speed(lambda b=body: lz4.frame.decompress(b), len(raw)) / 2**20
            ),
        }
    return figures
