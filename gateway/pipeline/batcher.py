"""Spool records -> upstream batches: the body the exporter POSTs to the store.

Wire format (ARCHITECTURE.md, section 3, "Upstream batch protocol"):

* body: ONE lz4 frame (content checksum on, uncompressed size in the frame
  header) whose content is the msgpack encoding of an `UpstreamBatch`;
* `Content-Type: application/vnd.recording-gateway.batch+msgpack` (CONTENT_TYPE);
* `Idempotency-Key: <UpstreamBatch.id>`.

`UpstreamBatch.id` is time-ordered: a UUIDv7 (48-bit Unix milliseconds, then
74 random bits) as 32 lowercase hex digits, so ids sort roughly by creation
time (handy for the store's index) and are unique without coordination.

`decode_upstream` is for the store, which receives untrusted bodies: it never
trusts the size the frame header claims (`lz4.frame.decompress` would allocate
it, see RECORDING-NOTES.md) but decompresses with a hard `max_length`.

`Batcher` groups spool records into one `Batched` at a time. It acks nothing:
the exporter acks `last_position` once the upstream confirmed `body`, and after
an upstream failure calls `Batcher.rewind()` (which rewinds the spool and drops
what the batcher had read ahead) to send the same records again. A record that
does not decode as MaskedBatch was acknowledged to its browser all the same, so
no batch's ack may cover it: it comes alone, as a `Batched` with `undecodable`
set, for the delivery loop to set aside as a dead letter.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import lz4.frame
import msgspec

from gateway.pipeline.sink import MaskedBatch
from gateway.pipeline.spool import Spool, SpoolRecord

CONTENT_TYPE = "application/vnd.recording-gateway.batch+msgpack"
DEFAULT_MAX_BYTES = 1024 * 1024

log = logging.getLogger(__name__)


class UpstreamBatch(msgspec.Struct, frozen=True, gc=False):  # data only: no cycles
    id: str  # time-ordered UUIDv7 hex; the Idempotency-Key
    node: str  # the edge node that made it
    created_at: float  # Unix seconds
    records: list[MaskedBatch]  # spool order; each keeps site/session/page/seq


class UpstreamBatchError(ValueError):
    """A body that is not a valid upstream batch; `str()` names the problem."""


class _RawUpstream(msgspec.Struct, frozen=True):
    """An UpstreamBatch whose records are kept as the spool has them (not decoded)."""

    id: str
    node: str
    created_at: float
    records: list[msgspec.Raw]


_encoder = msgspec.msgpack.Encoder()
_batch_decoder = msgspec.msgpack.Decoder(UpstreamBatch)
_record_decoder = msgspec.msgpack.Decoder(MaskedBatch)


def new_batch_id() -> str:
    """A UUIDv7 (RFC 9562) as 32 hex digits: time-ordered to the millisecond."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits, 74 used
    value = (ms & (2**48 - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a: 12 bits
    value |= 0b10 << 62  # variant
    value |= rand & (2**62 - 1)  # rand_b: 62 bits
    return uuid.UUID(int=value).hex


def encode_upstream(batch: UpstreamBatch) -> bytes:
    """msgpack, then one lz4 frame with content checksum and content size."""
    return _compress(_encoder.encode(batch))


def _compress(raw: bytes) -> bytes:
    compressed: bytes = lz4.frame.compress(raw, content_checksum=True, store_size=True)
    return compressed


def decode_upstream(body: bytes, *, max_decoded: int) -> UpstreamBatch:
    """Decode an untrusted body; UpstreamBatchError names what is wrong with it."""
    if max_decoded < 0:
        raise ValueError(f"max_decoded must not be negative, got {max_decoded}")
    try:
        info = lz4.frame.get_frame_info(body)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise UpstreamBatchError(f"body: not an lz4 frame ({exc})") from exc
    if not info.get("content_checksum"):
        raise UpstreamBatchError("body: lz4 frame has no content checksum")
    decompressor = lz4.frame.LZ4FrameDecompressor()
    out = bytearray()
    data = body
    try:
        while True:
            # One byte more than allowed: getting it proves the content is too large.
            out += decompressor.decompress(data, max_length=max_decoded + 1 - len(out))
            data = b""
            if len(out) > max_decoded:
                raise UpstreamBatchError(
                    f"body: decoded content is larger than max_decoded ({max_decoded} bytes)"
                )
            if decompressor.eof or decompressor.needs_input:
                break
    except RuntimeError as exc:  # corrupt block, bad checksum, wrong frame size
        raise UpstreamBatchError(f"body: invalid lz4 frame ({exc})") from exc
    if not decompressor.eof:
        raise UpstreamBatchError("body: lz4 frame is truncated")
    if decompressor.unused_data:
        raise UpstreamBatchError(
            f"body: {len(decompressor.unused_data)} bytes of trailing data after the lz4 frame"
        )
    try:
        return _batch_decoder.decode(out)
    except msgspec.ValidationError as exc:
        raise UpstreamBatchError(f"content: not an upstream batch ({exc})") from exc
    except msgspec.DecodeError as exc:
        raise UpstreamBatchError(f"content: not valid msgpack ({exc})") from exc


@dataclass
class Batched:
    upstream: UpstreamBatch
    body: bytes  # encode_upstream(upstream): POST this
    last_position: tuple[int, int]  # ack the spool up to here once the upstream confirmed body
    # Size of the msgpack before lz4 (for the compression-ratio metric); 0 = not known.
    raw_bytes: int = 0
    # Why the one spool record in `body` does not decode: never send it, set it aside.
    undecodable: str = ""


class Batcher:
    """Groups spool records into upstream batches by size and by time.

    A batch holds records until their msgpack data reaches `max_bytes` (a
    record that would go past it waits for the next batch; a single record
    larger than `max_bytes` travels alone) or until `max_wait` seconds passed
    since its first record was read. A record that does not decode as
    MaskedBatch closes the batch before it and comes alone (`undecodable` set,
    counted in `skipped`), so that no ack covers it unseen.
    """

    def __init__(
        self,
        spool: Spool,
        *,
        node: str,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_wait: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        poll_interval: float = 0.05,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_records: int = 1000,
    ) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        if max_wait < 0:
            raise ValueError(f"max_wait must not be negative, got {max_wait}")
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval}")
        if max_records < 1:
            raise ValueError(f"max_records must be positive, got {max_records}")
        self.spool = spool
        self.node = node
        self.max_bytes = max_bytes
        self.max_wait = max_wait
        self.skipped = 0
        self._clock = clock
        self._poll = poll_interval
        self._sleep = sleep
        self._max_records = max_records
        self._carry: list[SpoolRecord] = []  # read from the spool, not yet in a batch

    def rewind(self) -> None:
        """Send again from the spool's ack cursor (after an upstream failure)."""
        self._carry.clear()
        self.spool.rewind()

    async def next(self) -> Batched | None:
        """The next batch, or None if no record arrived within max_wait."""
        started = self._clock()
        first_at = started  # when this batch's first record was read (set with it)
        records: list[MaskedBatch] = []
        size = 0
        last_position = (0, 0)
        while True:
            if self._carry:
                chunk, self._carry = self._carry, []
            else:
                chunk = await self.spool.read(
                    max_records=self._max_records, max_bytes=self.max_bytes - size
                )
            full = False
            for i, record in enumerate(chunk):
                if records and size + len(record.data) > self.max_bytes:
                    self._carry = chunk[i:]
                    full = True
                    break
                try:
                    item = _record_decoder.decode(record.data)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    if records:  # this batch ends before it; it comes alone, next
                        self._carry = chunk[i:]
                        full = True
                        break
                    self._carry = chunk[i + 1 :]
                    return self._undecodable(record, exc)
                if not records:
                    first_at = self._clock()
                records.append(item)
                size += len(record.data)
                last_position = record.position
            now = self._clock()
            if records:
                if full or size >= self.max_bytes or now - first_at >= self.max_wait:
                    return self._make(records, last_position)
                remaining = self.max_wait - (now - first_at)
            else:
                if now - started >= self.max_wait:
                    return None
                remaining = self.max_wait - (now - started)
            if not chunk:  # nothing new in the spool: wait a little, never spin
                await self._sleep(min(self._poll, remaining))

    def _undecodable(self, record: SpoolRecord, exc: Exception) -> Batched:
        self.skipped += 1
        log.warning("undecodable spool record at %s: %s", record.position, exc)
        upstream = UpstreamBatch(
            id=new_batch_id(), node=self.node, created_at=time.time(), records=[]
        )
        raw = _encoder.encode(
            _RawUpstream(
                upstream.id, upstream.node, upstream.created_at, [msgspec.Raw(record.data)]
            )
        )
        return Batched(
            upstream=upstream,
            body=_compress(raw),
            last_position=record.position,
            undecodable=str(exc) or type(exc).__name__,
        )

    def _make(self, records: list[MaskedBatch], last_position: tuple[int, int]) -> Batched:
        upstream = UpstreamBatch(
            id=new_batch_id(), node=self.node, created_at=time.time(), records=records
        )
        raw = _encoder.encode(upstream)
        return Batched(
            upstream=upstream,
            body=_compress(raw),
            last_position=last_position,
            raw_bytes=len(raw),
        )
