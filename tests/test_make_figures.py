"""make_figures end to end on synthetic runs (no model, no browser): HTML, README, skips, PNG fallback, the
analysis result files, and the committed results/ summaries a fresh clone draws every figure from."""

from __future__ import annotations

import json

import pytest
from test_figures import BRITTLE, LAYOUT, choice_summary, make_figures_script, synthetic_rows, write_run

from analyses.plots import registry as reg
from cramlens.runs import RunDir


def test_make_figures_writes_html_readme_and_skips_missing(tmp_path, capsys):
    main = make_figures_script().main

    runs, out = tmp_path / "runs", tmp_path / "fig"
    write_run(runs / "prog6", synthetic_rows())
    (runs / "prog6" / "brittleness.json").write_text(json.dumps(BRITTLE))
    main(["--out", str(out), "--runs", str(runs), "--results", str(tmp_path / "results"), "--no-png"])
    log = capsys.readouterr().out
    made = {
        "brittleness_table",
        "progressive_schematic",
        "token_explorer",
        "horizon_ig",
        "pca_trajectories",
        "pca99_vs_length",
        "surprisal_vs_steps",
    }
    for name in made:
        html = (out / f"{name}.html").read_text()
        assert 'src="plotly.min.js"' in html and "cdn.plot.ly" not in html and 'src="http' not in html, name
        assert not (out / f"{name}.png").exists()
    assert (out / "plotly.min.js").stat().st_size > 1_000_000
    readme = (out / "README.md").read_text()
    for name in made:
        assert f"**{name}** [html]({name}.html)" in readme
    assert f"`{runs / 'prog6'}`" in readme and "scripts/progressive.py" in readme
    # absent inputs: one line each, naming what is missing and the command that makes it
    assert (
        f"skip pca_reconstruction: {tmp_path / 'results'}/trajectory/trajectory.json is absent; make it with: "
        "python scripts/trajectory.py" in log
    )
    assert "skip solution_diversity: 0 " in log and "scripts/diversity.py run" in log
    assert "skip depth_heatmap: no " in log
    waiting = readme.split("## Waiting for inputs")[1]
    assert "| pca_reconstruction |" in waiting and "| knockout_cumulative |" in waiting
    assert "made token_explorer" in log


def test_make_figures_without_any_run_skips_everything(tmp_path, capsys):
    main = make_figures_script().main

    # --results too: the repository's own figures/<analysis>/ result files must not leak in
    main(
        [
            "--out",
            str(tmp_path / "f"),
            "--runs",
            str(tmp_path / "none"),
            "--results",
            str(tmp_path / "none"),
            "--no-png",
        ]
    )
    log = capsys.readouterr().out
    assert (
        f"skip token_explorer: run directory {tmp_path / 'none' / 'prog6'} is absent; make it with: python "
        "scripts/progressive.py" in log
    )
    assert "0 figures" in log and (tmp_path / "f" / "README.md").exists()


def test_png_failure_warns_once_stops_the_server_and_keeps_html(tmp_path, capsys, monkeypatch):
    import kaleido
    import plotly.graph_objects as go

    import analyses.plots.io as fio

    mf = make_figures_script()
    started, stopped = [], []
    monkeypatch.setattr(fio, "find_browser", lambda: "/usr/bin/some-browser")
    monkeypatch.setattr(kaleido, "start_sync_server", lambda **k: started.append(1))
    monkeypatch.setattr(kaleido, "stop_sync_server", lambda **k: stopped.append(1))

    def boom(*a, **k):
        raise RuntimeError("browser crashed")

    monkeypatch.setattr(go.Figure, "write_image", boom)
    write_run(tmp_path / "runs" / "prog6", synthetic_rows())
    specs = [reg.get("horizon_ig"), reg.get("token_explorer")]
    with fio.PngExport(True, 1.0) as png:
        made, skipped = mf.make(
            specs, reg.Sources(tmp_path / "runs", tmp_path), tmp_path / "f", png, log=lambda s: None
        )
    err = capsys.readouterr().err
    assert err.count("PNG export off") == 1 and "browser crashed" in err
    assert started == [1] and stopped == [1]  # started once, stopped on the failure, not again on close
    assert len(made) == 2 and not skipped
    assert all(len(files) == 1 and files[0].suffix == ".html" and files[0].exists() for _, _, files in made)


@pytest.mark.timeout(60)
def test_without_a_browser_no_server_starts_and_figures_finish_as_html(
    tmp_path, capsys, monkeypatch, no_browser
):
    import kaleido
    import plotly.graph_objects as go

    import analyses.plots.io as fio

    assert not no_browser.exists() and fio.find_browser() is None
    monkeypatch.setattr(
        kaleido, "start_sync_server", lambda **k: pytest.fail("server started without a browser")
    )
    # the whole make_figures path, PNG export requested
    write_run(tmp_path / "runs" / "prog6", synthetic_rows())
    mf = make_figures_script()
    mf.main(
        [
            "--out",
            str(tmp_path / "f"),
            "--runs",
            str(tmp_path / "runs"),
            "--results",
            str(tmp_path / "none"),
            "--only",
            "horizon_ig",
            "token_explorer",
        ]
    )
    err = capsys.readouterr().err
    assert err.count("PNG export off (no Chrome-family browser found)") == 1, err
    assert (tmp_path / "f" / "horizon_ig.html").exists() and not list((tmp_path / "f").glob("*.png"))
    # and save_figure, twice in one process: one warning, HTML each time, no PNG
    fig = go.Figure(go.Scatter(x=[0, 1], y=[1, 0]))
    assert fio.save_figure(fig, tmp_path / "a") == [tmp_path / "a.html"]
    assert fio.save_figure(fig, tmp_path / "b") == [tmp_path / "b.html"]
    assert capsys.readouterr().err.count("PNG export off") == 1


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
        "mmlu_modes",
        "mmlu_accuracy",
    ):
        assert (out / f"{name}.html").exists(), (name, log)
    assert "skip " not in log and "FAIL" not in log and "8 figures" in log
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


def test_analysis_figures_are_written_for_offline_viewing(tmp_path):
    import plotly.graph_objects as go

    from analyses.plots.io import save_figure

    files = save_figure(go.Figure(go.Scatter(x=[0, 1], y=[1, 0])), tmp_path / "sub" / "fig.html")
    assert files[0] == tmp_path / "sub" / "fig.html"
    html = files[0].read_text()
    assert 'src="plotly.min.js"' in html and "cdn.plot.ly" not in html
    assert (tmp_path / "sub" / "plotly.min.js").exists()


def test_model_of_a_task_finds_nested_crams(tmp_path):
    from analyses.plots.registry import _model_of

    cfg = tmp_path / "mmlu" / "crams" / "management" / "few_shot" / "config.json"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(json.dumps({"settings": {"model": "smollm2-135m"}}))
    assert _model_of(tmp_path / "mmlu") == "smollm2-135m"
    assert _model_of(tmp_path / "empty") == ""


def test_subfolder_figures_share_the_one_bundle_above(tmp_path):
    import plotly.graph_objects as go

    from analyses.plots.io import save_figure, write_html

    write_html(go.Figure(), tmp_path / "top.html")
    files = save_figure(go.Figure(go.Scatter(x=[0], y=[1])), tmp_path / "knockout" / "fig")
    assert 'src="../plotly.min.js"' in files[0].read_text()
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("plotly.min.js")] == ["plotly.min.js"]


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
