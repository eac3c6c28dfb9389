"""Means with their sample size and a 95% interval: every mean the toolkit reports goes through :func:`mean_ci`."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


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


def hierarchical_mean_ci(
    values_by_text: Mapping[str, Sequence[float]], level: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> MeanCI:
    """Mean over texts of per-text means, with a two-stage bootstrap interval (texts, then seeds within a text).

    A horizon is one draw per (text, seed): resampling texts alone treats each text's mean as exact and resampling
    runs alone ignores that runs of one text are correlated; the two-stage bootstrap keeps both sources of spread.
    ``n`` is the number of texts; ``sd`` the sd of the per-text means. Empty texts and nan values are dropped.
    """
    groups = [
        np.array([float(v) for v in vs if v is not None and not math.isnan(float(v))], dtype=float)
        for vs in values_by_text.values()
    ]
    groups = [g for g in groups if g.size]
    n = len(groups)
    nan = float("nan")
    if n == 0:
        return MeanCI(nan, nan, nan, 0, nan, level)
    means = np.array([g.mean() for g in groups])
    m = float(means.mean())
    if n < 2:
        return MeanCI(m, nan, nan, n, nan, level)
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot)
    for b in range(n_boot):
        picks = rng.integers(0, n, n)
        boot[b] = np.mean([rng.choice(groups[i], groups[i].size).mean() for i in picks])
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return MeanCI(m, float(lo), float(hi), n, float(means.std(ddof=1)), level)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    stat: Callable[[np.ndarray], float] = np.median,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> MeanCI:
    """``stat(values)`` with a percentile-bootstrap interval, for statistics without a t interval (medians, ratios).

    The result is a :class:`MeanCI` whose ``mean`` holds ``stat(values)`` and ``sd`` the bootstrap standard error.
    ``values`` may be 2-D: rows are resampled together (e.g. ``[[num, den], ...]`` for a ratio of means). Rows
    holding a nan are dropped; fewer than two rows give no interval.
    """
    xs = np.asarray(values, dtype=float)
    xs = xs[~np.isnan(xs).reshape(len(xs), -1).any(axis=1)] if xs.size else xs.reshape(0)
    n = len(xs)
    nan = float("nan")
    if n == 0:
        return MeanCI(nan, nan, nan, 0, nan, level)
    point = float(stat(xs))
    if n < 2:
        return MeanCI(point, nan, nan, n, nan, level)
    rng = np.random.default_rng(seed)
    boot = np.array([stat(xs[rng.integers(0, n, n)]) for _ in range(n_boot)], dtype=float)
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return MeanCI(point, float(lo), float(hi), n, float(boot.std(ddof=1)), level)


def two_sample_bootstrap_ci(
    groups: Sequence[Sequence], statistic: Callable[[list[list]], float], n_boot: int = 2000, seed: int = 0
) -> MeanCI:
    """``statistic`` of independent ``groups`` (e.g. two text sources) with a percentile interval from resampling
    each group's units with replacement, separately (:func:`bootstrap_ci` resamples the rows of one
    group); n = the smallest group."""
    n = min((len(g) for g in groups), default=0)
    nan = float("nan")
    if n == 0:
        return MeanCI(nan, nan, nan, 0, nan)
    est = float(statistic([list(g) for g in groups]))
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        picks = [[g[i] for i in rng.integers(0, len(g), len(g))] for g in groups]
        v = statistic(picks)
        if math.isfinite(v):
            boot.append(v)
    if n < 2 or not boot:
        return MeanCI(est, nan, nan, n, nan)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return MeanCI(est, float(lo), float(hi), n, float(np.std(boot, ddof=1)))
