"""The benchmark harness runs end to end (the short version of `make bench`).

No speed is asserted here (speed targets live in benchmarks/, as ratios measured
side by side); this shows the harness works: every system answers, the gateway
injects and stores under load, and the results, table and chart are written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_quick_benchmark_run_writes_results(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--quick",
            "--only",
            "1,4,5,6",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [result_file] = tmp_path.glob("*.json")
    results = json.loads(result_file.read_text())
    s1 = results["scenarios"]["1_html_injected"]
    assert set(s1) == {
        "origin-direct",
        "nginx-proxy",
        "nginx-sub_filter",
        "aiohttp-ceiling",
        "naive-aiohttp-proxy",
        "aiohttp-floor",
        "gateway",
        "gateway-2-workers",
    }
    for name, system in s1.items():
        assert system["rps"]["median"] > 0, name
        assert system["errors"] == 0, name
    assert results["scenarios"]["4_download_100mib"]["gateway"]["peak_rss_mib"] > 0
    for fixture in ("full_snapshot", "incremental"):
        row = results["scenarios"]["5_collect"][fixture]
        assert row["systems"]["gateway"]["errors"] == 0
        assert row["systems"]["aiohttp-floor"]["errors"] == 0
        assert row["floor_bytes_per_second_ratio"] > 0
        # Every batch the gateway answered was stored, and its store took them all in.
        assert row["gateway_stored_batches"] > 0
        assert row["gateway_end_to_end_events_per_second"] > 0
    latency = results["scenarios"]["6_added_latency"]
    for name in ("origin-direct", "aiohttp-floor", "gateway"):
        assert latency[name]["errors"] == 0 and latency[name]["completed"] > 0, name
    assert latency["generator"].startswith("C")  # gcc is here: the native generator ran
    low, high = latency["added_p99_range_ms"]
    assert low <= latency["added_p99_ms"] <= high
    machine = latency["machine"]  # the bare loop ran in each round
    assert 0 <= machine["p99_late_ms"] <= machine["worst_range_ms"][1]
    assert 0 <= machine["steal_percent"] <= 100
    assert 0 < latency["gateway_quiet_after_seconds"] <= 121  # quiet: under 5% of a core
    assert {t["what"][:2] for t in results["targets"]} >= {"1:", "4:", "5:", "6:"}
    assert any("scaling from 1 to 2" in t["what"] for t in results["targets"])
    bounds = [t for t in results["targets"] if "the aiohttp floor" in t["what"]]
    assert len(bounds) == 5 and all(t["met"] is None for t in bounds)
    table = result_file.with_suffix(".md").read_text()
    assert "| gateway |" in table and "**Targets**" in table
    assert "a bare event loop" in table
    assert result_file.with_suffix(".png").stat().st_size > 10_000
