"""Surprisal vs steps to absorb a token (REFERENCE C.9, D.11).

Pairs ``(s(L), Δsteps(L))`` over the perfectly converged single-token stages of progressive runs: stage ``L``
converged and so did stage ``L-1`` (``stage_seq_len`` exactly one less), ``Δsteps(L) = steps_taken(L) -
steps_taken(L-1)`` (cumulative optimizer steps), ``s(L) = -log2 p(x_L | x_<L)`` of the new token under the base
model (``new_token_surprisal_bits`` of our rows; recomputed with ``cramlens.surprisal_bits`` when a row lacks it,
e.g. the paper's released trajectories, which then needs the model).

:func:`correlation` reports the pooled Spearman ρ over all pairs with a 95 % cluster-bootstrap CI (resampling
whole samples with replacement), the partial Spearman ρ controlling for position ``L`` (rank-transform the three
variables, regress the ranks of s and Δsteps on the ranks of L, correlate the residuals), and per-sample ρ
(mean ± std, % of samples with ρ > 0; samples with < ``min_pairs`` pairs or a constant variable are skipped).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import stats

from cramlens import CramRun


def step_pairs(run: CramRun, model=None) -> list[dict]:
    """``{sample_id, length, surprisal, steps}`` for every converged stage preceded by a converged stage ``L-1``."""
    out = []
    for sid in sorted({int(r["sample_id"]) for r in run.rows}):
        traj = run.trajectory(sid)
        by_len = {int(r["stage_seq_len"]): r for r in traj if r.get("converged")}
        sur = None
        for L in sorted(by_len):
            prev = by_len.get(L - 1)
            if prev is None or L < 2:
                continue
            r = by_len[L]
            s = r.get("new_token_surprisal_bits")
            if s is None:
                if sur is None:
                    from cramlens import surprisal_bits

                    if model is None:
                        raise ValueError(
                            "rows lack new_token_surprisal_bits; pass the model to recompute them"
                        )
                    sur = surprisal_bits(model, r["input_ids"])
                s = float(sur[L - 1])
            steps = int(r["steps_taken"]) - int(prev["steps_taken"])
            if math.isfinite(float(s)):
                out.append({"sample_id": sid, "length": L, "surprisal": float(s), "steps": steps})
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def partial_spearman(x: Sequence[float], y: Sequence[float], z: Sequence[float]) -> float:
    """Spearman correlation of ``x`` and ``y`` controlling for ``z`` (Pearson on rank residuals)."""
    rx, ry, rz = (stats.rankdata(np.asarray(v, float)) for v in (x, y, z))
    if len(rx) < 4 or np.ptp(rz) == 0:
        return spearman(x, y)
    Z = np.column_stack([np.ones_like(rz), rz])
    res = [r - Z @ np.linalg.lstsq(Z, r, rcond=None)[0] for r in (rx, ry)]
    if np.std(res[0]) == 0 or np.std(res[1]) == 0:
        return float("nan")
    return float(np.corrcoef(res[0], res[1])[0, 1])


def cluster_bootstrap(
    pairs: Sequence[dict], n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """CI of the pooled Spearman ρ, resampling samples (clusters) with replacement."""
    by: dict[int, list[dict]] = {}
    for p in pairs:
        by.setdefault(p["sample_id"], []).append(p)
    ids = sorted(by)
    if len(ids) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    rhos = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(ids), len(ids))
        ps = [p for i in pick for p in by[ids[i]]]
        r = spearman([p["surprisal"] for p in ps], [p["steps"] for p in ps])
        if math.isfinite(r):
            rhos.append(r)
    a = (1 - level) / 2
    return float(np.quantile(rhos, a)), float(np.quantile(rhos, 1 - a))


def correlation(pairs: Sequence[dict], n_boot: int = 2000, seed: int = 0, min_pairs: int = 5) -> dict:
    """Pooled ρ with cluster-bootstrap CI, partial ρ | position, per-sample ρ summary (the D.11 row)."""
    s = [p["surprisal"] for p in pairs]
    st = [p["steps"] for p in pairs]
    pos = [p["length"] for p in pairs]
    lo, hi = cluster_bootstrap(pairs, n_boot, seed)
    per = per_sample(pairs, min_pairs)
    rhos = [r for r in per.values() if math.isfinite(r)]
    return {
        "N": len(pairs),
        "samples": len({p["sample_id"] for p in pairs}),
        "rho": spearman(s, st),
        "ci_low": lo,
        "ci_high": hi,
        "partial_rho": partial_spearman(s, st, pos),
        "rho_position_steps": spearman(pos, st),
        "per_sample_mean": float(np.mean(rhos)) if rhos else float("nan"),
        "per_sample_std": float(np.std(rhos, ddof=1)) if len(rhos) > 1 else float("nan"),
        "pct_positive": 100.0 * sum(r > 0 for r in rhos) / len(rhos) if rhos else float("nan"),
        "per_sample": per,
    }


def per_sample(pairs: Iterable[dict], min_pairs: int = 5) -> dict[int, float]:
    by: dict[int, list[dict]] = {}
    for p in pairs:
        by.setdefault(p["sample_id"], []).append(p)
    return {
        sid: spearman([p["surprisal"] for p in ps], [p["steps"] for p in ps])
        for sid, ps in sorted(by.items())
        if len(ps) >= min_pairs
    }
