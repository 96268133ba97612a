"""Seeded draws, and rounding of drawn amounts, rates and dates."""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Generic, TypeVar

T = TypeVar("T")


class Rng(random.Random):
    """random.Random with draws built on random() alone, several times faster than choice()."""

    def one(self, seq: Sequence[T]) -> T:
        return seq[int(self.random() * len(seq))]

    def below(self, n: int) -> int:
        return int(self.random() * n)

    def between(self, low: int, high: int) -> int:
        """An integer from low to high, both included."""
        return low + int(self.random() * (high - low + 1))

    def moment(self, start: dt.datetime, end: dt.datetime) -> dt.datetime:
        span = (end - start).total_seconds()
        return start + dt.timedelta(seconds=int(self.random() * span)) if span > 0 else start

    def day(self, start: dt.date, end: dt.date) -> dt.date:
        span = end.toordinal() - start.toordinal()
        return dt.date.fromordinal(start.toordinal() + self.below(span)) if span > 0 else start


@dataclass(frozen=True)
class Weighted(Generic[T]):
    values: tuple[T, ...]
    cumulative: tuple[float, ...]

    def pick(self, rng: Rng) -> T:
        return self.values[bisect.bisect(self.cumulative, rng.random() * self.cumulative[-1])]


def weighted(*pairs: tuple[T, float]) -> Weighted[T]:
    return Weighted(tuple(v for v, _ in pairs), tuple(itertools.accumulate(w for _, w in pairs)))


def cents(yuan: float) -> Decimal:
    return Decimal(round(yuan * 100)).scaleb(-2)


def percent(rate: float) -> Decimal:
    return Decimal(round(rate * 10000)).scaleb(-4)


def lognormal(rng: Rng, median: float, sigma: float, low: float, high: float) -> float:
    # gauss() keeps the second value of each pair it draws: twice as fast as lognormvariate().
    return min(max(median * math.exp(rng.gauss(0.0, sigma)), low), high)


def round_to(value: float, step: float) -> float:
    return max(step, round(value / step) * step)


def at(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour))


def add_months(day: dt.date, months: int) -> dt.date:
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    # The 31st or 29 February may not exist in the target month: banks then take its last day.
    last = (dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)).day
    return dt.date(year, month, min(day.day, last))
