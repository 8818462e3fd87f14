"""Where masked batches go: the one narrow interface between collect and pipeline.

`put` returns once the batch is safe; only then does the browser get its 200.
The durable spool (pipeline issue) implements the same interface; until it
lands, a bounded in-memory queue stands in, and says so in its name.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

import msgspec

from gateway.collect.schema import Batch


class MaskedBatch(msgspec.Struct, frozen=True):
    site: str
    received_at: float  # Unix seconds at the gateway
    batch: Batch


class SinkFull(Exception):
    """No room: the caller answers 503 with Retry-After, nothing is dropped silently."""


class BatchSink(Protocol):
    async def put(self, item: MaskedBatch) -> None: ...


class MemoryQueueSink:
    """Bounded FIFO in memory: NOT durable (lost on restart). Replaced by the spool."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self.items: deque[MaskedBatch] = deque()

    async def put(self, item: MaskedBatch) -> None:
        if len(self.items) >= self._capacity:
            raise SinkFull(f"in-memory queue holds {self._capacity} batches")
        self.items.append(item)
