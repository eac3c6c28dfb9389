"""Summary figures of a progressive run: in-memory run in, ``(plotly figure, the data it plots)`` out.

Both need nothing but a run's stage rows (no file I/O, no model):

- :func:`progressive_schematic`: one sample, per stage the marginal optimizer steps and the surprisal of the new
  token under the base model (:func:`schematic_data`);
- :func:`horizon_ig_bars`: per sample the compression horizon (tokens) and the information gain beside the base
  model's bits (:func:`horizon_ig_data`).

The token explorer is in :mod:`analyses.plots.token_explorer`, the shared token and number helpers in
:mod:`analyses.plots.tokens`. ``make_figures`` (``scripts/make_figures.py``) finds the inputs in run directories,
writes HTML + PNG and indexes them; ``analyses.plots.registry`` lists every figure with its inputs and the command
that makes them.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cramlens import CramRun

from .tokens import Decode, best_sample, default_decode, finite, token_label


def schematic_data(run: CramRun, sample_id: int, decode: Decode | None = None) -> list[dict]:
    """Per stage of one sample: length, new token, marginal and cumulative steps, surprisal of the new token."""
    decode = decode or default_decode()
    out = []
    for r in run.trajectory(sample_id):
        L = int(r["stage_seq_len"])
        ids = r.get("input_ids") or []
        out.append(
            {
                "stage_index": int(r["stage_index"]),
                "length": L,
                "token": token_label(decode(ids[L - 1])) if 0 < L <= len(ids) else "",
                "marginal_steps": int(r.get("marginal_steps", 0) or 0),
                "steps_taken": int(r.get("steps_taken", 0) or 0),
                "surprisal": finite(r.get("new_token_surprisal_bits")),
                "converged": bool(r.get("converged")),
                "information_gain_bits": finite(r.get("information_gain_bits")),
            }
        )
    return out


def progressive_schematic(
    run: CramRun, sample_id: int | None = None, decode: Decode | None = None
) -> tuple[go.Figure, list[dict]]:
    """Steps each stage took and the surprisal of the token it added, for one sample (default: longest horizon)."""
    sid = best_sample(run) if sample_id is None else sample_id
    rows = schematic_data(run, sid, decode)
    x = [f"{r['length']}: {r['token']}" for r in rows]
    colours = ["#4c78a8" if r["converged"] else "#e0565b" for r in rows]
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=(
            "optimizer steps to absorb the new token (stage 1: the memory alone predicts token 1; "
            "red: the stage that failed)",
            "surprisal of the new token under the base model",
        ),
    )
    fig.add_trace(
        go.Bar(
            x=x,
            y=[r["marginal_steps"] for r in rows],
            marker_color=colours,
            name="marginal steps",
            customdata=[r["steps_taken"] for r in rows],
            hovertemplate="%{x}<br>%{y} steps (cumulative %{customdata})<extra></extra>",
        ),
        1,
        1,
    )
    fig.add_trace(
        go.Bar(
            x=x,
            y=[r["surprisal"] for r in rows],
            marker_color="#72b7b2",
            name="surprisal",
            hovertemplate="%{x}<br>%{y:.2f} bits<extra></extra>",
        ),
        2,
        1,
    )
    fig.update_yaxes(title_text="marginal steps", row=1, col=1)
    fig.update_yaxes(title_text="surprisal (bits)", row=2, col=1)
    fig.update_xaxes(title_text="stage: target length L and the token it adds", tickangle=-60, row=2, col=1)
    s = next(x for x in run.samples if x.sample_id == sid)
    fig.update_layout(
        title=f"Progressive cramming, sample {sid}: horizon {s.horizon} tokens in {s.steps} steps",
        showlegend=False,
        width=max(900, 26 * len(rows) + 250),
        height=640,
        bargap=0.15,
    )
    return fig, rows


# ----------------------------------------------------------------------------------------------- horizon / IG
def horizon_ig_data(run: CramRun) -> list[dict]:
    return [
        {
            "sample_id": s.sample_id,
            "text_id": s.text_id,
            "horizon": s.horizon,
            "length": len(s.sequence),
            "compressed_tokens": s.compressed_tokens,
            "information_gain_bits": 0.0 if s.horizon <= 1 else finite(s.information_gain_bits),
            "information_gain_bits_final": finite(s.information_gain_bits_final),
            "h_lm_bits": 0.0 if s.horizon <= 1 else finite(s.h_lm_bits),
            "steps": s.steps,
        }
        for s in run.samples
    ]


def horizon_ig_bars(run: CramRun, title: str = "") -> tuple[go.Figure, list[dict]]:
    """Per sample: horizon (tokens) and information gain beside the base model's bits for the same prefix."""
    rows = horizon_ig_data(run)
    x = [str(r["sample_id"]) for r in rows]
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.1,
        subplot_titles=(
            "compression horizon (tokens reconstructed exactly)",
            "bits for the horizon prefix (first token scored in neither)",
        ),
    )
    fig.add_trace(
        go.Bar(
            x=x,
            y=[r["horizon"] for r in rows],
            marker_color="#4c78a8",
            name="horizon",
            text=[str(r["horizon"]) for r in rows],
            textposition="outside",
            showlegend=False,
            customdata=[[r["length"], r["steps"], r["compressed_tokens"]] for r in rows],
            hovertemplate="sample %{x}: %{y} of %{customdata[0]} tokens (%{customdata[2]} compressed tokens, "
            "the paper's unit), %{customdata[1]} steps<extra></extra>",
        ),
        1,
        1,
    )
    fig.add_trace(
        go.Bar(
            x=x, y=[r["h_lm_bits"] for r in rows], marker_color="#bab0ac", name="H_LM: base model, no memory"
        ),
        1,
        2,
    )
    fig.add_trace(
        go.Bar(
            x=x,
            y=[r["information_gain_bits"] for r in rows],
            marker_color="#f58518",
            name="information gain H_LM - H_comp (horizon)",
        ),
        1,
        2,
    )
    fig.add_trace(
        go.Bar(
            x=x,
            y=[r["information_gain_bits_final"] for r in rows],
            marker_color="#e45756",
            name="information gain at the final (failing) stage, one token longer: the paper's tables",
        ),
        1,
        2,
    )
    sm = run.summary()
    model = run.config.get("settings", {}).get("model", "")
    fig.update_xaxes(title_text="sample", type="category")
    fig.update_yaxes(title_text="tokens", row=1, col=1)
    fig.update_yaxes(title_text="bits", row=1, col=2)
    fig.update_layout(
        title=title
        or f"{model}, means with 95% t-intervals: horizon {sm['horizon']}, compressed tokens (paper's unit) "
        f"{sm['compressed_tokens']}<br>IG {sm['ig_bits']} bits at the horizon, {sm['ig_final_bits']} at the final "
        "stage",
        barmode="group",
        width=1200,
        height=540,
        legend={"orientation": "h", "x": 0.56, "y": -0.18},
    )
    return fig, rows
