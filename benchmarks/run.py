"""`python -m benchmarks.run`: every scenario, side by side, on loopback; writes
benchmarks/results/<date>.json, <date>.md and <date>.png (and latest.*).

Bounded in time (about 8 minutes by default; `--quick` takes about one) and stops
every process it started. Installs wrk and nginx with apt-get when missing.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import scenarios, systems
from benchmarks.content import ASSET, BIG, PAGE, write_content
from benchmarks.lz4bench import lz4_figures
from benchmarks.report import chart, markdown, write_json
from benchmarks.scenarios import Settings
from benchmarks.stats import ratio

RESULTS = Path(__file__).resolve().parent / "results"
GZIP = {"Accept-Encoding": "gzip"}


def ensure_tools() -> None:
    missing = [
        pkg for pkg, tool in (("wrk", "wrk"), ("nginx-light", "nginx")) if not shutil.which(tool)
    ]
    if not shutil.which("nginx") and os.path.exists("/usr/sbin/nginx"):
        missing = [m for m in missing if m != "nginx-light"]
    if missing:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True)


def machine() -> dict[str, Any]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        memory = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    except OSError:
        memory = 0.0
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nginx": nginx.stderr.strip().replace("nginx version: ", ""),
    }


def targets(found: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(what: str, value: float, goal: float, above: bool = True, unit: str = "x") -> None:
        met = value >= goal if above else value < goal
        out.append({"what": what, "measured": f"{value:.2f}{unit}", "met": met})

    def report(what: str, value: float, unit: str = "x") -> None:
        # A figure shown for context, with no target of its own.
        out.append(
            {"what": f"{what} (reported, no target)", "measured": f"{value:.2f}{unit}", "met": None}
        )

    def rps(key: str, name: str) -> Any:
        return scenarios_result[key][name].rps

    scenarios_result = found["raw"]
    if "1_html_injected" in scenarios_result:
        add(
            "1: >= 0.5 x nginx with sub_filter (requests/s)",
            ratio(rps("1_html_injected", "gateway"), rps("1_html_injected", "nginx-sub_filter")),
            0.5,
        )
        add(
            "1: >= 2 x the naive aiohttp proxy (requests/s)",
            ratio(rps("1_html_injected", "gateway"), rps("1_html_injected", "naive-aiohttp-proxy")),
            2,
        )
    if "aiohttp-floor" in scenarios_result.get("1_html_injected", {}):
        s1_floor = rps("1_html_injected", "aiohttp-floor")
        for reference, label in (
            ("nginx-sub_filter", "nginx with sub_filter"),
            ("naive-aiohttp-proxy", "the naive aiohttp proxy"),
        ):
            report(
                f"1: bound, the aiohttp floor x {label} (requests/s)",
                ratio(s1_floor, rps("1_html_injected", reference)),
            )
    if "gateway-2-workers" in scenarios_result.get("1_html_injected", {}):
        scaling = ratio(
            rps("1_html_injected", "gateway-2-workers"), rps("1_html_injected", "gateway")
        )
        report("1: scaling from 1 to 2 gateway workers", scaling)
    if "3_static_asset" in scenarios_result:
        add(
            "3: >= 0.5 x nginx proxy (requests/s)",
            ratio(rps("3_static_asset", "gateway"), rps("3_static_asset", "nginx-proxy")),
            0.5,
        )
    if "4_download_100mib" in scenarios_result:
        s4 = scenarios_result["4_download_100mib"]
        add(
            "4: >= 0.5 x nginx proxy (throughput)",
            ratio(s4["gateway"].bytes_per_second, s4["nginx-proxy"].bytes_per_second),
            0.5,
        )
        add(
            "4: gateway RSS < 150 MiB during the download",
            s4["gateway"].extra["peak_rss_mib"],
            150,
            above=False,
            unit=" MiB",
        )
    if "5_collect" in found["scenarios"]:
        for fixture, row in found["scenarios"]["5_collect"].items():
            add(
                f"5: >= 0.5 x the ceiling handler's bytes/s ({fixture})",
                row["bytes_per_second_ratio"],
                0.5,
            )
            report(
                f"5: bound, the aiohttp floor x the ceiling's bytes/s ({fixture})",
                row["floor_bytes_per_second_ratio"],
            )
    if "6_added_latency" in found["scenarios"]:
        add(
            "6: p99 added latency < 2 ms at 1,000 requests/s",
            found["scenarios"]["6_added_latency"]["added_p99_ms"],
            2,
            above=False,
            unit=" ms",
        )
        report(
            "6: bound, p99 added by the aiohttp floor",
            found["scenarios"]["6_added_latency"]["floor_added_p99_ms"],
            unit=" ms",
        )
    return out


def run(settings: Settings, only: set[str], out_dir: Path, make_chart: bool) -> dict[str, Any]:
    ensure_tools()
    raw: dict[str, Any] = {}
    shown: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        work.chmod(0o755)  # nginx's worker runs as another user when started as root
        root = work / "www"
        write_content(root, settings.big_bytes)
        started: list[systems.Server] = []

        def stop_all() -> None:
            for server in reversed(started):
                server.stop()

        stack.callback(stop_all)

        def start(server: systems.Server) -> systems.Server:
            started.append(server)
            return server

        def want(key: str) -> bool:
            return not only or key.split("_", 1)[0] in only

        origin = start(systems.nginx_origin(root, work))
        origin.name = "origin-direct"
        proxy = start(systems.nginx_proxy(origin.port, work, sub_filter=False))
        sub = start(systems.nginx_proxy(origin.port, work, sub_filter=True))
        ceiling = start(systems.aiohttp_ceiling(root, work))
        naive = start(systems.naive_proxy(origin.url, work))
        floor = start(systems.aiohttp_floor(origin.url, work))
        gateway = start(systems.gateway(origin.url, work))
        extras["gateway_idle_rss_mib"] = scenarios.idle_rss_mib(gateway)
        everyone = [origin, proxy, sub, ceiling, naive, gateway]
        two = start(systems.gateway(origin.url, work, workers=2)) if want("1_") else None

        plan = [
            ("1_html_injected", [*everyone, floor, *([two] if two else [])], f"/{PAGE}", None),
            ("2_html_gzip", everyone, f"/{PAGE}", GZIP),
            ("3_static_asset", [origin, proxy, ceiling, naive, gateway], f"/{ASSET}", None),
        ]
        for key, group, path, headers in plan:
            if want(key):
                print(f"scenario {key} ...", flush=True)
                raw[key] = scenarios.closed_loop(group, path, settings, headers=headers, work=work)
        if want("4_download"):
            print("scenario 4_download_100mib ...", flush=True)
            raw["4_download_100mib"] = scenarios.download(
                [origin, proxy, naive, gateway], f"/{BIG}", settings
            )
        for key, value in raw.items():
            shown[key] = {name: result.as_json() for name, result in value.items()}
        if want("5_collect"):
            print("scenario 5_collect ...", flush=True)
            shown["5_collect"] = scenarios.collect(gateway, ceiling, floor, settings, work)
        if want("6_added_latency"):
            print("scenario 6_added_latency ...", flush=True)
            shown["6_added_latency"] = scenarios.added_latency(
                origin, gateway, floor, f"/{PAGE}", settings
            )
    extras["lz4"] = lz4_figures()
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    results: dict[str, Any] = {
        "date": date,
        "machine": machine(),
        "settings": asdict(settings),
        "scenarios": shown,
        "extras": extras,
    }
    results["targets"] = targets({"raw": raw, "scenarios": shown})
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(results, out_dir / f"{date}.json")
    table = markdown(results)
    (out_dir / f"{date}.md").write_text(table)
    if make_chart:
        chart(results, out_dir / f"{date}.png")
    print(table)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 run of 1 s, a 16 MiB download")
    parser.add_argument("--runs", type=int, help="runs per system (default 3)")
    parser.add_argument("--seconds", type=float, help="seconds per run (default 5)")
    parser.add_argument("--only", default="", help="scenario numbers, e.g. 1,3,5")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.quick:
        settings = Settings(
            runs=1, seconds=1, big_bytes=16 << 20, latency_rate=200, latency_seconds=1
        )
    if args.runs or args.seconds:
        settings = Settings(
            **{
                **asdict(settings),
                "runs": args.runs or settings.runs,
                "seconds": args.seconds or settings.seconds,
            }
        )
    only = {part.strip() for part in args.only.split(",") if part.strip()}
    run(settings, only, args.out, not args.no_chart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
