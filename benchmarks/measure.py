"""Numbers about processes while they work: peak RSS, CPU seconds."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psutil


@dataclass
class Usage:
    peak_rss_bytes: int = 0
    cpu_seconds: float = 0.0


def rss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_info().rss
    return total


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


@contextmanager
def watching(pids: list[int], interval: float = 0.05) -> Iterator[Usage]:
    """Samples RSS every `interval` seconds and counts CPU seconds while the block runs."""
    usage = Usage(peak_rss_bytes=rss(pids))
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            usage.peak_rss_bytes = max(usage.peak_rss_bytes, rss(pids))

    thread = threading.Thread(target=sample, daemon=True)
    cpu_before = _cpu(pids)
    thread.start()
    try:
        yield usage
    finally:
        stop.set()
        thread.join()
        usage.cpu_seconds = _cpu(pids) - cpu_before
        usage.peak_rss_bytes = max(usage.peak_rss_bytes, rss(pids))


def wait_until(predicate: Callable[[], bool], within: float, interval: float = 0.1) -> float:
    """Seconds until `predicate()` was true (or `within` if it never was)."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if predicate():
            break
        time.sleep(interval)
    return time.monotonic() - started


def wait_quiet(pids: list[int], within: float, busy: float = 0.05, window: float = 1.0) -> float:
    """Seconds until the processes used under `busy` of a core over `window` seconds (or
    `within` if they never did): what a scenario left behind must not fall on the next."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        before = _cpu(pids)
        time.sleep(window)
        if _cpu(pids) - before < busy * window:
            break
    return round(time.monotonic() - started, 1)
