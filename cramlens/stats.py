"""Means with their sample size and a 95% interval: every mean the toolkit reports goes through :func:`mean_ci`."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class MeanCI:
    """A mean over ``n`` values with a two-sided ``level`` Student-t interval ``[lo, hi]`` (nan when n < 2)."""

    mean: float
    lo: float
    hi: float
    n: int
    sd: float
    level: float = 0.95

    def __str__(self) -> str:
        return self.format()

    def format(self, fmt: str = "{:.1f}") -> str:
        """``18.3 [12.1, 24.5] (n=6)``; a single value has no interval."""
        m = fmt.format(self.mean)
        if self.n < 2:
            return f"{m} (n={self.n}, no interval)"
        return f"{m} [{fmt.format(self.lo)}, {fmt.format(self.hi)}] (n={self.n})"

    def to_dict(self) -> dict:
        return {
            "mean": self.mean,
            "lo": self.lo,
            "hi": self.hi,
            "n": self.n,
            "sd": self.sd,
            "level": self.level,
        }


def mean_ci(values: Iterable[float], level: float = 0.95) -> MeanCI:
    """Mean, sample sd and the t interval of the mean; nan values are dropped, not averaged."""
    from scipy import stats

    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(xs)
    if n == 0:
        nan = float("nan")
        return MeanCI(nan, nan, nan, 0, nan, level)
    m = sum(xs) / n
    if n < 2:
        return MeanCI(m, float("nan"), float("nan"), n, float("nan"), level)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return MeanCI(m, m - half, m + half, n, sd, level)
