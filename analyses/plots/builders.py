"""The figure builders: each takes a :class:`~analyses.plots.sources.Sources` and returns :class:`Built` figures
(or raises :class:`Missing`). They read run directories and result files only, never a model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import run_figures as F
from . import tables as T
from .sources import COMMANDS, Built, Missing, Sources
from .token_explorer import token_explorer

#: Colours of the series of multi-line figures (cycled).
PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#9d755d", "#bab0ac"]


# ----------------------------------------------------------------------------------------------- progressive run
def _progressive(src: Sources, builder) -> list[Built]:
    run, p = src.progressive_run()
    return builder(run, p)


def build_horizon_ig(src: Sources) -> list[Built]:
    def b(run, p):
        fig, data = F.horizon_ig_bars(run)
        return [Built("horizon_ig", fig, data, [str(p)])]

    return _progressive(src, b)


def build_schematic(src: Sources) -> list[Built]:
    def b(run, p):
        fig, data = F.progressive_schematic(run, decode=src.decode(run))
        return [Built("progressive_schematic", fig, data, [str(p)])]

    return _progressive(src, b)


def build_explorer(src: Sources) -> list[Built]:
    def b(run, p):
        fig, data = token_explorer(run, decode=src.decode(run))
        return [Built("token_explorer", fig, data, [str(p)])]

    return _progressive(src, b)


def build_brittleness(src: Sources) -> list[Built]:
    root = src.where("*/brittleness.json")
    files = sorted(root.glob("*/brittleness.json"))
    if not files:
        raise Missing(f"no {root}/*/brittleness.json; make one with: {src.fmt(COMMANDS['brittleness'])}")
    sources = {f.parent.name: json.loads(f.read_text()) for f in files}
    fig, data = T.brittleness_table(sources)
    return [Built("brittleness_table", fig, data, [str(f) for f in files])]


# ----------------------------------------------------------------------------------------------- trajectory
def _traj():
    from .. import trajectory as tj
    from . import trajectory_figures as tf

    return tj, tf


def build_pca_trajectories(src: Sources) -> list[Built]:
    tj, tf = _traj()
    run, p = src.progressive_run()
    table = tj.geometry_table(run)
    if not table:
        raise Missing(f"no sample of {p} has 2+ stages yet")
    fig = tf.pca_figure(run, table)
    fig.update_xaxes(title_text="PC1", exponentformat="e")
    fig.update_yaxes(title_text="PC2", exponentformat="e")
    top = max(
        int(r["stage_seq_len"]) for r in run.rows
    )  # one colour scale for all panels (the builder's is per panel)
    fig.update_traces(
        marker_colorbar_title_text="L (tokens)", marker_cmin=1, marker_cmax=top, selector={"type": "scatter"}
    )
    return [Built("pca_trajectories", fig, table, [str(p)])]


def build_pca99_vs_length(src: Sources) -> list[Built]:
    tj, tf = _traj()
    run, p = src.progressive_run()
    rows = [x for sid in tj.sample_ids(run) for x in tj.pca99_vs_length(run, sid)]
    if not rows:
        raise Missing(f"no sample of {p} has 2+ stages yet")
    fig = tf.pca99_length_figure(rows)
    return [Built("pca99_vs_length", fig, rows, [str(p)])]


def build_surprisal(src: Sources) -> list[Built]:
    from .. import surprisal as su

    _, tf = _traj()
    run, p = src.progressive_run()
    try:
        pairs = su.step_pairs(run)
    except ValueError as e:  # rows without surprisal (released trajectories): needs the model
        raise Missing(f"{p}: {e}; run {src.fmt(COMMANDS['trajectory'])}") from e
    if len(pairs) < 3:
        raise Missing(f"{p} has {len(pairs)} consecutive converged one-token stages; need 3+")
    corr = su.correlation(pairs, n_boot=1000)
    fig = tf.surprisal_figure(pairs, corr)
    fig.update_xaxes(title_text="sample", type="category", row=1, col=2)
    fig.update_yaxes(title_text="Spearman ρ (surprisal, steps)", row=1, col=2)
    return [Built("surprisal_vs_steps", fig, {"pairs": pairs, "correlation": corr}, [str(p)])]


def build_pca_reconstruction(src: Sources) -> list[Built]:
    _, tf = _traj()
    res, p = src.json("trajectory/trajectory.json", COMMANDS["trajectory"])
    rows = res.get("pca_reconstruction") or []
    if not rows:
        raise Missing(
            f"{p} has no pca_reconstruction (made with --no-eval?); rerun {src.fmt(COMMANDS['trajectory'])}"
        )
    return [Built("pca_reconstruction", tf.recon_figure(rows), rows, [str(p), str(res.get("source", ""))])]


def build_landscape(src: Sources) -> list[Built]:
    import torch

    tj, tf = _traj()
    res, p = src.json("trajectory/trajectory.json", COMMANDS["trajectory"])
    lands = res.get("landscape") or {}
    if not lands:
        raise Missing(f"{p} has no landscape (made with --no-eval?); rerun {src.fmt(COMMANDS['trajectory'])}")
    source = Path(str(res.get("source", "")))
    run = src.run(source, COMMANDS["progressive"]) if source.exists() else src.progressive_run()[0]
    out = []
    for sid, land in lands.items():
        traj = run.trajectory(int(sid))
        X = tj.stage_matrix(traj)
        coords = tj.pca(X).project(X, 2).float()
        Ls = {int(k): v for k, v in land["maps"].items()}
        full = {
            "coords": coords,
            "lengths": [int(r["stage_seq_len"]) for r in traj],
            "a": torch.tensor(land["a"]),
            "b": torch.tensor(land["b"]),
            "pc12": land["pc12"],
            "maps": {L: torch.tensor(m) for L, m in sorted(Ls.items())},
            "anchors": {int(k): tuple(v) for k, v in land["anchors"].items()},
            "basin": {int(k): v for k, v in land["basin"].items()},
        }
        fig = tf.landscape_figure(full, int(sid))
        fig.update_layout(
            width=max(fig.layout.width or 0, 1100), title_font_size=14
        )  # room for the long title
        out.append(Built(f"accuracy_landscape_sample{sid}", fig, land, [str(p), str(source)]))
    return out


# ----------------------------------------------------------------------------------------------- diversity
def build_diversity(src: Sources) -> list[Built]:
    from .. import diversity as dv

    root = src.where("lrsweep_*/rows.jsonl")
    runs = dv.load_sweep(root)
    if len(runs) < 2:
        raise Missing(
            f"{len(runs)} {root}/lrsweep_* run(s); need 2+, make them with: {src.fmt(COMMANDS['diversity'])}"
        )
    groups = dv.solution_groups(runs)
    if not groups:  # a run stuck at the start voids the paper's grid: fall back to the lengths two runs share
        groups = dv.solution_groups(runs, grid_top="shared")
    d = int(next(iter(runs.values())).rows[0]["embedding"].numel())
    s = dv.summarize(groups, d)
    if not s.get("N"):
        raise Missing(
            f"no (sample, length) converged in 2+ of {root}/lrsweep_* yet; let the sweep run longer"
        )
    model = next(iter(runs.values())).config["settings"].get("model", "?")
    label = f"{model} (ours, lr {', '.join(f'{x:g}' for x in s['lrs'])})"
    fig, data = T.diversity_table(s, label)
    return [Built("solution_diversity", fig, data, sorted(str(r.path) for r in runs.values()))]


# ----------------------------------------------------------------------------------------------- depth / capacity
def build_depth(src: Sources) -> list[Built]:
    from ..depth_sweep import collect_results
    from .capacity_report import depth_figure

    root = src.where("capacity/*/*/result.json") / "capacity"
    results = collect_results(root)
    if not results:
        raise Missing(f"no {root}/*/*/result.json; make them with: {src.fmt(COMMANDS['depth'])}")
    fig, data = depth_figure(results)
    return [Built("depth_heatmap", fig, data, [str(root)])]


def build_capacity(src: Sources) -> list[Built]:
    from ..capacity import SampleCapacity, summarise

    root = src.where("capacity/*/capacity_samples.json")
    files = sorted((root / "capacity").glob("*/capacity_samples.json"))
    if not files:
        raise Missing(
            f"no {root}/capacity/*/capacity_samples.json; make it with: {src.fmt(COMMANDS['capacity'])}"
        )
    out = []
    for f in files:
        samples = [SampleCapacity(**d) for d in json.loads(f.read_text())]
        fig = go.Figure()
        for i, d in enumerate(summarise(samples)):
            rows = [s for s in samples if s.source == d["source"]]
            c = PALETTE[i % len(PALETTE)]
            fig.add_trace(
                go.Scatter(
                    x=[s.horizon for s in rows],
                    y=[s.information_gain_bits for s in rows],
                    mode="markers",
                    name=f"{d['source']} ({len(rows)})",
                    text=[s.text_id for s in rows],
                    marker={"color": c, "size": 9, "opacity": 0.7},
                    hovertemplate="%{text}<br>horizon %{x}<br>IG %{y:.1f} bits<extra></extra>",
                )
            )
            fig.add_trace(
                go.Scatter(
                    x=[d["horizon_mean"]],
                    y=[d["information_gain_bits_mean"]],
                    mode="markers",
                    showlegend=False,
                    marker={"color": c, "size": 16, "symbol": "x-thin", "line": {"width": 3, "color": c}},
                )
            )
        fig.update_layout(
            title=f"{f.parent.name}: horizon vs information gain per text source (x: source mean)",
            xaxis_title="horizon (tokens)",
            yaxis_title="information gain (bits)",
            width=900,
            height=520,
            template="plotly_white",
        )
        out.append(Built(f"capacity_bits_{f.parent.name}", fig, [vars(s) for s in samples], [str(f)]))
    return out


# ----------------------------------------------------------------------------------------------- probes
def build_probes(src: Sources) -> list[Built]:
    res, p = src.json("probes/probes.json", COMMANDS["probes"])
    rows, names = res["rows"], res.get("meta", {}).get("names", {})
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    conds = list(dict.fromkeys(r["condition"] for r in rows))
    cols = min(3, len(tasks))
    fig = make_subplots(
        rows=math.ceil(len(tasks) / cols), cols=cols, subplot_titles=[names.get(t, t) for t in tasks]
    )
    for i, task in enumerate(tasks):
        r, c = i // cols + 1, i % cols + 1
        for j, cond in enumerate(conds):
            rs = [x for x in rows if x["task"] == task and x["condition"] == cond]
            colour = PALETTE[j % len(PALETTE)]
            fig.add_trace(
                go.Scatter(
                    x=[x["layer"] for x in rs],
                    y=[x["score"] for x in rs],
                    mode="lines",
                    name=cond,
                    line={"color": colour},
                    legendgroup=cond,
                    showlegend=i == 0,
                ),
                r,
                c,
            )
            fig.add_trace(
                go.Scatter(
                    x=[x["layer"] for x in rs],
                    y=[x["shuffled"] for x in rs],
                    mode="lines",
                    line={"color": colour, "dash": "dot", "width": 1},
                    legendgroup=cond,
                    showlegend=False,
                    hoverinfo="skip",
                ),
                r,
                c,
            )
    fig.update_xaxes(title_text="layer (0 = injected vector)")
    fig.update_yaxes(title_text="held-out score", col=1)
    meta = res.get("meta", {})
    fig.update_layout(
        title=f"{meta.get('model', '')}: linear probes at the memory position ({meta.get('n', '?')} "
        "texts); solid: held-out score, dotted: shuffled labels (chance 0.5)",
        width=1300,
        height=300 * math.ceil(len(tasks) / cols) + 120,
    )
    return [Built("probes", fig, rows, [str(p)])]


# ----------------------------------------------------------------------------------------------- downstream, knockout
def _model_of(task_dir: Path) -> str:
    """The model a downstream task directory was crammed with (from its crams' run configs)."""
    for cfg in [
        task_dir / "config.json",
        *sorted(task_dir.glob("crams/**/config.json")),
    ]:  # MMLU: per subject
        if not cfg.exists():  # results/ keeps one cram's config beside the summary
            continue
        return str(json.loads(cfg.read_text()).get("settings", {}).get("model", ""))
    return ""


def _choice_summaries(src: Sources, folder: str) -> dict[str, Path]:
    root = src.where(f"{folder}/*/summary.json") / folder
    return {
        t: root / t / "summary.json"
        for t in ("hellaswag", "arc_easy")
        if (root / t / "summary.json").exists()
    }


def build_downstream(src: Sources) -> list[Built]:
    """The likelihood tasks crammed with Kuratov's scoring (``downstream/``), and, where present, the paper's
    scoring (``downstream_paper/``: the memory also predicts the first context token) as a second table."""
    from .eval_figures import downstream_figure

    found = _choice_summaries(src, "downstream")
    if not found:
        raise Missing(
            f"no {src.results}/downstream/{{hellaswag,arc_easy}}/summary.json; make them with: "
            f"{src.fmt(COMMANDS['downstream'])}"
        )
    summaries = {t: json.loads(p.read_text()) for t, p in found.items()}
    model = _model_of(next(iter(found.values())).parent)
    fig, rows = T.downstream_table(summaries, model)
    inputs = [str(p) for p in found.values()]
    bars = downstream_figure(summaries, model)
    bars.update_xaxes(title_text="task")
    out = [Built("downstream_table", fig, rows, inputs), Built("downstream_accuracy", bars, rows, inputs)]
    paper = _choice_summaries(src, "downstream_paper")
    if paper:
        summaries = {t: json.loads(p.read_text()) for t, p in paper.items()}
        fig, rows = T.downstream_table(
            summaries, f"{_model_of(next(iter(paper.values())).parent)}, paper scoring"
        )
        out.append(Built("downstream_table_paper_scoring", fig, rows, [str(p) for p in paper.values()]))
    return out


def build_mmlu(src: Sources) -> list[Built]:
    from .eval_figures import mmlu_figure

    res, p = src.json("downstream/mmlu/summary.json", COMMANDS["mmlu"])
    model = _model_of(p.parent)
    fig, rows = T.mmlu_table(res, model)
    bars = mmlu_figure(res["modes"], model)
    bars.update_xaxes(title_text="mode")
    return [Built("mmlu_modes", fig, rows, [str(p)]), Built("mmlu_accuracy", bars, rows, [str(p)])]


def _knockout_summaries(src: Sources) -> list[tuple[dict, Path]]:
    root = src.where("knockout*/summary.json")
    files = sorted(root.glob("knockout*/summary.json"))
    if not files:
        raise Missing(f"no {root}/knockout*/summary.json; make it with: {src.fmt(COMMANDS['knockout'])}")
    return [(json.loads(f.read_text()), f) for f in files]


def _suffix(res: dict, f: Path) -> str:
    return res.get("model", "?") + ("" if f.parent.name == "knockout" else f"_{f.parent.name}")


def build_knockout_cumulative(src: Sources) -> list[Built]:
    from .eval_figures import knockout_figure

    out = []
    for res, f in _knockout_summaries(src):
        L, name, s = res["n_layers"], res.get("model", "?"), res["summary"]
        for what, stem in (("acc", "accuracy"), ("tf", "reconstruction")):
            fig = knockout_figure(s, L, name, what)
            out.append(Built(f"knockout_cumulative_{stem}_{_suffix(res, f)}", fig, s, [str(f)]))
    return out


def build_knockout_per_layer(src: Sources) -> list[Built]:
    from .eval_figures import per_layer_figure

    out = []
    for res, f in _knockout_summaries(src):
        fig = per_layer_figure(
            res["summary"], res["attention_mass_pct"], res["n_layers"], res.get("model", "?")
        )
        fig.update_yaxes(title_text="%", row=1, col=1)
        fig.update_yaxes(title_text="attention mass (%)", row=2, col=1)
        data = {"summary": res["summary"], "attention_mass_pct": res["attention_mass_pct"]}
        out.append(Built(f"knockout_per_layer_{_suffix(res, f)}", fig, data, [str(f)]))
    return out


def build_sink(src: Sources) -> list[Built]:
    root = src.where("knockout*/sink_*.json")
    files = sorted(root.glob("knockout*/sink_*.json"))
    if not files:
        raise Missing(f"no {root}/knockout*/sink_*.json; make them with: {src.fmt(COMMANDS['sink'])}")
    fig, rows = T.sink_table([json.loads(f.read_text()) for f in files])
    return [Built("sink_table", fig, rows, [str(f) for f in files])]


# ----------------------------------------------------------------------------------------------- repeats (issue 23)
def build_horizon_spread(src: Sources) -> list[Built]:
    from .spread_figures import horizon_spread_figure

    res, p = src.json("horizon_spread/spread.json", COMMANDS["horizon_spread"])
    return [
        Built(
            f"horizon_spread_{metric}",
            horizon_spread_figure(res, metric),
            res["components"][metric],
            [str(p)],
        )
        for metric in ("compressed_tokens", "information_gain_bits_final")
        if metric in res["components"]
    ]


def build_divergence(src: Sources) -> list[Built]:
    from .spread_figures import divergence_figure

    res, p = src.json("divergence/divergence.json", COMMANDS["divergence"])
    return [Built("divergence", divergence_figure(res), res["summary"], [str(p)])]
