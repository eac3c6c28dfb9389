"""Teacher forcing hides greedy failure: full cramming at a 99% threshold versus progressive cramming.

For every sample and method: teacher-forced accuracy, greedy reconstruction from the memory alone, exact-match,
first mismatch and mismatch@k (REFERENCE C.1, D.2-D.3). Progressive is scored on its horizon prefix (what it
claims); full cramming on its whole fixed-length text.

Greedy here is real generation (``cramlens.generation``: KV cache, one token per call, own tokens fed back) in
the model's dtype or in ``dtype`` (e.g. ``"bfloat16"``, a cast copy of the model), computed independently of the
teacher-forced numbers beside it; ``greedy_min_margin`` is its minimum target margin (logit units).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from rich.table import Table

from .generation import cast_model, dtype_name, regenerate
from .results import CramRun


@dataclass
class ReconstructionRow:
    method: str
    sample_id: int
    tokens: int  # length scored
    tf_accuracy: float
    greedy_match: float
    greedy_exact: bool
    first_mismatch: int | None
    tf_first_mismatch: int | None
    greedy_min_margin: float | None = None  # generation's min target margin (None: not measured)
    greedy_dtype: str = ""  # dtype the generation ran in ("" in rows written before it was recorded)

    def to_dict(self) -> dict:
        return asdict(self)


def reconstruction_rows(
    model, run: CramRun, method: str, dtype: torch.dtype | str | None = None
) -> list[ReconstructionRow]:
    """Score each sample of ``run`` on its scored span (horizon for progressive, whole text for full).

    Teacher forcing runs in the model's dtype; generation in ``dtype`` (default: the model's), on a copy of the
    model cast once for the whole run.
    """
    from .forward import exact_prefix, score, target_logits
    from .layout import build_batch

    gen_model = cast_model(model, dtype) if dtype is not None else model
    gen_dtype = dtype_name(gen_model.cfg.dtype)
    out = []
    for s in run.samples:
        n = s.horizon if run.kind == "progressive" else len(s.sequence)
        if n == 0:
            out.append(ReconstructionRow(method, s.sample_id, 0, 0.0, 0.0, False, 0, 0, None, gen_dtype))
            continue
        seq = s.sequence[:n]
        mem = s.embedding.to(model.cfg.device)[None]
        batch = build_batch(model, [seq], [n], s.layout)
        sc = score(target_logits(model, mem, batch).detach(), batch)
        tf = float(sc.accuracy[0])
        prefix = int(exact_prefix(batch, sc.correct)[0])
        tf_first = None if prefix == n else prefix
        g = regenerate(gen_model, mem, seq, s.layout)
        out.append(
            ReconstructionRow(
                method,
                s.sample_id,
                n,
                tf,
                g.match,
                g.exact,
                g.first_mismatch,
                tf_first,
                g.min_margin,
                g.dtype,
            )
        )
    return out


def summary(rows: list[ReconstructionRow]) -> dict[str, dict]:
    """Per method: mean tokens, TF %, greedy %, exact-match %, mismatch@0/1/2 % under greedy."""
    out = {}
    for method in dict.fromkeys(r.method for r in rows):
        rs = [r for r in rows if r.method == method]
        n = len(rs)

        def at(k, rs=rs, n=n):
            return 100 * sum(r.first_mismatch is not None and r.first_mismatch <= k for r in rs) / n

        out[method] = {
            "samples": n,
            "tokens": sum(r.tokens for r in rs) / n,
            "tf_pct": 100 * sum(r.tf_accuracy for r in rs) / n,
            "greedy_pct": 100 * sum(r.greedy_match for r in rs) / n,
            "exact_pct": 100 * sum(r.greedy_exact for r in rs) / n,
            "mismatch_by_0": at(0),
            "mismatch_by_1": at(1),
            "mismatch_by_2": at(2),
            "first_mismatch_median": _median([r.first_mismatch for r in rs if r.first_mismatch is not None]),
        }
    return out


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else None


def rows_by_dtype(model, runs: dict[str, CramRun], greedy_dtype: str = "model") -> list[ReconstructionRow]:
    """Reconstruction rows of each named run, with greedy generation in the model's dtype (``"model"``), in one
    dtype, or in ``"both"`` fp32 and bf16 (methods then read ``progressive [greedy bfloat16]``)."""
    dtypes = {"model": [None], "both": ["float32", "bfloat16"]}.get(greedy_dtype, [greedy_dtype])
    rows: list[ReconstructionRow] = []
    for dt in dtypes:
        for method, run in runs.items():
            rows += reconstruction_rows(
                model, run, method if dt is None else f"{method} [greedy {dt}]", dtype=dt
            )
    return rows


def table(rows: list[ReconstructionRow]) -> Table:
    t = Table(
        title="Reconstruction: teacher forcing vs greedy (full @0.99 vs progressive)", title_justify="left"
    )
    for c in (
        "method",
        "samples",
        "tokens",
        "TF %",
        "greedy %",
        "exact %",
        "first miss ≤0/≤1/≤2 %",
        "median first miss",
    ):
        t.add_column(c, justify="left" if c == "method" else "right")
    for method, s in summary(rows).items():
        t.add_row(
            method,
            str(s["samples"]),
            f"{s['tokens']:.1f}",
            f"{s['tf_pct']:.2f}",
            f"{s['greedy_pct']:.2f}",
            f"{s['exact_pct']:.0f}",
            f"{s['mismatch_by_0']:.0f}/{s['mismatch_by_1']:.0f}/{s['mismatch_by_2']:.0f}",
            str(s["first_mismatch_median"]),
        )
    return t


def markdown(rows: list[ReconstructionRow]) -> str:
    lines = [
        "| method | samples | tokens | TF % | greedy % | exact % | first miss ≤0/≤1/≤2 % | median first miss |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, s in summary(rows).items():
        lines.append(
            f"| {method} | {s['samples']} | {s['tokens']:.1f} | {s['tf_pct']:.2f} | {s['greedy_pct']:.2f} | "
            f"{s['exact_pct']:.0f} | {s['mismatch_by_0']:.0f}/{s['mismatch_by_1']:.0f}/{s['mismatch_by_2']:.0f} | "
            f"{s['first_mismatch_median']} |"
        )
    return "\n".join(lines) + "\n"
