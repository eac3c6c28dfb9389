"""Tables (rich + markdown) and figures (plotly HTML + PNG) for the depth sweep and the capacity-in-bits run.

``depth_table`` / ``depth_markdown`` / ``depth_heatmap``: mean horizon per (model, depth) beside the paper's rows
(REFERENCE D.10). ``capacity_table`` / ``capacity_markdown`` / ``horizon_vs_ig_figure``: per source horizon vs
information gain beside Kuratov's rows (D.13).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from rich.table import Table

from ..capacity import KURATOV, PAPER_DEPTH, PAPER_WIDTH, theoretical_capacity_tokens
from .io import save_figure

DEPTH_COLS = ("first1", "first2", "first4", "first8", "full")


def _f(x, fmt: str = "{:.1f}") -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else fmt.format(x)


def _pm(mean, std, fmt: str = "{:.1f}") -> str:
    return "–" if mean is None else f"{_f(mean, fmt)} ± {_f(std, fmt)}"


def _val_loss(r: dict, arrow: str) -> str:
    """``before → after`` for a finetuned variant, the one value for a model crammed as it is."""
    before, after = r.get("val_loss_before"), r.get("val_loss_after")
    if before is None:
        return "–"
    return f"{before:.2f}{arrow}{after:.2f}" if r.get("finetuned") else f"{before:.2f}"


def _order(results: Sequence[dict]) -> list[dict]:
    def key(r):
        return (r["model"], r["scheme"], r["n"] if r["n"] is not None else 10_000)

    return sorted(results, key=key)


# ----------------------------------------------------------------------------------------------- depth
def depth_table(results: Sequence[dict]) -> Table:
    t = Table(title="capacity vs retained depth (progressive cramming, CPU budget)", title_justify="left")
    cols = [
        "model",
        "variant",
        "layers",
        "ft",
        "val loss before→after",
        "n",
        "horizon",
        "lower bd",
        "IG bits",
        "H_LM bits",
        "util. IG/16d",
        "CPU-min*",
    ]
    for c in cols:
        t.add_column(c, justify="left" if c in ("model", "variant", "ft") else "right")
    for r in _order(results):
        vl = _val_loss(r, "→")
        t.add_row(
            r["model"],
            r["variant"],
            f"{r['layers']}/{r['base_layers']}",
            "yes" if r["finetuned"] else "no",
            vl,
            str(len(r["horizons"])),
            _pm(r["horizon_mean"], r["horizon_std"]),
            f"{r['capped']}/{len(r['horizons'])}",
            _pm(r["information_gain_bits_mean"], r["information_gain_bits_std"]),
            _f(r["h_lm_bits_mean"]),
            _f(r["utilisation_mean"], "{:.4f}"),
            _f(r["cpu_seconds_total"] / 60),
        )
    t.caption = (
        "paper SmolLM2-1.7B first-1/2/4/8/full: 50/241/404/455/335; width first4+last4 135M: 42 ± 15.9\n"
        "* CPU time of the call that wrote the row (work resumed from an earlier call is not counted)"
    )
    return t


def depth_markdown(results: Sequence[dict]) -> str:
    lines = [
        "| model | variant | layers | finetuned | val loss before → after (nats) | samples | horizon (tokens) | "
        "lower bound (cap or budget) | IG (bits) | H_LM (bits) | IG / 16d | CPU-min (last call; resumed work not counted) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in _order(results):
        vl = _val_loss(r, " → ")
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['layers']}/{r['base_layers']} | {'yes' if r['finetuned'] else 'no'} "
            f"| {vl} | {len(r['horizons'])} | {_pm(r['horizon_mean'], r['horizon_std'])} | "
            f"{r['capped']}/{len(r['horizons'])} | "
            f"{_pm(r['information_gain_bits_mean'], r['information_gain_bits_std'])} | {_f(r['h_lm_bits_mean'])} | "
            f"{_f(r['utilisation_mean'], '{:.4f}')} | {_f(r['cpu_seconds_total'] / 60)} |"
        )
    lines += [
        "",
        "Paper (REFERENCE D.10, 50 PG19 samples, L_max 4096, 10,000 steps/sample, finetuned first-N):",
        "",
    ]
    lines += ["| model | " + " | ".join(DEPTH_COLS) + " |", "|---" * (len(DEPTH_COLS) + 1) + "|"]
    for name, row in PAPER_DEPTH.items():
        lines.append(f"| {name} | " + " | ".join(str(row.get(c, "–")) for c in DEPTH_COLS) + " |")
    w = ", ".join(f"{k} {m} ± {s}" for k, (m, s) in PAPER_WIDTH.items())
    lines += ["", f"Paper width ablation (first4+last4, finetuned): {w}.", ""]
    return "\n".join(lines)


def _row_label(results: Sequence[dict], model: str) -> str:
    """``model (30L)``, plus ``no ft`` when its truncated variants were crammed without the recovery finetune."""
    rows = [r for r in results if r["model"] == model]
    layers = next((r["base_layers"] for r in rows if r.get("base_layers")), None)
    cut = [r for r in rows if r.get("n") is not None]
    notes = [f"{layers}L"] if layers else []
    if cut and not any(r.get("finetuned") for r in cut):
        notes.append("no ft")
    return f"{model} ({', '.join(notes)})" if notes else model


def _cell_text(r: dict | None) -> str:
    """Mean horizon; ``≥`` when every horizon of the cell is a lower bound, ``k/n lb`` when some are."""
    if r is None or r.get("horizon_mean") is None:
        return "–"
    v = r["horizon_mean"]
    s = f"{v:.0f}" if v >= 10 else f"{v:.1f}"
    n, lb = len(r.get("horizons") or []), r.get("capped") or 0
    if n and lb == n:
        return "≥" + s
    return f"{s}<br>{lb}/{n} lb" if lb else s


def depth_figure(results: Sequence[dict]):
    """Heatmap of mean horizon per (model, retained depth), ours (left) beside the paper's D.10 table (right)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    models = sorted({r["model"] for r in results})
    cols = [c for c in DEPTH_COLS if any(r["variant"] == c for r in results)]
    cols += sorted({r["variant"] for r in results} - set(cols))
    cell = {(r["model"], r["variant"]): r for r in results}
    z = [[(cell.get((m, c)) or {}).get("horizon_mean") for c in cols] for m in models]
    text = [[_cell_text(cell.get((m, c))) for c in cols] for m in models]
    labels = [_row_label(results, m) for m in models]
    top = max([v for row in z for v in row if v is not None], default=1.0)  # our scale starts at 0
    p_rows = list(PAPER_DEPTH)
    p_z = [[PAPER_DEPTH[m].get(c) for c in DEPTH_COLS] for m in p_rows]
    p_text = [["–" if v is None else f"{v:.0f}" for v in row] for row in p_z]
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.42, 0.58],
        horizontal_spacing=0.2,
        subplot_titles=(
            "ours, CPU budget: mean horizon (tokens; lb = lower bound)",
            "paper D.10: mean crammed tokens",
        ),
    )
    fig.add_trace(
        go.Heatmap(z=z, x=cols, y=labels, text=text, texttemplate="%{text}", coloraxis="coloraxis"), 1, 1
    )
    fig.add_trace(
        go.Heatmap(
            z=p_z, x=list(DEPTH_COLS), y=p_rows, text=p_text, texttemplate="%{text}", coloraxis="coloraxis2"
        ),
        1,
        2,
    )
    fig.update_xaxes(title_text="blocks kept (first N; full = all)")
    fig.update_layout(
        title="Capacity vs retained depth (first-N blocks)",
        width=1250,
        margin={"l": 200},
        height=max(380, 60 * max(len(models), len(p_rows)) + 180),
        coloraxis={
            "colorscale": "Viridis",
            "cmin": 0,
            "cmax": top,
            "colorbar": {"x": 0.36, "title": "tokens"},
        },
        coloraxis2={"colorscale": "Viridis", "colorbar": {"x": 1.0, "title": "tokens"}},
    )
    data = {"ours": {"models": labels, "variants": cols, "horizon_mean": z}, "results": list(results)}
    return fig, data


def write_figure(fig, out_dir: str | Path, name: str) -> list[Path]:
    """``<out_dir>/<name>.html`` and, when kaleido can run a browser, ``.png``."""
    return save_figure(fig, Path(out_dir) / name)


def depth_heatmap(results: Sequence[dict], out_dir: str | Path, name: str = "depth_heatmap") -> list[Path]:
    """:func:`depth_figure` written to ``<out_dir>/<name>.html`` (+ ``.png``)."""
    return write_figure(depth_figure(results)[0], out_dir, name)


# ----------------------------------------------------------------------------------------------- capacity (bits)
def capacity_table(summary: Sequence[dict], model_name: str, d_model: int, vocab: int) -> Table:
    cap = theoretical_capacity_tokens(d_model, vocab)
    t = Table(
        title=f"{model_name}: capacity per source (theoretical {cap:.0f} tokens = 16·{d_model}/log2 {vocab})",
        title_justify="left",
    )
    cols = ["source", "n", "horizon", "lower bd", "H_LM bits", "IG bits", "bits/token", "ratio", "IG / 16d"]
    for c in cols:
        t.add_column(c, justify="left" if c == "source" else "right")
    for d in summary:
        t.add_row(
            d["source"],
            str(d["n"]),
            _pm(d["horizon_mean"], d["horizon_std"]),
            f"{d['capped']}/{d['n']}",
            _pm(d["h_lm_bits_mean"], d["h_lm_bits_std"]),
            _pm(d["information_gain_bits_mean"], d["information_gain_bits_std"]),
            _pm(d["bits_per_token_mean"], d["bits_per_token_std"], "{:.2f}"),
            f"x{d['compression_ratio_mean']:.1f}",
            _pm(d["utilisation_mean"], d["utilisation_std"], "{:.4f}"),
        )
    return t


def capacity_markdown(summary: Sequence[dict], stab: dict, model_name: str, d_model: int, vocab: int) -> str:
    cap = theoretical_capacity_tokens(d_model, vocab)
    lines = [
        f"**{model_name}** (d = {d_model}, |V| = {vocab}): theoretical capacity 16·d/log2|V| = {cap:.0f} tokens, "
        f"bit budget 16·d = {16 * d_model} bits.",
        "",
        "| source | samples | horizon (tokens) | lower bound (cap or budget) | H_LM of horizon (bits) | IG (bits) | bits/token | "
        "ratio | IG / 16d |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for d in summary:
        lines.append(
            f"| {d['source']} | {d['n']} | {_pm(d['horizon_mean'], d['horizon_std'])} | {d['capped']}/{d['n']} | "
            f"{_pm(d['h_lm_bits_mean'], d['h_lm_bits_std'])} | "
            f"{_pm(d['information_gain_bits_mean'], d['information_gain_bits_std'])} | "
            f"{_pm(d['bits_per_token_mean'], d['bits_per_token_std'], '{:.2f}')} | x{d['compression_ratio_mean']:.1f} | "
            f"{_pm(d['utilisation_mean'], d['utilisation_std'], '{:.4f}')} |"
        )
    h, g = stab["horizon"], stab["information_gain_bits"]
    verdict = (
        "One source only: no spread across sources to compare; run two or more."
        if len(summary) < 2
        else f"Spread of the per-source means: horizon CV {h['cv']:.2f} (max/min {h['max_over_min']:.2f}), "
        f"information gain CV {g['cv']:.2f} (max/min {g['max_over_min']:.2f}) → information gain "
        f"{'is' if stab['ig_more_stable'] else 'is not'} more stable across sources than horizon length."
    )
    lower = sum(d["capped"] for d in summary)
    if lower:
        verdict += (
            f" {lower} of {sum(d['n'] for d in summary)} horizons are lower bounds (sequence cap or sample budget "
            "reached first): raise --seq-len / --max-steps for a capacity-bound measurement."
        )
    lines += [
        "",
        verdict,
        "",
        "Kuratov et al. (REFERENCE D.13; full cramming, 99% accuracy, lengths 8…3072):",
        "",
        "| model | d | V | PG19 tokens | random tokens | theor. cap. | CE red. PG19 (nats) | util. PG19 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k, (d, v, pg, rnd, th, ce, u) in KURATOV.items():
        lines.append(f"| {k} | {d} | {v} | {pg} | {rnd} | {th} | {ce} | {u} |")
    return "\n".join(lines) + "\n"


def horizon_vs_ig_figure(
    samples: Sequence, out_dir: str | Path, title: str, name: str = "horizon_vs_ig"
) -> list[Path]:
    """Per-sample horizon (tokens) vs information gain (bits), one colour per source, source means as crosses."""
    import plotly.graph_objects as go

    from analyses.capacity import summarise

    fig = go.Figure()
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    for i, d in enumerate(summarise(samples)):
        rows = [s for s in samples if s.source == d["source"]]
        c = colours[i % len(colours)]
        fig.add_trace(
            go.Scatter(
                x=[s.horizon for s in rows],
                y=[s.information_gain_bits for s in rows],
                mode="markers",
                name=d["source"],
                marker={"color": c, "size": 9, "opacity": 0.7},
                text=[s.text_id for s in rows],
                hovertemplate="%{text}<br>horizon %{x}<br>IG %{y:.1f} bits",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=[d["horizon_mean"]],
                y=[d["information_gain_bits_mean"]],
                mode="markers",
                showlegend=False,
                marker={"color": c, "size": 16, "symbol": "x-thin", "line": {"width": 3, "color": c}},
                error_x={"type": "data", "array": [d["horizon_std"]]},
                error_y={"type": "data", "array": [d["information_gain_bits_std"]]},
            )
        )
    fig.update_layout(
        title=title,
        xaxis_title="horizon (tokens)",
        yaxis_title="information gain (bits)",
        height=480,
        width=720,
        template="plotly_white",
    )
    return write_figure(fig, out_dir, name)
