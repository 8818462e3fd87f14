"""The delivery loop: batcher -> exporter, with retries, a circuit breaker and dead letters.

The spool is acked only once the data is safe elsewhere: after the exporter
said OK, or after a batch the upstream refused for good (or a spool record that
does not decode, which is never sent) is durable in the dead-letter folder. A
failed attempt is retried with THE SAME `Batched` (same id, same body), so the
store's Idempotency-Key de-duplicates a batch that it had in fact stored
before the answer was lost.

Shutdown: `drain(deadline)` stops `run()`, then delivers what the spool holds
(without waiting out the batcher's time window: it sets `max_wait` to 0) until
it is empty or the deadline passes; whatever was not confirmed stays in
the spool and is sent after the next start (as a new batch: the store also
de-duplicates records). Once drained, a Delivery does not run again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from gateway.metrics import Metrics
from gateway.pipeline.batcher import Batched, Batcher
from gateway.pipeline.deadletter import DeadLetters
from gateway.pipeline.exporters import Exporter, ExportOutcome, Verdict
from gateway.pipeline.retry import Backoff, CircuitBreaker, CircuitState

log = logging.getLogger(__name__)


class Delivery:
    def __init__(
        self,
        batcher: Batcher,
        exporter: Exporter,
        dead_letters: DeadLetters,
        *,
        backoff: Backoff,
        circuit: CircuitBreaker,
        metrics: Metrics | None = None,
        retry_after_max: float = 300.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if retry_after_max < 0:
            raise ValueError(f"retry_after_max must not be negative, got {retry_after_max}")
        self._batcher = batcher
        self._exporter = exporter
        self._dead_letters = dead_letters
        self._backoff = backoff
        self._circuit = circuit
        self._metrics = metrics
        self._retry_after_max = retry_after_max
        self._sleep = sleep
        self.delivered = 0
        self.dead_lettered = 0
        self._run_task: asyncio.Task[Any] | None = None
        self._draining = False  # set by drain(): run() stops and does not start again
        self._settling: asyncio.Task[bool] | None = None  # an ack / dead letter in progress
        self._circuit_seen = circuit.state
        self._show_circuit()

    # -- public API ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver batches until cancelled or drain() stops it."""
        if self._run_task is not None:
            raise RuntimeError("Delivery.run() is already running")
        task = asyncio.current_task()
        self._run_task = task
        read_errors = 0
        try:
            while not self._draining:
                try:
                    batched = await self._batcher.next()
                except Exception as exc:  # the spool could not be read (disk)
                    log.error("cannot read the spool: %s; trying again", exc)
                    self._batcher.rewind()
                    await self._sleep(self._backoff.delay(read_errors))
                    read_errors += 1
                    continue
                read_errors = 0
                if batched is None:
                    continue
                self._observe_built(batched)
                await self._deliver(batched, deadline=None)
        except asyncio.CancelledError:
            # Stopped by drain() (and by no one else): return quietly.
            if self._draining and task is not None and task.uncancel() == 0:
                return
            raise
        finally:
            self._run_task = None

    async def drain(self, deadline: float) -> bool:
        """Deliver what the spool holds until it is empty (True) or `deadline` (False).

        `deadline` is a time.monotonic() value. Nothing unconfirmed is acked.
        """
        self._draining = True
        await self._stop_run()
        await self._wait_settled()
        # What run() had read but not settled is sent again from the ack cursor.
        self._batcher.rewind()
        # Flush: a batch closes as soon as what the spool holds is read, never waiting out
        # batch_wait (which may be longer than the whole shutdown grace).
        self._batcher.max_wait = 0.0
        spool = self._batcher.spool
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return spool.depth_records == 0
        timeout = asyncio.timeout(remaining)
        try:
            async with timeout:
                return await self._drain_until(deadline)
        except TimeoutError:
            if not timeout.expired():
                raise
            log.warning(
                "drain: deadline reached, %d records stay in the spool", spool.depth_records
            )
            return False
        finally:
            # An ack already under way finishes: the store has that batch.
            await self._wait_settled()

    # -- one batch ----------------------------------------------------------------------------

    async def _drain_until(self, deadline: float) -> bool:
        spool = self._batcher.spool
        while spool.depth_records > 0:
            try:
                batched = await self._batcher.next()
            except Exception as exc:
                log.error("drain: cannot read the spool: %s", exc)
                return False
            if batched is None:
                # Only records damaged on disk are left (the spool skips them); they are
                # acked with the next batch after a restart.
                log.warning("drain: %d unreadable records left in the spool", spool.depth_records)
                return True
            self._observe_built(batched)
            if not await self._deliver(batched, deadline=deadline):
                log.warning(
                    "drain: upstream did not take batch %s before the deadline; "
                    "%d records stay in the spool",
                    batched.upstream.id,
                    spool.depth_records,
                )
                return False
        return True

    async def _deliver(self, batched: Batched, *, deadline: float | None) -> bool:
        """Send until settled (True), or False when the deadline comes first."""
        if batched.undecodable:
            return await self._set_aside(batched, deadline)
        attempt = 0
        while True:
            if not await self._wait_for_circuit(deadline):
                return False
            if attempt > 0 and self._metrics is not None:
                self._metrics.export_retries.labels(exporter=self._exporter.name).inc()
            outcome = await self._attempt(batched)
            delay = self._backoff.delay(attempt)
            attempt += 1
            if outcome.verdict is Verdict.OK:
                self._circuit.success()
                self._show_circuit()
                return await self._settle(self._delivered(batched))
            if outcome.verdict is Verdict.REJECT:
                # The upstream answered, so it is up: this is no failure of the circuit.
                self._circuit.success()
                self._show_circuit()
                if await self._settle(self._dead_letter(batched, outcome)):
                    return True
                # The dead letter is not safe on disk: keep the batch and try again.
            else:
                self._circuit.failure()
                self._show_circuit()
                if outcome.retry_after is not None:
                    delay = max(delay, min(outcome.retry_after, self._retry_after_max))
            if not await self._pause(delay, deadline):
                return False

    async def _set_aside(self, batched: Batched, deadline: float | None) -> bool:
        """A spool record that does not decode: never sent, acked once it is a dead letter."""
        outcome = ExportOutcome(Verdict.REJECT, f"undecodable spool record: {batched.undecodable}")
        attempt = 0
        while not await self._settle(self._dead_letter(batched, outcome)):
            if not await self._pause(self._backoff.delay(attempt), deadline):
                return False
            attempt += 1
        return True

    async def _attempt(self, batched: Batched) -> ExportOutcome:
        name = self._exporter.name
        started = time.perf_counter()
        try:
            outcome = await self._exporter.export(batched)
        except Exception as exc:  # an exporter bug must not lose the batch: retry it
            log.exception("exporter %s failed on batch %s", name, batched.upstream.id)
            outcome = ExportOutcome(Verdict.RETRY, f"exporter error: {type(exc).__name__}: {exc}")
        if self._metrics is not None:
            self._metrics.export_latency.labels(exporter=name).observe(
                time.perf_counter() - started
            )
            self._metrics.exports.labels(exporter=name, outcome=outcome.verdict.value).inc()
        if outcome.verdict is Verdict.RETRY:
            log.warning(
                "export of batch %s to %s failed: %s; will retry",
                batched.upstream.id,
                name,
                outcome.detail,
            )
        return outcome

    async def _settle(self, work: Coroutine[Any, Any, bool]) -> bool:
        # Once the data is safe elsewhere, the ack goes through even if we are cancelled
        # meanwhile; drain() waits for it.
        task = asyncio.ensure_future(work)
        self._settling = task
        return await asyncio.shield(task)

    async def _delivered(self, batched: Batched) -> bool:
        self.delivered += 1
        await self._ack(batched)
        return True

    async def _ack(self, batched: Batched) -> None:
        try:
            await self._batcher.spool.ack(batched.last_position)
        except Exception as exc:
            # The data is safe upstream; only the spool's bookkeeping failed.
            log.error(
                "batch %s is safe upstream but the spool ack failed: %s; "
                "it will be sent again after a restart",
                batched.upstream.id,
                exc,
            )

    async def _dead_letter(self, batched: Batched, outcome: ExportOutcome) -> bool:
        batch_id = batched.upstream.id
        try:
            path = await self._dead_letters.put(batched, outcome)
        except Exception as exc:
            log.error(
                "upstream refused batch %s (%s) but its dead letter could not be written: %s; "
                "it stays in the spool",
                batch_id,
                outcome.detail,
                exc,
            )
            return False
        self.dead_lettered += 1
        if self._metrics is not None:
            self._metrics.dead_letters.labels(exporter=self._exporter.name).inc()
        log.error(
            "batch %s refused for good (%s): %d records set aside in %s",
            batch_id,
            outcome.detail,
            len(batched.upstream.records) or 1,  # an undecodable record comes alone
            path,
        )
        await self._ack(batched)
        return True

    # -- waiting ------------------------------------------------------------------------------

    async def _wait_for_circuit(self, deadline: float | None) -> bool:
        while True:
            wait = self._circuit.wait_time()
            self._show_circuit()
            if wait <= 0:
                return True
            if not await self._pause(wait, deadline):
                return False

    async def _pause(self, delay: float, deadline: float | None) -> bool:
        """Sleep `delay`; False instead when the deadline would pass first."""
        if deadline is not None and time.monotonic() + delay >= deadline:
            return False
        await self._sleep(delay)
        return True

    async def _stop_run(self) -> None:
        task = self._run_task
        if task is None or task is asyncio.current_task():
            return
        task.cancel()
        await asyncio.wait({task})

    async def _wait_settled(self) -> None:
        task = self._settling
        if task is not None and not task.done():
            await asyncio.wait({task})

    # -- metrics ------------------------------------------------------------------------------

    def _observe_built(self, batched: Batched) -> None:
        if self._metrics is None or batched.undecodable:  # a record set aside is no batch
            return
        size = len(batched.body)
        self._metrics.batches_built.inc()
        self._metrics.batch_bytes.observe(size)
        if batched.raw_bytes > 0 and size > 0:
            self._metrics.batch_compression_ratio.observe(batched.raw_bytes / size)

    def _show_circuit(self) -> None:
        state = self._circuit.state
        if state is not self._circuit_seen:
            level = logging.WARNING if state is CircuitState.OPEN else logging.INFO
            log.log(level, "upstream circuit %s -> %s", self._circuit_seen.name, state.name)
            self._circuit_seen = state
        if self._metrics is not None:
            self._metrics.circuit_state.labels(exporter=self._exporter.name).set(int(state))
