"""Prometheus metrics of one gateway process, on a registry of its own.

A registry per process (not the global one) lets tests run several gateways
in one interpreter without their counts mixing.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    # Methods are client-chosen: bound the label set.
    return method if method in _KNOWN_METHODS else "OTHER"


def status_class(status: int) -> str:
    return f"{status // 100}xx"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
