"""The machine's own scheduling noise: how late a bare event loop's timer fires.

A fresh process runs nothing but uvloop and a 1 ms sleep in a loop, and counts
how late each wake-up is. On a shared virtual machine a process is sometimes
not scheduled for several milliseconds (steal, other tenants, the other
benchmark processes); every server on the machine, the direct origin included,
gets those stalls, and a server that is busy when one ends also queues the
requests that arrived meanwhile. Scenario 6 reports this beside its p99s,
with the share of CPU time stolen by the hypervisor while it ran.

`python -m benchmarks.stalls SECONDS` prints the measurement as JSON.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

TICK = 0.001  # seconds the loop asks to sleep each time
STALL_MS = 2.0  # a wake-up at least this late counts as a stall


@dataclass(frozen=True)
class Stalls:
    seconds: float
    wakeups: int
    p99_late_ms: float
    stalls_per_second: float  # wake-ups at least STALL_MS late
    worst_ms: float

    @classmethod
    def of(cls, lateness_ms: list[float], seconds: float) -> Stalls:
        if not lateness_ms:
            raise ValueError("no wake-ups measured")
        ordered = sorted(lateness_ms)
        stalls = sum(1 for late in ordered if late >= STALL_MS)
        return cls(
            seconds=seconds,
            wakeups=len(ordered),
            p99_late_ms=round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
            stalls_per_second=round(stalls / seconds, 2),
            worst_ms=round(ordered[-1], 3),
        )


async def _lateness(seconds: float) -> list[float]:
    late: list[float] = []
    end = time.perf_counter() + seconds
    while (start := time.perf_counter()) < end:
        await asyncio.sleep(TICK)
        late.append(max(0.0, (time.perf_counter() - start - TICK) * 1000))
    return late


def cpu_times() -> tuple[int, int]:
    """(steal, total) clock ticks of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice: inside user]
    return fields[7], sum(fields[:8])


def steal_percent(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of CPU time the hypervisor gave to others between two cpu_times()."""
    total = after[1] - before[1]
    return round(100 * (after[0] - before[0]) / total, 1) if total > 0 else 0.0


def measure(seconds: float) -> Stalls:
    """Run the bare loop in a fresh process for `seconds` (nothing else of the caller's)."""
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds!r}")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.stalls", str(seconds)],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
        cwd=Path(__file__).resolve().parents[1],
    )
    return Stalls(**json.loads(done.stdout))


def main() -> None:
    import uvloop

    seconds = float(sys.argv[1])
    print(json.dumps(asdict(Stalls.of(uvloop.run(_lateness(seconds)), seconds))))


if __name__ == "__main__":
    main()
