"""The machine-noise probe scenario 6 reports beside its p99s."""

from __future__ import annotations

import pytest

from benchmarks import stalls


def test_stalls_summarise_late_wake_ups() -> None:
    late = [0.1] * 97 + [2.0, 5.0, 9.5]
    found = stalls.Stalls.of(late, seconds=2.0)
    assert found.wakeups == 100
    assert found.p99_late_ms == 9.5  # the 99th of 100, nearest rank
    assert found.stalls_per_second == 1.5  # 2.0 counts: at least STALL_MS late
    assert found.worst_ms == 9.5


def test_no_wake_ups_is_an_error_not_a_zero() -> None:
    with pytest.raises(ValueError, match="no wake-ups"):
        stalls.Stalls.of([], seconds=1.0)


def test_a_bare_loop_is_measured_in_a_fresh_process() -> None:
    found = stalls.measure(0.5)
    assert found.seconds == 0.5
    # A 1 ms timer wakes up at most 500 times in 0.5 s, and on any machine many times.
    assert 50 <= found.wakeups <= 500
    assert 0 <= found.p99_late_ms <= found.worst_ms
    assert found.stalls_per_second >= 0


def test_seconds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="seconds must be positive"):
        stalls.measure(0)


def test_steal_is_a_share_of_the_cpu_time_between_two_readings() -> None:
    assert stalls.steal_percent((10, 1000), (60, 2000)) == 5.0
    assert stalls.steal_percent((10, 1000), (10, 1000)) == 0.0  # no time passed
    before = stalls.cpu_times()
    sum(range(200_000))  # some time passes
    after = stalls.cpu_times()
    assert after[1] >= before[1] and after[0] >= before[0]
    assert 0 <= stalls.steal_percent(before, after) <= 100
