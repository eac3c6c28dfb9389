#!/usr/bin/env python
"""Solution diversity across learning rates (REFERENCE C.3): run the LR sweep, then analyse it.

# one progressive run per learning rate, same seed (so every sample starts from the same e_0), resumable
python scripts/diversity.py run --lrs 0.01 0.1 0.5 --samples 3 --seq-len 32 --batch-size 3 --root runs
# Sol. dist., Dir. cos. (vs 1/sqrt(d)), IG CV, Disp. ratio over runs/lrsweep_*/ (partial runs are fine)
python scripts/diversity.py analyze --root runs --figures figures/diversity
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from analyses.plots import tables as T  # noqa: E402
from analyses.plots.io import save_figure as save  # noqa: E402
from cramlens import cli  # noqa: E402


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="progressive runs at several learning rates into <root>/lrsweep_<lr>/")
    cli.add_model_args(r)
    cli.add_data_args(r, samples=3, seq_len=32)
    cli.add_recipe_args(r)
    r.add_argument("--lrs", type=float, nargs="+", default=[0.01, 0.1, 0.5])
    r.add_argument("--root", default="runs", help="parent directory of the lrsweep_<lr>/ run directories")
    r.add_argument("--batch-size", type=int, default=3)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--no-progress", action="store_true")
    cli.add_results_arg(r)
    a = sub.add_parser("analyze", help="diversity table and figures from <root>/lrsweep_*/")
    a.add_argument("--root", default="runs")
    a.add_argument("--lengths", type=int, default=24, help="geometric grid size per sample (paper: 24)")
    a.add_argument("--min-length", type=int, default=4)
    a.add_argument(
        "--grid-top",
        choices=["all", "shared"],
        default="all",
        help="end of each sample's length grid: the shortest run's longest converged length (all, the paper's) "
        "or the longest length two runs reached (shared: a run stuck at the start does not void the sample)",
    )
    a.add_argument("--figures", default="figures/diversity")
    a.add_argument(
        "--control",
        default=None,
        help="another run directory at one of the sweep's learning rates (same texts, seed, init; e.g. another "
        "batch size): its solutions vs that sweep run give the numerical-noise floor of the diversity metrics",
    )
    a.add_argument(
        "--json", default=None, help="write the summary and groups here (default <figures>/diversity.json)"
    )
    return p.parse_args(argv if argv is not None else sys.argv[1:])


def cmd_run(a: argparse.Namespace, console: Console) -> None:
    from analyses.diversity import run_lr_sweep
    from cramlens.report import LiveProgress, samples_table

    a.recipe = a.recipe if a.recipe != cli.DEFAULT_PRESET else "paper"
    rc = cli.recipe_from_args(a)
    model, texts = cli.load_model_and_texts(a)
    factory = (
        None
        if a.no_progress
        else (lambda lr: LiveProgress(console, title=f"progressive cramming, lr {lr:g}"))
    )
    runs = run_lr_sweep(
        model, texts, a.lrs, a.root, a.seq_len, rc, a.batch_size, a.seed, progress_factory=factory
    )
    for lr, run in runs.items():
        console.print(samples_table(run, f"lr {lr:g}: compression horizons"))
    cli.refresh_results(a, "diversity", a.root, log=console.print)


def cmd_analyze(a: argparse.Namespace, console: Console) -> None:
    from analyses.diversity import load_sweep, solution_groups, summarize

    runs = load_sweep(a.root)
    if len(runs) < 2:
        raise cli.CramlensError(
            f"found {len(runs)} lrsweep_* runs under {a.root}; run `diversity.py run` first"
        )
    d = int(next(iter(runs.values())).rows[0]["embedding"].numel())
    groups = solution_groups(runs, a.lengths, a.min_length, grid_top=a.grid_top)
    s = summarize(groups, d)
    t = Table(
        title="Solution diversity (same init, different learning rates; n = groups, 95% intervals)",
        title_justify="left",
    )
    for c in T.DIVERSITY_COLUMNS:
        t.add_column(c, justify="left" if c.startswith("model") else "right")
    model_name = next(iter(runs.values())).config["settings"].get("model", "?")
    if s["N"]:
        t.add_row(*T.diversity_cells(s, f"{model_name} (ours, lrs {', '.join(f'{x:g}' for x in s['lrs'])})"))
    control = None
    if a.control:
        from cramlens import load_run

        crun = load_run(a.control)
        clr = float(crun.config["settings"]["recipe"]["lr"])
        if clr in runs:
            cg = solution_groups(
                {"control": crun, "sweep": runs[clr]}, a.lengths, a.min_length, grid_top=a.grid_top
            )
            control = summarize(cg, d)
            control["groups"] = [vars(g) for g in cg]
            if control["N"]:
                cells = T.diversity_cells(control, f"control: {a.control} vs lrsweep_{clr:g} (same lr)")
                t.add_row(*cells[:-1], "–", style="italic")  # one learning rate: no Disp. ratio
    for row in T.PAPER_DIVERSITY:
        t.add_row(*row)
    orth = T.estimate_cell(s, "sol_dist_orth_median") if s["N"] else "–"
    t.caption = (
        f"random-direction cosine baseline 1/sqrt(d) = {s.get('random_cos', float('nan')):.3f} (d = {d}); "
        f"Sol. dist. if the displacements were orthogonal (ours, median [95% bootstrap]): {orth}"
    )
    console.print(t)
    ht = Table(title="Per learning rate", title_justify="left")
    for c in ("lr", "samples", "horizons", "mean |e*-e0| over groups [95% t]"):
        ht.add_column(c, justify="right")
    for lr, run in sorted(runs.items()):
        per_lr = {"disp": s.get("disp_by_lr", {}).get(lr), "disp_ci": s.get("disp_by_lr_ci", {}).get(lr)}
        ht.add_row(f"{lr:g}", str(len(run.samples)), str(run.horizons()), T.estimate_cell(per_lr, "disp"))
    console.print(ht)
    out = Path(a.figures)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "summary": s,
        "groups": [vars(g) for g in groups],
        "horizons": {lr: r.horizons() for lr, r in runs.items()},
        "control": control,
    }
    Path(a.json or out / "diversity.json").write_text(json.dumps(payload, indent=1, default=str))
    if groups:
        figures(groups, s, out)
    console.print(f"results: {a.json or out / 'diversity.json'}, figures in {out}/")


def figures(groups, s: dict, out: Path) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    titles = (
        "Sol. dist. (dotted: if orthogonal)",
        "Dir. cos. of displacements",
        "|e* - e0| by learning rate",
    )
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles)
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    for i, sid in enumerate(sorted({g.sample_id for g in groups})):
        gs = [g for g in groups if g.sample_id == sid]
        x = [g.length for g in gs]
        line = dict(color=palette[i % len(palette)])
        kw = dict(legendgroup=str(sid), line=line, marker=line)
        fig.add_trace(
            go.Scatter(x=x, y=[g.sol_dist for g in gs], mode="lines+markers", name=f"sample {sid}", **kw),
            1,
            1,
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[g.sol_dist_orth for g in gs],
                mode="lines",
                showlegend=False,
                legendgroup=str(sid),
                line=dict(color=line["color"], dash="dot"),
            ),
            1,
            1,
        )
        fig.add_trace(
            go.Scatter(x=x, y=[g.dir_cos for g in gs], mode="lines+markers", showlegend=False, **kw), 1, 2
        )
    rc = s["random_cos"]
    fig.add_hrect(y0=-rc, y1=rc, fillcolor="grey", opacity=0.25, line_width=0, row=1, col=2)
    for lr in s["lrs"]:
        gs = [g for g in groups if lr in g.disp]
        fig.add_trace(
            go.Scatter(
                x=[g.length for g in gs], y=[g.disp[lr] for g in gs], mode="markers", name=f"lr {lr:g}"
            ),
            1,
            3,
        )
    fig.update_xaxes(title_text="prefix length L (tokens)")
    fig.update_yaxes(type="log", row=1, col=3)
    fig.update_layout(
        title="Solution diversity across learning rates (grey band: ±1/sqrt(d))", width=1400, height=450
    )
    save(fig, out / "diversity")


def main(argv=None) -> None:
    a = parse(argv)
    console = cli.console()
    (cmd_run if a.cmd == "run" else cmd_analyze)(a, console)


if __name__ == "__main__":
    cli.run_main(main)
