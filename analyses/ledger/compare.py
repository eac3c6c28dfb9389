"""The ledger's comparison across the models it is given: does the larger model cram more tokens?

Models are ordered by parameter count; each neighbouring pair gives one row, paired per text (the same PG-19
documents, each model's own tokens): compressed tokens of the larger minus the smaller, per-text means over seeds,
Student-t interval over texts. The row states everything that changes between the two models besides size.
"""

from __future__ import annotations

from cramlens.paper import paper_value
from cramlens.stats import mean_ci

from . import verdict as vd
from .claims import Row
from .context import ModelInfo
from .extract import paired_difference, per_text


def differences(small: ModelInfo, large: ModelInfo) -> str:
    """Everything that changes from ``small`` to ``large`` besides the parameter count."""
    parts = [f"params as loaded {small.n_params / 1e6:.0f}M → {large.n_params / 1e6:.0f}M"]
    for label, a, b in (
        ("width d_model", small.d_model, large.d_model),
        ("layers", small.n_layers, large.n_layers),
        ("vocabulary", small.d_vocab, large.d_vocab),
        ("adds BOS", small.adds_bos, large.adds_bos),
    ):
        if a != b:
            parts.append(
                f"{label} {a:,} → {b:,}"
                if isinstance(a, int) and not isinstance(a, bool)
                else f"{label} {a} → {b}"
            )
    family = "" if small.description.split(" ")[0] == large.description.split(" ")[0] else "; families differ"
    return (
        ", ".join(parts)
        + family
        + f" ({small.description or small.name} vs {large.description or large.name})"
    )


def _compare(small: ModelInfo, rs: dict, large: ModelInfo, rl: dict) -> tuple[dict | None, str, vd.Verdict]:
    """Ours (MeanCI fields), the note and the verdict for one pair; "not run" until both progressive steps finished."""
    what = f"what changes: {differences(small, large)}"
    waiting = [info.name for info, res in ((small, rs), (large, rl)) if "progressive" not in res]
    if waiting:
        return (
            None,
            what,
            vd.Verdict(vd.NOT_RUN, f"step progressive has not finished for {', '.join(waiting)}"),
        )
    a = per_text(rs["progressive"]["samples"], "compressed_tokens")
    b = per_text(rl["progressive"]["samples"], "compressed_tokens")
    ci, bound, both = paired_difference(b, a)
    verdict = vd.directional(ci, +1, bound=bound)
    stopped = ", ".join(
        f"{sum(x[t][1] for t in both)} of {len(both)} {info.name} texts"
        for info, x in ((large, b), (small, a))
        if any(x[t][1] for t in both)
    )
    note = (
        f"{large.name} {mean_ci(b[t][0] for t in both)} vs {small.name} {mean_ci(a[t][0] for t in both)} on "
        f"{len(both)} shared texts"
        + (f"; lower bounds (a cap stopped a seed): {stopped}" if stopped else "")
        + f"; {what}"
    )
    return ci.to_dict(), note, verdict


def model_size_rows(models: dict[str, tuple[ModelInfo, dict]], command: str) -> list[Row]:
    """One row per neighbouring pair (by parameter count) of the models given; "not run" until both have finished
    their progressive step."""
    ordered = sorted(models.values(), key=lambda x: x[0].n_params)
    pv = paper_value("model_size", "*")
    rows = []
    for (small, rs), (large, rl) in zip(ordered, ordered[1:], strict=False):
        ours, note, verdict = _compare(small, rs, large, rl)
        rows.append(
            Row(
                f"model_size:{small.name}→{large.name}",
                "The larger model crams more tokens (compressed tokens, larger minus smaller, paired by text)",
                "directional",
                "progressive",
                None
                if pv is None
                else {
                    **pv.__dict__,
                    "same_model": {small.name, large.name} == {"smollm2-135m", "gemma-3-270m"},
                },
                None,
                "",
                "directional: > 0",
                ours,
                note,
                verdict.outcome,
                verdict.reason,
                command,
            )
        )
    return rows
