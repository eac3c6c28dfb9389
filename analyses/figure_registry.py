"""Every figure the toolkit can draw: name → builder, inputs, the command that makes the inputs, what it shows.

A builder takes a :class:`Sources` (where run directories and analysis results live) and returns a list of
:class:`Built` figures, or raises :class:`Missing` with the input it lacks. Builders read run directories and
result files only: they never load a model. Figures whose numbers need forwards of a model (PCA reconstruction,
accuracy landscape, knockout, downstream, probes, brittleness) are drawn from the result files their analysis
script saves.

``scripts/make_figures.py`` runs the registry and writes HTML + PNG + ``README.md``; ``REGISTRY`` is also what
``make_figures.py --list`` prints.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cramlens import CramRun, load_run
from cramlens.errors import CramlensError

from . import figures as F
from . import tables as T

#: The commands that make the default inputs ({runs}, {results}: the directories given to make_figures).
PROG6 = (
    "python scripts/progressive.py --recipe paper --samples 6 --seq-len 64 --batch-size 6 --out {runs}/prog6"
)
COMMANDS = {
    "progressive": PROG6,
    "brittleness": PROG6 + " --resume --compare-full",
    "trajectory": "python scripts/trajectory.py --run {runs}/prog6 --figures {results}/trajectory",
    "diversity": "python scripts/diversity.py run --lrs 0.01 0.1 0.5 --samples 3 --seq-len 32 --root {runs}",
    "probes": "python scripts/probes.py --samples 96 --seq-len 12 --out {runs}/probes_cram --figures {results}/probes",
    "depth": (
        "python scripts/depth.py --grid smollm2-135m=1,2,4,8,full --samples 5 --seq-len 48 --steps-per-stage 1000 "
        "--max-steps 3000 --out {runs}/capacity; python scripts/depth.py --grid smollm2-135m=4 --scheme first_last "
        "--samples 5 --seq-len 48 --steps-per-stage 1000 --max-steps 3000 --out {runs}/capacity; python "
        "scripts/depth.py --grid gemma-3-270m=1,2,4,full --samples 3 --seq-len 32 --no-finetune --steps-per-stage 500 "
        "--max-steps 1500 --out {runs}/capacity"
    ),
    "capacity": "python scripts/capacity.py --model smollm2-135m --out {runs}/capacity",
    "knockout": "python scripts/knockout.py --direction all --out {runs}/knockout",
    "sink": "python scripts/knockout.py --sink --no-sweep --out {runs}/knockout (per --model)",
    "downstream": "python scripts/downstream.py --task hellaswag --out {runs}/downstream "
    "(and --task arc_easy)",
    "mmlu": "python scripts/downstream.py --task mmlu --mode all --out {runs}/downstream",
}


class Missing(Exception):
    """An input of a figure is absent; the message says which and how to make it."""


@dataclass
class Built:
    name: str  # file stem
    fig: go.Figure
    data: Any  # what the figure plots
    inputs: list[str] = field(default_factory=list)  # paths it was made from
    note: str = ""


@dataclass
class Sources:
    """Where the inputs are: ``runs`` (run directories), ``results`` (analysis result files, by default the
    ``figures/<analysis>/`` directories the analysis scripts write), the progressive run to draw (default
    ``<runs>/prog6``, else ``<runs>/demo``)."""

    runs: Path = Path("runs")
    results: Path = Path("figures")
    progressive: Path | None = None
    _runs: dict = field(default_factory=dict, repr=False)
    _tok: dict = field(default_factory=dict, repr=False)

    def fmt(self, command: str) -> str:
        return command.format(runs=self.runs, results=self.results)

    def run(self, path: str | Path, command: str = "") -> CramRun:
        p = Path(path)
        if p not in self._runs:
            if not (p / "config.json").exists() or not (p / "rows.jsonl").exists():
                raise Missing(
                    f"run directory {p} is absent"
                    + (f"; make it with: {self.fmt(command)}" if command else "")
                )
            try:
                self._runs[p] = load_run(p)
            except CramlensError as e:
                raise Missing(f"{p}: {e}") from e
        return self._runs[p]

    def loaded_runs(self) -> dict[Path, CramRun]:
        """The run directories read so far (what the figures were drawn from)."""
        return dict(self._runs)

    def progressive_path(self) -> Path:
        if self.progressive is not None:
            return Path(self.progressive)
        for name in ("prog6", "demo"):
            if (self.runs / name / "rows.jsonl").exists():
                return self.runs / name
        return self.runs / "prog6"

    def progressive_run(self) -> tuple[CramRun, Path]:
        p = self.progressive_path()
        run = self.run(p, COMMANDS["progressive"])
        if run.kind != "progressive":
            raise Missing(f"{p} is a {run.kind} run; pass a progressive run directory with --progressive")
        return run, p

    def json(self, rel: str, command: str) -> tuple[dict, Path]:
        return self.json_at(self.results / rel, command)

    def json_at(self, p: Path, command: str) -> tuple[dict, Path]:
        if not p.exists():
            raise Missing(f"{p} is absent; make it with: {self.fmt(command)}")
        return json.loads(p.read_text()), p

    def decode(self, run: CramRun) -> F.Decode:
        """Token id → text with the run's model's tokenizer (from the cramlens model cache; ids when unavailable)."""
        name = str(run.config.get("settings", {}).get("model", ""))
        if name not in self._tok:
            self._tok[name] = tokenizer_for(name)
        return F.default_decode(self._tok[name])


def tokenizer_for(model_name: str):
    """The HF tokenizer of a registry model from the cramlens cache, or of a local model directory; else None."""
    try:
        from transformers import AutoTokenizer

        from cramlens.gguf_loading import FORMAT_VERSION, cache_dir

        name = (
            "tokenizers/smollm2" if model_name in ("tiny-llama", "tiny-gpt2") else f"{model_name}/tokenizer"
        )
        for d in (cache_dir() / f"v{FORMAT_VERSION}" / name, Path(model_name)):
            if d.is_dir() and ((d / "tokenizer_config.json").exists() or (d / "tokenizer.json").exists()):
                return AutoTokenizer.from_pretrained(str(d))
    except Exception:  # no cache, no transformers tokenizer: the figures show token ids
        return None
    return None


@dataclass(frozen=True)
class FigureSpec:
    name: str
    shows: str  # one line: what the figure shows
    paper: str  # the paper's figure/table (REFERENCE section)
    inputs: str  # what it reads ({runs}/{results} placeholders)
    command: str  # key of COMMANDS: how to make the inputs
    build: Callable[[Sources], list[Built]]


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
        fig, data = F.token_explorer(run, decode=src.decode(run))
        return [Built("token_explorer", fig, data, [str(p)])]

    return _progressive(src, b)


def build_brittleness(src: Sources) -> list[Built]:
    files = sorted(src.runs.glob("*/brittleness.json"))
    if not files:
        raise Missing(f"no {src.runs}/*/brittleness.json; make one with: {src.fmt(COMMANDS['brittleness'])}")
    sources = {f.parent.name: json.loads(f.read_text()) for f in files}
    fig, data = T.brittleness_table(sources)
    return [Built("brittleness_table", fig, data, [str(f) for f in files])]


# ----------------------------------------------------------------------------------------------- trajectory
def _traj():
    from . import trajectory as tj
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
    from . import surprisal as su

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
        full = {"coords": coords, "lengths": [int(r["stage_seq_len"]) for r in traj],
                "a": torch.tensor(land["a"]), "b": torch.tensor(land["b"]), "pc12": land["pc12"],
                "maps": {L: torch.tensor(m) for L, m in sorted(Ls.items())},
                "anchors": {int(k): tuple(v) for k, v in land["anchors"].items()},
                "basin": {int(k): v for k, v in land["basin"].items()}}  # fmt: skip
        fig = tf.landscape_figure(full, int(sid))
        fig.update_layout(
            width=max(fig.layout.width or 0, 1100), title_font_size=14
        )  # room for the long title
        out.append(Built(f"accuracy_landscape_sample{sid}", fig, land,
                         [str(p), str(source)]))  # fmt: skip
    return out


# ----------------------------------------------------------------------------------------------- diversity
def build_diversity(src: Sources) -> list[Built]:
    from . import diversity as dv

    runs = dv.load_sweep(src.runs)
    if len(runs) < 2:
        raise Missing(
            f"{len(runs)} {src.runs}/lrsweep_* run(s); need 2+, make them with: {src.fmt(COMMANDS['diversity'])}"
        )
    groups = dv.solution_groups(runs)
    if not groups:  # a run stuck at the start voids the paper's grid: fall back to the lengths two runs share
        groups = dv.solution_groups(runs, grid_top="shared")
    d = int(next(iter(runs.values())).rows[0]["embedding"].numel())
    s = dv.summarize(groups, d)
    if not s.get("N"):
        raise Missing(
            f"no (sample, length) converged in 2+ of {src.runs}/lrsweep_* yet; let the sweep run longer"
        )
    model = next(iter(runs.values())).config["settings"].get("model", "?")
    label = f"{model} (ours, lr {', '.join(f'{x:g}' for x in s['lrs'])})"
    fig, data = T.diversity_table(s, label)
    return [Built("solution_diversity", fig, data, sorted(str(r.path) for r in runs.values()))]


# ----------------------------------------------------------------------------------------------- depth / capacity
def build_depth(src: Sources) -> list[Built]:
    from .capacity import collect_results
    from .capacity_report import depth_figure

    root = src.runs / "capacity"
    results = collect_results(root)
    if not results:
        raise Missing(f"no {root}/*/*/result.json; make them with: {src.fmt(COMMANDS['depth'])}")
    fig, data = depth_figure(results)
    return [Built("depth_heatmap", fig, data, [str(root)])]


def build_capacity(src: Sources) -> list[Built]:
    from .capacity import SampleCapacity, summarise

    files = sorted((src.runs / "capacity").glob("*/capacity_samples.json"))
    if not files:
        raise Missing(
            f"no {src.runs}/capacity/*/capacity_samples.json; make it with: {src.fmt(COMMANDS['capacity'])}"
        )
    out = []
    for f in files:
        samples = [SampleCapacity(**d) for d in json.loads(f.read_text())]
        fig = go.Figure()
        for i, d in enumerate(summarise(samples)):
            rows = [s for s in samples if s.source == d["source"]]
            c = F.PALETTE[i % len(F.PALETTE)]
            fig.add_trace(go.Scatter(x=[s.horizon for s in rows], y=[s.information_gain_bits for s in rows],
                                     mode="markers", name=f"{d['source']} ({len(rows)})", text=[s.text_id for s in rows],
                                     marker={"color": c, "size": 9, "opacity": 0.7},
                                     hovertemplate="%{text}<br>horizon %{x}<br>IG %{y:.1f} bits<extra></extra>"))  # fmt: skip
            fig.add_trace(go.Scatter(x=[d["horizon_mean"]], y=[d["information_gain_bits_mean"]], mode="markers",
                                     showlegend=False, marker={"color": c, "size": 16, "symbol": "x-thin",
                                                               "line": {"width": 3, "color": c}}))  # fmt: skip
        fig.update_layout(title=f"{f.parent.name}: horizon vs information gain per text source (x: source mean)",
                          xaxis_title="horizon (tokens)", yaxis_title="information gain (bits)", width=900,
                          height=520, template="plotly_white")  # fmt: skip
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
            colour = F.PALETTE[j % len(F.PALETTE)]
            fig.add_trace(go.Scatter(x=[x["layer"] for x in rs], y=[x["score"] for x in rs], mode="lines", name=cond,
                                     line={"color": colour}, legendgroup=cond, showlegend=i == 0), r, c)  # fmt: skip
            fig.add_trace(go.Scatter(x=[x["layer"] for x in rs], y=[x["shuffled"] for x in rs], mode="lines",
                                     line={"color": colour, "dash": "dot", "width": 1}, legendgroup=cond,
                                     showlegend=False, hoverinfo="skip"), r, c)  # fmt: skip
    fig.update_xaxes(title_text="layer (0 = injected vector)")
    fig.update_yaxes(title_text="held-out score", col=1)
    meta = res.get("meta", {})
    fig.update_layout(title=f"{meta.get('model', '')}: linear probes at the memory position ({meta.get('n', '?')} "
                      "texts); solid: held-out score, dotted: shuffled labels (chance 0.5)",
                      width=1300, height=300 * math.ceil(len(tasks) / cols) + 120)  # fmt: skip
    return [Built("probes", fig, rows, [str(p)])]


# ----------------------------------------------------------------------------------------------- downstream, knockout
def _model_of(task_dir: Path) -> str:
    """The model a downstream task directory was crammed with (from its crams' run configs)."""
    for cfg in sorted(task_dir.glob("crams/**/config.json")):  # MMLU nests them per subject
        return str(json.loads(cfg.read_text()).get("settings", {}).get("model", ""))
    return ""


def build_downstream(src: Sources) -> list[Built]:
    from .eval_figures import downstream_figure

    root = src.runs / "downstream"
    found = {
        t: root / t / "summary.json"
        for t in ("hellaswag", "arc_easy")
        if (root / t / "summary.json").exists()
    }
    if not found:
        raise Missing(
            f"no {root}/{{hellaswag,arc_easy}}/summary.json; make them with: {src.fmt(COMMANDS['downstream'])}"
        )
    summaries = {t: json.loads(p.read_text()) for t, p in found.items()}
    model = _model_of(next(iter(found.values())).parent)
    fig, rows = T.downstream_table(summaries, model)
    inputs = [str(p) for p in found.values()]
    bars = downstream_figure(summaries, model)
    bars.update_xaxes(title_text="task")
    return [Built("downstream_table", fig, rows, inputs), Built("downstream_accuracy", bars, rows, inputs)]


def build_mmlu(src: Sources) -> list[Built]:
    from .eval_figures import mmlu_figure

    res, p = src.json_at(src.runs / "downstream" / "mmlu" / "summary.json", COMMANDS["mmlu"])
    model = _model_of(p.parent)
    fig, rows = T.mmlu_table(res, model)
    bars = mmlu_figure(res["modes"], model)
    bars.update_xaxes(title_text="mode")
    return [Built("mmlu_modes", fig, rows, [str(p)]), Built("mmlu_accuracy", bars, rows, [str(p)])]


def _knockout_summaries(src: Sources) -> list[tuple[dict, Path]]:
    files = sorted(src.runs.glob("knockout*/summary.json"))
    if not files:
        raise Missing(f"no {src.runs}/knockout*/summary.json; make it with: {src.fmt(COMMANDS['knockout'])}")
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
    files = sorted(src.runs.glob("knockout*/sink_*.json"))
    if not files:
        raise Missing(f"no {src.runs}/knockout*/sink_*.json; make them with: {src.fmt(COMMANDS['sink'])}")
    fig, rows = T.sink_table([json.loads(f.read_text()) for f in files])
    return [Built("sink_table", fig, rows, [str(f) for f in files])]


REGISTRY: list[FigureSpec] = [
    FigureSpec(
        "brittleness_table",
        "full cramming stopped at 99% TF vs progressive: TF, greedy, exact, first mismatch (table)",
        "Tables full_vs_progressive, compression_reconstruction (D.2, D.3)",
        "{runs}/*/brittleness.json",
        "brittleness",
        build_brittleness,
    ),
    FigureSpec(
        "progressive_schematic",
        "one sample (longest horizon): optimizer steps per stage and surprisal of the token each stage adds",
        "Fig. 1 schematic (data)",
        "progressive run dir",
        "progressive",
        build_schematic,
    ),
    FigureSpec(
        "token_explorer",
        "interactive: tokens coloured by reconstructed-up-to-horizon, slider = stage, "
        "dropdown = sample, hover = surprisal, marginal steps",
        "project-page token explorer",
        "progressive run dir",
        "progressive",
        build_explorer,
    ),
    FigureSpec(
        "horizon_ig",
        "per sample: compression horizon (tokens) and information gain vs H_LM (bits)",
        "Table progressive_modifications (D.1), per sample",
        "progressive run dir",
        "progressive",
        build_horizon_ig,
    ),
    FigureSpec(
        "pca_trajectories",
        "each sample's stage embeddings in its own PC1-PC2 plane",
        "Fig. 3 (C.2, D.4)",
        "progressive run dir",
        "progressive",
        build_pca_trajectories,
    ),
    FigureSpec(
        "accuracy_landscape",
        "TF accuracy on the PC1-PC2 plane through stage embeddings, trajectory on top",
        "Fig. 3 accuracy landscape (C.2)",
        "{results}/trajectory/trajectory.json",
        "trajectory",
        build_landscape,
    ),
    FigureSpec(
        "pca99_vs_length",
        "components for 99% variance of the trajectory prefix vs prefix length",
        "Fig. pca_from_seq_length (C.2, D.4)",
        "progressive run dir",
        "progressive",
        build_pca99_vs_length,
    ),
    FigureSpec(
        "pca_reconstruction",
        "TF accuracy of the final embedding rebuilt from its top-k trajectory PCs",
        "Fig. pca_reconstruction_accuracy (C.2, D.4)",
        "{results}/trajectory/trajectory.json",
        "trajectory",
        build_pca_reconstruction,
    ),
    FigureSpec(
        "surprisal_vs_steps",
        "surprisal of the new token vs marginal steps, Spearman with cluster CI",
        "Table surprisal_steps_correlation (C.9, D.11)",
        "progressive run dir",
        "progressive",
        build_surprisal,
    ),
    FigureSpec(
        "solution_diversity",
        "same init, different learning rates: Sol. dist., Dir. cos., IG CV, Disp. ratio (table; paper grid, or the "
        "lengths two runs share when a run is stuck at the start)",
        "Table solution_diversity (C.3, D.5)",
        "{runs}/lrsweep_*",
        "diversity",
        build_diversity,
    ),
    FigureSpec(
        "downstream_table",
        "HellaSwag / ARC-E accuracy with and without the crammed context and with a same-norm random vector (control), Conv%",
        "Table semantic_evaluation (C.4, D.6)",
        "{runs}/downstream/{hellaswag,arc_easy}/summary.json",
        "downstream",
        build_downstream,
    ),
    FigureSpec(
        "mmlu_modes",
        "5-shot MMLU Acc / Valid: baseline, few_shot, full_prefix, random",
        "Table rebuttle_mmlu (C.5, D.7)",
        "{runs}/downstream/mmlu/summary.json",
        "mmlu",
        build_mmlu,
    ),
    FigureSpec(
        "knockout_cumulative",
        "HellaSwag accuracy and TF reconstruction vs #layers knocked out, forward and reverse",
        "Fig. knockout_cumulative (C.6, D.8)",
        "{runs}/knockout*/summary.json",
        "knockout",
        build_knockout_cumulative,
    ),
    FigureSpec(
        "knockout_per_layer",
        "per-layer knockout with attention mass on the memory",
        "Fig. knockout_per_layer (C.6, D.8)",
        "{runs}/knockout*/summary.json",
        "knockout",
        build_knockout_per_layer,
    ),
    FigureSpec(
        "sink_table",
        "attention mass on the memory vs on BOS, mean over layers, correlation (table)",
        "Table attn_hijacking (C.7, D.9)",
        "{runs}/knockout*/sink_*.json",
        "sink",
        build_sink,
    ),
    FigureSpec(
        "depth_heatmap",
        "mean horizon per (model, blocks kept: first N, first 4 + last 4, full) beside the paper's pivot; "
        "'≥' / 'lb' mark horizons that hit the length cap or step budget (lower bounds), 'no ft' rows were not finetuned",
        "Table depth_size_pivot (C.8, D.10)",
        "{runs}/capacity/*/*/result.json",
        "depth",
        build_depth,
    ),
    FigureSpec(
        "capacity_bits",
        "per text source: horizon vs information gain (Kuratov's cross-entropy law)",
        "Kuratov Table 1 (D.13)",
        "{runs}/capacity/*/capacity_samples.json",
        "capacity",
        build_capacity,
    ),
    FigureSpec(
        "probes",
        "linear probes on the residual stream at the memory position, per layer, vs controls",
        "none in the paper (C.10)",
        "{results}/probes/probes.json",
        "probes",
        build_probes,
    ),
]


def get(name: str) -> FigureSpec:
    for s in REGISTRY:
        if s.name == name:
            return s
    raise KeyError(f"no figure {name!r}; known: {', '.join(s.name for s in REGISTRY)}")
