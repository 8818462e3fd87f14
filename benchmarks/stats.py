"""Median and spread of repeated runs; ratios between systems."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float
    runs: tuple[float, ...]

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        if not values:
            raise ValueError("no runs to summarize")
        return cls(statistics.median(values), min(values), max(values), tuple(values))

    def text(self, digits: int = 0) -> str:
        if len(self.runs) == 1:
            return f"{self.median:,.{digits}f}"
        return f"{self.median:,.{digits}f} ({self.low:,.{digits}f}-{self.high:,.{digits}f})"


def ratio(numerator: Spread, denominator: Spread) -> float:
    return numerator.median / denominator.median if denominator.median else 0.0
