"""Results -> JSON, a markdown table with the targets, and a PNG chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCENARIO_TITLES = {
    "1_html_injected": "1. HTML page ~30 KB, injected, keep-alive, 32 connections",
    "2_html_gzip": "2. The same page gzip-compressed by the origin, client accepts gzip",
    "3_static_asset": "3. 200 KB static asset passed through",
    "4_download_100mib": "4. 100 MiB download (one client)",
}


def write_json(results: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")


def _fmt(spread: dict[str, Any], digits: int = 0, scale: float = 1.0) -> str:
    med, low, high = (spread[k] * scale for k in ("median", "low", "high"))
    if len(spread["runs"]) == 1:
        return f"{med:,.{digits}f}"
    return f"{med:,.{digits}f} ({low:,.{digits}f}-{high:,.{digits}f})"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    s = results["settings"]
    lines = [
        f"Measured {results['date']} on {m['cpu']} ({m['cores']} cores, {m['memory_gib']} GiB), "
        f"Linux {m['kernel']}, Python {m['python']}, {m['nginx']}. Median of {s['runs']} runs "
        f"of {s['seconds']:g} s (min-max in brackets); one gateway process and one nginx "
        "worker; wrk and every server share the same cores.",
        "",
    ]
    for key, title in SCENARIO_TITLES.items():
        scenario = results["scenarios"].get(key)
        if scenario is None:
            continue
        download = key.startswith("4")
        lines += [f"**{title}**", ""]
        if download:
            lines += ["| system | MiB/s | peak RSS MiB |", "|---|---|---|"]
        else:
            lines += [
                "| system | requests/s | p99 ms | CPU s / 1000 req | peak RSS MiB |",
                "|---|---|---|---|---|",
            ]
        for name, system in scenario.items():
            if download:
                lines.append(
                    f"| {name} | {_fmt(system['bytes_per_second'], 0, 1 / 2**20)} | "
                    f"{system['peak_rss_mib']} |"
                )
            else:
                cpu = system.get("cpu_seconds_per_1000_requests")
                lines.append(
                    f"| {name} | {_fmt(system['rps'])} | {_fmt(system['p99_ms'], 2)} | "
                    f"{_fmt(cpu, 3) if cpu else '-'} | {system['peak_rss_mib']} |"
                )
        lines.append("")
    collect = results["scenarios"].get("5_collect")
    if collect:
        lines += [
            "**5. Collect endpoint: recorder batches (captured from the real recorder in "
            "Chromium) through masking, spool, lz4 and the embedded store; a full snapshot "
            "starts each recording, incremental batches come 20 to a recording**",
            "",
            "| batch | body bytes | events | system | batches/s | MB/s | stored | "
            "store drained after | end-to-end events/s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for fixture, row in collect.items():
            for name, system in row["systems"].items():
                cells = [
                    fixture,
                    f"{row['body_bytes']:,}",
                    str(row["events_per_batch"]),
                    name,
                    _fmt(system["rps"]),
                    _fmt(system["bytes_per_second"], 1, 1e-6),
                ]
                if name == "gateway":
                    cells += [
                        f"{row['gateway_stored_batches']:,.0f}",
                        f"{row['gateway_store_drain_seconds']} s",
                        f"{row['gateway_end_to_end_events_per_second']:,.0f}",
                    ]
                else:
                    cells += ["-", "-", "-"]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    latency = results["scenarios"].get("6_added_latency")
    if latency:
        runs = latency.get("runs", 1)
        lines += [
            f"**6. Added latency, open loop at {latency['rate']:,.0f} requests/s for "
            f"{latency['seconds']:g} s, {runs} run{'s' if runs != 1 else ''} a system "
            f"(from the scheduled send time; generator in {latency['generator']})**",
            "",
            "| system | p50 ms | p99 ms | errors |",
            "|---|---|---|---|",
        ]

        def cell(row: dict[str, Any], prefix: str, quantile: str) -> str:
            low, high = row[f"{prefix}{quantile}_range_ms"]
            median = row[f"{prefix}{quantile}_ms"]
            return f"{median:.2f}" if runs == 1 else f"{median:.2f} ({low:.2f}-{high:.2f})"

        for name, row in latency.items():
            if isinstance(row, dict) and name != "machine":
                # Percentiles count completed requests: errors (too late ones too) show here.
                lines.append(
                    f"| {name} | {cell(row, '', 'p50')} | {cell(row, '', 'p99')} "
                    f"| {row['errors']} |"
                )
        for label, prefix in (("the gateway", "added_"), ("the aiohttp floor", "floor_added_")):
            lines.append(
                f"| added by {label} (round by round) | {cell(latency, prefix, 'p50')} "
                f"| {cell(latency, prefix, 'p99')} | - |"
            )
        machine = latency.get("machine")
        if machine:
            lines += [
                "",
                f"The machine itself, same rounds: a bare event loop (uvloop, nothing else, "
                f"1 ms timer) wakes up late by p99 {cell(machine, '', 'p99_late')} ms, "
                f"{machine['stalls_per_second']:g} times a second by {machine['stall_ms']:g} ms "
                f"or more, worst {cell(machine, '', 'worst')} ms; the hypervisor took "
                f"{machine.get('steal_percent', 0):g}% of the CPU time (steal) in the scenario. "
                f"It started once the gateway had been quiet for a second, "
                f"{latency.get('gateway_quiet_after_seconds', 0):g} s after the scenario before.",
            ]
        lines.append("")
    extras = results.get("extras", {})
    if extras:
        lines += ["**Also**", ""]
        for label, row in extras.get("lz4", {}).items():
            lines.append(
                f"- lz4, {label}: {row['msgpack_bytes']:,} -> {row['lz4_bytes']:,} bytes "
                f"({row['ratio']}x), compress {row['compress_mib_per_s']:,} MiB/s, "
                f"decompress {row['decompress_mib_per_s']:,} MiB/s"
            )
        if "gateway_idle_rss_mib" in extras:
            lines.append(f"- gateway RSS idle: {extras['gateway_idle_rss_mib']} MiB")
        lines.append("")
    lines += ["**Targets**", "", "| target | measured | met |", "|---|---|---|"]
    verdicts = {True: "yes", False: "no", None: "-"}
    for target in results["targets"]:
        lines.append(f"| {target['what']} | {target['measured']} | {verdicts[target['met']]} |")
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], path: Path) -> bool:
    """Requests/s and p99 per system, one row per scenario; False if nothing to draw."""
    rows: list[tuple[str, dict[str, Any]]] = [
        (SCENARIO_TITLES[key], results["scenarios"][key])
        for key in ("1_html_injected", "2_html_gzip", "3_static_asset")
        if key in results["scenarios"]
    ]
    for fixture, row in results["scenarios"].get("5_collect", {}).items():
        rows.append((f"5. Collect endpoint, {fixture} batches", row["systems"]))
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 2, figsize=(12, 2.6 * len(rows)), squeeze=False)
    for index, (title, systems) in enumerate(rows):
        names = list(systems)
        colors = ["#d9480f" if n == "gateway" else "#868e96" for n in names]
        left, right = axes[index]
        left.barh(names, [systems[n]["rps"]["median"] for n in names], color=colors)
        left.set_title(f"{title[:60]}: requests/s", fontsize=9)
        right.barh(names, [systems[n]["p99_ms"]["median"] for n in names], color=colors)
        right.set_title("p99 latency (ms)", fontsize=9)
        for ax in (left, right):
            ax.tick_params(labelsize=8)
            ax.invert_yaxis()
    fig.suptitle(f"Recording gateway benchmarks, {results['date']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
