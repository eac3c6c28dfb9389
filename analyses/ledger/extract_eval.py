"""Our side of the evaluation claims (HellaSwag, ARC-Easy, MMLU, knockout): paired per-item differences with a
Student-t interval over items (:func:`cramlens.stats.mean_ci`), from the steps' results alone."""

from __future__ import annotations

from collections.abc import Callable

from cramlens.stats import mean_ci

from .extract import Ours, Results
from .protocols import SCORING

SCORE = "context_ending"  # the paper's likelihood score; ending-only is reported beside it


def _pct(rows: list[dict], side: str, variant: str) -> float:
    return 100.0 * sum(bool(r[side].get(variant)) for r in rows) / len(rows) if rows else float("nan")


def choice_effect(task: str, reference: str) -> Callable[[Results], Ours | None]:
    """Accuracy points of the crammed prefix minus ``reference`` (``base``: no memory, ``random``: a random vector
    of the cram's norm), paired per item over the exactly reconstructed contexts (the paper's Acc subset)."""

    def extract(res: Results) -> Ours | None:
        if task not in res:
            return None
        items = res[task]["items"]
        conv = [r for r in items if r["converged"] and SCORE in r[reference]]
        diffs = [100.0 * (float(r["cram"][SCORE]) - float(r[reference][SCORE])) for r in conv]
        other = mean_ci(
            100.0 * (float(r["cram"].get("ending_only", 0)) - float(r[reference].get("ending_only", 0)))
            for r in conv
        )
        crammed = SCORING[res[task].get("score_from", "memory")]
        note = (
            f"{reference} {_pct(conv, reference, SCORE):.1f}% → cram {_pct(conv, 'cram', SCORE):.1f}% on "
            f"{len(conv)} of {len(items)} contexts reconstructed exactly under {crammed} (context+ending "
            f"score); ending-only score: {other.format('{:+.1f}')}"
        )
        return Ours(mean_ci(diffs), note)

    return extract


def _mmlu(res: Results, mode: str) -> dict[str, dict]:
    return {r["id"]: r for r in res["mmlu"]["rows"] if r["mode"] == mode}


def mmlu_effect(mode: str) -> Callable[[Results], Ours | None]:
    """Accuracy points of ``mode`` minus the baseline, paired per item."""

    def extract(res: Results) -> Ours | None:
        if "mmlu" not in res:
            return None
        a, base = _mmlu(res, mode), _mmlu(res, "baseline")
        both = [i for i in a if i in base]
        diffs = [100.0 * (a[i]["correct"] - base[i]["correct"]) for i in both]
        acc = mean_ci(100.0 * a[i]["correct"] for i in both)
        b = mean_ci(100.0 * base[i]["correct"] for i in both)
        note = f"baseline {b.format()} %, {mode} {acc.format()} % on {', '.join(res['mmlu']['subjects'])}"
        return Ours(mean_ci(diffs), note)

    return extract


def mmlu_valid(mode: str) -> Callable[[Results], Ours | None]:
    """Percent of items whose generated answer holds a letter, under ``mode``."""

    def extract(res: Results) -> Ours | None:
        if "mmlu" not in res:
            return None
        rows = list(_mmlu(res, mode).values())
        acc = mean_ci(100.0 * r["correct"] for r in rows)
        return Ours(mean_ci(100.0 * r["valid"] for r in rows), f"Acc {acc.format()} %")

    return extract


def knockout_effect(direction: str, mask: str) -> Callable[[Results], Ours | None]:
    """Teacher-forced reconstruction under the knockout minus without it, paired per item."""

    def extract(res: Results) -> Ours | None:
        if "knockout" not in res:
            return None
        ko = res["knockout"]
        name = next(
            c
            for c in ko["conditions"]
            if c.startswith(direction + ":") and ("@reference" in c) == (mask == "reference")
        )
        items = [v for v in ko["items"].values() if name in v and "cram" in v]
        diffs = [v[name]["tf"] - v["cram"]["tf"] for v in items]
        acc = mean_ci(100.0 * (v[name]["correct"] - v["cram"]["correct"]) for v in items)
        exact = [v[name]["tf"] - v["cram"]["tf"] for v in items if v.get("exact")]
        note = (
            f"{direction} {ko['k']} of {ko['n_layers']} layers, {mask} mask, all {len(items)} crammed contexts "
            f"(the paper's C.6); on the {len(exact)} exact ones {mean_ci(exact).format('{:+.3f}')}; HellaSwag "
            f"choice {acc.format('{:+.1f}')} points"
        )
        return Ours(mean_ci(diffs), note)

    return extract
