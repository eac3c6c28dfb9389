#!/usr/bin/env python
"""Trajectory geometry (PCA, PCA99 vs length, PCA reconstruction, PC1-PC2 accuracy landscape) and surprisal vs
steps, on a progressive run directory or the paper's released trajectories.

    python scripts/trajectory.py --run runs/prog6 --figures figures/trajectory
    python scripts/trajectory.py --run runs/prog6 --no-eval            # geometry + surprisal only (no forwards)
    python scripts/trajectory.py --trajectories /path/to/released/table --model none
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.table import Table  # noqa: E402

from analyses.plots.io import save_figure  # noqa: E402
from cramlens import cli  # noqa: E402

PAPER_TRAJ = [  # REFERENCE D.1 (model-scale sweep, 10 samples) and D.4 (trajectory_cluster_structure)
    ("SmolLM2-135M (paper, D.4)", "38", "–", "–", "–", "13", "–"),
    ("SmolLM2-135M (paper, D.1)", "38.5 ± 14.1 tok", "–", "–", "–", "12.2", "178 ± 40"),
    ("Llama-3.1-8B (paper)", "1438", "–", "–", "65.7% (1 sample)", "82.8 ± 9.1", "6174 ± 1263"),
]
PAPER_SURPRISAL = [  # REFERENCE D.11
    ("Llama-3.1-8B", "71,778", "0.59 [0.55, 0.63]", "0.61", "100%"),
    ("Pythia-1.4B", "21,419", "0.56 [0.54, 0.59]", "0.66", "100%"),
    ("SmolLM2-1.7B", "16,654", "0.53 [0.51, 0.55]", "0.63", "100%"),
    ("Gemma-3-4B", "10,579", "0.44 [0.38, 0.49]", "0.49", "100%"),
]


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--run", default="runs/prog6", help="cramlens run directory (partial runs are fine)")
    src.add_argument(
        "--trajectories", default=None, help="the paper's released trajectories (hub id or local path)"
    )
    cli.add_model_args(p)
    p.add_argument("--no-eval", action="store_true", help="skip everything that needs forwards of the model")
    p.add_argument(
        "--converged-only", action="store_true", help="PCA over converged stages only (default: all)"
    )
    p.add_argument("--ks", type=int, nargs="+", default=None, help="k grid of the PCA reconstruction")
    p.add_argument(
        "--landscape-samples", type=int, nargs="+", default=None, help="sample ids (default: first one)"
    )
    p.add_argument(
        "--landscape-lengths", type=int, nargs="+", default=None, help="default: quartiles of the horizon"
    )
    p.add_argument("--grid", type=int, default=15, help="landscape mesh size per axis")
    p.add_argument("--batch", type=int, default=32, help="embeddings per forward in batched evaluations")
    p.add_argument("--figures", default="figures/trajectory")
    p.add_argument("--boot", type=int, default=2000, help="cluster-bootstrap resamples for the surprisal CI")
    cli.add_results_arg(p)
    return p.parse_args(argv)


def load(a):
    import cramlens

    model = None
    if not a.no_eval and a.model != "none":
        model = cli.load_model_from_args(a)
    run = cramlens.load_trajectories(a.trajectories) if a.trajectories else cramlens.load_run(a.run)
    return run, model


def main(argv=None) -> None:
    a = parse(argv)
    console = cli.console()
    from analyses import surprisal as su
    from analyses import trajectory as tj

    run, model = load(a)
    out = Path(a.figures)
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {"source": a.trajectories or a.run}
    table = tj.geometry_table(run, a.converged_only)
    result["geometry"] = table
    result["geometry_summary"] = tj.summarize(table)
    console.print(geometry_table(table, run))
    vs_len = [x for sid in tj.sample_ids(run) for x in tj.pca99_vs_length(run, sid)]
    result["pca99_vs_length"] = vs_len
    pairs = su.step_pairs(run, model)
    if len(pairs) >= 3:
        corr = su.correlation(pairs, n_boot=a.boot)
        result["surprisal"] = corr
        result["surprisal_pairs"] = pairs
        console.print(surprisal_table(corr))
    recon, lands = [], {}
    if model is not None:
        for sid in tj.sample_ids(run):
            rows = run.trajectory(sid)
            if len(rows) >= 2 and any(r.get("converged") for r in rows):
                recon += tj.pca_reconstruction(model, run, sid, a.ks, a.batch)
        result["pca_reconstruction"] = recon
        console.print(recon_table(recon))
        for sid in a.landscape_samples or tj.sample_ids(run)[:1]:
            land = tj.accuracy_landscape(model, run, sid, a.landscape_lengths, a.grid, batch_size=a.batch)
            lands[sid] = land
            console.print(
                f"sample {sid}: PC1+PC2 {land['pc12']:.1%}; basin (TF > 0.9) by length: "
                + ", ".join(f"L={L}: {b:.1%}" for L, b in land["basin"].items())
            )
        result["landscape"] = {
            sid: {
                "basin": v["basin"],
                "anchors": v["anchors"],
                "pc12": v["pc12"],
                "a": v["a"].tolist(),
                "b": v["b"].tolist(),
                "maps": {L: m.tolist() for L, m in v["maps"].items()},
            }
            for sid, v in lands.items()
        }
    (out / "trajectory.json").write_text(json.dumps(result, indent=1, default=float))
    from analyses.plots import trajectory_figures as tf

    save_figure(tf.pca_figure(run, table), out / "pca_trajectories")
    save_figure(tf.pca99_length_figure(vs_len), out / "pca99_vs_length")
    if pairs:
        save_figure(tf.surprisal_figure(pairs, result.get("surprisal")), out / "surprisal_vs_steps")
    if recon:
        save_figure(tf.recon_figure(recon), out / "pca_reconstruction")
    for sid, land in lands.items():
        save_figure(tf.landscape_figure(land, sid), out / f"landscape_sample{sid}")
    console.print(f"results: {out}/trajectory.json and figures in {out}/")
    cli.refresh_results(a, "trajectory", out, log=console.print)


def geometry_table(table: list[dict], run) -> Table:
    t = Table(
        title=f"Trajectory geometry per sample ({run.config['settings'].get('model', '?')})",
        title_justify="left",
    )
    for c in ("sample", "stages", "horizon", "PC1", "PC2", "PC1+PC2", "PCA99", "traj. length"):
        t.add_column(c, justify="right")
    for r in table:
        t.add_row(
            str(r["sample_id"]),
            str(r["stages"]),
            str(r["horizon"]),
            f"{r['pc1']:.1%}",
            f"{r['pc2']:.1%}",
            f"{r['pc12']:.1%}",
            str(r["pca99"]),
            f"{r['traj_length']:.1f}",
        )
    from cramlens.stats import mean_ci

    def ci(key: str, scale: float = 1.0, fmt: str = "{:.1f}") -> str:
        return mean_ci([scale * r[key] for r in table]).format(fmt).split(" (n=")[0]

    t.add_row(
        f"mean [95% t-CI], n={len(table)}",
        ci("stages"),
        ci("horizon"),
        ci("pc1", 100) + "%",
        ci("pc2", 100) + "%",
        ci("pc12", 100) + "%",
        ci("pca99"),
        ci("traj_length"),
        style="bold",
    )
    t.caption = "paper rows: mean ± sd as published"
    for row in PAPER_TRAJ:
        t.add_row(row[0], row[1], "", "", "", row[4], row[5], row[6], style="dim")
    return t


def surprisal_table(c: dict) -> Table:
    t = Table(
        title="Surprisal of the new token vs marginal steps to absorb it (Spearman)", title_justify="left"
    )
    for col in (
        "model",
        "N pairs",
        "pooled ρ [95% cluster CI]",
        "partial ρ | position",
        "% samples ρ>0",
        "per-sample ρ",
    ):
        t.add_column(col, justify="right")
    t.add_row(
        "ours",
        str(c["N"]),
        f"{c['rho']:.2f} [{c['ci_low']:.2f}, {c['ci_high']:.2f}]",
        f"{c['partial_rho']:.2f}",
        f"{c['pct_positive']:.0f}% of {len(c['per_sample'])}",
        f"{c['per_sample_mean']:.2f} ± {c['per_sample_std']:.2f}",
        style="bold",
    )
    for row in PAPER_SURPRISAL:
        t.add_row(row[0] + " (paper)", row[1], row[2], row[3], row[4], "–", style="dim")
    t.caption = f"position vs steps ρ = {c['rho_position_steps']:.2f}"
    return t


def recon_table(recon: list[dict]) -> Table:
    from analyses import trajectory as tj

    t = Table(
        title="PCA reconstruction of the final converged embedding: TF accuracy by k (past its rank a sample keeps its last k)",
        title_justify="left",
    )
    for c in ("k", "samples", "mean acc", "min acc", "mean explained var.", "first error at index 0"):
        t.add_column(c, justify="right")
    for k, rs in tj.recon_by_k(recon).items():
        at0 = sum(r["first_wrong"] == 0 for r in rs if r["accuracy"] < 1.0)
        wrong = sum(r["accuracy"] < 1.0 for r in rs)
        t.add_row(
            str(k),
            str(len(rs)),
            f"{sum(r['accuracy'] for r in rs) / len(rs):.3f}",
            f"{min(r['accuracy'] for r in rs):.3f}",
            f"{sum(r['explained'] for r in rs) / len(rs):.3f}",
            f"{at0}/{wrong}",
        )
    return t


if __name__ == "__main__":
    cli.run_main(main)
