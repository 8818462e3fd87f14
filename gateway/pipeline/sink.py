"""Where masked batches go: the one narrow interface between collect and pipeline.

`put` returns once the batch is safe; only then does the browser get its 200.
spool_sink.SpoolSink implements it on the durable spool.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from gateway.collect.schema import Batch


class MaskedBatch(msgspec.Struct, frozen=True, gc=False):  # data only: no cycles
    site: str
    received_at: float  # Unix seconds at the gateway
    batch: Batch
    # What the edge made of the visitor's User-Agent (the raw string is not kept).
    device: str = ""  # "desktop" | "mobile" | "tablet" | "" (unknown)
    browser: str = ""  # "Chrome", "Firefox", "Safari", "Edge", ... | "" (unknown)


class SinkFull(Exception):
    """No room: the caller answers 503 with Retry-After, nothing is dropped silently."""


class BatchSink(Protocol):
    async def put(self, item: MaskedBatch) -> None: ...
