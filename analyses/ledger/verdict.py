"""The verdict rule of the ledger: holds / differs / inconclusive, from our 95% interval and the paper's value.

Two kinds of claim. A *numeric* claim is a value the paper measured; it comes with a tolerance band (stated per
claim in :mod:`analyses.ledger.claims`). A *directional* claim is the sign of an effect (``greedy < TF``,
``capacity grows with depth``, ``PC1+PC2 > 50%``): the effect is compared with a threshold (0 for a difference).
:data:`RULE` is the text the ledger prints; the functions below are that text, and ``tests/test_ledger.py`` checks
every outcome on synthetic intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cramlens.stats import MeanCI

HOLDS, DIFFERS, INCONCLUSIVE, NOT_RUN = "holds", "differs", "inconclusive", "not run"
MIN_N = 3

RULE = f"""\
Each row compares our mean and its 95% interval with the paper's value. The interval is Student t over texts or
items; with several seeds per text, the mean of per-text means with a two-stage bootstrap (texts, then seeds
within a text), n = texts; a bootstrap over texts where the row says so (a correlation, a ratio of means).

- Numeric claims (a value the paper measured), with a tolerance band stated per row:
  1. inconclusive when n < {MIN_N}, when the interval is undefined, or when the paper gives no value for this model
     and the claim is model-specific;
  2. when some of our values are lower bounds (a length cap or a step budget stopped a sample before its horizon):
     differs when the interval lies above the band, inconclusive otherwise (the true value may lie higher);
  3. differs when the interval does not touch the band;
  4. inconclusive when the interval is wider than the band (too noisy to confirm);
  5. holds when the paper's value lies in the interval, or the interval lies inside the band;
  6. inconclusive otherwise (the interval straddles an edge of the band).
- Directional claims (the sign of an effect against a threshold, 0 for a difference):
  1. inconclusive when n < {MIN_N} or the interval is undefined;
  2. holds when the whole interval lies on the paper's side of the threshold;
  3. differs when the whole interval lies on the other side;
  4. inconclusive otherwise (the interval contains the threshold).
- "not run": the experiment behind the row has not finished yet."""


@dataclass(frozen=True)
class Verdict:
    outcome: str  # holds | differs | inconclusive | not run
    reason: str


def _undefined(ci: MeanCI) -> bool:
    return ci.n < MIN_N or not (math.isfinite(ci.lo) and math.isfinite(ci.hi))


def numeric(
    ci: MeanCI, paper: float | None, band: tuple[float, float] | None, lower_bound: bool = False
) -> Verdict:
    """Rule for a measured value: ``paper`` is the published value, ``band`` the tolerance band around it (``None``:
    the paper gives no comparable value for this model); ``lower_bound``: some of our values were stopped by a cap,
    so the true mean is at least ours and only an interval above the band can decide."""
    if _undefined(ci):
        return Verdict(INCONCLUSIVE, f"n = {ci.n} or no interval")
    if paper is None or band is None:
        return Verdict(INCONCLUSIVE, "the paper gives no comparable value for this model")
    lo, hi = min(band), max(band)
    if lower_bound:
        if ci.lo > hi:
            return Verdict(
                DIFFERS, f"lower bounds, and the interval lies above the band [{lo:.3g}, {hi:.3g}]"
            )
        return Verdict(
            INCONCLUSIVE, "our values are lower bounds (a cap stopped samples); the true value may lie higher"
        )
    if ci.hi < lo or ci.lo > hi:
        return Verdict(DIFFERS, f"interval [{ci.lo:.3g}, {ci.hi:.3g}] outside the band [{lo:.3g}, {hi:.3g}]")
    if ci.hi - ci.lo > hi - lo:
        return Verdict(INCONCLUSIVE, f"interval wider ({ci.hi - ci.lo:.3g}) than the band ({hi - lo:.3g})")
    if ci.lo <= paper <= ci.hi:
        return Verdict(HOLDS, f"the paper's {paper:.3g} lies in our interval")
    if lo <= ci.lo and ci.hi <= hi:
        return Verdict(HOLDS, f"interval inside the band [{lo:.3g}, {hi:.3g}]")
    return Verdict(INCONCLUSIVE, f"interval straddles an edge of the band [{lo:.3g}, {hi:.3g}]")


def directional(ci: MeanCI, sign: int, threshold: float = 0.0) -> Verdict:
    """Rule for an effect whose paper direction is ``sign`` (+1: above ``threshold``, -1: below)."""
    if sign not in (1, -1):
        raise ValueError(f"sign must be +1 or -1, not {sign!r}")
    if _undefined(ci):
        return Verdict(INCONCLUSIVE, f"n = {ci.n} or no interval")
    side = ">" if sign > 0 else "<"
    if (ci.lo > threshold) if sign > 0 else (ci.hi < threshold):
        return Verdict(HOLDS, f"interval {side} {threshold:g}, the paper's direction")
    if (ci.hi < threshold) if sign > 0 else (ci.lo > threshold):
        return Verdict(DIFFERS, f"interval on the other side of {threshold:g}")
    return Verdict(INCONCLUSIVE, f"interval [{ci.lo:.3g}, {ci.hi:.3g}] contains {threshold:g}")
