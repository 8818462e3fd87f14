"""The one way batches enter the store, local or over HTTP: ingest, then count.

The embedded exporter calls `ingest` directly; the HTTP endpoint calls it after
decoding. Both paths therefore show up the same in the store's metrics.
"""

from __future__ import annotations

from gateway.metrics import Metrics
from gateway.pipeline.batcher import UpstreamBatch
from gateway.store.engine import RecordingStore
from gateway.store.recordings import IngestResult, StoreError


class MeteredIngest:
    def __init__(self, store: RecordingStore, metrics: Metrics) -> None:
        self.store = store
        self._metrics = metrics

    async def ingest(self, batch: UpstreamBatch) -> IngestResult:
        """Durable once it returns; StoreError: nothing of the batch is visible."""
        try:
            result = await self.store.ingest(batch)
        except StoreError:
            self._metrics.store_ingest.labels(outcome="error").inc()
            raise
        outcome = "duplicate" if result.duplicate else "stored"
        self._metrics.store_ingest.labels(outcome=outcome).inc()
        for site, events in result.events.items():
            self._metrics.store_events.labels(site=site).inc(events)
        for site, started in result.started.items():
            self._metrics.recordings_started.labels(site=site).inc(started)
        return result
