"""make_figures on the analyses' result files (no model, no browser): knockout, sink, downstream, trajectory,
probes, LR sweep, depth and capacity results, and the committed results/ summaries a fresh clone draws every
figure from. make_figures itself (HTML, README, skips, PNG fallback): test_make_figures.py."""

from __future__ import annotations

import json

import pytest
from test_figures import BRITTLE, LAYOUT, choice_summary, make_figures_script, synthetic_rows, write_run

from analyses.plots import registry as reg
from cramlens.runs import RunDir


def write_knockout_and_downstream(runs):
    """The result files of scripts/knockout.py and scripts/downstream.py (one cram config per task)."""
    ko = runs / "knockout"
    ko.mkdir(parents=True)
    L = 3
    summ = {"base": {"acc": 40.0, "tf": float("nan")}, "cram": {"acc": 30.0, "tf": 1.0}}
    for k in range(1, L + 1):
        summ[f"forward:{k}"] = {"acc": 30.0 + 3 * k, "tf": 1 - 0.2 * k}
        summ[f"reverse:{k}"] = {"acc": 30.0 + k, "tf": 1 - 0.1 * k}
    for k in range(L):
        summ[f"per_layer:{k}"] = {"acc": 31.0, "tf": 0.9}
    (ko / "summary.json").write_text(
        json.dumps(
            {
                "summary": summ,
                "n_layers": L,
                "model": "m",
                "n_items": 4,
                "attention_mass_pct": [10.0, 20.0, 30.0],
            }
        )
    )
    sink = {
        "model": "m",
        "n": 2,
        "table": {k: {"mean": 1.0, "std": 0.0, "diff": 0.0, "corr": 1.0} for k in ("compression", "orig")},
    }
    (ko / "sink_m.json").write_text(json.dumps(sink))
    for task in ("hellaswag", "mmlu"):
        (runs / "downstream" / task).mkdir(parents=True)
    (runs / "downstream" / "hellaswag" / "summary.json").write_text(json.dumps(choice_summary()))
    mm = {
        "modes": {
            "baseline": {
                "n": 2,
                "acc": 50.0,
                "valid": 100.0,
                "acc_ref": 50.0,
                "valid_ref": 100.0,
                "cram_tf": None,
            }
        },
        "subjects": ["x"],
        "steps": 3,
    }
    (runs / "downstream" / "mmlu" / "summary.json").write_text(json.dumps(mm))
    write_run(runs / "downstream" / "hellaswag" / "crams" / "len004", synthetic_rows()[:1])
    # the paper's scoring: a second run whose converged subset is nearly empty
    (runs / "downstream_paper" / "hellaswag").mkdir(parents=True)
    paper = {
        **choice_summary(),
        "conv_pct": 1.6,
        "conv_pct_lo": 0.3,
        "conv_pct_hi": 8.3,
        "missed_only_first": 33,
    }
    (runs / "downstream_paper" / "hellaswag" / "summary.json").write_text(json.dumps(paper))


def test_make_figures_draws_knockout_downstream_and_sink_results(tmp_path, capsys):
    main = make_figures_script().main
    runs = tmp_path / "runs"
    write_knockout_and_downstream(runs)
    out = tmp_path / "fig"
    only = ["knockout_cumulative", "knockout_per_layer", "sink_table", "downstream_table", "mmlu_modes"]
    main(
        [
            "--out",
            str(out),
            "--runs",
            str(runs),
            "--results",
            str(tmp_path / "none"),
            "--no-png",
            "--only",
            *only,
        ]
    )
    log = capsys.readouterr().out
    for name in (
        "knockout_cumulative_accuracy_m",
        "knockout_cumulative_reconstruction_m",
        "knockout_per_layer_m",
        "sink_table",
        "downstream_table",
        "downstream_accuracy",
        "downstream_table_paper_scoring",
        "mmlu_modes",
        "mmlu_accuracy",
    ):
        assert (out / f"{name}.html").exists(), (name, log)
    assert "skip " not in log and "FAIL" not in log and "9 figures" in log
    assert "1.6% [0.3, 8.3]" in (out / "downstream_table_paper_scoring.html").read_text()
    assert not (out / "README.md").exists()  # --only never replaces the index of the full set


def write_other_analyses(runs, results):
    """trajectory.json (landscape, PCA reconstruction), probes.json, LR sweep, depth and capacity results."""
    write_run(runs / "prog6", synthetic_rows())
    for lr in (0.1, 0.5):  # the diversity sweep: same texts and seed, two learning rates
        config = {
            "settings": {
                "kind": "progressive",
                "model": "synthetic",
                "layout": LAYOUT,
                "seed": 0,
                "recipe": {"lr": lr, "init": "random0.02"},
            },
            "created": "now",
        }
        RunDir.open(runs / f"lrsweep_{lr:g}", config).append_rows(synthetic_rows())
    grid = [[0.1 * (i + j) for j in range(3)] for i in range(3)]
    land = {
        "0": {
            "basin": {"3": 0.5},
            "anchors": {"3": [0.0, 0.0]},
            "pc12": 0.9,
            "a": [-1, 0, 1],
            "b": [-1, 0, 1],
            "maps": {"3": grid},
        }
    }
    recon = [
        {
            "sample_id": 0,
            "k": k,
            "length": 5,
            "accuracy": a,
            "first_wrong": 0,
            "explained": a,
            "rel_error": 1 - a,
        }
        for k, a in ((0, 0.2), (2, 0.6), (4, 1.0))
    ]
    (results / "trajectory").mkdir(parents=True)
    (results / "trajectory" / "trajectory.json").write_text(
        json.dumps({"source": str(runs / "prog6"), "pca_reconstruction": recon, "landscape": land})
    )
    probes = [
        {
            "condition": c,
            "task": "token@1",
            "kind": "identity",
            "layer": layer,
            "score": 0.5 + 0.1 * layer,
            "shuffled": 0.5,
            "chance": 0.5,
        }
        for c in ("crammed", "random")
        for layer in range(3)
    ]
    (results / "probes").mkdir()
    (results / "probes" / "probes.json").write_text(
        json.dumps({"meta": {"names": {"token@1": "token 1"}, "n": 9, "model": "m"}, "rows": probes})
    )
    cap = runs / "capacity" / "m"
    for variant, h in (("first1", 3.0), ("full", 8.0)):
        (cap / variant).mkdir(parents=True)
        (cap / variant / "result.json").write_text(
            json.dumps({"model": "m", "variant": variant, "horizon_mean": h})
        )
    sample = {
        "source": "pg19",
        "variant": "full",
        "text_id": "t",
        "horizon": 5,
        "seq_len": 8,
        "h_lm_bits": 30.0,
        "h_comp_bits": 5.0,
        "information_gain_bits": 25.0,
        "compression_ratio": 5.0,
        "utilisation": 0.01,
        "bits_per_token": 7.5,
        "steps": 100,
    }
    (cap / "capacity_samples.json").write_text(
        json.dumps([sample, {**sample, "source": "builtin", "horizon": 7}])
    )
    write_repeats(runs)


def write_repeats(runs):
    """The issue-23 inputs: a texts x seeds spread report (through the real analysis) and twin-run traces."""
    from analyses.horizon_spread import METRICS, Draw, analyse

    draws = [
        Draw(f"t{t}", s, "fast", s == 2 and t == 1, {m: 5.0 * t + s + (m == "steps") * 100 for m in METRICS})
        for t in range(3)
        for s in range(3)
    ]
    (runs / "horizon_spread").mkdir(parents=True)
    (runs / "horizon_spread" / "spread.json").write_text(json.dumps(analyse(draws).to_dict(), default=float))
    traces = [{"delta": d, "distance": [d * 2**k for k in range(5)]} for d in (0.0, 1e-8, 1e-6)]
    lyap = {"lyapunov": {"mean": 0.1, "lo": 0.05, "hi": 0.15, "n": 4}}
    (runs / "divergence").mkdir()
    (runs / "divergence" / "divergence.json").write_text(
        json.dumps(
            {
                "stage1": [{"text_id": "t0", "traces": traces}],
                "later": [{"text_id": "t0", "traces": traces}],
                "summary": {"stage1": lyap, "later": lyap},
            }
        )
    )


def test_make_figures_draws_the_other_analyses_results(tmp_path, capsys):
    main = make_figures_script().main
    runs, results = tmp_path / "runs", tmp_path / "results"
    write_other_analyses(runs, results)
    only = [
        "accuracy_landscape",
        "pca_reconstruction",
        "probes",
        "solution_diversity",
        "depth_heatmap",
        "capacity_bits",
    ]
    main(
        [
            "--out",
            str(tmp_path / "f"),
            "--runs",
            str(runs),
            "--results",
            str(results),
            "--no-png",
            "--only",
            *only,
        ]
    )
    log = capsys.readouterr().out
    assert "skip " not in log and "FAIL" not in log, log
    for name in (
        "accuracy_landscape_sample0",
        "pca_reconstruction",
        "probes",
        "solution_diversity",
        "depth_heatmap",
        "capacity_bits_m",
    ):
        assert (tmp_path / "f" / f"{name}.html").exists(), (name, log)


def test_model_of_a_task_finds_nested_crams(tmp_path):
    from analyses.plots.registry import _model_of

    cfg = tmp_path / "mmlu" / "crams" / "management" / "few_shot" / "config.json"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(json.dumps({"settings": {"model": "smollm2-135m"}}))
    assert _model_of(tmp_path / "mmlu") == "smollm2-135m"
    assert _model_of(tmp_path / "empty") == ""


def test_results_refreshed_from_runs_draw_every_figure_without_runs(tmp_path, capsys):
    """A fresh clone: every figure from the committed results/ alone; results/ keeps rows once, nothing else."""
    from analyses import results_export as rx

    runs, res_files = tmp_path / "runs", tmp_path / "figs_of_analyses"
    write_other_analyses(runs, res_files)
    write_knockout_and_downstream(runs)
    (runs / "prog6" / "brittleness.json").write_text(json.dumps(BRITTLE))
    (runs / "prog6" / "table").mkdir()  # a second store of the rows and optimizer state: never copied
    (runs / "prog6" / "table" / "data.arrow").write_bytes(b"x")
    (runs / "prog6" / "state").mkdir()
    (runs / "prog6" / "state" / "batch-2.safetensors").write_bytes(b"x")
    (runs / "knockout" / "sweep.w0.jsonl").write_text("{}\n")
    results = tmp_path / "results"
    plan = [(e, rel, n) for e, rel, n in rx.PUBLISHED if e != "brittleness"] + [
        ("brittleness", "runs/prog6", "b")
    ]
    plan = [(e, rel.replace("figures/", "figs_of_analyses/"), n) for e, rel, n in plan]
    rx.refresh_all(tmp_path, results, plan)
    kept = sorted(p.relative_to(results).as_posix() for p in results.rglob("*") if p.is_file())
    assert (
        "prog6/rows.jsonl" in kept and "b/brittleness.json" in kept and "trajectory/trajectory.json" in kept
    )
    assert "downstream/hellaswag/config.json" in kept and "capacity/m/full/result.json" in kept
    dropped = {"table", "state", "sweep.w0.jsonl", "embeddings.safetensors"}
    assert not [k for k in kept if dropped & set(k.split("/"))]
    with pytest.raises(Exception, match="demo"):
        rx.refresh("brittleness", runs / "prog6", results, name="demo")
    empty = tmp_path / "empty"
    empty.mkdir()
    make_figures_script().main(
        ["--out", str(tmp_path / "f"), "--runs", str(empty), "--results", str(results), "--no-png"]
    )
    log = capsys.readouterr().out
    assert "skip " not in log and "FAIL" not in log, log
    assert ", 0 skipped" in log and all(
        f"made {s.name}" in log for s in reg.REGISTRY if s.name != "capacity_bits"
    )
    assert f"`{results / 'prog6'}`" in (tmp_path / "f" / "README.md").read_text()  # drawn from results/
