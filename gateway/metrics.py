"""Prometheus metrics of one gateway process, on a registry of its own.

A registry per process (not the global one) lets tests run several gateways
in one interpreter without their counts mixing.
"""

from __future__ import annotations

from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

M = TypeVar("M", bound=MetricWrapperBase)

_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    # Methods are client-chosen: bound the label set.
    return method if method in _KNOWN_METHODS else "OTHER"


def status_class(status: int) -> str:
    return f"{status // 100}xx"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], MetricWrapperBase] = {}
        r = self.registry
        self.proxied_requests = Counter(
            "gateway_proxy_requests_total",
            "Requests proxied to an origin, by site, method and response status class.",
            ["site", "method", "status_class"],
            registry=r,
        )
        self.origin_latency = Histogram(
            "gateway_origin_latency_seconds",
            "Time from sending a request to an origin until its response headers arrived.",
            ["site"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.request_bytes = Counter(
            "gateway_proxy_request_bytes_total",
            "Request body bytes received from clients and streamed to origins.",
            ["site"],
            registry=r,
        )
        self.response_bytes = Counter(
            "gateway_proxy_response_bytes_total",
            "Response body bytes sent to clients.",
            ["site"],
            registry=r,
        )
        self.origin_errors = Counter(
            "gateway_origin_errors_total",
            "Origin failures by kind (refused, reset, timeout, bad_response, aborted).",
            ["site", "kind"],
            registry=r,
        )
        self.rejected = Counter(
            "gateway_rejected_requests_total",
            "Requests answered by the gateway itself without reaching an origin, by reason.",
            ["reason"],
            registry=r,
        )
        self.injections = Counter(
            "gateway_injections_total",
            "HTML responses considered for injection, by outcome.",
            ["site", "outcome"],
            registry=r,
        )
        self.client_disconnects = Counter(
            "gateway_client_disconnects_total",
            "Clients that went away before their response was complete.",
            ["site"],
            registry=r,
        )
        self.websocket_sessions = Gauge(
            "gateway_upgraded_connections",
            "Upgraded (WebSocket) connections currently tunnelled.",
            ["site"],
            registry=r,
        )
        self.collect_batches = Counter(
            "gateway_collect_batches_total",
            "Recorder batches by outcome (stored, refused, duplicate, bad_batch, too_large, ...).",
            ["site", "outcome"],
            registry=r,
        )
        self.collect_refusals = Counter(
            "gateway_collect_refusals_total",
            "Batches answered {record: false}, by policy reason.",
            ["site", "reason"],
            registry=r,
        )
        self.collect_events = Counter(
            "gateway_collect_events_total",
            "rrweb events received, by outcome (stored, dropped, refused).",
            ["site", "outcome"],
            registry=r,
        )
        self.collect_bytes = Counter(
            "gateway_collect_bytes_total",
            "Decoded batch bytes received from recorders.",
            ["site"],
            registry=r,
        )
        self.masked_values = Counter(
            "gateway_masked_values_total",
            "Values masked by the gateway before anything is stored, by kind.",
            ["site", "kind"],
            registry=r,
        )
        self.quota_used = Gauge(
            "gateway_quota_used",
            "Recordings started this month (UTC).",
            ["site"],
            registry=r,
        )
        self.quota_limit = Gauge(
            "gateway_quota_limit",
            "Recordings allowed this month.",
            ["site"],
            registry=r,
        )
        self.spool_batches = Gauge(
            "gateway_spool_batches",
            "Batches in the spool not yet confirmed upstream.",
            registry=r,
        )
        self.spool_bytes = Gauge(
            "gateway_spool_bytes",
            "Bytes in the spool not yet confirmed upstream.",
            registry=r,
        )
        self.spool_damage = Counter(
            "gateway_spool_damaged_bytes_total",
            "Bytes cut or skipped when the spool was opened (torn_tail, corrupt_skipped, ...).",
            ["kind"],
            registry=r,
        )
        self.spool_fsync = Histogram(
            "gateway_spool_fsync_seconds",
            "Time one fsync of the spool took (one per group under fsync = grouped).",
            buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1),
            registry=r,
        )
        # ------------------------------------------------ pipeline: batcher and exporters
        self.batches_built = Counter(
            "gateway_batches_built_total",
            "Upstream batches built from spool records.",
            registry=r,
        )
        self.batch_bytes = Histogram(
            "gateway_batch_bytes",
            "Size of an upstream batch as sent (lz4-compressed).",
            buckets=(1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20),
            registry=r,
        )
        self.batch_compression_ratio = Histogram(
            "gateway_batch_compression_ratio",
            "Uncompressed msgpack size divided by lz4-compressed size, per upstream batch.",
            buckets=(1, 1.5, 2, 3, 4, 6, 8, 12, 16, 32),
            registry=r,
        )
        self.exports = Counter(
            "gateway_exports_total",
            "Attempts to hand an upstream batch to the exporter, by exporter and outcome "
            "(ok, retry, reject).",
            ["exporter", "outcome"],
            registry=r,
        )
        self.export_retries = Counter(
            "gateway_export_retries_total",
            "Upstream batches sent again after a failed attempt.",
            ["exporter"],
            registry=r,
        )
        self.dead_letters = Counter(
            "gateway_dead_letters_total",
            "Upstream batches the store refused for good, set aside in data_dir/dead-letter.",
            ["exporter"],
            registry=r,
        )
        self.export_latency = Histogram(
            "gateway_export_latency_seconds",
            "Time one export attempt took, until the store confirmed or failed.",
            ["exporter"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.circuit_state = Gauge(
            "gateway_export_circuit_state",
            "Circuit in front of the exporter: 0 closed, 1 open (not sending), 2 half-open.",
            ["exporter"],
            registry=r,
        )
        # ------------------------------------------------ store
        self.store_ingest = Counter(
            "gateway_store_ingest_total",
            "Upstream batches received by the store, by outcome "
            "(stored, duplicate, bad_batch, unauthorized, too_large, error).",
            ["outcome"],
            registry=r,
        )
        self.store_events = Counter(
            "gateway_store_events_total",
            "rrweb events written to recordings (duplicates not counted).",
            ["site"],
            registry=r,
        )
        self.recordings_started = Counter(
            "gateway_recordings_started_total",
            "Recordings created in the store.",
            ["site"],
            registry=r,
        )
        self.recordings_finalized = Counter(
            "gateway_recordings_finalized_total",
            "Recordings that became visible after finalize_after without events.",
            ["site"],
            registry=r,
        )
        self.recordings_expired = Counter(
            "gateway_recordings_expired_total",
            "Recordings deleted after retention_days.",
            ["site"],
            registry=r,
        )
        self.recordings_erased = Counter(
            "gateway_recordings_erased_total",
            "Recordings deleted on request (DELETE /api/v1/visitors/{visitor}).",
            ["site"],
            registry=r,
        )

    def child(self, metric: M, *values: str) -> M:
        """`metric.labels(*values)` (in label order), remembered: prometheus_client
        validates and locks on every labels() call, and the hot paths call it per request."""
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found  # type: ignore[return-value]
