"""Waiting for a benchmarked process to go quiet before the next scenario."""

from __future__ import annotations

import subprocess
import sys

from benchmarks.measure import wait_quiet

BUSY_THEN_IDLE = (
    "import time\nend = time.time() + {busy}\nwhile time.time() < end: pass\ntime.sleep(30)"
)


def _spawn(busy: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", BUSY_THEN_IDLE.format(busy=busy)])


def test_an_idle_process_is_quiet_after_one_window() -> None:
    proc = _spawn(0)
    try:
        assert wait_quiet([proc.pid], within=10, window=0.5) < 2
    finally:
        proc.kill()
        proc.wait()


def test_a_busy_process_is_waited_for_until_it_stops() -> None:
    proc = _spawn(2.5)
    try:
        waited = wait_quiet([proc.pid], within=20, window=0.5)
    finally:
        proc.kill()
        proc.wait()
    assert 2 <= waited < 10


def test_a_process_that_never_stops_is_waited_for_at_most_within() -> None:
    proc = _spawn(60)
    try:
        assert 2 <= wait_quiet([proc.pid], within=2, window=0.5) < 4
    finally:
        proc.kill()
        proc.wait()
