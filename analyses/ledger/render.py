"""The ledger on disk: ``ledger.md`` (tables a person reads), ``ledger.json`` (everything, for programs) and the
figure (:mod:`analyses.ledger.figure`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from cramlens.runs import atomic_write_text

from .claims import Row
from .ledger import Ledger, command
from .plan import hours

MARK = {
    "holds": "✅ holds",
    "differs": "❌ differs",
    "inconclusive": "❔ inconclusive",
    "not run": "… not run",
}


def fmt(x: float | None) -> str:
    """Three significant digits, thousands as integers."""
    if x is None or not math.isfinite(x):
        return "–"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def ours_cell(r: Row) -> str:
    o = r.ours
    if o is None:
        return "–"
    if o["n"] < 2 or not math.isfinite(o["lo"]):
        return f"{fmt(o['mean'])} (n={o['n']}, no interval)"
    return f"{fmt(o['mean'])} [{fmt(o['lo'])}, {fmt(o['hi'])}] (n={o['n']})"


def paper_cell(r: Row) -> str:
    p = r.paper
    if p is None:
        return "– (not in the paper)"
    sd = f" ± {fmt(p['sd'])} sd" if p["sd"] is not None and math.isfinite(p["sd"]) else ""
    n = f", n={p['n']}" if p["n"] else ""
    other = "" if p["same_model"] else " (other model)"
    return f"{fmt(p['value'])}{sd}{n} — {p['unit']}; {p['model']}{other}; {p['source']}"


def band_cell(r: Row) -> str:
    if r.kind == "directional":
        return r.rule.removeprefix("directional: ")
    if r.band is None:
        return "–"
    return f"[{fmt(r.band[0])}, {fmt(r.band[1])}] ({r.band_reason})"


def table_row(*cells: str) -> str:
    """One markdown table row; a "|" inside a cell (e.g. |ln ratio|) is escaped so it cannot split the cell."""
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _table(rows: list[Row]) -> list[str]:
    out = [
        "| claim | paper (value — unit; model; source) | band / direction | ours: mean [95% CI] (n) | verdict | why; notes | step |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        why = "; ".join(x for x in (r.reason, r.note) if x)
        out.append(
            table_row(
                f"**{r.claim}**: {r.statement}",
                paper_cell(r),
                band_cell(r),
                ours_cell(r),
                MARK.get(r.verdict, r.verdict),
                why,
                f"`{r.step}`",
            )
        )
    return out


def markdown(ledger: Ledger, out: Path) -> str:
    lines = [
        "# Claims ledger: Progressive Cramming (Tarasov et al., ICML 2026) and Kuratov et al. (ACL 2025)",
        "",
        f"Protocol **{ledger.protocol}** ({ledger.purpose}); created {ledger.created}. Every number of ours is a "
        "mean with its 95% interval and n; the paper's values are as published (mean ± sd where it gives one), "
        "on the model named beside them.",
        "",
        "## What was run",
        "",
        *[f"- {line}" for line in ledger.protocol_lines],
        "",
        "## The verdict rule",
        "",
        ledger.rule,
        "",
    ]
    for name, rows in ledger.rows.items():
        info = ledger.models[name]
        counts = ", ".join(f"{k} {v}" for k, v in sorted(ledger.counts(name).items()))
        lines += [
            f"## {name}",
            "",
            f"{info.get('description') or name}: {info['n_layers']} layers, d_model {info['d_model']}, "
            f"vocabulary {info['d_vocab']:,}, {info['n_params'] / 1e6:.0f}M parameters as loaded (W_E and W_U counted apart, tied or not). "
            f"Verdicts: {counts}.",
            "",
            *_table(rows),
            "",
        ]
    if ledger.cross_model:
        lines += ["## Across models: size and width", "", *_table(ledger.cross_model), ""]
    lines += ["## Commands", "", "Each row's step is remade (resumed, or skipped when finished) by:", ""]
    for name, rows in ledger.rows.items():
        for step in dict.fromkeys(r.step for r in rows):
            lines.append(f"- `{step}` ({name}): `{command(name, ledger.protocol, out, step)}`")
    lines += ["", "Time spent per step (wall / CPU):", ""]
    for name, steps in ledger.elapsed.items():
        spent = ", ".join(
            f"{s} {hours(e['wall_s'])} / {hours(e['cpu_s'])}"
            for s, e in steps.items()
            if e.get("wall_s") is not None
        )
        lines.append(f"- {name}: {spent or 'nothing run yet'}")
    return "\n".join(lines) + "\n"


def findings(ledger: Ledger) -> str:
    """A short table per model (claim, paper, ours, verdict) for a README's findings section, generated from the
    ledger so the two cannot disagree."""
    lines = [f"Claims ledger, protocol `{ledger.protocol}` (full table, rule and commands: `ledger.md`).", ""]
    for name, rows in ledger.rows.items():
        counts = ", ".join(f"{k} {v}" for k, v in sorted(ledger.counts(name).items()))
        lines += [
            f"**{name}** ({counts})",
            "",
            "| claim | paper | ours (95% CI, n) | verdict |",
            "|---|---|---|---|",
        ]
        for r in [*rows, *(x for x in ledger.cross_model if name in x.claim)]:
            paper = "–" if r.paper is None else f"{fmt(r.paper['value'])} ({r.paper['model']})"
            lines.append(table_row(r.statement, paper, ours_cell(r), MARK.get(r.verdict, r.verdict)))
        lines.append("")
    return "\n".join(lines)


def finite(x):
    """``x`` with every non-finite float replaced by ``None`` (JSON has no NaN)."""
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [finite(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x


def write_ledger(ledger: Ledger, out: Path) -> list[Path]:
    """Write ``ledger.md``, ``ledger.json``, ``findings.md`` (for a README) and the figure; returns the paths."""
    from analyses.plots.io import save_figure

    from .figure import ledger_figure

    out.mkdir(parents=True, exist_ok=True)
    md, js, short = out / "ledger.md", out / "ledger.json", out / "findings.md"
    atomic_write_text(md, markdown(ledger, out))
    atomic_write_text(js, json.dumps(finite(ledger.to_dict()), indent=1))
    atomic_write_text(short, findings(ledger))
    return [md, js, short, *save_figure(ledger_figure(ledger), out / "ledger")]
