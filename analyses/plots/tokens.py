"""How the figures of a progressive run show its tokens, numbers and samples (shared by the run figures).

- :data:`Decode`, :func:`default_decode`: a token id as text (the tokenizer's, else ``#id``);
- :func:`token_label`: a token as a cell or axis label (newlines, tabs and whitespace made visible);
- :func:`finite`, :func:`fmt`: numbers that may be missing or not finite, as floats or labels;
- :func:`sample_ids`, :func:`best_sample`: the samples of a run, and the one with the longest horizon.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from cramlens import CramRun

Decode = Callable[[int], str]


def finite(x) -> float | None:
    """``x`` as a float, ``None`` when it is missing, not a number or not finite."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def fmt(x, spec: str = "{:.1f}", none: str = "–") -> str:
    """``x`` formatted with ``spec``, ``none`` when it is not a finite number."""
    x = finite(x)
    return none if x is None else spec.format(x)


def token_label(s: str) -> str:
    """A token as a cell label: newlines and tabs made visible, whitespace-only tokens as middle dots."""
    s = s.replace("\n", "↵").replace("\t", "→")
    return "·" * len(s) if s and not s.strip() else s


def default_decode(tokenizer=None) -> Decode:
    """Token id -> text with ``tokenizer``, or ``#id`` without one."""
    if tokenizer is None:
        return lambda t: f"#{t}"
    return lambda t: tokenizer.decode([int(t)])


def sample_ids(run: CramRun) -> list[int]:
    """The sample ids of a run's stage rows, sorted."""
    return sorted({int(r["sample_id"]) for r in run.rows})


def best_sample(run: CramRun) -> int:
    """The sample with the longest horizon (ties: the lowest id)."""
    by = {s.sample_id: s.horizon for s in run.samples}
    return max(sorted(by), key=lambda i: by[i])
