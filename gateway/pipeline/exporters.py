"""Exporters: hand one upstream batch to the store and say what to do next.

An exporter makes ONE attempt and classifies it (`Verdict`): OK (the store has
the batch durably: ack the spool), RETRY (a transient failure: send the same
batch again later) or REJECT (the store refused this batch for good: set it
aside as a dead letter). Retrying, waiting and acking are the delivery loop's
job (delivery.py), never the exporter's.

* `LocalExporter`: the embedded store, called in-process.
* `HttpExporter`: a remote `gateway store` node, `POST {url}/ingest/v1/batches`
  (ARCHITECTURE.md section 3, docs/protocol.md).

When in doubt an exporter says RETRY: a batch retried is at worst a
duplicate (the store de-duplicates by Idempotency-Key), a batch rejected by
mistake leaves the live pipeline.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import aiohttp

from gateway.pipeline.batcher import CONTENT_TYPE, Batched, UpstreamBatch

INGEST_PATH = "/ingest/v1/batches"
# Read at most this much of a response body; a larger one is dropped with its connection.
MAX_RESPONSE_BYTES = 1024 * 1024
_DETAIL_CHARS = 200
_DELTA_SECONDS = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")

log = logging.getLogger(__name__)


class Verdict(StrEnum):
    OK = "ok"
    RETRY = "retry"
    REJECT = "reject"


@dataclass(frozen=True)
class ExportOutcome:
    verdict: Verdict
    detail: str  # human text: "HTTP 503", "connection refused", ...
    retry_after: float | None = None  # seconds the upstream asked for (Retry-After), if any
    status: int | None = None


class Exporter(Protocol):
    name: str  # metric label: "local" or "http"

    async def export(self, batched: Batched) -> ExportOutcome: ...

    async def close(self) -> None: ...


class BatchReceiver(Protocol):
    """What the embedded store offers (gateway.store's ingest)."""

    async def ingest(self, batch: UpstreamBatch) -> object: ...


# ------------------------------------------------------------------------------ local


def _is_store_error(exc: BaseException) -> bool:
    # gateway.store is not imported (it depends on the pipeline, not the other way
    # round): its StoreError is recognised by name, anywhere in the class hierarchy.
    return any(cls.__name__ == "StoreError" for cls in type(exc).__mro__)


class LocalExporter:
    """The embedded store: ingest in-process, map its exceptions to verdicts."""

    name = "local"

    def __init__(self, store: BatchReceiver) -> None:
        self._store = store

    async def export(self, batched: Batched) -> ExportOutcome:
        try:
            await self._store.ingest(batched.upstream)
        except Exception as exc:
            return self._classify(batched, exc)
        return ExportOutcome(Verdict.OK, "stored")

    async def close(self) -> None:
        return None

    @staticmethod
    def _classify(batched: Batched, exc: Exception) -> ExportOutcome:
        detail = f"{type(exc).__name__}: {exc}"
        if _is_store_error(exc) or isinstance(exc, OSError):
            # The store could not write now (disk full, I/O error): it may later.
            return ExportOutcome(Verdict.RETRY, detail)
        if isinstance(exc, ValueError):
            # The store says this batch itself is invalid: retrying cannot help.
            return ExportOutcome(Verdict.REJECT, detail)
        # A bug is not the batch's fault: keep the data and try again.
        log.error(
            "embedded store failed unexpectedly on batch %s; will retry",
            batched.upstream.id,
            exc_info=exc,
        )
        return ExportOutcome(Verdict.RETRY, detail)


# ------------------------------------------------------------------------------ HTTP


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), None if unusable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if _DELTA_SECONDS.fullmatch(value):  # RFC 9110 says digits; "1.5" means what it says
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": RFC 5322's unknown zone; HTTP dates are GMT anyway
        return None
    return max(0.0, when.timestamp() - now)


def classify_status(status: int) -> Verdict:
    if 200 <= status < 300:
        return Verdict.OK
    if status == 501:  # the store does not implement this: sending again will not change it
        return Verdict.REJECT
    if status in (408, 429) or 500 <= status < 600:
        return Verdict.RETRY
    if 400 <= status < 500:
        return Verdict.REJECT
    # 1xx/3xx (a redirect means a misconfigured url) and nonsense: never dead-letter
    # everything because of a configuration mistake; keep the data until it is fixed.
    return Verdict.RETRY


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):  # also aiohttp's ServerTimeoutError
        return f"timed out after {timeout:g}s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused by {exc.host}:{exc.port}"
        return f"cannot connect to {exc.host}:{exc.port}: {cause}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection without a response"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"response broke off mid-body: {exc}"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the server"
    return f"{type(exc).__name__}: {exc}"


class HttpExporter:
    """POST batches to a remote store's ingest endpoint over a pooled session."""

    name = "http"

    def __init__(
        self,
        url: str,
        *,
        token: str = "",
        timeout: float = 30.0,
        max_connections: int = 4,
        ca_file: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"upstream timeout must be positive, got {timeout}")
        if max_connections < 1:
            raise ValueError(f"upstream max_connections must be at least 1, got {max_connections}")
        self.url = url.rstrip("/") + INGEST_PATH
        self._token = token
        self._timeout = float(timeout)
        self._max_connections = max_connections
        self._ca_file = ca_file
        self._clock = clock  # wall clock, for HTTP-date Retry-After values
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is not None:
            return
        ssl_context: ssl.SSLContext | bool = True  # verify with the system's CAs
        if self._ca_file:
            try:
                ssl_context = ssl.create_default_context(cafile=self._ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"upstream ca_file {self._ca_file!r}: {exc}") from exc
        connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=ssl_context)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._timeout),
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def export(self, batched: Batched) -> ExportOutcome:
        if self._session is None:
            await self.start()
        assert self._session is not None
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Idempotency-Key": batched.upstream.id,
        }
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            # The whole attempt, reading the answer included, is bounded.
            async with asyncio.timeout(self._timeout):
                async with self._session.post(
                    self.url, data=batched.body, headers=headers, allow_redirects=False
                ) as response:
                    body = await self._read(response)
                    return self._outcome(response, body)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            # OSError covers resets and refusals aiohttp does not wrap; TimeoutError is
            # both asyncio.timeout's and aiohttp's own (ServerTimeoutError).
            return ExportOutcome(Verdict.RETRY, _describe(exc, self._timeout))

    @staticmethod
    async def _read(response: aiohttp.ClientResponse) -> bytes:
        """Read the body so the connection goes back to the pool (bounded)."""
        body = bytearray()
        async for chunk in response.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > MAX_RESPONSE_BYTES:
                # Not worth reading on: leaving it unread closes this connection.
                break
        return bytes(body)

    def _outcome(self, response: aiohttp.ClientResponse, body: bytes) -> ExportOutcome:
        status = response.status
        verdict = classify_status(status)
        detail = f"HTTP {status}"
        text = body[:_DETAIL_CHARS].decode("utf-8", "replace").strip()
        if text and verdict is not Verdict.OK:
            detail = f"{detail}: {text}"
        retry_after = None
        if verdict is Verdict.RETRY:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), now=self._clock())
        return ExportOutcome(verdict, detail, retry_after=retry_after, status=status)
