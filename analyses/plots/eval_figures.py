"""Figures and tables of the downstream and knockout analyses (plotly figures, rich tables, markdown)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots
from rich.table import Table

from ..knockout import curve

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


def knockout_figure(summary: dict, n_layers: int, model_name: str, field: str = "acc") -> go.Figure:
    """Accuracy (or TF reconstruction) vs number of layers knocked out, forward and reverse (+ control)."""
    fig = go.Figure()
    scale = 1.0 if field == "acc" else 100.0
    for d, dash in (("forward", None), ("reverse", None), ("control_forward", "dot")):
        pts = curve(summary, d, n_layers, field)
        if d.startswith("control") and field != "acc":
            continue
        if pts:
            fig.add_scatter(
                x=[k for k, _ in pts],
                y=[v * scale for _, v in pts],
                mode="lines+markers",
                name=d.replace("_", " "),
                line={"dash": dash},
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
    fig.update_layout(
        title=f"{model_name}: {title} vs layers knocked out",
        xaxis_title="# layers knocked out (k)",
        yaxis_title=title,
        template="plotly_white",
        width=820,
        height=480,
    )
    return fig


def per_layer_figure(summary: dict, mass: Sequence[float], n_layers: int, model_name: str) -> go.Figure:
    """Per-layer knockout: HellaSwag accuracy and TF reconstruction, and the attention mass on the memory."""
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=("knockout of one layer", "attention mass on the memory (no knockout)"),
    )
    acc = curve(summary, "per_layer", n_layers, "acc")
    tf = curve(summary, "per_layer", n_layers, "tf")
    ctl = curve(summary, "control_per_layer", n_layers, "acc")
    fig.add_scatter(x=[k for k, _ in acc], y=[v for _, v in acc], name="HellaSwag acc (%)", row=1, col=1)
    fig.add_scatter(
        x=[k for k, _ in tf], y=[100 * v for _, v in tf], name="TF reconstruction (%)", row=1, col=1
    )
    if ctl:
        fig.add_scatter(
            x=[k for k, _ in ctl],
            y=[v for _, v in ctl],
            name="control acc (%)",
            line={"dash": "dot"},
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
    fig.update_layout(
        title=f"{model_name}: per-layer knockout", template="plotly_white", width=820, height=640
    )
    fig.update_xaxes(title_text="layer", row=2, col=1)
    return fig


def sweep_table(summary: dict, n_layers: int, title: str, every: int = 1) -> Table:
    """Rich table: one row per k, columns per direction (acc % / TF)."""
    t = Table(title=title, title_justify="left")
    dirs = [d for d in ("forward", "reverse", "per_layer", "control_forward") if f"{d}:1" in summary]
    t.add_column("k", justify="right")
    for d in dirs:
        t.add_column(f"{d} acc", justify="right")
        if not d.startswith("control"):
            t.add_column(f"{d} TF", justify="right")
    for k in range(0, n_layers + 1):
        if k % every and k not in (1, n_layers):
            continue
        cells = [str(k)]
        for d in dirs:
            zero = "control_cram" if d.startswith("control") else "cram"
            cond = zero if k == 0 and d != "per_layer" else f"{d}:{k}"
            s = summary.get(cond)
            cells.append("–" if s is None else f"{s['acc']:.1f}")
            if not d.startswith("control"):
                cells.append("–" if s is None else f"{s['tf']:.3f}")
        t.add_row(*cells)
    base, cram = summary.get("base"), summary.get("cram")
    if base and cram:
        t.caption = f"Base {base['acc']:.1f}%, Cram {cram['acc']:.1f}% (TF {cram['tf']:.3f}), n={cram['n']}"
    return t


def sweep_markdown(summary: dict, n_layers: int, ks: Sequence[int]) -> str:
    """Markdown table of the sweep at the given k."""
    lines = [
        "| k | forward acc | forward TF | reverse acc | reverse TF | per-layer acc | per-layer TF | control fwd acc |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k in ks:
        cells = [str(k)]
        for d in ("forward", "reverse", "per_layer", "control_forward"):
            zero = "control_cram" if d.startswith("control") else "cram"
            cond = zero if k == 0 and d != "per_layer" else f"{d}:{k}"
            s = summary.get(cond)
            cells.append(_f(s and s["acc"], "{:.1f}"))
            if not d.startswith("control"):
                cells.append(_f(s and s["tf"], "{:.3f}"))
        lines.append("| " + " | ".join(cells) + " |")
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
