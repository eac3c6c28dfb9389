"""Figures and tables of the downstream and knockout analyses (plotly figures, rich tables, markdown)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots
from rich.table import Table

from ..knockout import curve, masks_in
from ..scoring import ACC_INTERVAL, acc_cell, accuracy_ci, flips_cell
from .tables import estimate_cell

# REFERENCE D.8 (Llama-3.1-8B, read off the paper's figure; Base/Cram exact)
PAPER_LLAMA_FORWARD_ACC = {
    0: 0.395,
    1: 0.525,
    2: 0.54,
    3: 0.60,
    4: 0.615,
    5: 0.62,
    10: 0.62,
    14: 0.62,
    15: 0.595,
    20: 0.595,
    32: 0.598,
}
PAPER_LLAMA_REVERSE_TF = {0: 1.0, 3: 1.0, 5: 0.96, 10: 0.83, 15: 0.57, 20: 0.41, 25: 0.29, 30: 0.20, 32: 0.28}
PAPER_LLAMA_FORWARD_TF = {
    0: 1.0,
    1: 0.72,
    2: 0.705,
    3: 0.59,
    4: 0.54,
    5: 0.50,
    10: 0.41,
    15: 0.36,
    20: 0.31,
    24: 0.28,
}


#: What each knockout mask removes (``cramlens.interventions``); the figures and tables name the mask they show.
MASK_MEANING = {
    "text": "the text queries lose the memory key at the masked layers",
    "reference": "the research code's 4-D mask: also the memory's own query row is uniform over all keys, future "
    "ones included (equal to text when no unmasked layer follows a masked one: reverse:k, forward:L)",
}
#: One colour per curve, shared by its masks when a summary holds both; the reference mask is drawn dashed.
CURVE_COLOURS = {
    "forward": "#1f77b4",
    "reverse": "#ff7f0e",
    "control_forward": "#2ca02c",
    "acc": "#1f77b4",
    "tf": "#d62728",
    "control": "#2ca02c",
}


def _text_only(masks: Sequence[str]) -> bool:
    """Summaries of the text mask alone (every older run directory) are drawn exactly as before masks existed."""
    return list(masks) == ["text"]


def _line(key: str, dash: str | None, mask: str, masks: Sequence[str]) -> dict:
    """Text-only: plotly's default colours; otherwise one colour per curve and the reference mask dashed."""
    if _text_only(masks):
        return {"dash": dash}
    ref_dash = "dashdot" if dash else "dash"
    return {"dash": dash if mask == "text" else ref_dash, "color": CURVE_COLOURS[key]}


def _label(name: str, mask: str, masks: Sequence[str]) -> str:
    return name if _text_only(masks) else f"{name} ({mask} mask)"


def _mask_note(masks: Sequence[str]) -> str:
    return "" if _text_only(masks) else "<br>".join(f"{m} mask: {MASK_MEANING.get(m, m)}" for m in masks)


def knockout_figure(
    summary: dict, n_layers: int, model_name: str, field: str = "acc", masks: Sequence[str] | None = None
) -> go.Figure:
    """Accuracy (or TF reconstruction) vs number of layers knocked out, forward and reverse (+ control).

    ``masks`` (default: every mask the summary holds, :func:`analyses.knockout.masks_in`): a summary of a
    ``--mask both`` sweep draws the reference mask dashed beside the text mask, in the same colour.
    """
    masks = list(masks or masks_in(summary))
    fig = go.Figure()
    scale = 1.0 if field == "acc" else 100.0
    for d, dash in (("forward", None), ("reverse", None), ("control_forward", "dot")):
        if d.startswith("control") and field != "acc":
            continue
        for m in masks:
            pts = curve(summary, d, n_layers, field, m)
            if pts:
                fig.add_scatter(
                    x=[k for k, _ in pts],
                    y=[v * scale for _, v in pts],
                    mode="lines+markers",
                    name=_label(d.replace("_", " "), m, masks),
                    line=_line(d, dash, m, masks),
                )
    if field == "acc":
        for cond, dash in (("base", "dash"), ("cram", "dot")):
            if cond in summary:
                fig.add_hline(
                    y=summary[cond]["acc"],
                    line_dash=dash,
                    annotation_text=f"{cond} {summary[cond]['acc']:.1f}",
                )
        fig.add_hline(y=25, line_color="grey", line_width=1, annotation_text="chance")
    title = "HellaSwag accuracy (%)" if field == "acc" else "teacher-forced reconstruction of the context (%)"
    note = _mask_note(masks)
    fig.update_layout(
        title=f"{model_name}: {title} vs layers knocked out" + (f"<br><sup>{note}</sup>" if note else ""),
        xaxis_title="# layers knocked out (k)",
        yaxis_title=title,
        template="plotly_white",
        width=820,
        height=480 + (60 if note else 0),
    )
    return fig


def per_layer_figure(
    summary: dict, mass: Sequence[float], n_layers: int, model_name: str, masks: Sequence[str] | None = None
) -> go.Figure:
    """Per-layer knockout: HellaSwag accuracy and TF reconstruction (per mask), and the attention mass on the memory."""
    masks = list(masks or masks_in(summary))
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=("knockout of one layer", "attention mass on the memory (no knockout)"),
    )
    for m in masks:
        acc = curve(summary, "per_layer", n_layers, "acc", m)
        tf = curve(summary, "per_layer", n_layers, "tf", m)
        ctl = curve(summary, "control_per_layer", n_layers, "acc", m)
        fig.add_scatter(
            x=[k for k, _ in acc],
            y=[v for _, v in acc],
            name=_label("HellaSwag acc (%)", m, masks),
            row=1,
            col=1,
            **({} if _text_only(masks) else {"line": _line("acc", None, m, masks)}),
        )
        fig.add_scatter(
            x=[k for k, _ in tf],
            y=[100 * v for _, v in tf],
            name=_label("TF reconstruction (%)", m, masks),
            row=1,
            col=1,
            **({} if _text_only(masks) else {"line": _line("tf", None, m, masks)}),
        )
        if ctl:
            fig.add_scatter(
                x=[k for k, _ in ctl],
                y=[v for _, v in ctl],
                name=_label("control acc (%)", m, masks),
                line=_line("control", "dot", m, masks),
                row=1,
                col=1,
            )
    for cond, dash in (("base", "dash"), ("cram", "dot")):
        if cond in summary:
            fig.add_hline(
                y=summary[cond]["acc"],
                line_dash=dash,
                row=1,
                col=1,
                annotation_text=f"{cond} acc {summary[cond]['acc']:.1f}",
            )
    fig.add_bar(x=list(range(len(mass))), y=list(mass), name="attention mass (%)", row=2, col=1)
    note = _mask_note(masks)
    fig.update_layout(
        title=f"{model_name}: per-layer knockout" + (f"<br><sup>{note}</sup>" if note else ""),
        template="plotly_white",
        width=820,
        height=640 + (60 if note else 0),
    )
    fig.update_xaxes(title_text="layer", row=2, col=1)
    return fig


SWEEP_DIRECTIONS = ("forward", "reverse", "per_layer", "control_forward")
SWEEP_NOTE = (
    f"acc: HellaSwag accuracy (%) with its {ACC_INTERVAL} interval over the n items; TF: mean teacher-forced "
    "reconstruction; vs cram: items the knockout turns right / wrong against the cram on the same items (+/-) and "
    "the exact McNemar p"
)


def _sweep_cells(summary: dict, k: int, d: str, mask: str, ci_fmt: str) -> list[str]:
    """The acc [interval], TF (not for controls) and vs-cram cells of direction ``d`` at ``k`` under ``mask``."""
    zero = "control_cram" if d.startswith("control") else "cram"
    tag = "" if mask == "text" else f"@{mask}"
    cond = zero if k == 0 and d != "per_layer" else f"{d}:{k}{tag}"
    s = summary.get(cond)
    ci = s and accuracy_ci(s["acc"], s.get("n"))
    acc = _f(s and s["acc"], "{:.1f}")
    if ci:
        acc += f" [{ci_fmt.format(ci.lo)}, {ci_fmt.format(ci.hi)}]"
    cells = [acc] if d.startswith("control") else [acc, _f(s and s["tf"], "{:.3f}")]
    return cells + [flips_cell(s and s.get("vs_cram"))]


def _measured_columns(summary: dict, masks: Sequence[str]) -> list[tuple[str, str]]:
    """The (direction, mask) pairs the summary has at least one condition of."""
    tag = {m: "" if m == "text" else f"@{m}" for m in masks}
    keys = [k.split(":", 1) for k in summary if ":" in k]
    have = {(d, rest.partition("@")[1] + rest.partition("@")[2]) for d, rest in keys}
    return [(d, m) for d in SWEEP_DIRECTIONS for m in masks if (d, tag[m]) in have]


def _sweep_header(d: str, mask: str, masks: Sequence[str]) -> list[str]:
    tail = "" if _text_only(masks) else f" ({mask})"
    stats = ("acc",) if d.startswith("control") else ("acc", "TF")
    return [f"{d.replace('_', '-')} {x}{tail}" for x in (*stats, "vs cram")]


def sweep_table(
    summary: dict, n_layers: int, title: str, every: int = 1, masks: Sequence[str] | None = None
) -> Table:
    """Rich table: one row per k, per direction and mask: acc % [95% Wilson], TF, paired test against the cram."""
    masks = list(masks or masks_in(summary))
    t = Table(title=title, title_justify="left")
    cols = _measured_columns(summary, masks)
    t.add_column("k", justify="right")
    for d, m in cols:
        for h in _sweep_header(d, m, masks):
            t.add_column(h, justify="right")
    for k in range(0, n_layers + 1):
        if k % every and k not in (1, n_layers):
            continue
        cells = [c for d, m in cols for c in _sweep_cells(summary, k, d, m, "{:.0f}")]
        if k and all(c == "–" for c in cells):  # a k the sweep did not measure (--ks grid)
            continue
        t.add_row(str(k), *cells)
    base, cram = summary.get("base"), summary.get("cram")
    if base and cram:
        t.caption = (
            f"Base {acc_cell(base)}, Cram {acc_cell(cram)} (TF {estimate_cell(cram, 'tf', '{:.3f}')}); base vs cram "
            f"{flips_cell(base.get('vs_cram'))}\n{SWEEP_NOTE}"
        )
        t.caption += "".join(f"\n{m} mask: {MASK_MEANING.get(m, m)}" for m in masks if not _text_only(masks))
    return t


def sweep_markdown(
    summary: dict, n_layers: int, ks: Sequence[int], masks: Sequence[str] | None = None
) -> str:
    """Markdown table of the sweep at the given k: per direction and mask, acc [95% Wilson], TF, vs cram."""
    masks = list(masks or masks_in(summary))
    cols = _measured_columns(summary, masks)
    header = ["k", *[h for d, m in cols for h in _sweep_header(d, m, masks)]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for k in ks:
        cells = [c for d, m in cols for c in _sweep_cells(summary, k, d, m, "{:.1f}")]
        if k and all(c == "–" for c in cells):  # a k the sweep did not measure
            continue
        lines.append("| " + " | ".join([str(k), *cells]) + " |")
    lines += ["", SWEEP_NOTE + "."]
    lines += [f"{m} mask: {MASK_MEANING.get(m, m)}." for m in masks if not _text_only(masks)]
    return "\n".join(lines)


def sink_markdown(rows: dict[str, dict], paper: dict[str, tuple] | None = None) -> str:
    """The C.7 table: per model, compression / original / control mean ± std, diff, Pearson (ours beside paper's)."""
    lines = [
        "| model | texts (exact, mean TF) | positions | compression emb. | position 0 original | diff | corr | "
        "ordinary token in the memory slot | its corr with orig. | paper comp. | paper orig. | paper diff | "
        "paper corr |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, r in rows.items():
        t = r["table"]
        c, o, k = t["compression"], t["orig"], t.get("control", {})
        p = (paper or {}).get(model, ("–",) * 4)
        tf = r.get("tf") or []
        exact = (
            f"{r['n']} ({sum(x >= 1 for x in tf)}, {sum(tf) / max(1, len(tf)):.3f})" if tf else str(r["n"])
        )
        ctrl = f"{k['mean']:.2f} ± {k['std']:.2f} | {k['corr']:.4f}" if k else "– | –"
        lines.append(
            f"| {model} | {exact} | {r.get('s_max', '–')} | {c['mean']:.2f} ± {c['std']:.2f} | "
            f"{o['mean']:.2f} ± {o['std']:.2f} | {c['diff']:+.2f} | {c['corr']:.4f} | {ctrl} | "
            f"{p[0]} | {p[1]} | {p[2]} | {p[3]} |"
        )
    return "\n".join(lines)


def downstream_figure(results: dict[str, dict], model_name: str) -> go.Figure:
    """Grouped bars: Base vs Cram accuracy (converged subset) per task and scoring variant, chance line."""
    fig = go.Figure()
    variants = (("context_ending", "context+ending"), ("ending_only", "ending only"))
    cols = [
        (t, v, f"{t}<br>{label}")
        for t in results
        for v, label in variants
        if v in results[t]["base_converged"] and v in results[t]["cram_converged"]
    ]
    bars = [("base_converged", "Base"), ("cram_converged", "Cram (converged)")]
    if all("random_converged" in results[t] for t, _, _ in cols):
        bars.append(("random_converged", "random memory, same norm (control)"))
    for key, name in bars:
        fig.add_bar(x=[c[2] for c in cols], y=[results[t][key][v]["acc"] for t, v, _ in cols], name=name)
    fig.add_hline(y=25, line_dash="dot", annotation_text="chance (4 choices)")
    fig.update_layout(
        title=f"{model_name}: likelihood multiple choice with and without the crammed context",
        yaxis_title="accuracy (%) on the converged subset",
        barmode="group",
        template="plotly_white",
        width=820,
        height=460,
    )
    return fig


def mmlu_figure(summary: dict[str, dict], model_name: str) -> go.Figure:
    modes = list(summary)
    fig = go.Figure()
    fig.add_bar(x=modes, y=[summary[m]["acc"] for m in modes], name="Acc (strict parser)")
    fig.add_bar(x=modes, y=[summary[m]["valid"] for m in modes], name="Valid (strict parser)")
    fig.add_bar(x=modes, y=[summary[m]["acc_ref"] for m in modes], name="Acc (reference parser)")
    fig.add_hline(y=25, line_dash="dot", annotation_text="chance")
    fig.update_layout(
        title=f"{model_name}: generative 5-shot MMLU by mode",
        yaxis_title="%",
        barmode="group",
        template="plotly_white",
        width=720,
        height=440,
    )
    return fig


def _f(x, fmt: str = "{:.2f}") -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)
