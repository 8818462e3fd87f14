"""Exporters against a real aiohttp upstream on loopback, and the embedded-store mapping."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme
from aiohttp import web
from multidict import CIMultiDict

from gateway.collect.schema import decode_batch
from gateway.pipeline.batcher import (
    CONTENT_TYPE,
    Batched,
    UpstreamBatch,
    decode_upstream,
    encode_upstream,
    new_batch_id,
)
from gateway.pipeline.exporters import (
    MAX_RESPONSE_BYTES,
    ExportOutcome,
    HttpExporter,
    LocalExporter,
    Verdict,
    classify_status,
    parse_retry_after,
)
from gateway.pipeline.sink import MaskedBatch
from tests.integration.batches import batch, click, encoded, typed

MiB = 1024 * 1024
NOW = 1_750_000_000.0  # the exporter's wall clock in Retry-After tests

Reply = Callable[[web.Request], Awaitable[web.StreamResponse]]


# ------------------------------------------------------------------------------- helpers


def masked(seq: int = 0, *, session: str = "sess-1", text: str = "hello") -> MaskedBatch:
    events = [typed(11, text, t=1000 + seq), click(t=1001 + seq)]
    body = encoded(batch(events, session=session, page="page-1", seq=seq))
    return MaskedBatch(site="shop", received_at=1_700_000_000.0 + seq, batch=decode_batch(body))


def make_batched(records: list[MaskedBatch] | None = None) -> Batched:
    upstream = UpstreamBatch(
        id=new_batch_id(),
        node="edge-1",
        created_at=1.5,
        records=records if records is not None else [masked(0), masked(1)],
    )
    return Batched(upstream=upstream, body=encode_upstream(upstream), last_position=(1, 0))


def reply(
    status: int = 200, *, headers: dict[str, str] | None = None, body: bytes = b"{}"
) -> Reply:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers=headers, body=body)

    return handler


def reset() -> Reply:
    """Drop the connection without any answer."""

    async def handler(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.abort()
        await asyncio.sleep(0)
        return web.Response()

    return handler


def broken_body(status: int = 200) -> Reply:
    """Send headers promising 1000 bytes, 10 of them, then drop the connection."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=status, headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b"0123456789")
        assert request.transport is not None
        request.transport.abort()
        return response

    return handler


@dataclass
class Seen:
    method: str
    path: str
    headers: CIMultiDict[str]
    body: bytes
    peer: tuple[str, int]


@dataclass
class Upstream:
    """A programmable store: answers with `replies` in order, then with `default`."""

    url: str = ""
    replies: list[Reply] = field(default_factory=list)
    default: Reply = field(default_factory=reply)
    seen: list[Seen] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    on_request: Callable[[Seen], None] | None = None

    def hang(self) -> Reply:
        """Wait (for the client's timeout, or the test's end) before answering."""

        async def handler(request: web.Request) -> web.StreamResponse:
            await self.release.wait()
            return web.Response(status=200)

        return handler

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        assert request.transport is not None
        seen = Seen(
            request.method,
            request.path,
            CIMultiDict(request.headers),
            body,
            request.transport.get_extra_info("peername"),
        )
        self.seen.append(seen)
        if self.on_request is not None:
            self.on_request(seen)
        handler = self.replies.pop(0) if self.replies else self.default
        return await handler(request)


async def start_upstream(
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[Upstream, web.AppRunner]:
    state = Upstream()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", state.handle)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    scheme = "https" if ssl_context else "http"
    state.url = f"{scheme}://{'localhost' if ssl_context else '127.0.0.1'}:{port}"
    return state, runner


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    state, runner = await start_upstream()
    yield state
    state.release.set()
    await runner.cleanup()


@pytest.fixture
async def exporters() -> AsyncIterator[list[HttpExporter]]:
    """Exporters a test makes; all closed at its end."""
    made: list[HttpExporter] = []
    yield made
    for exporter in made:
        await exporter.close()


@pytest.fixture
def http(exporters: list[HttpExporter]) -> Callable[..., HttpExporter]:
    def make(url: str, **kwargs: object) -> HttpExporter:
        kwargs.setdefault("clock", lambda: NOW)
        exporter = HttpExporter(url, **kwargs)  # type: ignore[arg-type]
        exporters.append(exporter)
        return exporter

    return make


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens there any more: connections are refused


# ------------------------------------------------------------------------------- HTTP


async def test_request_carries_body_key_type_and_path(
    upstream: Upstream, http: Callable[..., HttpExporter]
) -> None:
    records = [masked(i) for i in range(3)]
    batched = make_batched(records)
    exporter = http(upstream.url + "/")  # a trailing slash is not doubled
    outcome = await exporter.export(batched)
    assert outcome == ExportOutcome(Verdict.OK, "HTTP 200", status=200)
    [seen] = upstream.seen
    assert (seen.method, seen.path) == ("POST", "/ingest/v1/batches")
    assert seen.headers["Content-Type"] == CONTENT_TYPE
    assert seen.headers["Idempotency-Key"] == batched.upstream.id
    assert "Authorization" not in seen.headers
    assert seen.body == batched.body
    assert decode_upstream(seen.body, max_decoded=MiB).records == records


async def test_bearer_token_sent_when_set(
    upstream: Upstream, http: Callable[..., HttpExporter]
) -> None:
    await http(upstream.url, token="s3cret").export(make_batched())
    assert upstream.seen[0].headers["Authorization"] == "Bearer s3cret"


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.OK),
        (201, Verdict.OK),
        (204, Verdict.OK),
        (400, Verdict.REJECT),
        (401, Verdict.REJECT),
        (403, Verdict.REJECT),
        (404, Verdict.REJECT),
        (408, Verdict.RETRY),
        (413, Verdict.REJECT),
        (415, Verdict.REJECT),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (501, Verdict.REJECT),
        (502, Verdict.RETRY),
        (503, Verdict.RETRY),
        (504, Verdict.RETRY),
        (507, Verdict.RETRY),
        (599, Verdict.RETRY),
        (302, Verdict.RETRY),  # a misconfigured url: keep the data, do not dead-letter it
    ],
)
async def test_status_mapping(
    upstream: Upstream, http: Callable[..., HttpExporter], status: int, verdict: Verdict
) -> None:
    headers = {"Location": "/elsewhere"} if status == 302 else None
    upstream.default = reply(status, headers=headers, body=b"" if status == 204 else b"{}")
    outcome = await http(upstream.url).export(make_batched())
    assert outcome.verdict is verdict
    assert outcome.status == status
    assert outcome.detail.startswith(f"HTTP {status}")
    assert len(upstream.seen) == 1  # no redirect followed, no retry inside the exporter


def test_classify_status_covers_every_code() -> None:
    for status in range(100, 600):
        verdict = classify_status(status)
        if 200 <= status < 300:
            assert verdict is Verdict.OK
        elif status == 501 or (400 <= status < 500 and status not in (408, 429)):
            assert verdict is Verdict.REJECT, status
        else:
            assert verdict is Verdict.RETRY, status


async def test_refusal_detail_names_the_stores_reason(
    upstream: Upstream, http: Callable[..., HttpExporter]
) -> None:
    upstream.default = reply(
        400, body=b'{"error": "bad_batch", "detail": "Idempotency-Key is not the batch id"}'
    )
    outcome = await http(upstream.url).export(make_batched())
    assert outcome.verdict is Verdict.REJECT
    assert "bad_batch" in outcome.detail and "Idempotency-Key" in outcome.detail


def http_date(seconds_from_now: float) -> str:
    return email.utils.format_datetime(
        datetime.fromtimestamp(NOW + seconds_from_now, UTC), usegmt=True
    )


@pytest.mark.parametrize(
    ("status", "value", "expected"),
    [
        (429, "120", 120.0),
        (503, "0", 0.0),
        (429, http_date(90), 90.0),
        (503, http_date(-30), 0.0),  # a date in the past: now
        (503, "soon", None),
        (503, "-5", None),
        (503, "", None),
        (503, "Mon, 99 Foo 2025 99:99:99 GMT", None),
    ],
)
async def test_retry_after_seconds_and_http_date(
    upstream: Upstream,
    http: Callable[..., HttpExporter],
    status: int,
    value: str,
    expected: float | None,
) -> None:
    upstream.default = reply(status, headers={"Retry-After": value})
    outcome = await http(upstream.url).export(make_batched())
    assert outcome.verdict is Verdict.RETRY
    assert outcome.retry_after == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("7", 7.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("inf", None),
        ("nan", None),
        ("١٢", None),  # non-ASCII digits are not delta-seconds
        ("9" * 20, None),  # absurdly long: garbage, not 3 quintillion years
        (http_date(3600), 3600.0),
        ("Thu, 01 Jan 2099 00:00:00 -0000", None),  # "unknown zone" is not an HTTP date
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


async def test_retry_after_ignored_on_success(
    upstream: Upstream, http: Callable[..., HttpExporter]
) -> None:
    upstream.default = reply(200, headers={"Retry-After": "60"})
    outcome = await http(upstream.url).export(make_batched())
    assert outcome.verdict is Verdict.OK and outcome.retry_after is None


async def test_timeout_retries(upstream: Upstream, http: Callable[..., HttpExporter]) -> None:
    upstream.default = upstream.hang()
    outcome = await http(upstream.url, timeout=0.2).export(make_batched())
    assert outcome.verdict is Verdict.RETRY
    assert "timed out" in outcome.detail
    assert outcome.status is None
    assert len(upstream.seen) == 1


async def test_reset_before_answer_retries(
    upstream: Upstream, http: Callable[..., HttpExporter]
) -> None:
    upstream.default = reset()
    outcome = await http(upstream.url).export(make_batched())
    assert outcome.verdict is Verdict.RETRY
    assert outcome.status is None
    assert len(upstream.seen) == 1


@pytest.mark.parametrize("status", [200, 503])
async def test_body_broken_mid_way_retries(
    upstream: Upstream, http: Callable[..., HttpExporter], status: int
) -> None:
    # Even a 2xx whose body breaks off is retried: the store de-duplicates by key.
    upstream.default = broken_body(status)
    outcome = await http(upstream.url).export(make_batched())
    assert outcome.verdict is Verdict.RETRY
    assert "mid-body" in outcome.detail or "closed" in outcome.detail


async def test_connection_refused_retries(http: Callable[..., HttpExporter]) -> None:
    port = closed_port()
    outcome = await http(f"http://127.0.0.1:{port}").export(make_batched())
    assert outcome.verdict is Verdict.RETRY
    assert outcome.detail == f"connection refused by 127.0.0.1:{port}"


async def test_connection_is_reused_after_error_and_success(
    upstream: Upstream, http: Callable[..., HttpExporter]
) -> None:
    upstream.replies = [reply(503, body=b'{"error": "store_unavailable"}' * 100), reply(200)]
    exporter = http(upstream.url)
    batched = make_batched()
    assert (await exporter.export(batched)).verdict is Verdict.RETRY
    assert (await exporter.export(batched)).verdict is Verdict.OK
    assert (await exporter.export(make_batched())).verdict is Verdict.OK
    assert len({seen.peer for seen in upstream.seen}) == 1  # one TCP connection for all


async def test_large_answer_is_bounded_and_still_ok(
    upstream: Upstream, http: Callable[..., HttpExporter]
) -> None:
    upstream.default = reply(200, body=b"x" * (MAX_RESPONSE_BYTES * 3))
    exporter = http(upstream.url)
    assert (await exporter.export(make_batched())).verdict is Verdict.OK
    assert (await exporter.export(make_batched())).verdict is Verdict.OK


async def test_export_without_start_starts_the_session(
    upstream: Upstream, http: Callable[..., HttpExporter]
) -> None:
    exporter = http(upstream.url)
    assert (await exporter.export(make_batched())).verdict is Verdict.OK
    await exporter.close()
    await exporter.close()  # idempotent
    await exporter.start()
    assert (await exporter.export(make_batched())).verdict is Verdict.OK


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="timeout"):
        HttpExporter("http://x", timeout=0)
    with pytest.raises(ValueError, match="max_connections"):
        HttpExporter("http://x", max_connections=0)


async def test_missing_ca_file_is_named(tmp_path: Path) -> None:
    exporter = HttpExporter("https://localhost:1", ca_file=str(tmp_path / "nope.pem"))
    with pytest.raises(ValueError, match=r"ca_file .*nope\.pem"):
        await exporter.start()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_upstream(ca: trustme.CA) -> AsyncIterator[Upstream]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    state, runner = await start_upstream(context)
    yield state
    await runner.cleanup()


async def test_https_store_verified_with_ca_file(
    tls_upstream: Upstream, ca: trustme.CA, tmp_path: Path, http: Callable[..., HttpExporter]
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    trusted = http(tls_upstream.url, ca_file=str(ca_file))
    assert (await trusted.export(make_batched())).verdict is Verdict.OK
    untrusted = http(tls_upstream.url)  # the system's CAs do not know the test CA
    outcome = await untrusted.export(make_batched())
    assert outcome.verdict is Verdict.RETRY
    assert "certificate" in outcome.detail.lower()
    assert len(tls_upstream.seen) == 1


# ------------------------------------------------------------------------------- local


class Receiver:
    """A stand-in for the embedded store: records batches, or raises `error`."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.got: list[UpstreamBatch] = []

    async def ingest(self, batch: UpstreamBatch) -> object:
        self.got.append(batch)
        if self.error is not None:
            raise self.error
        return {"stored": True}


class StoreError(ValueError):
    """Named like gateway.store's: retried even though it is a ValueError here."""


class DiskStoreError(StoreError):
    pass


async def test_local_ok_passes_the_upstream_batch() -> None:
    receiver = Receiver()
    exporter = LocalExporter(receiver)
    batched = make_batched()
    outcome = await exporter.export(batched)
    assert outcome.verdict is Verdict.OK
    assert receiver.got == [batched.upstream]
    assert exporter.name == "local"
    await exporter.close()


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        (OSError(28, "No space left on device"), Verdict.RETRY),
        (PermissionError("read-only"), Verdict.RETRY),
        (StoreError("index busy"), Verdict.RETRY),
        (DiskStoreError("segment write failed"), Verdict.RETRY),
        (ValueError("record 3 has no session"), Verdict.REJECT),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), Verdict.REJECT),
        (RuntimeError("bug"), Verdict.RETRY),
        (KeyError("site"), Verdict.RETRY),
    ],
)
async def test_local_maps_exceptions(error: Exception, verdict: Verdict) -> None:
    outcome = await LocalExporter(Receiver(error)).export(make_batched())
    assert outcome.verdict is verdict
    assert type(error).__name__ in outcome.detail
    assert outcome.status is None


async def test_local_bug_is_logged_with_traceback(caplog: pytest.LogCaptureFixture) -> None:
    batched = make_batched()
    outcome = await LocalExporter(Receiver(RuntimeError("oops"))).export(batched)
    assert outcome.verdict is Verdict.RETRY
    [record] = [r for r in caplog.records if r.name == "gateway.pipeline.exporters"]
    assert batched.upstream.id in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)


async def test_local_cancellation_propagates() -> None:
    class Stuck:
        async def ingest(self, batch: UpstreamBatch) -> object:
            await asyncio.Event().wait()
            return None

    task = asyncio.ensure_future(LocalExporter(Stuck()).export(make_batched()))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
