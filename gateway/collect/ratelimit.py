"""Token buckets per key (client IP, session), bounded in number."""

from __future__ import annotations

import math
from collections import OrderedDict


class RateLimiter:
    """`rate` tokens a second up to `burst`; at most `capacity` keys remembered.

    An evicted key starts again with a full bucket: the bound keeps memory flat
    under a flood of distinct keys, at the price of forgetting the oldest.
    """

    def __init__(self, rate: float, burst: int, capacity: int = 100_000) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._capacity = capacity
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        """0 when allowed (a token is taken), else the seconds until a token is free."""
        tokens, last = self._buckets.pop(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens >= 1:
            self._remember(key, tokens - 1, now)
            return 0.0
        self._remember(key, tokens, now)
        return (1 - tokens) / self._rate if self._rate > 0 else math.inf

    def _remember(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._capacity:
            self._buckets.popitem(last=False)
