"""Masked batches into the durable spool: the browser's 200 waits for the disk."""

from __future__ import annotations

import msgspec

from gateway.pipeline.sink import MaskedBatch, SinkFull
from gateway.pipeline.spool import Spool, SpoolError

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(MaskedBatch)


class SpoolSink:
    def __init__(self, spool: Spool) -> None:
        self.spool = spool

    async def put(self, item: MaskedBatch) -> None:
        try:
            await self.spool.append(_encoder.encode(item))
        except SpoolError as exc:
            # A disk that refuses (full, failing) is a 503 too, never an acknowledgement.
            raise SinkFull(f"spool cannot write: {exc}") from exc
        except ValueError as exc:  # larger than the whole spool: retrying cannot help
            raise SinkFull(str(exc)) from exc

    async def pending(self) -> list[MaskedBatch]:
        """Every batch not yet confirmed upstream, oldest first (readers are not disturbed)."""
        batches: list[MaskedBatch] = []
        after: tuple[int, int] | None = None
        while records := await self.spool.peek(after, max_records=10_000):
            batches.extend(_decoder.decode(record.data) for record in records)
            after = records[-1].position
        return batches
