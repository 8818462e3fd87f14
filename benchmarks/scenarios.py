"""The scenarios: each runs its systems side by side, interleaved run by run, so that
the machine's noise falls on every system alike; results are medians with spread."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import stalls
from benchmarks.measure import rss, wait_quiet, wait_until, watching
from benchmarks.openloop import build_native, open_loop
from benchmarks.stats import Spread
from benchmarks.systems import Server
from benchmarks.wrk import WrkResult, get_script, post_script, run_wrk

FIXTURES = Path(__file__).resolve().parent / "fixtures"
COLLECT_PATH = "/__rec/v1/batch"


@dataclass(frozen=True)
class Settings:
    runs: int = 3
    seconds: float = 5.0
    connections: int = 32
    big_bytes: int = 100 * 1024 * 1024
    latency_rate: float = 1000.0
    latency_seconds: float = 10.0


@dataclass
class SystemResult:
    rps: Spread
    p99_ms: Spread
    bytes_per_second: Spread
    errors: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "rps": self.rps.__dict__,
            "p99_ms": self.p99_ms.__dict__,
            "bytes_per_second": self.bytes_per_second.__dict__,
            "errors": self.errors,
            **self.extra,
        }


def closed_loop(
    systems: list[Server],
    path: str,
    settings: Settings,
    *,
    headers: dict[str, str] | None = None,
    script: Path | None = None,
    work: Path,
    watch: Server | None = None,
) -> dict[str, SystemResult]:
    """wrk against each system, `settings.runs` times, systems interleaved (rotated)."""
    script = script or get_script(work, headers or {})
    runs: dict[str, list[WrkResult]] = {s.name: [] for s in systems}
    usage: dict[str, list[tuple[int, float, int]]] = {s.name: [] for s in systems}
    for system in systems:  # warm-up: pools, caches, JIT-free but lazy imports
        run_wrk(system.url + path, script, connections=settings.connections, seconds=1)
    for index in range(settings.runs):
        order = systems[index % len(systems) :] + systems[: index % len(systems)]
        for system in order:
            with watching(system.busy_pids) as seen:
                result = run_wrk(
                    system.url + path,
                    script,
                    connections=settings.connections,
                    seconds=settings.seconds,
                )
            runs[system.name].append(result)
            usage[system.name].append((seen.peak_rss_bytes, seen.cpu_seconds, result.requests))
    out: dict[str, SystemResult] = {}
    for system in systems:
        results = runs[system.name]
        peaks = [u[0] for u in usage[system.name]]
        cpu_per_k = [u[1] / u[2] * 1000 for u in usage[system.name] if u[2]]
        out[system.name] = SystemResult(
            rps=Spread.of([r.rps for r in results]),
            p99_ms=Spread.of([r.p99_ms for r in results]),
            bytes_per_second=Spread.of([r.bytes_per_second for r in results]),
            errors=sum(r.errors + r.status_errors for r in results),
            extra={
                "peak_rss_mib": round(max(peaks) / 2**20, 1),
                "cpu_seconds_per_1000_requests": Spread.of(cpu_per_k).__dict__
                if cpu_per_k
                else None,
            },
        )
    return out


def download(systems: list[Server], path: str, settings: Settings) -> dict[str, SystemResult]:
    """One client (curl) downloads the big file; throughput and the peak RSS of the server."""
    speeds: dict[str, list[float]] = {s.name: [] for s in systems}
    peaks: dict[str, int] = {s.name: 0 for s in systems}
    for index in range(settings.runs):
        order = systems[index % len(systems) :] + systems[: index % len(systems)]
        for system in order:
            with watching(system.busy_pids, interval=0.02) as seen:
                done = subprocess.run(
                    [
                        "curl",
                        "-s",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{size_download} %{time_total}",
                        system.url + path,
                    ],
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=True,
                )
            size, seconds = done.stdout.split()
            if int(size) != settings.big_bytes:
                raise RuntimeError(
                    f"{system.name}: downloaded {size} of {settings.big_bytes} bytes"
                )
            speeds[system.name].append(int(size) / float(seconds))
            peaks[system.name] = max(peaks[system.name], seen.peak_rss_bytes)
    return {
        name: SystemResult(
            rps=Spread.of([v / settings.big_bytes for v in values]),
            p99_ms=Spread.of([settings.big_bytes / v * 1000 for v in values]),
            bytes_per_second=Spread.of(values),
            extra={"peak_rss_mib": round(peaks[name] / 2**20, 1)},
        )
        for name, values in speeds.items()
    }


def fixture_body(name: str) -> tuple[str, int]:
    """A recorder batch as the browser sent it, with a per-request session placeholder."""
    batch = json.loads((FIXTURES / f"{name}.json").read_text())
    batch["session"] = "__SESSION__"
    batch["seq"] = "__SEQ__"  # a number once the Lua script fills it in
    return json.dumps(batch, separators=(",", ":"), ensure_ascii=False), len(batch["events"])


def collect(
    gateway: Server, ceiling: Server, floor: Server, settings: Settings, work: Path
) -> dict[str, dict[str, Any]]:
    """Recorder batches through masking, spool, lz4 and the embedded store, against a
    handler that only reads the body, and one that only decodes and compresses it (the
    floor). The gateway's figure counts batches it stored and the time its store took to
    take them all in (the spool drained)."""
    results: dict[str, dict[str, Any]] = {}
    # A full snapshot starts each recording; incremental batches come 20 to a recording.
    for fixture, per_session in (("full_snapshot", 1), ("incremental", 20)):
        body, events = fixture_body(fixture)
        script = post_script(work, fixture, COLLECT_PATH, body, per_session)
        stored_before = _metric(gateway, "gateway_collect_batches_total", 'outcome="stored"')
        measured = closed_loop([ceiling, floor, gateway], "", settings, script=script, work=work)
        for result in measured.values():
            # What counts here is the request bodies taken in, not the short answers.
            result.bytes_per_second = Spread.of(
                [rps * len(body.encode()) for rps in result.rps.runs]
            )
        # wrk's URL carries the path for GETs; the Lua script sets it for these POSTs.
        stored = _metric(gateway, "gateway_collect_batches_total", 'outcome="stored"') - (
            stored_before
        )
        drain = wait_until(lambda: _metric(gateway, "gateway_spool_batches", "") == 0, 300)
        sent_seconds = settings.seconds * settings.runs + 1  # the runs and the warm-up
        results[fixture] = {
            "body_bytes": len(body.encode()),
            "batches_per_recording": per_session,
            "events_per_batch": events,
            "systems": {name: r.as_json() for name, r in measured.items()},
            "gateway_stored_batches": stored,
            "gateway_store_drain_seconds": round(drain, 2),
            "gateway_end_to_end_events_per_second": round(
                stored * events / (sent_seconds + drain), 1
            ),
            "bytes_per_second_ratio": measured["gateway"].bytes_per_second.median
            / measured[ceiling.name].bytes_per_second.median,
            "floor_bytes_per_second_ratio": measured[floor.name].bytes_per_second.median
            / measured[ceiling.name].bytes_per_second.median,
        }
    return results


def _metric(gateway: Server, name: str, labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.admin_port}/metrics") as answer:
        text = answer.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (not labels or labels in line) and not line.startswith("#"):
            head = line.split(" ", 1)[0]
            if head == name or head.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
    return total


def added_latency(
    direct: Server, gateway: Server, floor: Server, path: str, settings: Settings
) -> dict[str, Any]:
    """Open loop at a fixed rate (wrk2-style, latency from the scheduled send time), each
    system `settings.runs` times, interleaved. What the gateway (and the floor: any proxy
    on aiohttp) adds is taken round by round against the direct origin's run of the same
    round, then the median: the machine's noise of the moment falls on both."""
    # The collect scenario's spool and store may still be at work: start from quiet.
    quiet_after = wait_quiet(gateway.busy_pids, within=120)
    out: dict[str, Any] = {
        "gateway_quiet_after_seconds": quiet_after,
        "rate": settings.latency_rate,
        "seconds": settings.latency_seconds,
        "runs": settings.runs,
        "generator": "C (native/openloop.c)" if build_native() else "Python (openloop.py)",
    }
    systems = [direct, floor, gateway]
    quantiles: dict[str, dict[str, list[float]]] = {s.name: {"p50": [], "p99": []} for s in systems}
    counts = {s.name: {"completed": 0, "errors": 0} for s in systems}
    machine: list[stalls.Stalls] = []
    started = stalls.cpu_times()
    for index in range(settings.runs):
        machine.append(stalls.measure(settings.latency_seconds))
        for system in systems[index % len(systems) :] + systems[: index % len(systems)]:
            result = asyncio.run(
                open_loop(
                    "127.0.0.1",
                    system.port,
                    path,
                    rate=settings.latency_rate,
                    duration=settings.latency_seconds,
                )
            )
            quantiles[system.name]["p50"].append(result.percentile(50))
            quantiles[system.name]["p99"].append(result.percentile(99))
            counts[system.name]["completed"] += result.completed
            counts[system.name]["errors"] += result.errors
    for system in systems:
        row: dict[str, Any] = dict(counts[system.name])
        for quantile, values in quantiles[system.name].items():
            row.update(_spread_ms(quantile, values))
        out[system.name] = row
    # The machine's own noise in the same rounds: a bare event loop's late wake-ups.
    out["machine"] = {
        **_spread_ms("p99_late", [m.p99_late_ms for m in machine]),
        **_spread_ms("worst", [m.worst_ms for m in machine]),
        "stalls_per_second": Spread.of([m.stalls_per_second for m in machine]).median,
        "stall_ms": stalls.STALL_MS,
        "steal_percent": stalls.steal_percent(started, stalls.cpu_times()),
    }
    for system, key in ((gateway, "added"), (floor, "floor_added")):
        for quantile in ("p50", "p99"):
            mine, origin = quantiles[system.name][quantile], quantiles[direct.name][quantile]
            added = _spread_ms(quantile, [a - b for a, b in zip(mine, origin, strict=True)])
            out.update({f"{key}_{name}": value for name, value in added.items()})
    return out


def _spread_ms(quantile: str, values: list[float]) -> dict[str, Any]:
    spread = Spread.of(values)
    return {
        f"{quantile}_ms": round(spread.median, 3),
        f"{quantile}_range_ms": [round(spread.low, 3), round(spread.high, 3)],
    }


def idle_rss_mib(server: Server) -> float:
    time.sleep(1)
    return round(rss(server.busy_pids) / 2**20, 1)
