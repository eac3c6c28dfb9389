"""Plotly figures for ``analyses.trajectory`` and ``analyses.surprisal`` (HTML + PNG through :func:`save`)."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cramlens import CramRun

from .. import trajectory as tj


def pca_figure(run: CramRun, table: Sequence[dict], max_samples: int = 8) -> go.Figure:
    """Each sample's trajectory in its own PC1-PC2 plane, coloured by stage length."""
    ids = [r["sample_id"] for r in table][:max_samples]
    cols = min(4, max(1, len(ids)))
    rows = (len(ids) + cols - 1) // cols
    titles = [
        f"sample {r['sample_id']}: PC1+PC2 {r['pc12']:.0%}, PCA99 {r['pca99']}" for r in table[:max_samples]
    ]
    fig = make_subplots(rows=max(rows, 1), cols=cols, subplot_titles=titles)
    for i, sid in enumerate(ids):
        traj = run.trajectory(sid)
        X = tj.stage_matrix(traj)
        c = tj.pca(X).project(X, 2)
        L = [int(r["stage_seq_len"]) for r in traj]
        ok = ["converged" if r.get("converged") else "failed" for r in traj]
        fig.add_trace(
            go.Scatter(
                x=c[:, 0].tolist(),
                y=c[:, 1].tolist(),
                mode="lines+markers",
                text=[f"L={x} {o}" for x, o in zip(L, ok, strict=True)],
                marker=dict(
                    color=L,
                    colorscale="Viridis",
                    size=7,
                    showscale=i == 0,
                    symbol=["circle" if o == "converged" else "x" for o in ok],
                ),
                line=dict(color="lightgrey"),
                showlegend=False,
            ),
            i // cols + 1,
            i % cols + 1,
        )
    fig.update_layout(
        title="Stage embeddings in each sample's PC1-PC2 plane (colour: prefix length; x: failed stage)",
        height=330 * max(rows, 1),
        width=1400,
    )
    return fig


def pca99_length_figure(rows: Sequence[dict]) -> go.Figure:
    fig = go.Figure()
    for sid in sorted({r["sample_id"] for r in rows}):
        rs = [r for r in rows if r["sample_id"] == sid]
        fig.add_trace(
            go.Scatter(
                x=[r["length"] for r in rs], y=[r["pca99"] for r in rs], mode="lines", name=f"sample {sid}"
            )
        )
    fig.update_layout(
        title="Components for 99% variance of the trajectory prefix vs prefix length",
        xaxis_title="prefix length L (tokens)",
        yaxis_title="PCA99",
        width=800,
        height=500,
    )
    return fig


def recon_figure(rows: Sequence[dict]) -> go.Figure:
    fig = go.Figure()
    for sid in sorted({r["sample_id"] for r in rows}):
        rs = [r for r in rows if r["sample_id"] == sid]
        fig.add_trace(
            go.Scatter(
                x=[r["k"] for r in rs],
                y=[r["accuracy"] for r in rs],
                mode="lines+markers",
                name=f"sample {sid} (L={rs[0]['length']})",
                opacity=0.6,
            )
        )
    per_k = tj.recon_by_k(rows)
    mean = [sum(r["accuracy"] for r in rs) / len(rs) for rs in per_k.values()]
    fig.add_trace(
        go.Scatter(
            x=list(per_k),
            y=mean,
            mode="lines",
            name="mean (a sample past its rank keeps its last k)",
            line=dict(color="black", width=4),
        )
    )
    fig.update_layout(
        title="Teacher-forced accuracy of the final embedding rebuilt from its top-k trajectory PCs",
        xaxis_title="k (PCA components kept)",
        yaxis_title="TF accuracy",
        width=900,
        height=500,
    )
    return fig


def landscape_figure(land: dict, sample_id: int) -> go.Figure:
    Ls = list(land["maps"])
    fig = make_subplots(
        rows=1, cols=len(Ls), subplot_titles=[f"L = {L} (basin {land['basin'][L]:.0%})" for L in Ls]
    )
    c = land["coords"]
    lengths = land["lengths"]
    for j, L in enumerate(Ls):
        fig.add_trace(
            go.Heatmap(
                z=land["maps"][L].clamp(max=0.9).tolist(),
                x=land["a"].tolist(),
                y=land["b"].tolist(),
                colorscale="Viridis",
                zmin=0,
                zmax=0.9,
                showscale=j == 0,
                colorbar=dict(title="TF acc (cap 0.9)"),
            ),
            1,
            j + 1,
        )
        fig.add_trace(
            go.Scatter(
                x=c[:, 0].tolist(),
                y=c[:, 1].tolist(),
                mode="lines+markers",
                marker=dict(size=4, color="white"),
                line=dict(color="white", width=1),
                text=[f"L={x}" for x in lengths],
                showlegend=False,
            ),
            1,
            j + 1,
        )
        a, b = land["anchors"][L]
        fig.add_trace(
            go.Scatter(
                x=[a],
                y=[b],
                mode="markers",
                marker=dict(size=12, color="red", symbol="star"),
                showlegend=False,
            ),
            1,
            j + 1,
        )
    fig.update_xaxes(title_text="PC1")
    fig.update_yaxes(title_text="PC2", col=1)
    fig.update_layout(
        title=f"Sample {sample_id}: TF accuracy on the PC1-PC2 plane through the stage-L embedding "
        f"(star); trajectory in white; PC1+PC2 = {land['pc12']:.0%}",
        width=380 * len(Ls) + 150,
        height=430,
    )
    return fig


def surprisal_figure(pairs: Sequence[dict], corr: dict | None) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("pairs (all samples)", "per-sample Spearman ρ"))
    for sid in sorted({p["sample_id"] for p in pairs}):
        ps = [p for p in pairs if p["sample_id"] == sid]
        fig.add_trace(
            go.Scatter(
                x=[p["surprisal"] for p in ps],
                y=[max(p["steps"], 0.5) for p in ps],
                mode="markers",
                name=f"sample {sid}",
                text=[f"L={p['length']}" for p in ps],
            ),
            1,
            1,
        )
    if corr:
        per = corr["per_sample"]
        fig.add_trace(go.Bar(x=[str(k) for k in per], y=list(per.values()), showlegend=False), 1, 2)
    fig.update_xaxes(title_text="surprisal of the new token (bits)", row=1, col=1)
    fig.update_yaxes(title_text="marginal steps (0 shown at 0.5)", type="log", row=1, col=1)
    title = "Surprisal vs marginal steps"
    if corr:
        title += f": pooled ρ = {corr['rho']:.2f} [{corr['ci_low']:.2f}, {corr['ci_high']:.2f}], partial ρ|L = {corr['partial_rho']:.2f}"
    fig.update_layout(title=title, width=1300, height=480)
    return fig
