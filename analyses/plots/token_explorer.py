"""The token explorer of a progressive run: in-memory run in, ``(plotly figure, the data it plots)`` out.

:func:`token_explorer` draws the text as a grid of tokens coloured by "reconstructed up to the horizon"; a slider
replays the stages (the horizon grows), a dropdown picks the sample, hover shows each token's surprisal under the
base model and the marginal optimizer steps its stage took. :func:`explorer_data` is what it plots, per token and
per stage of one sample; the cell states are :data:`NOT_YET`, :data:`RECONSTRUCTED`, :data:`JUST_ADDED` and
:data:`FAILED`. No file I/O, no model (``analyses.plots.registry`` lists it as ``token_explorer``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go

from cramlens import CramRun

from .tokens import Decode, default_decode, finite, fmt, token_label
from .tokens import sample_ids as run_sample_ids

# Cell states of the token explorer (z values of its heatmap).
NOT_YET, RECONSTRUCTED, JUST_ADDED, FAILED = 0, 1, 2, 3
STATE_NAMES = {
    NOT_YET: "not reached",
    RECONSTRUCTED: "reconstructed",
    JUST_ADDED: "added at this stage",
    FAILED: "failed stage",
}
STATE_COLOURS = {NOT_YET: "#e8e8e8", RECONSTRUCTED: "#8fd19e", JUST_ADDED: "#2e9e4f", FAILED: "#e0565b"}


def explorer_data(run: CramRun, sample_id: int, decode: Decode | None = None, max_tokens: int = 512) -> dict:
    """Per token and per stage of one sample, what the explorer shows.

    ``tokens``: ``{index, id, label, stage, surprisal, marginal_steps, converged}`` per token of the shown span (the
    sequence up to the longest stage plus 16 tokens of context, at most ``max_tokens``); ``stage`` is the index of
    the stage that first targeted the token (``None`` beyond the last stage), ``surprisal`` is ``-log2 p(x | x_<)``
    under the base model when the rows carry it (the new token of a one-token stage), ``marginal_steps`` the
    optimizer steps of that stage. ``stages``: ``{stage_index, length, converged, horizon, states}``, ``horizon`` =
    longest converged length so far, ``states[i]`` the cell state of token ``i`` after this stage (``NOT_YET``,
    ``RECONSTRUCTED``, ``JUST_ADDED`` or ``FAILED``).
    """
    decode = decode or default_decode()
    traj = run.trajectory(sample_id)
    if not traj:
        raise ValueError(f"sample {sample_id} has no stage rows")
    seq = list(traj[-1].get("input_ids") or next((r["input_ids"] for r in traj if r.get("input_ids")), []))
    longest = max(int(r["stage_seq_len"]) for r in traj)
    n = min(len(seq), longest + 16, max_tokens) if seq else longest
    first_stage: dict[int, dict] = {}
    prev_len = 0
    for r in traj:  # in stage order; a token belongs to the first stage whose target reaches it
        L = int(r["stage_seq_len"])
        for i in range(prev_len, min(L, n)):
            first_stage.setdefault(i, r)
        prev_len = max(prev_len, L)
    tokens = []
    for i in range(n):
        r = first_stage.get(i)
        new = r is not None and int(r["stage_seq_len"]) == i + 1  # the row's surprisal is of its last token
        tokens.append(
            {
                "index": i,
                "id": int(seq[i]) if i < len(seq) else None,
                "label": token_label(decode(seq[i])) if i < len(seq) else "",
                "stage": int(r["stage_index"]) if r is not None else None,
                "surprisal": finite(r.get("new_token_surprisal_bits")) if new else None,
                "marginal_steps": int(r.get("marginal_steps", 0) or 0) if r is not None else None,
                "converged": bool(r.get("converged")) if r is not None else None,
            }
        )
    stages, horizon, prev_h = [], 0, 0
    for r in traj:
        L, ok = int(r["stage_seq_len"]), bool(r.get("converged"))
        if ok:
            horizon = max(horizon, L)
        states = [NOT_YET] * n
        for i in range(min(horizon, n)):
            states[i] = JUST_ADDED if i >= prev_h else RECONSTRUCTED
        if not ok:
            for i in range(horizon, min(L, n)):
                states[i] = FAILED
        stages.append(
            {
                "stage_index": int(r["stage_index"]),
                "length": L,
                "converged": ok,
                "horizon": horizon,
                "states": states,
            }
        )
        prev_h = horizon
    s = next((x for x in run.samples if x.sample_id == sample_id), None)
    return {
        "sample_id": sample_id,
        "n_tokens": len(seq),
        "tokens": tokens,
        "stages": stages,
        "horizon": stages[-1]["horizon"],
        "information_gain_bits": s.information_gain_bits if s else None,
        "text_id": s.text_id if s else str(sample_id),
    }


def _grid(values: Sequence, n_cols: int, fill=None) -> list[list]:
    rows = max(1, math.ceil(len(values) / n_cols))
    out = [[fill] * n_cols for _ in range(rows)]
    for i, v in enumerate(values):
        out[i // n_cols][i % n_cols] = v
    return out


def _discrete_colorscale() -> list[list]:
    k = len(STATE_COLOURS)
    scale = []
    for state, colour in STATE_COLOURS.items():
        scale += [[state / k, colour], [(state + 1) / k, colour]]
    return scale


def token_explorer(
    run: CramRun,
    sample_ids: Sequence[int] | None = None,
    decode: Decode | None = None,
    n_cols: int = 16,
    shown: int | None = None,
) -> tuple[go.Figure, dict]:
    """Interactive token explorer (module docstring). One heatmap per sample (dropdown), one slider step per stage.

    Slider step ``k`` shows every sample after its stage ``k`` (a sample with fewer stages keeps its last state).
    The figure opens on the last step (the final horizons) with sample ``shown`` (default: the longest horizon)
    visible, which is also what a static export shows. Returns ``(figure, {"samples": {id: explorer_data}})``.
    """
    ids = list(sample_ids) if sample_ids is not None else run_sample_ids(run)
    if not ids:
        raise ValueError("token_explorer: the run has no samples")
    data = {sid: explorer_data(run, sid, decode) for sid in ids}
    shown = shown if shown in data else max(ids, key=lambda i: (data[i]["horizon"], -i))
    n_steps = max(len(d["stages"]) for d in data.values())

    def z_at(d: dict, k: int) -> list[list]:
        return _grid(d["stages"][min(k, len(d["stages"]) - 1)]["states"], n_cols)

    fig = go.Figure()
    for sid in ids:
        d = data[sid]
        hover = []
        for t in d["tokens"]:
            stage = (
                "–"
                if t["stage"] is None
                else f"{t['stage'] + 1} ({'converged' if t['converged'] else 'FAILED'})"
            )
            hover.append(
                f"token {t['index']}: {t['label']!r} (id {t['id']})<br>surprisal {fmt(t['surprisal'], '{:.2f}')} bits"
                f"<br>marginal steps {'–' if t['marginal_steps'] is None else t['marginal_steps']}<br>stage {stage}"
            )
        fig.add_trace(
            go.Heatmap(
                z=z_at(d, n_steps - 1),
                text=_grid([t["label"] for t in d["tokens"]], n_cols, ""),
                hovertext=_grid(hover, n_cols, ""),
                hoverinfo="text",
                texttemplate="%{text}",
                textfont={"size": 12},
                colorscale=_discrete_colorscale(),
                zmin=0,
                zmax=len(STATE_COLOURS),
                xgap=2,
                ygap=2,
                visible=sid == shown,
                name=f"sample {sid}",
                showscale=True,
                colorbar={
                    "title": "token",
                    "tickvals": [s + 0.5 for s in STATE_COLOURS],
                    "ticktext": [STATE_NAMES[s] for s in STATE_COLOURS],
                    "len": 1.0,
                    "thickness": 18,
                },
            )
        )

    def title(sid: int) -> str:
        d = data[sid]
        return (
            f"Token explorer — sample {sid}: horizon {d['horizon']}/{d['n_tokens']} tokens, "
            f"information gain {fmt(d['information_gain_bits'])} bits"
        )

    steps = [
        {"method": "restyle", "label": str(k + 1), "args": [{"z": [z_at(data[sid], k) for sid in ids]}]}
        for k in range(n_steps)
    ]
    buttons = [
        {
            "method": "update",
            "label": f"sample {sid} (h={data[sid]['horizon']})",
            "args": [{"visible": [s == sid for s in ids]}, {"title.text": title(sid)}],
        }
        for sid in ids
    ]
    n_rows = max(len(_grid(d["tokens"], n_cols)) for d in data.values())
    fig.update_layout(
        title={"text": title(shown), "font": {"size": 15}},
        sliders=[
            {
                "active": n_steps - 1,
                "steps": steps,
                "currentvalue": {"prefix": "after stage "},
                "pad": {"t": 40},
            }
        ],
        updatemenus=[
            {
                "buttons": buttons,
                "active": ids.index(shown),
                "x": 0.0,
                "xanchor": "left",
                "y": 1.03,
                "yanchor": "bottom",
            }
        ]
        if len(ids) > 1
        else [],
        annotations=[
            {
                "text": "slider: replay the stages · hover a token: its surprisal and the steps its stage took"
                + (" · menu: sample" if len(ids) > 1 else ""),
                "x": 1.0,
                "xanchor": "right",
                "y": 1.04,
                "yanchor": "bottom",
                "xref": "paper",
                "yref": "paper",
                "showarrow": False,
                "font": {"size": 12, "color": "#555"},
            }
        ],
        margin={"t": 110},
        xaxis={
            "title": "token position within row",
            "showgrid": False,
            "zeroline": False,
            "tickvals": list(range(0, n_cols, 4)),
            "ticktext": [f"+{c}" for c in range(0, n_cols, 4)],
        },
        yaxis={
            "title": f"first token index of the row ({n_cols} per row)",
            "autorange": "reversed",
            "showgrid": False,
            "zeroline": False,
            "tickvals": list(range(n_rows)),
            "ticktext": [str(r * n_cols) for r in range(n_rows)],
        },
        width=1250,
        height=max(360, 46 * n_rows + 260),
        plot_bgcolor="white",
    )
    return fig, {"samples": data, "shown": shown, "n_steps": n_steps, "n_cols": n_cols}
