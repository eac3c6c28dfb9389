"""Solution diversity across learning rates from one shared initialisation (REFERENCE C.3, D.5).

Progressive runs of the same texts at several learning rates with the same seed start every sample from the same
``e_0`` (``cramlens.params``: the init is seeded per sample, independent of the learning rate); :func:`initial_embedding`
rebuilds it from a run's config, and :func:`run_lr_sweep` runs (or resumes) the sweep into ``<root>/lrsweep_<lr>/``.

Per sample, a geometric grid of ``n_lengths`` prefix lengths in ``[min_length, min over runs of the largest
converged length]``; a *group* is a (sample, ``L``) whose stage ``L`` converged (accuracy 1.0) in at least
``min_runs`` runs; ``e*_eta`` is that run's stage-``L`` embedding. Per group:

- ``disp_eta = ||e*_eta - e_0||``;
- **Sol. dist.** = mean pairwise ``||e*_a - e*_b||`` / mean over runs of ``disp_eta``;
- **Dir. cos.** = mean pairwise cosine of the unit displacements ``(e*_eta - e_0) / disp_eta``
  (random directions in ``R^D``: mean 0, spread ``1/sqrt(D)``, the paper's "random baseline");
- **IG CV** = std / |mean| of ``information_gain_bits`` across the group's runs (population std, %);
- ``sol_dist_orth``: what Sol. dist. would be if the displacements, with their actual lengths, were orthogonal.

Summary (:func:`summarize`): ``N`` groups, Sol. dist. median [IQR], mean Dir. cos., pooled mean IG CV, and
**Disp. ratio** = mean ``disp`` at the largest LR / mean ``disp`` at the smallest LR (over the groups holding both).
Two solutions at distance ``1.41 x`` the displacement with cosine ~0 are as far apart as orthogonal displacements
of equal length; ``~2`` would be antipodal.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cramlens import CramRun
from cramlens.errors import check
from cramlens.params import init_rows
from cramlens.stats import bootstrap_ci, mean_ci


def initial_embedding(run: CramRun, sample_id: int) -> torch.Tensor:
    """``e_0`` of a sample, rebuilt from the run's config (init method, seed, n_mem, d) — ``[m, d]`` fp32."""
    st = run.config.get("settings", {})
    check("recipe" in st and "seed" in st, "this run's config has no recipe/seed; pass e0 explicitly")
    check(st.get("parametrization", "direct") == "direct", "initial_embedding: only direct parametrisation")
    init = st["recipe"]["init"]
    check(init != "mean_token_embeds", "mean_token_embeds init depends on the model; pass e0 explicitly")
    row = next(r for r in run.rows if int(r["sample_id"]) == sample_id)
    shape = tuple(torch.as_tensor(row["embedding"]).shape)
    return init_rows(init, shape, int(st["seed"]), int(sample_id))


def geometric_grid(lo: int, hi: int, n: int = 24) -> list[int]:
    """Up to ``n`` distinct integers spaced geometrically in ``[lo, hi]``."""
    if hi < lo:
        return []
    if hi == lo or n <= 1:
        return [int(lo)]
    return sorted({int(round(lo * (hi / lo) ** (i / (n - 1)))) for i in range(n)})


@dataclass
class Group:
    """One (sample, length) solved by several runs."""

    sample_id: int
    length: int
    lrs: list[float]
    sol_dist: float
    dir_cos: float
    ig_cv: float
    disp: dict[float, float]
    sol_dist_orth: float = float("nan")  # Sol. dist. if the displacements were orthogonal (same lengths)


def group_metrics(e0: torch.Tensor, solutions: Sequence[torch.Tensor], igs: Sequence[float]) -> dict:
    """Sol. dist., Dir. cos., IG CV (%) and displacements of several solutions of one problem from one init."""
    check(len(solutions) >= 2, "group_metrics: need at least two solutions")
    x0 = e0.double().reshape(-1)
    E = torch.stack([s.double().reshape(-1) for s in solutions])
    D = E - x0
    disp = torch.linalg.vector_norm(D, dim=1)
    U = D / disp.clamp(min=1e-30)[:, None]
    pairs = list(itertools.combinations(range(len(solutions)), 2))
    dist = [float(torch.linalg.vector_norm(E[a] - E[b])) for a, b in pairs]
    cos = [float(U[a] @ U[b]) for a, b in pairs]
    mean_ig = sum(igs) / len(igs)
    sd_ig = statistics.pstdev(igs) if len(igs) > 1 else 0.0
    orth = [math.hypot(float(disp[a]), float(disp[b])) for a, b in pairs]
    return {
        "sol_dist": (sum(dist) / len(dist)) / float(disp.mean()),
        "sol_dist_orth": (sum(orth) / len(orth)) / float(disp.mean()),
        "dir_cos": sum(cos) / len(cos),
        "ig_cv": 100.0 * sd_ig / abs(mean_ig) if mean_ig != 0 else float("nan"),
        "disp": [float(x) for x in disp],
    }


def _converged_by_length(run: CramRun, sample_id: int) -> dict[int, dict]:
    return {int(r["stage_seq_len"]): r for r in run.trajectory(sample_id) if r.get("converged")}


def solution_groups(
    runs: Mapping[float, CramRun],
    n_lengths: int = 24,
    min_length: int = 4,
    min_runs: int = 2,
    e0: Mapping[int, torch.Tensor] | None = None,
    grid_top: str = "all",
) -> list[Group]:
    """All groups of the sweep ``{lr: run}`` (module docstring); ``e0`` overrides :func:`initial_embedding`.

    ``grid_top="all"`` (the paper's) ends a sample's length grid at the shortest of its runs' longest converged
    lengths, so one run stuck at the start leaves the sample without groups; ``"shared"`` ends it at the longest
    length that ``min_runs`` runs reached, and groups are formed by the runs converged there."""
    check(grid_top in ("all", "shared"), f"grid_top must be 'all' or 'shared', not {grid_top!r}")
    check(len(runs) >= 2, "solution diversity needs runs at two or more learning rates")
    lrs = sorted(runs)
    common = set.intersection(*({int(r["sample_id"]) for r in runs[lr].rows} for lr in lrs))
    groups = []
    for sid in sorted(common):
        by_lr = {lr: _converged_by_length(runs[lr], sid) for lr in lrs}
        inits = [initial_embedding(runs[lr], sid) for lr in lrs] if e0 is None else [e0[sid]]
        for x in inits[1:]:
            check(
                torch.equal(x, inits[0]),
                f"sample {sid}: the runs start from different inits (seed or init differ)",
            )
        tops = sorted((max(c) for c in by_lr.values() if c), reverse=True)
        if len(tops) < min_runs:
            continue
        top = tops[min_runs - 1] if grid_top == "shared" else tops[-1]
        for L in geometric_grid(min_length, top, n_lengths):
            have = [lr for lr in lrs if L in by_lr[lr]]
            if len(have) < min_runs:
                continue
            rows = [by_lr[lr][L] for lr in have]
            m = group_metrics(
                inits[0],
                [torch.as_tensor(r["embedding"]) for r in rows],
                [float(r["information_gain_bits"]) for r in rows],
            )
            disp = dict(zip(have, m["disp"], strict=True))
            groups.append(
                Group(sid, L, have, m["sol_dist"], m["dir_cos"], m["ig_cv"], disp, m["sol_dist_orth"])
            )
    return groups


def _quantile(xs: Sequence[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(groups: Sequence[Group], d: int | None = None) -> dict:
    """The paper's table row: N, IG CV %, Sol. dist. median [IQR], Dir. cos., Disp. ratio (+ 1/sqrt(d)).

    Each statistic also comes as ``<name>_ci`` (a :class:`cramlens.stats.MeanCI` dict, ``n`` = groups): a t interval
    for the means over groups (IG CV, Dir. cos., displacement per LR), a percentile bootstrap over groups for the
    medians and the Disp. ratio (a ratio of means over the groups holding both LRs). Groups of one sample share its
    text, so these intervals treat correlated groups as independent (as the paper's N does).
    """
    if not groups:
        return {"N": 0}
    sd = [g.sol_dist for g in groups]
    lrs = sorted({lr for g in groups for lr in g.lrs})
    both = [g for g in groups if lrs[0] in g.disp and lrs[-1] in g.disp]
    pairs = np.array([[g.disp[lrs[-1]], g.disp[lrs[0]]] for g in both], dtype=float).reshape(-1, 2)
    ratio = bootstrap_ci(pairs, _ratio_of_means)
    per_lr = {lr: mean_ci(g.disp[lr] for g in groups if lr in g.disp) for lr in lrs}
    ig = mean_ci(g.ig_cv for g in groups if math.isfinite(g.ig_cv))
    sol = bootstrap_ci(sd)
    orth = bootstrap_ci([g.sol_dist_orth for g in groups])
    cos = mean_ci(g.dir_cos for g in groups)
    return {
        "N": len(groups),
        "samples": len({g.sample_id for g in groups}),
        "ig_cv": ig.mean,
        "sol_dist_median": sol.mean,
        "sol_dist_q1": _quantile(sd, 0.25),
        "sol_dist_q3": _quantile(sd, 0.75),
        "sol_dist_orth_median": orth.mean,
        "dir_cos": cos.mean,
        "disp_ratio": ratio.mean,
        "disp_by_lr": {lr: m.mean for lr, m in per_lr.items()},
        "random_cos": 1.0 / math.sqrt(d) if d else float("nan"),
        "lrs": lrs,
        "ig_cv_ci": ig.to_dict(),
        "sol_dist_median_ci": sol.to_dict(),
        "sol_dist_orth_median_ci": orth.to_dict(),
        "dir_cos_ci": cos.to_dict(),
        "disp_ratio_ci": ratio.to_dict(),
        "disp_by_lr_ci": {lr: m.to_dict() for lr, m in per_lr.items()},
    }


def _ratio_of_means(pairs: np.ndarray) -> float:
    """Mean of column 0 over mean of column 1 (the Disp. ratio of ``[disp at largest LR, at smallest LR]`` rows)."""
    return float(pairs[:, 0].mean() / pairs[:, 1].mean())


def load_sweep(root: str | Path, pattern: str = "lrsweep_*") -> dict[float, CramRun]:
    """``{lr: run}`` from ``<root>/lrsweep_<lr>/`` run directories (partial runs included)."""
    from cramlens import load_run

    out = {}
    for p in sorted(Path(root).glob(pattern)):
        if (p / "rows.jsonl").exists() and (p / "rows.jsonl").stat().st_size > 0:
            run = load_run(p)
            out[float(run.config["settings"]["recipe"]["lr"])] = run
    return out


def run_lr_sweep(
    model,
    texts: Sequence,
    lrs: Sequence[float],
    root: str | Path = "runs",
    seq_len: int | None = 32,
    recipe="paper",
    batch_size: int = 3,
    seed: int = 0,
    resume: bool = True,
    progress_factory=None,
    **recipe_overrides,
) -> dict[float, CramRun]:
    """Progressive cramming of ``texts`` at each learning rate, same seed, into ``<root>/lrsweep_<lr>/`` (resumable)."""
    from cramlens import progressive_cram

    out = {}
    for lr in lrs:
        path = Path(root) / f"lrsweep_{lr:g}"
        prog = progress_factory(lr) if progress_factory else None
        kw = dict(
            seq_len=seq_len,
            recipe=recipe,
            batch_size=batch_size,
            seed=seed,
            out=path,
            resume=resume and path.exists(),
            lr=lr,
            check_greedy=False,
            **recipe_overrides,
        )
        if prog is not None:
            with prog:
                out[lr] = progressive_cram(model, texts, progress=prog, **kw)
        else:
            out[lr] = progressive_cram(model, texts, **kw)
    return out
