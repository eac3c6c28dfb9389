"""A horizon is a draw: how much of its spread belongs to the text and how much to the seed (issue 23).

Input: the per-sample summaries of one or more progressive runs in which each text was crammed several times
(``--seeds 0,1,2``; several runs add numeric variants: fast vs plain path, another batch composition, a perturbed
e0). For each metric (compressed tokens, the horizon, IG at the horizon and at the final stage, steps to the
horizon) :func:`variance_components` fits the one-way random-effects model ``x_ts = mu + a_t + e_ts`` (text t,
seed s) by ANOVA moments:

- between-text variance ``sigma_b^2 = max(0, (MSB - MSW) / n0)`` and within-text (seed) variance ``sigma_w^2 =
  MSW``, with ``n0 = (N - sum n_t^2 / N) / (T - 1)`` (unbalanced designs);
- the intra-class correlation ``ICC = sigma_b^2 / (sigma_b^2 + sigma_w^2)``: the share of a single draw's variance
  that is the text's, with the exact F-based 95% interval of ICC(1) (Searle 1971; exact for balanced designs);
- the mean over texts of per-text means with a two-stage (texts, then seeds) bootstrap interval
  (:func:`cramlens.stats.hierarchical_mean_ci`), the interval to put beside a paper number;
- the within-text coefficient of variation (seed sd / text mean), averaged over texts with a t interval: a
  scale-free spread, so "is IG steadier across seeds than the horizon?" compares like with like
  (:func:`steadier`: the paired per-text difference of CVs with its t interval).

A draw that reached the end of its text without failing a stage is *censored* (its horizon is at least the text's
length); the analysis counts them, because a censored draw understates both the mean and the seed spread.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from cramlens.stats import MeanCI, hierarchical_mean_ci, mean_ci

METRICS = {
    "compressed_tokens": "compressed tokens (paper's unit)",
    "horizon": "horizon (tokens)",
    "information_gain_bits": "IG at the horizon (bits)",
    "information_gain_bits_final": "IG at the final stage (bits)",
    "steps": "steps to the horizon",
}


@dataclass(frozen=True)
class Draw:
    """One cramming of one text: which text, seed and numeric variant, and what it reached."""

    text_id: str
    seed: int | None
    variant: str
    censored: bool  # every stage passed up to the text's end: the horizon is a lower bound
    values: dict[str, float]


@dataclass(frozen=True)
class Components:
    """Variance components of one metric over texts x draws."""

    metric: str
    n_texts: int
    n_draws: int
    draws_per_text: float  # n0, the ANOVA's effective group size
    mean: MeanCI  # mean of per-text means, two-stage bootstrap interval
    between_var: float
    within_var: float
    icc: float
    icc_lo: float
    icc_hi: float
    within_cv: MeanCI  # per-text seed sd / text mean, averaged over texts (t interval)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["within_cv"] = self.mean.to_dict(), self.within_cv.to_dict()
        return d


def draws_from_runs(runs: Mapping[str, object]) -> list[Draw]:
    """The draws of ``{variant label: CramRun}`` (progressive runs; each finished sample is one draw, so a run
    still in progress gives the draws it has finished)."""
    out = []
    for label, run in runs.items():
        for s in run.summaries():
            if not s.finished:
                continue
            out.append(
                Draw(
                    text_id=s.text_id,
                    seed=s.seed,
                    variant=label,
                    censored=not s.reason,  # its last stage passed: the text ended before the method did
                    values={m: float(getattr(s, m)) for m in METRICS},
                )
            )
    return out


def by_text(draws: Sequence[Draw], metric: str) -> dict[str, list[float]]:
    """``{text_id: [value per draw]}`` of one metric, nan values dropped."""
    out: dict[str, list[float]] = {}
    for d in draws:
        v = d.values.get(metric, float("nan"))
        if not math.isnan(v):
            out.setdefault(d.text_id, []).append(v)
    return out


def icc_interval(msb: float, msw: float, n_texts: int, n_draws: int, n0: float, level: float) -> tuple:
    """The exact F interval of ICC(1) from the ANOVA mean squares (clipped to [0, 1])."""
    from scipy import stats

    df_b, df_w = n_texts - 1, n_draws - n_texts
    if df_b < 1 or df_w < 1 or msw <= 0:
        return float("nan"), float("nan")
    q = 0.5 + level / 2
    f = msb / msw
    f_lo = f / stats.f.ppf(q, df_b, df_w)
    f_hi = f * stats.f.ppf(q, df_w, df_b)
    lo, hi = ((x - 1) / (x + n0 - 1) for x in (f_lo, f_hi))
    return float(np.clip(lo, 0, 1)), float(np.clip(hi, 0, 1))


def variance_components(
    values_by_text: Mapping[str, Sequence[float]], metric: str = "", level: float = 0.95
) -> Components:
    """One-way random-effects ANOVA of ``{text: draws}`` (texts with a single draw add to the between-text part
    only)."""
    groups = [np.asarray(v, dtype=float) for v in values_by_text.values() if len(v)]
    sizes = np.array([g.size for g in groups])
    T, N = len(groups), int(sizes.sum()) if groups else 0
    nan = float("nan")
    means = np.array([g.mean() for g in groups]) if groups else np.array([])
    grand = float(np.concatenate(groups).mean()) if groups else nan
    msb = float((sizes * (means - grand) ** 2).sum() / (T - 1)) if T > 1 else nan
    msw = float(sum(((g - g.mean()) ** 2).sum() for g in groups) / (N - T)) if N > T else nan
    n0 = float((N - (sizes**2).sum() / N) / (T - 1)) if T > 1 else nan
    between = max(0.0, (msb - msw) / n0) if T > 1 and N > T else nan
    total = between + msw
    icc = between / total if total > 0 else nan
    lo, hi = icc_interval(msb, msw, T, N, n0, level) if T > 1 and N > T else (nan, nan)
    cvs = [g.std(ddof=1) / g.mean() for g in groups if g.size > 1 and g.mean() != 0]
    return Components(
        metric=metric,
        n_texts=T,
        n_draws=N,
        draws_per_text=n0,
        mean=hierarchical_mean_ci(values_by_text, level),
        between_var=between,
        within_var=msw,
        icc=icc,
        icc_lo=lo,
        icc_hi=hi,
        within_cv=mean_ci(cvs, level),
    )


def steadier(draws: Sequence[Draw], a: str, b: str) -> MeanCI:
    """Per-text within-text CV of ``a`` minus that of ``b`` (t interval over texts): below 0 when ``a`` is steadier
    across seeds."""
    va, vb = by_text(draws, a), by_text(draws, b)
    diffs = []
    for t in va.keys() & vb.keys():
        xa, xb = np.asarray(va[t]), np.asarray(vb[t])
        if xa.size > 1 and xb.size > 1 and xa.mean() != 0 and xb.mean() != 0:
            diffs.append(xa.std(ddof=1) / xa.mean() - xb.std(ddof=1) / xb.mean())
    return mean_ci(diffs)


@dataclass(frozen=True)
class SpreadReport:
    """Everything :func:`analyse` measures, ready for tables, figures and JSON."""

    draws: list[Draw]
    components: dict[str, Components]
    ig_vs_horizon: MeanCI  # CV(IG at horizon) - CV(compressed tokens), per text
    censored: int

    def to_dict(self) -> dict:
        return {
            "n_draws": len(self.draws),
            "n_texts": len({d.text_id for d in self.draws}),
            "variants": sorted({d.variant for d in self.draws}),
            "censored": self.censored,
            "components": {k: c.to_dict() for k, c in self.components.items()},
            "ig_vs_horizon_cv_difference": self.ig_vs_horizon.to_dict(),
            "draws": [asdict(d) for d in self.draws],
        }


def analyse(draws: Sequence[Draw], level: float = 0.95) -> SpreadReport:
    """Variance components of every metric, and whether IG is steadier across seeds than the horizon."""
    comps = {m: variance_components(by_text(draws, m), m, level) for m in METRICS}
    return SpreadReport(
        list(draws),
        comps,
        steadier(draws, "information_gain_bits", "compressed_tokens"),
        sum(d.censored for d in draws),
    )


def texts_needed(c: Components, half_width: float, seeds_per_text: int) -> int:
    """Texts needed for a 95% half-width of the mean (normal approximation) with ``k`` draws per text:
    ``Var(mean) = (sigma_b^2 + sigma_w^2 / k) / T``."""
    var_text_mean = c.between_var + c.within_var / max(1, seeds_per_text)
    if not (var_text_mean > 0 and half_width > 0):
        return 0
    return int(math.ceil(var_text_mean * (1.96 / half_width) ** 2))


def spread_table(rep: SpreadReport, model: str) -> list:
    """The printed report: a rich table of the components and the lines that read it (paper comparison included)."""
    from rich.table import Table

    from cramlens.paper import COMPRESSED_TOKENS

    t = Table(title=f"Horizon spread over texts x seeds ({model})", title_justify="left")
    for col in (
        "metric",
        "mean of text means [95% 2-stage bootstrap]",
        "sd texts",
        "sd seeds",
        "ICC [95% F]",
        "seed CV",
    ):
        t.add_column(col, justify="left" if col == "metric" else "right")
    for m, c in rep.components.items():
        t.add_row(
            METRICS[m],
            c.mean.format("{:.1f}"),
            f"{math.sqrt(c.between_var):.1f}" if c.between_var == c.between_var else "–",
            f"{math.sqrt(c.within_var):.1f}" if c.within_var == c.within_var else "–",
            f"{c.icc:.2f} [{c.icc_lo:.2f}, {c.icc_hi:.2f}]",
            c.within_cv.format("{:.2f}"),
        )
    lines: list = [t]
    ct = rep.components["compressed_tokens"]
    lines.append(
        f"{len(rep.draws)} draws, {ct.n_texts} texts, {rep.censored} censored (reached the text's end: their "
        "horizon is a lower bound)"
    )
    lines.append(
        f"IG vs horizon: seed CV of IG at the horizon minus that of compressed tokens, per text: {rep.ig_vs_horizon} "
        "(below 0: IG is steadier across seeds)"
    )
    ref = COMPRESSED_TOKENS.get(model)
    if ref is not None:
        lines.append(
            f"paper, {ref.model}: {ref.value} ± {ref.sd} compressed tokens (sd, n={ref.n} texts, one run each); "
            f"ours {ct.mean} over texts x seeds. Texts for a ±2-token interval at 3 seeds/text: "
            f"{texts_needed(ct, 2.0, 3)}"
        )
    return lines
