"""Figures of issue 23: horizons of texts x seeds, and how fast twin runs drift apart."""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .builders import PALETTE


def horizon_spread_figure(report: dict, metric: str = "compressed_tokens") -> go.Figure:
    """One column per text: every draw (seed, variant) of ``metric``, the text's mean, and the ICC in the title."""
    draws = report["draws"]
    texts = sorted({d["text_id"] for d in draws}, key=lambda t: (len(t), t))
    variants = sorted({d["variant"] for d in draws})
    fig = go.Figure()
    for k, var in enumerate(variants):
        mine = [d for d in draws if d["variant"] == var]
        fig.add_trace(
            go.Scatter(
                x=[texts.index(d["text_id"]) + 0.08 * (k - (len(variants) - 1) / 2) for d in mine],
                y=[d["values"].get(metric) for d in mine],
                mode="markers",
                marker=dict(
                    size=9,
                    color=PALETTE[k % len(PALETTE)],
                    symbol=["circle-open" if d["censored"] else "circle" for d in mine],
                ),
                name=f"{var} (open: censored at the text's end)",
                text=[f"{d['text_id']} seed {d['seed']}" for d in mine],
                hovertemplate="%{text}: %{y}<extra></extra>",
            )
        )
    means = []
    for t in texts:
        vs = [d["values"].get(metric) for d in draws if d["text_id"] == t]
        vs = [v for v in vs if v is not None and not math.isnan(v)]
        means.append(sum(vs) / len(vs) if vs else None)
    fig.add_trace(
        go.Scatter(
            x=list(range(len(texts))),
            y=means,
            mode="markers",
            marker=dict(symbol="line-ew-open", size=26, color="black"),
            name="text mean",
        )
    )
    c = report["components"][metric]
    m = c["mean"]
    files = {t.rsplit(":", 1)[0] for t in texts}
    one_file = len(files) == 1 and all(":" in t for t in texts)  # ids "<file>:<index>": name the file once
    fig.update_layout(
        title=dict(
            text=f"{metric}: {c['n_draws']} draws of {c['n_texts']} texts<br>ICC {c['icc']:.2f} "
            f"[{c['icc_lo']:.2f}, {c['icc_hi']:.2f}] (the share of a draw's variance that is the text's)<br>mean "
            f"of text means {m['mean']:.1f} [{m['lo']:.1f}, {m['hi']:.1f}] (two-stage bootstrap, n = {m['n']} texts)",
            font=dict(size=15),
        ),
        legend=dict(orientation="h", y=-0.18),
        xaxis=dict(
            tickmode="array",
            tickvals=list(range(len(texts))),
            ticktext=[t.rsplit(":", 1)[1] for t in texts] if one_file else texts,
            title=f"text ({next(iter(files))})" if one_file else "text",
        ),
        yaxis_title=metric.replace("_", " "),
        template="plotly_white",
        height=560,
        margin=dict(t=120),
    )
    return fig


def divergence_figure(result: dict) -> go.Figure:
    """Distance between twin memories per step, one line per (text, delta), stage 1 and a later stage."""
    stages = [k for k in ("stage1", "later") if result.get(k)]
    fig = make_subplots(
        rows=1, cols=len(stages), subplot_titles=[_stage_title(result, k) for k in stages], shared_yaxes=True
    )
    deltas = sorted({t["delta"] for k in stages for d in result[k] for t in d["traces"] if t["delta"] > 0})
    for col, k in enumerate(stages, start=1):
        for d in result[k]:
            for t in d["traces"]:
                if t["delta"] <= 0 or not t["distance"]:
                    continue
                j = deltas.index(t["delta"])
                fig.add_trace(
                    go.Scatter(
                        y=t["distance"],
                        mode="lines",
                        line=dict(color=PALETTE[j % len(PALETTE)], width=1.2),
                        name=f"delta {t['delta']:g}",
                        legendgroup=str(t["delta"]),
                        showlegend=col == 1 and d is result[k][0],
                        hovertemplate=f"{d['text_id']} delta {t['delta']:g}: step %{{x}}, %{{y:.2e}}<extra></extra>",
                    ),
                    row=1,
                    col=col,
                )
        fig.update_xaxes(title_text="optimizer step in the stage", row=1, col=col)
    fig.update_yaxes(type="log", title_text="||e_delta - e_0||", row=1, col=1)
    fig.update_layout(
        title="Twin runs from e0 and e0 + delta * rms(e0) * u: tiny differences grow exponentially",
        template="plotly_white",
        height=480,
    )
    return fig


def _stage_title(result: dict, key: str) -> str:
    s = result["summary"][key]["lyapunov"]
    name = "stage 1 (from e0)" if key == "stage1" else "a later stage (warm start)"
    if s["n"] < 2:
        return f"{name}: lambda n={s['n']}"
    return f"{name}: lambda {s['mean']:.3f} [{s['lo']:.3f}, {s['hi']:.3f}] per step (n={s['n']})"
