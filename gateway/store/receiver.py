"""POST /ingest/v1/batches: upstream batches from edge nodes into the store.

The answer is 2xx only once the batch is durable in the store; a repeated
Idempotency-Key (the batch id) is answered 200 and stored once. The body is
untrusted: its size is bounded as sent and once decompressed (never by what
the lz4 frame header claims), and a body that does not decode is refused whole
(400) before anything is written. Decoding runs on a worker thread, one body at
a time (as it did on the loop), so a large body never stalls the event loop.
Protocol: docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec
from aiohttp import web

from gateway.admin.auth import bearer, same_token
from gateway.edge.errors import json_error
from gateway.metrics import Metrics
from gateway.pipeline.batcher import CONTENT_TYPE, UpstreamBatchError, decode_upstream
from gateway.store.ingest import MeteredIngest
from gateway.store.recordings import StoreError

INGEST_PATH = "/ingest/v1/batches"
# An edge that gets a 503 keeps the batch in its spool and comes back after this.
RETRY_AFTER_SECONDS = "5"
# Bodies received at once (each up to store.max_batch_bytes); beyond: 503 + Retry-After.
MAX_BODIES_IN_FLIGHT = 8

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()


class IngestEndpoint:
    def __init__(
        self, ingest: MeteredIngest, *, token: str, max_batch_bytes: int, metrics: Metrics
    ) -> None:
        self._ingest = ingest
        self._token = token.encode()
        self._max = max_batch_bytes
        self._metrics = metrics
        self._decoding = asyncio.Lock()  # one decoded body in memory at a time
        self._reading = 0  # bodies being received now

    def routes(self) -> list[web.RouteDef]:
        return [web.route("*", INGEST_PATH, self.handle)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return json_error(405, "method_not_allowed", "use POST", headers={"Allow": "POST"})
        if self._token and not same_token(bearer(request), self._token):
            return self._refuse(401, "unauthorized", "missing or wrong bearer token")
        if request.content_type != CONTENT_TYPE:
            return self._refuse(
                415,
                "unsupported_media_type",
                f"expected {CONTENT_TYPE}, got {request.content_type!r}",
            )
        key = request.headers.get("Idempotency-Key", "")
        if not key:
            return self._refuse(400, "bad_batch", "Idempotency-Key header is required")
        if self._reading >= MAX_BODIES_IN_FLIGHT:
            # Memory stays bounded; the edge keeps the batch and comes back.
            self._metrics.store_ingest.labels(outcome="busy").inc()
            return json_error(
                503, "busy", "too many batches in flight", headers={"Retry-After": "1"}
            )
        self._reading += 1
        try:
            body = await self._read(request)
        finally:
            self._reading -= 1
        if body is None:
            return self._refuse(413, "too_large", f"batch larger than {self._max} bytes")
        try:
            async with self._decoding:
                batch = await asyncio.to_thread(decode_upstream, body, max_decoded=self._max)
        except UpstreamBatchError as exc:
            too_large = "larger than max_decoded" in str(exc)
            return self._refuse(
                413 if too_large else 400, "too_large" if too_large else "bad_batch", str(exc)
            )
        if batch.id != key:
            return self._refuse(
                400, "bad_batch", f"Idempotency-Key {key!r} is not the batch id {batch.id!r}"
            )
        try:
            result = await self._ingest.ingest(batch)
        except StoreError as exc:
            log.warning("ingest of batch %s failed: %s", batch.id, exc)
            return json_error(
                503, "store_unavailable", str(exc), headers={"Retry-After": RETRY_AFTER_SECONDS}
            )
        status = "duplicate" if result.duplicate else "stored"
        return web.Response(
            body=_encoder.encode({"status": status, "id": batch.id, "records": result.chunks}),
            content_type="application/json",
        )

    async def _read(self, request: web.Request) -> bytes | None:
        """The body, or None when it is larger than allowed (read no further)."""
        if request.content_length is not None and request.content_length > self._max:
            return None
        body = bytearray()
        async for chunk in request.content.iter_any():
            body += chunk
            if len(body) > self._max:
                return None
        return bytes(body)

    def _refuse(self, status: int, code: str, detail: str) -> web.Response:
        self._metrics.store_ingest.labels(outcome=code).inc()
        return json_error(status, code, detail)
