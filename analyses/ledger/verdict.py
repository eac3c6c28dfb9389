"""The verdict rule of the ledger: holds / differs / inconclusive, from our 95% interval and the paper's value.

Two kinds of claim. A *numeric* claim is a value the paper measured; it comes with a tolerance band (stated per
claim in :mod:`analyses.ledger.claims`). A *directional* claim is the sign of an effect (``greedy < TF``,
``capacity grows with depth``, ``PC1+PC2 > 50%``): the effect is compared with a threshold (0 for a difference).
:data:`RULE` is the text the ledger prints; the functions below are that text, and ``tests/test_ledger.py`` checks
every outcome on synthetic intervals.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from cramlens.stats import MeanCI

HOLDS, DIFFERS, INCONCLUSIVE, NOT_RUN = "holds", "differs", "inconclusive", "not run"
MIN_N = 3

# Where the true value may lie from ours when a length cap or a step budget stopped samples before their horizon:
# ``AT_LEAST`` for the horizons themselves (and a difference whose minuend alone was stopped), ``AT_MOST`` for a
# difference whose subtrahend alone was stopped, ``EITHER_WAY`` for a difference with both kinds of pair or a
# statistic that is not monotone in the horizons.
EXACT, AT_LEAST, AT_MOST, EITHER_WAY = "", "at least", "at most", "either way"
BOUNDS = (EXACT, AT_LEAST, AT_MOST, EITHER_WAY)

RULE = f"""\
Each row compares our mean and its 95% interval with the paper's value. The interval is Student t over texts or
items; with several seeds per text, the mean of per-text means with a two-stage bootstrap (texts, then seeds
within a text), n = texts; a bootstrap over texts where the row says so (a correlation, a ratio of means).

- Numeric claims (a value the paper measured), with a tolerance band stated per row:
  1. inconclusive when n < {MIN_N}, when the interval is undefined, or when the paper gives no value for this model
     and the claim is model-specific;
  2. when a length cap or a step budget stopped samples before their horizon, so that the true value is at least
     (at most) ours: differs when the interval lies above (below) the band, inconclusive otherwise; inconclusive
     when the true value may lie either way;
  3. differs when the interval does not touch the band;
  4. inconclusive when the interval is wider than the band (too noisy to confirm);
  5. holds when the paper's value lies in the interval, or the interval lies inside the band;
  6. inconclusive otherwise (the interval straddles an edge of the band).
- Directional claims (the sign of an effect against a threshold, 0 for a difference):
  1. inconclusive when n < {MIN_N} or the interval is undefined;
  2. when stopped samples make the true effect at least (at most) ours: only an interval wholly above (below) the
     threshold decides (holds or differs by the paper's side); inconclusive otherwise, and when it may lie either
     way (a difference in which both sides were stopped);
  3. holds when the whole interval lies on the paper's side of the threshold;
  4. differs when the whole interval lies on the other side;
  5. inconclusive otherwise (the interval contains the threshold).
- "not run": the experiment behind the row has not finished yet."""


@dataclass(frozen=True)
class Verdict:
    outcome: str  # holds | differs | inconclusive | not run
    reason: str


def _undefined(ci: MeanCI) -> bool:
    return ci.n < MIN_N or not (math.isfinite(ci.lo) and math.isfinite(ci.hi))


def numeric(ci: MeanCI, paper: float | None, band: tuple[float, float] | None, bound: str = EXACT) -> Verdict:
    """Rule for a measured value: ``paper`` is the published value, ``band`` the tolerance band around it (``None``:
    the paper gives no comparable value for this model); ``bound``: where the true value may lie from ours when a cap
    stopped samples (one of :data:`BOUNDS`), so that only an interval beyond the band on that side can decide."""
    _check_bound(bound)
    if _undefined(ci):
        return Verdict(INCONCLUSIVE, f"n = {ci.n} or no interval")
    if paper is None or band is None:
        return Verdict(INCONCLUSIVE, "the paper gives no comparable value for this model")
    lo, hi = min(band), max(band)
    if bound != EXACT:
        if bound == AT_LEAST and ci.lo > hi:
            return Verdict(
                DIFFERS, f"lower bounds, and the interval lies above the band [{lo:.3g}, {hi:.3g}]"
            )
        if bound == AT_MOST and ci.hi < lo:
            return Verdict(
                DIFFERS, f"upper bounds, and the interval lies below the band [{lo:.3g}, {hi:.3g}]"
            )
        return Verdict(INCONCLUSIVE, _CAPPED[bound])
    if ci.hi < lo or ci.lo > hi:
        return Verdict(DIFFERS, f"interval [{ci.lo:.3g}, {ci.hi:.3g}] outside the band [{lo:.3g}, {hi:.3g}]")
    if ci.hi - ci.lo > hi - lo:
        return Verdict(INCONCLUSIVE, f"interval wider ({ci.hi - ci.lo:.3g}) than the band ({hi - lo:.3g})")
    if ci.lo <= paper <= ci.hi:
        return Verdict(HOLDS, f"the paper's {paper:.3g} lies in our interval")
    if lo <= ci.lo and ci.hi <= hi:
        return Verdict(HOLDS, f"interval inside the band [{lo:.3g}, {hi:.3g}]")
    return Verdict(INCONCLUSIVE, f"interval straddles an edge of the band [{lo:.3g}, {hi:.3g}]")


def directional(ci: MeanCI, sign: int, threshold: float = 0.0, bound: str = EXACT) -> Verdict:
    """Rule for an effect whose paper direction is ``sign`` (+1: above ``threshold``, -1: below); ``bound`` as in
    :func:`numeric`: a true effect at least ours can only be decided by an interval above the threshold."""
    if sign not in (1, -1):
        raise ValueError(f"sign must be +1 or -1, not {sign!r}")
    _check_bound(bound)
    if _undefined(ci):
        return Verdict(INCONCLUSIVE, f"n = {ci.n} or no interval")
    side = ">" if sign > 0 else "<"
    above, below = ci.lo > threshold, ci.hi < threshold
    if bound != EXACT and not ((bound == AT_LEAST and above) or (bound == AT_MOST and below)):
        return Verdict(INCONCLUSIVE, _CAPPED[bound])
    if above if sign > 0 else below:
        return Verdict(HOLDS, f"interval {side} {threshold:g}, the paper's direction")
    if below if sign > 0 else above:
        return Verdict(DIFFERS, f"interval on the other side of {threshold:g}")
    return Verdict(INCONCLUSIVE, f"interval [{ci.lo:.3g}, {ci.hi:.3g}] contains {threshold:g}")


_CAPPED = {
    AT_LEAST: "our values are lower bounds (a cap stopped samples); the true value may lie higher",
    AT_MOST: "our value is an upper bound (a cap stopped samples it is subtracted from); the true value may lie lower",
    EITHER_WAY: "a cap stopped samples on both sides of the comparison; the true value may lie either way",
}


def _check_bound(bound: str) -> None:
    if bound not in BOUNDS:
        raise ValueError(f"bound must be one of {BOUNDS}, not {bound!r}")


def difference_bound(stopped: Iterable[tuple[bool, bool]]) -> str:
    """Where the true mean of paired differences ``a − b`` may lie from ours, from ``(a stopped, b stopped)`` per pair
    (stopped: a cap ended the sample before its horizon, so its true value is at least the one recorded)."""
    kinds = {(bool(a), bool(b)) for a, b in stopped if a or b}
    if not kinds:
        return EXACT
    if kinds == {(True, False)}:
        return AT_LEAST
    if kinds == {(False, True)}:
        return AT_MOST
    return EITHER_WAY
