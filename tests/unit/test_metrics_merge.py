"""Merging the /metrics of several workers into one."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.admin.aggregate import merge_expositions


def worker(requests: int, spool: int, quota: int, latencies: list[float]) -> str:
    r = CollectorRegistry()
    c = Counter("gateway_proxy_requests_total", "Requests.", ["site"], registry=r)
    c.labels(site="shop").inc(requests)
    c.labels(site="blog").inc(1)
    Gauge("gateway_spool_bytes", "Spool.", registry=r).set(spool)
    Gauge("gateway_quota_used", "Quota.", ["site"], registry=r).labels(site="shop").set(quota)
    h = Histogram("gateway_origin_latency_seconds", "Latency.", buckets=(0.1, 1), registry=r)
    for value in latencies:
        h.observe(value)
    return generate_latest(r).decode()


def values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample but the per-process creation times (which the merge leaves out)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_counters_histograms_and_depths_add_up_shared_gauges_do_not() -> None:
    merged = values(
        merge_expositions(
            [worker(10, 100, 7, [0.05, 0.5]), worker(5, 50, 7, [2.0]), worker(0, 0, 6, [])]
        )
    )
    assert merged[("gateway_proxy_requests_total", (("site", "shop"),))] == 15
    assert merged[("gateway_proxy_requests_total", (("site", "blog"),))] == 3
    assert merged[("gateway_spool_bytes", ())] == 150
    assert merged[("gateway_quota_used", (("site", "shop"),))] == 7  # the same count, not 20
    assert merged[("gateway_origin_latency_seconds_count", ())] == 3
    assert merged[("gateway_origin_latency_seconds_bucket", (("le", "0.1"),))] == 1
    assert merged[("gateway_origin_latency_seconds_bucket", (("le", "1.0"),))] == 2
    assert merged[("gateway_origin_latency_seconds_bucket", (("le", "+Inf"),))] == 3
    assert abs(merged[("gateway_origin_latency_seconds_sum", ())] - 2.55) < 1e-9


def test_one_worker_round_trips() -> None:
    text = worker(3, 9, 1, [0.2])
    assert values(merge_expositions([text])) == values(text)


def test_label_values_are_escaped() -> None:
    r = CollectorRegistry()
    Counter("gateway_x_total", "X.", ["reason"], registry=r).labels(reason='a"b\\c').inc()
    text = generate_latest(r).decode()
    assert (
        values(merge_expositions([text, text]))[("gateway_x_total", (("reason", 'a"b\\c'),))] == 2
    )
