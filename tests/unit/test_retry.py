"""Backoff and circuit breaker: pure state machines on a fake clock."""

from __future__ import annotations

import random

import pytest

from gateway.pipeline.retry import (
    MAX_COOLDOWN_FACTOR,
    Backoff,
    CircuitBreaker,
    CircuitState,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------------------- backoff


def test_backoff_grows_exponentially_then_is_capped() -> None:
    backoff = Backoff(0.5, 30.0, rng=random.Random(1))
    caps = [backoff.cap(a) for a in range(10)]
    assert caps == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]


@pytest.mark.parametrize("attempt", [0, 1, 2, 3, 5, 6, 7, 20])
def test_backoff_delay_is_jittered_within_half_cap_and_cap(attempt: int) -> None:
    backoff = Backoff(0.5, 30.0, rng=random.Random(attempt))
    cap = min(30.0, 0.5 * 2**attempt)
    delays = [backoff.delay(attempt) for _ in range(500)]
    assert all(cap / 2 <= d <= cap for d in delays)
    assert len(set(delays)) > 400  # jittered, not one fixed value
    # Spread over the whole range, not stuck at one end.
    assert min(delays) < cap * 0.55 and max(delays) > cap * 0.95


def test_backoff_never_above_maximum_even_for_huge_attempts() -> None:
    backoff = Backoff(0.1, 7.0, rng=random.Random(3))
    for attempt in (30, 63, 64, 1000, 10**6):
        assert 3.5 <= backoff.delay(attempt) <= 7.0


def test_backoff_delays_grow_on_average() -> None:
    backoff = Backoff(1.0, 1000.0, rng=random.Random(7))
    means = [sum(backoff.delay(a) for _ in range(200)) / 200 for a in range(6)]
    assert means == sorted(means)
    assert means[5] > 20 * means[0]


def test_backoff_same_seed_same_delays() -> None:
    a = Backoff(0.5, 30.0, rng=random.Random(42))
    b = Backoff(0.5, 30.0, rng=random.Random(42))
    assert [a.delay(i) for i in range(8)] == [b.delay(i) for i in range(8)]


@pytest.mark.parametrize(
    ("initial", "maximum", "message"),
    [(0, 1, "initial"), (-1, 1, "initial"), (2, 1, "maximum")],
)
def test_backoff_rejects_bad_settings(initial: float, maximum: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(initial, maximum)


def test_backoff_rejects_negative_attempt() -> None:
    with pytest.raises(ValueError, match="attempt"):
        Backoff(1, 2).delay(-1)


# ------------------------------------------------------------------------------- circuit


def state(cb: CircuitBreaker) -> CircuitState:
    # Read through a call: mypy would otherwise keep a narrowed property across failure().
    return cb.state


def breaker(
    failures: int = 3, cooldown: float = 10.0
) -> tuple[CircuitBreaker, Clock, list[CircuitState]]:
    clock = Clock()
    changes: list[CircuitState] = []
    return CircuitBreaker(failures, cooldown, clock=clock, on_change=changes.append), clock, changes


def test_circuit_opens_after_n_consecutive_failures() -> None:
    cb, _, changes = breaker(failures=3)
    for _ in range(2):
        assert cb.wait_time() == 0.0
        cb.failure()
    assert state(cb) is CircuitState.CLOSED and changes == []
    cb.failure()
    assert state(cb) is CircuitState.OPEN
    assert changes == [CircuitState.OPEN]
    assert cb.wait_time() == pytest.approx(10.0)


def test_success_resets_the_failure_count() -> None:
    cb, _, _ = breaker(failures=3)
    cb.failure()
    cb.failure()
    cb.success()
    cb.failure()
    cb.failure()
    assert state(cb) is CircuitState.CLOSED
    cb.failure()
    assert state(cb) is CircuitState.OPEN


def test_open_circuit_blocks_until_cooldown_then_lets_one_trial() -> None:
    cb, clock, changes = breaker(failures=1, cooldown=10.0)
    cb.failure()
    clock.now += 4.0
    assert cb.wait_time() == pytest.approx(6.0)
    assert state(cb) is CircuitState.OPEN
    clock.now += 6.0
    assert cb.wait_time() == 0.0  # the trial
    assert state(cb) is CircuitState.HALF_OPEN
    assert cb.wait_time() > 0  # a second request waits for the trial's result
    cb.success()
    assert state(cb) is CircuitState.CLOSED
    assert cb.wait_time() == 0.0
    assert changes == [CircuitState.OPEN, CircuitState.HALF_OPEN, CircuitState.CLOSED]


def test_failed_trial_reopens_with_doubled_cooldown_capped() -> None:
    cb, clock, changes = breaker(failures=1, cooldown=10.0)
    cb.failure()
    expected = 10.0
    for _ in range(6):
        clock.now += expected
        assert cb.wait_time() == 0.0
        cb.failure()  # the trial failed
        assert state(cb) is CircuitState.OPEN
        expected = min(expected * 2, 10.0 * MAX_COOLDOWN_FACTOR)
        assert cb.wait_time() == pytest.approx(expected)
    assert expected == 80.0
    assert changes[:4] == [
        CircuitState.OPEN,
        CircuitState.HALF_OPEN,
        CircuitState.OPEN,
        CircuitState.HALF_OPEN,
    ]
    # Success resets the cooldown to the configured one.
    clock.now += expected
    assert cb.wait_time() == 0.0
    cb.success()
    cb.failure()
    assert cb.wait_time() == pytest.approx(10.0)


def test_abandoned_trial_is_given_up_after_a_cooldown() -> None:
    cb, clock, _ = breaker(failures=1, cooldown=10.0)
    cb.failure()
    clock.now += 10.0
    assert cb.wait_time() == 0.0  # trial granted, its caller never reports back
    clock.now += 3.0
    assert cb.wait_time() == pytest.approx(7.0)
    clock.now += 7.0
    assert cb.wait_time() == 0.0  # another trial
    assert state(cb) is CircuitState.HALF_OPEN


def test_on_change_errors_do_not_break_the_breaker(caplog: pytest.LogCaptureFixture) -> None:
    def boom(state: CircuitState) -> None:
        raise RuntimeError("metrics down")

    cb = CircuitBreaker(1, 5.0, clock=Clock(), on_change=boom)
    cb.failure()
    assert state(cb) is CircuitState.OPEN
    assert "on_change" in caplog.text


@pytest.mark.parametrize(
    ("failures", "cooldown", "message"), [(0, 1.0, "failures"), (1, -1.0, "cooldown")]
)
def test_circuit_rejects_bad_settings(failures: int, cooldown: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CircuitBreaker(failures, cooldown)
