"""When to try an upstream again: exponential backoff and a circuit breaker.

`Backoff` spaces the retries of one batch. `CircuitBreaker` stops all
attempts for a while once the upstream failed `failures` times in a row, so a
store that is down is not hammered, then lets a single trial through
(half-open) and closes again on its success. Both are pure state machines with
an injectable clock and random source: the delivery loop does the waiting.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from enum import IntEnum

log = logging.getLogger(__name__)

# A failed half-open trial doubles the cooldown, up to this many times the configured one.
MAX_COOLDOWN_FACTOR = 8


class Backoff:
    """Exponential backoff with "equal jitter": uniform in [cap/2, cap].

    cap = min(maximum, initial * 2**attempt). Half the cap is kept so the
    delay still grows with every attempt; the random half spreads edge nodes
    that failed at the same moment so they do not all come back together.
    """

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        if not initial > 0:
            raise ValueError(f"backoff initial delay must be positive, got {initial}")
        if not maximum >= initial:
            raise ValueError(
                f"backoff maximum ({maximum}) must not be less than the initial delay ({initial})"
            )
        self.initial = float(initial)
        self.maximum = float(maximum)
        self._rng = rng if rng is not None else random.Random()

    def cap(self, attempt: int) -> float:
        """The upper bound of delay(attempt), before jitter."""
        if attempt < 0:
            raise ValueError(f"attempt must not be negative, got {attempt}")
        if attempt >= 64:  # 2**64 * initial is past any sane maximum; avoid float overflow
            return self.maximum
        return min(self.maximum, self.initial * 2.0**attempt)

    def delay(self, attempt: int) -> float:
        cap = self.cap(attempt)
        return min(cap, self._rng.uniform(cap / 2, cap))


class CircuitState(IntEnum):
    CLOSED = 0  # requests flow
    OPEN = 1  # the upstream is considered down: no requests until the cooldown passed
    HALF_OPEN = 2  # the cooldown passed: one trial request decides


class CircuitBreaker:
    """Consecutive-failure circuit breaker.

    A failed half-open trial reopens the circuit with the cooldown doubled (up
    to MAX_COOLDOWN_FACTOR times the configured one), so a store that stays
    down is probed less and less often; a success resets it.
    """

    def __init__(
        self,
        failures: int,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[CircuitState], None] | None = None,
    ) -> None:
        if failures < 1:
            raise ValueError(f"circuit failures must be at least 1, got {failures}")
        if cooldown < 0:
            raise ValueError(f"circuit cooldown must not be negative, got {cooldown}")
        self.failures = failures
        self.cooldown = float(cooldown)
        self._clock = clock
        self._on_change = on_change
        self._state = CircuitState.CLOSED
        self._count = 0  # consecutive failures while closed
        self._current_cooldown = self.cooldown
        self._opened_at = 0.0
        self._trial_at: float | None = None  # when the half-open trial was let through

    @property
    def state(self) -> CircuitState:
        return self._state

    @property
    def current_cooldown(self) -> float:
        """The cooldown in force (grows after failed trials)."""
        return self._current_cooldown

    def wait_time(self) -> float:
        """0.0 if a request may go now, else the seconds until one may."""
        if self._state is CircuitState.CLOSED:
            return 0.0
        now = self._clock()
        if self._state is CircuitState.OPEN:
            remaining = self._opened_at + self._current_cooldown - now
            if remaining > 0:
                return remaining
            self._set(CircuitState.HALF_OPEN)
            self._trial_at = now
            return 0.0
        # Half-open: one trial at a time. A trial that never reported back (its
        # caller was cancelled) is given up after a cooldown, then another goes.
        if self._trial_at is not None:
            remaining = self._trial_at + self._current_cooldown - now
            if remaining > 0:
                return remaining
        self._trial_at = now
        return 0.0

    def success(self) -> None:
        self._count = 0
        self._current_cooldown = self.cooldown
        self._trial_at = None
        self._set(CircuitState.CLOSED)

    def failure(self) -> None:
        if self._state is CircuitState.CLOSED:
            self._count += 1
            if self._count >= self.failures:
                self._open()
        elif self._state is CircuitState.HALF_OPEN:
            self._current_cooldown = min(
                self._current_cooldown * 2, self.cooldown * MAX_COOLDOWN_FACTOR
            )
            self._open()
        else:  # already open (a request that started before it opened): restart the cooldown
            self._opened_at = self._clock()

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._trial_at = None
        self._count = 0
        self._set(CircuitState.OPEN)

    def _set(self, state: CircuitState) -> None:
        if state is self._state:
            return
        self._state = state
        if self._on_change is not None:
            try:
                self._on_change(state)
            except Exception:  # a metrics callback must not break delivery
                log.exception("circuit breaker on_change callback failed for %s", state.name)
