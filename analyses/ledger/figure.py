"""The ledger's figure: one panel per claim (each in its own unit), our mean and 95% interval per model coloured by
verdict, the paper's value as a black diamond, a numeric claim's band shaded and a directional claim's threshold
dashed."""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .claims import Row
from .ledger import Ledger

COLOUR = {"holds": "#2ca02c", "differs": "#d62728", "inconclusive": "#7f7f7f", "not run": "#c7c7c7"}
PANEL_PX = 90


def _finite(x) -> bool:
    return x is not None and math.isfinite(x)


def _panel(fig: go.Figure, i: int, rows: list[tuple[str, Row]], legend: set[str]) -> None:
    """Panel ``i``: one claim, one marker per model."""
    first = rows[0][1]
    for model, r in rows:
        o = r.ours or {}
        if _finite(o.get("mean")):
            lo, hi = o.get("lo"), o.get("hi")
            err = {}
            if _finite(lo) and _finite(hi):
                err = dict(
                    error_x=dict(
                        type="data", symmetric=False, array=[hi - o["mean"]], arrayminus=[o["mean"] - lo]
                    )
                )
            fig.add_trace(
                go.Scatter(
                    x=[o["mean"]],
                    y=[model],
                    mode="markers",
                    marker=dict(color=COLOUR[r.verdict], size=9),
                    name=r.verdict,
                    legendgroup=r.verdict,
                    showlegend=r.verdict not in legend,
                    hovertext=f"{r.claim} ({model}): {r.verdict}; {r.reason}",
                    **err,
                ),
                i,
                1,
            )
            legend.add(r.verdict)
        if r.paper and _finite(r.paper.get("value")):
            fig.add_trace(
                go.Scatter(
                    x=[r.paper["value"]],
                    y=[model],
                    mode="markers",
                    marker=dict(color="black", symbol="diamond", size=8),
                    name="paper",
                    legendgroup="paper",
                    showlegend="paper" not in legend,
                    hovertext=f"paper: {r.paper['model']}, {r.paper['source']}",
                ),
                i,
                1,
            )
            legend.add("paper")
    if first.band:
        fig.add_vrect(
            x0=first.band[0], x1=first.band[1], fillcolor="#1f77b4", opacity=0.15, line_width=0, row=i, col=1
        )
    if first.kind == "directional":
        threshold = float(first.rule.split()[-1])
        fig.add_vline(x=threshold, line_dash="dash", line_color="#555", row=i, col=1)


def ledger_figure(ledger: Ledger) -> go.Figure:
    """All claims (and the cross-model rows) as small multiples, models on the y axis of each panel."""
    by_claim: dict[str, list[tuple[str, Row]]] = {}
    for model, rows in ledger.rows.items():
        for r in rows:
            by_claim.setdefault(r.claim, []).append((model, r))
    for r in ledger.cross_model:
        by_claim.setdefault(r.claim, []).append(("pair", r))
    n = max(1, len(by_claim))
    titles = [f"{c}: {rows[0][1].statement[:90]}" for c, rows in by_claim.items()]
    fig = make_subplots(rows=n, cols=1, subplot_titles=titles, vertical_spacing=min(0.35 / n, 0.05))
    legend: set[str] = set()
    for i, rows in enumerate(by_claim.values(), 1):
        _panel(fig, i, rows, legend)
    fig.update_annotations(font_size=11, xanchor="left", x=0)
    fig.update_layout(
        title=f"Claims ledger, protocol {ledger.protocol}: ours (mean, 95% CI) vs the paper (◆), band shaded",
        height=140 + PANEL_PX * n,
        width=1100,
        margin=dict(l=140, r=30, t=80, b=30),
    )
    return fig
