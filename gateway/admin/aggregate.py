"""One /metrics for several worker processes: their expositions merged.

Counters, histograms and most gauges add up across workers (requests, bytes,
spool depth). Gauges that every worker reports alike (the month's quota, the
limit, the circuit state) take the largest value instead of a sum.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

# Same value in every worker: summing would multiply it.
_SHARED_GAUGES = frozenset(
    {"gateway_quota_used", "gateway_quota_limit", "gateway_export_circuit_state"}
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value)}.0"
    return repr(value)


def merge_expositions(texts: list[str]) -> str:
    """Prometheus text format in, one merged text out (families in first-seen order)."""
    families: dict[str, tuple[str, str]] = {}  # name -> (type, help)
    samples: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            families.setdefault(family.name, (family.type, family.documentation))
            merged = samples.setdefault(family.name, {})
            shared = family.name in _SHARED_GAUGES
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue  # a creation time per process: no sum or max of it means anything
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key in merged:
                    old = merged[key]
                    merged[key] = max(old, sample.value) if shared else old + sample.value
                else:
                    merged[key] = sample.value
    lines: list[str] = []
    for name, (kind, doc) in families.items():
        exposed = f"{name}_total" if kind == "counter" else name
        lines.append(f"# HELP {exposed} {doc}")
        lines.append(f"# TYPE {exposed} {kind}")
        for (sample_name, labels), value in samples[name].items():
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            braces = f"{{{label_text}}}" if labels else ""
            lines.append(f"{sample_name}{braces} {_number(value)}")
    return "\n".join(lines) + "\n"
