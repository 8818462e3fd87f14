"""The delivery loop on a real spool and batcher: acks, retries, dead letters, circuit, drain."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import lz4.frame
import msgspec
import pytest

from gateway.metrics import Metrics
from gateway.pipeline.batcher import Batched, Batcher, decode_upstream
from gateway.pipeline.deadletter import DeadLetters
from gateway.pipeline.delivery import Delivery
from gateway.pipeline.exporters import ExportOutcome, HttpExporter, Verdict
from gateway.pipeline.retry import Backoff, CircuitBreaker, CircuitState
from gateway.pipeline.sink import MaskedBatch
from gateway.pipeline.spool import FsyncPolicy, Spool, SpoolError
from tests.unit.test_exporters import (
    Seen,
    closed_port,
    masked,
    reply,
    start_upstream,
)

MiB = 1024 * 1024
FAR = 3600.0  # a drain deadline that is never reached in a passing test
_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(MaskedBatch)


# ------------------------------------------------------------------------------- helpers


class FakeTime:
    """Delivery's sleep: records the delay and moves a clock the circuit breaker reads."""

    def __init__(self) -> None:
        self.now = 500.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds > 0, "a zero sleep would busy-loop"
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class Scripted:
    """An exporter that answers `script` in order, then `default`; keeps what it was sent."""

    name = "fake"

    def __init__(
        self, script: list[ExportOutcome | Exception] | None = None, default: Verdict = Verdict.OK
    ) -> None:
        self.script = list(script or [])
        self.default = ExportOutcome(default, default.value)
        self.sent: list[Batched] = []
        self.closed = False

    async def export(self, batched: Batched) -> ExportOutcome:
        self.sent.append(batched)
        step = self.script.pop(0) if self.script else self.default
        if isinstance(step, Exception):
            raise step
        return step

    async def close(self) -> None:
        self.closed = True


OK = ExportOutcome(Verdict.OK, "ok", status=200)
RETRY = ExportOutcome(Verdict.RETRY, "HTTP 503", status=503)
REJECT = ExportOutcome(Verdict.REJECT, 'HTTP 400: {"error": "bad_batch"}', status=400)


async def open_spool(directory: Path) -> Spool:
    return await Spool.open(directory, max_bytes=64 * MiB, fsync=FsyncPolicy.NEVER)


@pytest.fixture
async def spool(tmp_path: Path) -> AsyncIterator[Spool]:
    s = await open_spool(tmp_path / "spool")
    yield s
    await s.close()


async def fill(spool: Spool, n: int, *, start: int = 0, text: str = "hello") -> list[MaskedBatch]:
    items = [masked(start + i, text=text) for i in range(n)]
    for item in items:
        await spool.append(_enc.encode(item))
    return items


async def left_in(directory: Path) -> list[MaskedBatch]:
    """What a restarted gateway would find in the spool."""
    spool = await open_spool(directory)
    try:
        out: list[MaskedBatch] = []
        while records := await spool.read():
            out.extend(_dec.decode(r.data) for r in records)
        return out
    finally:
        await spool.close()


def seqs(items: list[MaskedBatch]) -> list[int]:
    return [item.batch.seq for item in items]


def sent_seqs(batches: list[Batched]) -> list[int]:
    return [r.batch.seq for b in batches for r in b.upstream.records]


class Rig:
    def __init__(
        self,
        spool: Spool,
        exporter: Scripted | HttpExporter,
        tmp_path: Path,
        *,
        batch_bytes: int = MiB,
        max_wait: float = 0.0,
        failures: int = 1000,
        cooldown: float = 10.0,
        initial: float = 0.5,
        maximum: float = 30.0,
        retry_after_max: float = 300.0,
        dead_letters: DeadLetters | None = None,
    ) -> None:
        self.time = FakeTime()
        self.metrics = Metrics()
        self.changes: list[CircuitState] = []
        self.batcher = Batcher(
            spool, node="edge-1", max_bytes=batch_bytes, max_wait=max_wait, poll_interval=0.005
        )
        self.circuit = CircuitBreaker(
            failures, cooldown, clock=self.time.clock, on_change=self.changes.append
        )
        self.backoff = Backoff(initial, maximum, rng=random.Random(5))
        self.dead = dead_letters or DeadLetters(tmp_path / "dead-letter")
        self.delivery = Delivery(
            self.batcher,
            exporter,
            self.dead,
            backoff=self.backoff,
            circuit=self.circuit,
            metrics=self.metrics,
            retry_after_max=retry_after_max,
            sleep=self.time.sleep,
        )

    def sample(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    async def drain(self, seconds: float = FAR) -> bool:
        return await self.delivery.drain(time.monotonic() + seconds)


async def until(condition: Callable[[], bool]) -> None:
    """Wait (on the event loop) until `condition` holds; pytest-timeout bounds a hang."""
    while not condition():
        await asyncio.sleep(0.005)


# ------------------------------------------------------------------------------- acks


async def test_ok_acks_the_spool(spool: Spool, tmp_path: Path) -> None:
    items = await fill(spool, 5)
    exporter = Scripted()
    rig = Rig(spool, exporter, tmp_path)
    assert await rig.drain() is True
    assert spool.depth_records == 0
    assert sent_seqs(exporter.sent) == seqs(items)
    assert [r for b in exporter.sent for r in b.upstream.records] == items
    assert rig.delivery.delivered == len(exporter.sent) == 1
    await spool.close()
    assert await left_in(tmp_path / "spool") == []


async def test_only_acked_batches_leave_the_spool(spool: Spool, tmp_path: Path) -> None:
    items = await fill(spool, 12, text="x" * 300)
    exporter = Scripted([OK, OK], default=Verdict.RETRY)
    rig = Rig(spool, exporter, tmp_path, batch_bytes=1500, initial=1000.0, maximum=1000.0)
    assert await rig.drain(seconds=60) is False  # the next retry would be past the deadline
    acked = sent_seqs(exporter.sent[:2])
    assert 0 < len(acked) < 12
    assert spool.depth_records == 12 - len(acked)
    await spool.close()
    assert seqs(await left_in(tmp_path / "spool")) == seqs(items)[len(acked) :]


async def test_ack_failure_is_logged_and_delivery_goes_on(
    spool: Spool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await fill(spool, 4, text="x" * 300)
    exporter = Scripted()
    rig = Rig(spool, exporter, tmp_path, batch_bytes=800)
    real_ack = spool.ack
    failed: list[tuple[int, int]] = []

    async def flaky_ack(position: tuple[int, int]) -> None:
        if not failed:
            failed.append(position)
            raise SpoolError("spool I/O failed: [Errno 5] Input/output error")
        await real_ack(position)

    spool.ack = flaky_ack  # type: ignore[method-assign]
    assert await rig.drain() is True
    assert failed and len(exporter.sent) >= 2
    assert rig.delivery.delivered == len(exporter.sent)
    assert spool.depth_records == 0  # the next ack covered what the failed one did not
    assert "spool ack failed" in caplog.text and exporter.sent[0].upstream.id in caplog.text


# ------------------------------------------------------------------------------- retries


async def test_retries_send_the_same_batch_with_backoff(spool: Spool, tmp_path: Path) -> None:
    items = await fill(spool, 3)
    exporter = Scripted([RETRY, RETRY, RETRY, OK])
    rig = Rig(spool, exporter, tmp_path, initial=1.0, maximum=3.0)
    assert await rig.drain() is True
    assert len(exporter.sent) == 4
    first = exporter.sent[0]
    assert all(b is first for b in exporter.sent)  # same id, same body, same records
    assert [r for r in first.upstream.records] == items
    # attempt 0, 1, 2: caps 1, 2, 3 (capped), each jittered within [cap/2, cap]
    assert len(rig.time.sleeps) == 3
    for delay, cap in zip(rig.time.sleeps, [1.0, 2.0, 3.0], strict=True):
        assert cap / 2 <= delay <= cap
    assert spool.depth_records == 0
    assert rig.sample("gateway_exports_total", exporter="fake", outcome="retry") == 3
    assert rig.sample("gateway_exports_total", exporter="fake", outcome="ok") == 1
    assert rig.sample("gateway_export_retries_total", exporter="fake") == 3
    assert rig.sample("gateway_export_latency_seconds_count", exporter="fake") == 4


@pytest.mark.parametrize(
    ("retry_after", "cap", "expected"),
    [(5.0, 300.0, 5.0), (120.0, 60.0, 60.0), (0.0, 300.0, None)],
)
async def test_retry_after_is_honoured_and_capped(
    spool: Spool, tmp_path: Path, retry_after: float, cap: float, expected: float | None
) -> None:
    await fill(spool, 1)
    asked = ExportOutcome(Verdict.RETRY, "HTTP 429", retry_after=retry_after, status=429)
    exporter = Scripted([asked, OK])
    rig = Rig(spool, exporter, tmp_path, initial=0.5, maximum=0.5, retry_after_max=cap)
    assert await rig.drain() is True
    [delay] = rig.time.sleeps
    if expected is None:  # shorter than the backoff: the backoff wins
        assert 0.25 <= delay <= 0.5
    else:
        assert delay == expected


async def test_exporter_exception_is_retried_not_lost(
    spool: Spool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await fill(spool, 2)
    exporter = Scripted([RuntimeError("exporter bug"), OK])
    rig = Rig(spool, exporter, tmp_path)
    assert await rig.drain() is True
    assert len(exporter.sent) == 2 and exporter.sent[0] is exporter.sent[1]
    assert spool.depth_records == 0
    assert "exporter bug" in caplog.text


async def test_idempotency_key_is_the_batch_id_across_http_retries(
    spool: Spool, tmp_path: Path
) -> None:
    items = await fill(spool, 4)
    state, runner = await start_upstream()
    state.replies = [reply(503), reply(500), reply(429, headers={"Retry-After": "2"})]
    exporter = HttpExporter(state.url)
    try:
        rig = Rig(spool, exporter, tmp_path, initial=0.1, maximum=0.1)
        assert await rig.drain() is True
    finally:
        await exporter.close()
        await runner.cleanup()
    assert len(state.seen) == 4
    keys = {seen.headers["Idempotency-Key"] for seen in state.seen}
    bodies = {seen.body for seen in state.seen}
    assert len(keys) == 1 and len(bodies) == 1
    [body] = bodies
    decoded = decode_upstream(body, max_decoded=MiB)
    assert keys == {decoded.id}
    assert decoded.records == items
    assert rig.time.sleeps[2] == 2.0  # the 429's Retry-After
    assert spool.depth_records == 0


# ------------------------------------------------------------------------------- dead letters


async def test_reject_writes_the_dead_letter_then_acks(spool: Spool, tmp_path: Path) -> None:
    items = await fill(spool, 3)
    exporter = Scripted([REJECT])
    rig = Rig(spool, exporter, tmp_path)
    assert await rig.drain() is True
    [batched] = exporter.sent
    folder = tmp_path / "dead-letter"
    body = (folder / f"{batched.upstream.id}.lz4").read_bytes()
    assert body == batched.body
    assert decode_upstream(body, max_decoded=MiB).records == items
    info = json.loads((folder / f"{batched.upstream.id}.json").read_text())
    assert info["id"] == batched.upstream.id
    assert info["reason"] == REJECT.detail
    assert info["status"] == 400
    assert info["records"] == 3
    assert info["bytes"] == len(batched.body)
    assert info["at"].endswith("Z")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{batched.upstream.id}.lz4", f"{batched.upstream.id}.json"]
    )  # no temporary files left
    assert rig.dead.count() == 1
    assert spool.depth_records == 0
    assert rig.delivery.dead_lettered == 1 and rig.delivery.delivered == 0
    assert rig.sample("gateway_dead_letters_total", exporter="fake") == 1
    assert rig.sample("gateway_exports_total", exporter="fake", outcome="reject") == 1
    assert rig.time.sleeps == []  # a refusal is not retried


async def test_no_ack_until_the_dead_letter_is_on_disk(spool: Spool, tmp_path: Path) -> None:
    await fill(spool, 2)
    depth_at_put: list[int] = []

    class FlakyDeadLetters(DeadLetters):
        async def put(self, batched: Batched, outcome: ExportOutcome) -> Path:
            depth_at_put.append(spool.depth_records)
            if len(depth_at_put) == 1:
                raise OSError(28, "No space left on device")
            return await super().put(batched, outcome)

    exporter = Scripted(default=Verdict.REJECT)
    dead = FlakyDeadLetters(tmp_path / "dead-letter")
    rig = Rig(spool, exporter, tmp_path, dead_letters=dead)
    assert await rig.drain() is True
    assert depth_at_put == [2, 2]  # the failed write acked nothing
    assert len(exporter.sent) == 2 and exporter.sent[0] is exporter.sent[1]
    assert len(rig.time.sleeps) == 1  # waited before trying again
    assert dead.count() == 1 and spool.depth_records == 0


def test_dead_letter_with_unsafe_id_stays_in_its_folder(tmp_path: Path) -> None:
    from gateway.pipeline.batcher import UpstreamBatch, encode_upstream

    upstream = UpstreamBatch(id="../../etc/passwd", node="n", created_at=1.0, records=[])
    batched = Batched(upstream, encode_upstream(upstream), (1, 0))
    dead = DeadLetters(tmp_path / "dl")
    path = asyncio.run(dead.put(batched, REJECT))
    assert path.parent == tmp_path / "dl"
    assert path.read_bytes() == batched.body
    assert json.loads(path.with_suffix(".json").read_text())["id"] == "../../etc/passwd"
    assert dead.count() == 1


# ------------------------------------------------------------------------------- circuit


async def test_circuit_opens_stops_attempts_then_half_opens_and_closes(
    spool: Spool, tmp_path: Path
) -> None:
    await fill(spool, 1)
    state, runner = await start_upstream()
    state.replies = [reply(503)] * 4  # then 200
    exporter = HttpExporter(state.url)
    rig = Rig(spool, exporter, tmp_path, failures=3, cooldown=10.0, initial=0.1, maximum=0.1)
    seen_at: list[float] = []
    states_at_request: list[CircuitState] = []

    def on_request(seen: Seen) -> None:
        seen_at.append(rig.time.now)
        states_at_request.append(rig.circuit.state)

    state.on_request = on_request
    try:
        assert await rig.drain() is True
    finally:
        await exporter.close()
        await runner.cleanup()
    # 3 failures open it; the half-open trial fails (cooldown doubles); the next trial succeeds.
    assert len(state.seen) == 5
    assert states_at_request == [
        CircuitState.CLOSED,
        CircuitState.CLOSED,
        CircuitState.CLOSED,
        CircuitState.HALF_OPEN,
        CircuitState.HALF_OPEN,
    ]
    assert seen_at[3] - seen_at[2] >= 10.0  # nothing sent during the cooldown
    assert seen_at[4] - seen_at[3] >= 20.0
    assert rig.changes == [
        CircuitState.OPEN,
        CircuitState.HALF_OPEN,
        CircuitState.OPEN,
        CircuitState.HALF_OPEN,
        CircuitState.CLOSED,
    ]
    assert rig.sample("gateway_export_circuit_state", exporter="http") == 0
    assert spool.depth_records == 0


async def test_circuit_gauge_follows_the_breaker(spool: Spool, tmp_path: Path) -> None:
    await fill(spool, 1)
    rig_box: list[Rig] = []
    gauge: list[float] = []

    class Watching(Scripted):
        async def export(self, batched: Batched) -> ExportOutcome:
            gauge.append(rig_box[0].sample("gateway_export_circuit_state", exporter="fake"))
            return await super().export(batched)

    rig = Rig(spool, Watching([RETRY, RETRY]), tmp_path, failures=2, cooldown=5.0)
    rig_box.append(rig)
    assert rig.sample("gateway_export_circuit_state", exporter="fake") == 0
    assert await rig.drain() is True
    assert gauge == [0, 0, 2]  # closed, closed, half-open trial
    assert rig.sample("gateway_export_circuit_state", exporter="fake") == 0


async def test_a_refusal_in_half_open_closes_the_circuit(spool: Spool, tmp_path: Path) -> None:
    await fill(spool, 2, text="x" * 300)
    exporter = Scripted([RETRY, REJECT, OK])
    rig = Rig(spool, exporter, tmp_path, batch_bytes=400, failures=1, cooldown=10.0)
    assert await rig.drain() is True
    assert len({b.upstream.id for b in exporter.sent}) == 2
    # The upstream answered the trial (it is up): the next batch goes without a cooldown.
    assert rig.circuit.state is CircuitState.CLOSED
    assert rig.changes[-1] is CircuitState.CLOSED
    assert sum(rig.time.sleeps) < 10.0 + 0.5


# ------------------------------------------------------------------------------- drain and run


async def test_drain_delivers_everything_in_order(spool: Spool, tmp_path: Path) -> None:
    items = await fill(spool, 40, text="y" * 200)
    exporter = Scripted()
    rig = Rig(spool, exporter, tmp_path, batch_bytes=2000)
    assert await rig.drain() is True
    assert len(exporter.sent) > 3
    assert sent_seqs(exporter.sent) == seqs(items)  # each exactly once, in order
    assert len({b.upstream.id for b in exporter.sent}) == len(exporter.sent)
    assert spool.depth_records == 0
    assert rig.delivery.delivered == len(exporter.sent)


async def test_drain_does_not_wait_out_the_batch_window(spool: Spool, tmp_path: Path) -> None:
    items = await fill(spool, 6, text="x" * 300)
    exporter = Scripted()
    rig = Rig(spool, exporter, tmp_path, batch_bytes=1000, max_wait=3600.0)
    async with asyncio.timeout(10):  # a batcher that waited for its window would hang here
        assert await rig.drain() is True
    assert sent_seqs(exporter.sent) == seqs(items)
    assert len(exporter.sent) > 1  # still grouped by size
    assert spool.depth_records == 0


async def test_drain_with_upstream_down_keeps_the_records(spool: Spool, tmp_path: Path) -> None:
    items = await fill(spool, 5)
    exporter = HttpExporter(f"http://127.0.0.1:{closed_port()}", timeout=5)
    rig = Rig(spool, exporter, tmp_path, initial=0.05, maximum=0.05)

    async def real_sleep(seconds: float) -> None:
        rig.time.sleeps.append(seconds)
        await asyncio.sleep(seconds)

    rig.delivery._sleep = real_sleep  # the deadline is real time here
    try:
        assert await rig.drain(seconds=0.5) is False
    finally:
        await exporter.close()
    assert rig.sample("gateway_exports_total", exporter="http", outcome="retry") >= 1
    assert rig.sample("gateway_exports_total", exporter="http", outcome="ok") == 0
    assert rig.delivery.delivered == 0
    assert spool.depth_records == 5
    await spool.close()
    assert await left_in(tmp_path / "spool") == items


async def test_drain_past_deadline_sends_nothing(spool: Spool, tmp_path: Path) -> None:
    await fill(spool, 2)
    exporter = Scripted()
    rig = Rig(spool, exporter, tmp_path)
    assert await rig.delivery.drain(time.monotonic() - 1) is False
    assert exporter.sent == [] and spool.depth_records == 2


async def test_drain_of_an_empty_spool_is_true_at_once(spool: Spool, tmp_path: Path) -> None:
    exporter = Scripted()
    rig = Rig(spool, exporter, tmp_path, max_wait=60.0)  # would wait a minute if it asked
    async with asyncio.timeout(10):
        assert await rig.drain() is True
    assert exporter.sent == []


async def test_run_delivers_as_records_arrive_and_drain_stops_it(
    spool: Spool, tmp_path: Path
) -> None:
    exporter = Scripted()
    rig = Rig(spool, exporter, tmp_path, max_wait=0.01)
    task = asyncio.create_task(rig.delivery.run())
    first = await fill(spool, 3)
    await until(lambda: spool.depth_records == 0 and len(sent_seqs(exporter.sent)) == 3)
    second = await fill(spool, 2, start=3)
    await until(lambda: spool.depth_records == 0 and len(sent_seqs(exporter.sent)) == 5)
    assert await rig.drain() is True
    await task  # returned normally: drain() stopped it, nobody else cancelled it
    assert not task.cancelled()
    assert sent_seqs(exporter.sent) == seqs(first + second)
    assert rig.sample("gateway_batches_built_total") == len(exporter.sent)


async def test_cancelling_run_mid_export_acks_nothing(spool: Spool, tmp_path: Path) -> None:
    items = await fill(spool, 3)
    state, runner = await start_upstream()
    state.default = state.hang()
    exporter = HttpExporter(state.url)
    rig = Rig(spool, exporter, tmp_path, max_wait=0.01)
    try:
        task = asyncio.create_task(rig.delivery.run())
        await until(lambda: len(state.seen) == 1)  # the export is in flight
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        state.release.set()  # the store would now say 200: too late, nobody listens
        await asyncio.sleep(0.05)
    finally:
        await exporter.close()
        await runner.cleanup()
    assert rig.delivery.delivered == 0
    assert spool.depth_records == 3
    await spool.close()
    assert await left_in(tmp_path / "spool") == items


async def test_drain_takes_over_a_batch_run_had_in_flight(spool: Spool, tmp_path: Path) -> None:
    items = await fill(spool, 3)
    in_flight = asyncio.Event()

    class Blocking(Scripted):
        async def export(self, batched: Batched) -> ExportOutcome:
            if not in_flight.is_set():
                in_flight.set()
                await asyncio.Event().wait()  # until cancelled
            return await super().export(batched)

    exporter = Blocking()
    rig = Rig(spool, exporter, tmp_path, max_wait=0.01)
    task = asyncio.create_task(rig.delivery.run())
    await in_flight.wait()
    assert await rig.drain() is True
    await task
    assert sent_seqs(exporter.sent) == seqs(items)  # sent again from the spool, once
    assert spool.depth_records == 0


async def test_ack_under_way_finishes_when_run_is_stopped(spool: Spool, tmp_path: Path) -> None:
    items = await fill(spool, 3)
    exporter = Scripted()
    rig = Rig(spool, exporter, tmp_path, max_wait=0.01)
    real_ack = spool.ack
    acking = asyncio.Event()
    gate = asyncio.Event()

    async def slow_ack(position: tuple[int, int]) -> None:
        acking.set()
        await gate.wait()
        await real_ack(position)

    spool.ack = slow_ack  # type: ignore[method-assign]
    task = asyncio.create_task(rig.delivery.run())
    await acking.wait()  # the store has the batch; its ack is under way
    drain = asyncio.create_task(rig.drain())
    await asyncio.sleep(0.02)
    gate.set()
    assert await drain is True
    await task
    assert len(exporter.sent) == 1  # the ack completed: the batch was not sent again
    assert sent_seqs(exporter.sent) == seqs(items)
    assert rig.delivery.delivered == 1 and spool.depth_records == 0


async def test_an_undecodable_record_is_set_aside_not_acked_away(
    spool: Spool, tmp_path: Path
) -> None:
    first = await fill(spool, 2)
    await spool.append(b"\xc1 not msgpack")
    second = await fill(spool, 2, start=2)
    exporter = Scripted()
    rig = Rig(spool, exporter, tmp_path)
    assert await rig.drain() is True
    assert sent_seqs(exporter.sent) == seqs(first + second)
    assert all(b.undecodable == "" for b in exporter.sent)  # never sent upstream
    assert spool.depth_records == 0
    # Acknowledged to its browser, so kept: a dead letter with the record's bytes.
    [info_path] = (tmp_path / "dead-letter").glob("*.json")
    info = json.loads(info_path.read_text())
    assert info["records"] == 1 and "undecodable" in info["reason"] and info["status"] is None
    body = info_path.with_suffix(".lz4").read_bytes()
    assert b"\xc1 not msgpack" in lz4.frame.decompress(body)
    assert rig.delivery.dead_lettered == 1 and rig.delivery.delivered == 2
    assert rig.sample("gateway_dead_letters_total", exporter="fake") == 1
    assert rig.sample("gateway_batches_built_total") == 2  # a set-aside record is no batch


async def test_an_undecodable_record_stays_until_its_dead_letter_is_on_disk(
    spool: Spool, tmp_path: Path
) -> None:
    await spool.append(b"\xc1 not msgpack")
    items = await fill(spool, 1)
    depth_at_put: list[int] = []

    class FlakyDeadLetters(DeadLetters):
        async def put(self, batched: Batched, outcome: ExportOutcome) -> Path:
            depth_at_put.append(spool.depth_records)
            if len(depth_at_put) == 1:
                raise OSError(28, "No space left on device")
            return await super().put(batched, outcome)

    exporter = Scripted()
    dead = FlakyDeadLetters(tmp_path / "dead-letter")
    rig = Rig(spool, exporter, tmp_path, dead_letters=dead)
    assert await rig.drain() is True
    assert depth_at_put == [2, 2]  # the failed write acked nothing, not even later records
    assert len(rig.time.sleeps) == 1  # waited before writing it again
    assert sent_seqs(exporter.sent) == seqs(items)
    assert dead.count() == 1 and spool.depth_records == 0


async def test_run_survives_a_spool_read_error(
    spool: Spool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    items = await fill(spool, 2)
    exporter = Scripted()
    rig = Rig(spool, exporter, tmp_path, max_wait=0.01)
    real_next = rig.batcher.next
    calls = 0

    async def failing_once() -> Batched | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise SpoolError("spool I/O failed: [Errno 5] Input/output error")
        return await real_next()

    rig.batcher.next = failing_once  # type: ignore[method-assign]
    task = asyncio.create_task(rig.delivery.run())
    await until(lambda: spool.depth_records == 0)
    assert await rig.drain() is True
    await task
    assert sent_seqs(exporter.sent) == seqs(items)
    assert len(rig.time.sleeps) == 1 and "Input/output error" in caplog.text


async def test_run_twice_is_refused(spool: Spool, tmp_path: Path) -> None:
    rig = Rig(spool, Scripted(), tmp_path, max_wait=0.01)
    task = asyncio.create_task(rig.delivery.run())
    await asyncio.sleep(0.02)
    with pytest.raises(RuntimeError, match="already running"):
        await rig.delivery.run()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# ------------------------------------------------------------------------------- metrics


async def test_batch_metrics_per_batch_built(spool: Spool, tmp_path: Path) -> None:
    await fill(spool, 30, text="compressible " * 40)
    exporter = Scripted()
    rig = Rig(spool, exporter, tmp_path, batch_bytes=4000)
    assert await rig.drain() is True
    n = len(exporter.sent)
    assert n > 2
    sizes = [len(b.body) for b in exporter.sent]
    raws = [len(msgspec.msgpack.encode(b.upstream)) for b in exporter.sent]
    assert [b.raw_bytes for b in exporter.sent] == raws
    assert rig.sample("gateway_batches_built_total") == n
    assert rig.sample("gateway_batch_bytes_count") == n
    assert rig.sample("gateway_batch_bytes_sum") == sum(sizes)
    assert rig.sample("gateway_batch_compression_ratio_count") == n
    ratio_sum = rig.sample("gateway_batch_compression_ratio_sum")
    assert ratio_sum == pytest.approx(sum(r / s for r, s in zip(raws, sizes, strict=True)))
    assert ratio_sum / n > 2  # repeated text compresses


def test_bad_retry_after_max_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="retry_after_max"):
        Delivery(
            object(),  # type: ignore[arg-type]
            Scripted(),
            DeadLetters(tmp_path),
            backoff=Backoff(1, 2),
            circuit=CircuitBreaker(1, 1),
            retry_after_max=-1,
        )
