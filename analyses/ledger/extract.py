"""Our side of each claim: a mean with its 95% interval and n, computed from the steps' results (``step.json``
contents, no model), so a ledger can be rebuilt from a finished output directory alone.

Per-sample numbers of progressive runs are grouped by text (:func:`texts_ci`: Student t over texts, or
:func:`cramlens.stats.hierarchical_mean_ci` when a text has several seeds); per-item numbers go through
:func:`cramlens.stats.mean_ci`; statistics of whole groups through a percentile bootstrap
(:func:`cramlens.stats.bootstrap_ci`; :func:`two_sample_bootstrap_ci` for two independent sources). Every
extractor returns ``None`` when its step has not run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from cramlens.stats import MeanCI, mean_ci, two_sample_bootstrap_ci

from . import verdict as vd

Results = dict[str, dict]  # step name -> its step.json


@dataclass(frozen=True)
class Ours:
    ci: MeanCI
    note: str = ""
    # where the true value may lie from ours when a length cap or a step budget stopped samples (verdict.BOUNDS)
    bound: str = vd.EXACT


def _finite(x) -> bool:
    return x is not None and math.isfinite(float(x))


def texts_ci(rows: Sequence[dict], value: Callable[[dict], float | None]) -> MeanCI:
    """The rule of ``CramRun.summary``: one value per text, Student t over texts; several (seeds), the mean over
    texts of per-text means with the two-stage bootstrap interval (texts, then seeds). n = texts."""
    from cramlens.stats import hierarchical_mean_ci

    by_text: dict[str, list[float]] = {}
    for r in rows:
        v = value(r)
        if _finite(v):
            by_text.setdefault(str(r["text_id"]), []).append(float(v))
    if all(len(v) == 1 for v in by_text.values()):
        return mean_ci(v[0] for v in by_text.values())
    return hierarchical_mean_ci(by_text)


def _lower_bounds(rows: Sequence[dict]) -> str:
    k = sum(bool(r.get("lower_bound")) for r in rows)
    return f"{k} of {len(rows)} horizons are lower bounds (length cap or budget)" if k else ""


def _any_stopped(rows: Sequence[dict]) -> bool:
    return any(r.get("lower_bound") for r in rows)


def _stopped(rows: Sequence[dict]) -> str:
    """The bound of a mean of horizons: at least ours when a cap stopped any of them."""
    return vd.AT_LEAST if _any_stopped(rows) else vd.EXACT


def per_text(rows: Sequence[dict], key: str) -> dict[str, tuple[float, bool]]:
    """Per text, the mean of ``key`` over its rows (seeds) and whether a cap stopped any of them (a lower bound)."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(str(r["text_id"]), []).append(r)
    return {t: (sum(float(r[key]) for r in v) / len(v), _any_stopped(v)) for t, v in by.items()}


def paired_difference(
    minuend: dict[str, tuple[float, bool]], subtrahend: dict[str, tuple[float, bool]]
) -> tuple[MeanCI, str, list[str]]:
    """``minuend − subtrahend`` over the texts both have (from :func:`per_text`): the interval, its bound and the
    shared texts."""
    shared = sorted(set(minuend) & set(subtrahend))
    ci = mean_ci(minuend[t][0] - subtrahend[t][0] for t in shared)
    return ci, vd.difference_bound((minuend[t][1], subtrahend[t][1]) for t in shared), shared


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


# ---------------------------------------------------------------------------------------------- progressive
def _prog(res: Results) -> list[dict] | None:
    return res["progressive"]["samples"] if "progressive" in res else None


def compressed_tokens(res: Results) -> Ours | None:
    rows = _prog(res)
    if rows is None:
        return None
    seeds = len({r["seed"] for r in rows})
    note = f"{seeds} seed(s) per text; texts of {res['progressive']['seq_len']} tokens (paper: 4,096)"
    return Ours(
        texts_ci(rows, lambda r: r["compressed_tokens"]),
        _join(note, _lower_bounds(rows)),
        _stopped(rows),
    )


def ig_final_bits(res: Results) -> Ours | None:
    rows = _prog(res)
    if rows is None:
        return None
    at_horizon = texts_ci(rows, lambda r: r["ig_bits"])
    return Ours(
        texts_ci(rows, lambda r: r["ig_final_bits"]),
        f"IG at the horizon stage {at_horizon}",
        _stopped(rows),
    )


def progressive_greedy_exact(res: Results) -> Ours | None:
    rows = _prog(res)
    if rows is None:
        return None
    checked = [r for r in rows if r["greedy_exact"] is not None and r["horizon"] > 0]
    k = sum(bool(r["greedy_exact"]) for r in checked)
    return Ours(
        texts_ci(checked, lambda r: float(r["greedy_exact"])), f"{k} of {len(checked)} horizons greedy-exact"
    )


def _traj(res: Results, key: str, shift: float = 0.0) -> Ours | None:
    if "trajectory" not in res:
        return None
    rows = res["trajectory"]["samples"]
    stages = mean_ci([r["stages"] for r in rows])
    return Ours(
        texts_ci(rows, lambda r: r[key] - shift if _finite(r[key]) else None), f"stages per sample {stages}"
    )


def pc12_share(res: Results) -> Ours | None:
    return _traj(res, "pc12")


def pca99(res: Results) -> Ours | None:
    return _traj(res, "pca99")


def pca99_growth(res: Results) -> Ours | None:
    return _traj(res, "growth")


def pca_reconstruction_gap(res: Results) -> Ours | None:
    return _traj(res, "recon_accuracy", shift=1.0)


def surprisal_steps(res: Results) -> Ours | None:
    if "surprisal" not in res:
        return None
    c = res["surprisal"]["correlation"]
    if c is None:
        return Ours(
            MeanCI(float("nan"), float("nan"), float("nan"), 0, float("nan")), "fewer than 3 stage pairs"
        )
    ci = MeanCI(c["rho"], c["ci_low"], c["ci_high"], c["samples"], float("nan"))
    note = (
        f"{c['N']} stage pairs; cluster bootstrap over samples; partial ρ | position {c['partial_rho']:.2f}"
    )
    return Ours(ci, note)


# ---------------------------------------------------------------------------------------------- other cramming
def brittleness_gap(res: Results) -> Ours | None:
    if "brittleness" not in res:
        return None
    rows = res["brittleness"]["samples"]
    tf = mean_ci([r["tf_accuracy"] for r in rows])
    greedy = mean_ci([r["greedy_match"] for r in rows])
    reached = sum(r["tf_accuracy"] >= 0.99 for r in rows)
    note = f"TF {tf.format('{:.3f}')}, greedy {greedy.format('{:.3f}')}; {reached} of {len(rows)} reached TF ≥ 0.99"
    return Ours(mean_ci([r["greedy_match"] - r["tf_accuracy"] for r in rows]), note)


def _groups(res: Results, key: str) -> Ours | None:
    if "diversity" not in res:
        return None
    groups = res["diversity"]["groups"]
    rows = [{"text_id": g["sample_id"], key: g[key]} for g in groups]
    vals = sorted(g[key] for g in groups)
    median = (
        f"median {np.median(vals):.2f} over {len(vals)} groups" if vals else "no group converged in 2 runs"
    )
    return Ours(
        texts_ci(rows, lambda r: r[key]),
        _join(
            median,
            f"random-direction cosine {res['diversity']['random_cos']:.3f}" if key == "dir_cos" else "",
        ),
    )


def solution_distance(res: Results) -> Ours | None:
    return _groups(res, "sol_dist")


def direction_cosine(res: Results) -> Ours | None:
    return _groups(res, "dir_cos")


def _log_ratio(a: list[float], b: list[float]) -> float:
    ma, mb = float(np.mean(a)), float(np.mean(b))
    return abs(math.log(ma / mb)) if ma > 0 and mb > 0 else float("nan")


def capacity_law(res: Results) -> Ours | None:
    """|ln(token ratio)| − |ln(bit ratio)| between PG-19 and the second source (> 0: bits vary less than tokens)."""
    if "capacity" not in res or "progressive" not in res:
        return None
    first_seed = min(r["seed"] for r in res["progressive"]["samples"])
    pg = [r for r in res["progressive"]["samples"] if r["seed"] == first_seed]
    other = res["capacity"]["samples"]

    def stat(groups: list[list]) -> float:
        a, b = groups
        tokens = _log_ratio([r["horizon"] for r in a], [r["horizon"] for r in b])
        bits = _log_ratio([r["ig_bits"] for r in a], [r["ig_bits"] for r in b])
        return tokens - bits

    def mean(rows, key):
        return float(np.mean([r[key] for r in rows])) if rows else float("nan")

    note = (
        f"PG-19 {mean(pg, 'horizon'):.1f} tokens / {mean(pg, 'ig_bits'):.0f} bits vs {res['capacity']['source']} "
        f"{mean(other, 'horizon'):.1f} tokens / {mean(other, 'ig_bits'):.0f} bits; bootstrap over texts"
    )
    # a ratio of two sources' horizons moves either way when either source's horizons were stopped
    bound = vd.EITHER_WAY if _any_stopped(pg + other) else vd.EXACT
    return Ours(two_sample_bootstrap_ci([pg, other], stat), _join(note, _lower_bounds(pg + other)), bound)


def depth_gain(res: Results) -> Ours | None:
    """Paired by text: horizon with the deeper cut minus horizon with the shallower one."""
    if "depth" not in res:
        return None
    d = res["depth"]
    shallow, deep = (d["variants"][str(n)]["samples"] for n in d["depths"])
    ci, bound, _ = paired_difference(per_text(deep, "horizon"), per_text(shallow, "horizon"))
    means = ", ".join(
        f"first{n}: {mean_ci([r['horizon'] for r in d['variants'][str(n)]['samples']])}" for n in d["depths"]
    )
    return Ours(ci, _join(means, _lower_bounds(shallow + deep)), bound)


# ---------------------------------------------------------------------------------------------- sinks
def _min_tokens(sinks: dict) -> int:
    return sinks.get("min_tokens", 2)  # results written before the protocol set it read every 2-token sample


def _no_sink_sample(res: Results) -> str:
    return f"no sample reconstructs {_min_tokens(res['sinks'])} tokens"


def _sink(res: Results) -> dict | None:
    return res["sinks"] if "sinks" in res and res["sinks"]["samples"] else None


def sink_share(res: Results) -> Ours | None:
    if "sinks" not in res:
        return None
    s = _sink(res)
    if s is None:
        return Ours(MeanCI(*(float("nan"),) * 3, 0, float("nan")), _no_sink_sample(res))
    rows = [
        {"text_id": t, "memory": float(np.mean(m)), "orig": float(np.mean(o))}
        for t, m, o in zip(s["samples"], s["profiles"]["compression"], s["profiles"]["orig"], strict=True)
    ]
    orig = texts_ci(rows, lambda r: r["orig"])
    return Ours(
        texts_ci(rows, lambda r: r["memory"]),
        f"position 0 without memory {orig} %; {len(rows)} samples reconstructing ≥ {_min_tokens(s)} tokens, "
        f"lengths 1 .. {s['s_max']}",
    )


def sink_correlation(res: Results) -> Ours | None:
    if "sinks" not in res:
        return None
    s = _sink(res)
    if s is None:
        return Ours(MeanCI(*(float("nan"),) * 3, 0, float("nan")), _no_sink_sample(res))
    from cramlens.stats import bootstrap_ci

    pairs = np.stack([np.asarray(s["profiles"]["compression"]), np.asarray(s["profiles"]["orig"])], axis=1)

    def stat(rows: np.ndarray) -> float:  # [samples, 2 (memory, original), layers]
        mem, orig = rows[:, 0].mean(axis=0), rows[:, 1].mean(axis=0)
        if np.std(mem) == 0 or np.std(orig) == 0:
            return float("nan")
        return float(np.corrcoef(mem, orig)[0, 1])

    return Ours(
        bootstrap_ci(pairs, stat), "Pearson of the sample-averaged layer profiles; bootstrap over samples"
    )
