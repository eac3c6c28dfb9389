"""Figure builders and make_figures on synthetic runs (no model): the data behind each figure, not its pixels."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from analyses import figure_registry as reg
from analyses import figures as F
from analyses import tables as T
from cramlens.layout import Layout
from cramlens.loading_runs import samples_from_rows
from cramlens.results import CramRun
from cramlens.runs import RunDir

D = 8
ROOT = Path(__file__).resolve().parents[1]


def make_figures_script():
    """``scripts/make_figures.py`` as a module (scripts are not a package)."""
    spec = importlib.util.spec_from_file_location("make_figures", ROOT / "scripts" / "make_figures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


LAYOUT = {"n_mem": 1, "bos": None, "score_from": "memory", "mem_first": True}


def stage_rows(sid: int, seq: list[int], horizon: int, steps: list[int], fail: bool = True) -> list[dict]:
    """Progressive rows of one sample: stages L = 1..horizon converge; stage horizon+1 fails (if ``fail``)."""
    n_stages = horizon + (1 if fail and horizon < len(seq) else 0)
    rows, cum = [], 0
    g = torch.Generator().manual_seed(sid)
    for k in range(n_stages):
        L = k + 1
        ok = L <= horizon
        cum += steps[k]
        rows.append({
            "sample_id": sid, "text_id": f"t{sid}", "text": f"text {sid}", "stage_index": k, "stage_seq_len": L,
            "input_ids": seq, "embedding": torch.rand(1, D, generator=g) * (k + 1), "converged": ok,
            "final_convergence": 1.0 if ok else (L - 1) / L, "steps_taken": cum, "steps_spent": cum,
            "marginal_steps": steps[k], "new_token_surprisal_bits": float("nan") if L == 1 else 1.5 * L,
            "h_lm_bits": 2.0 * (L - 1), "h_comp_bits": 0.5 * (L - 1), "information_gain_bits": 1.5 * (L - 1),
            "final": not ok, "reason": "" if ok else "stage budget exhausted",
        })  # fmt: skip
    return rows


def synthetic_rows() -> list[dict]:
    return (
        stage_rows(0, list(range(100, 120)), 5, [30, 5, 7, 9, 11, 1000])  # horizon 5, stage 6 fails
        + stage_rows(1, list(range(200, 220)), 2, [40, 6, 1000])  # horizon 2, stage 3 fails
        + stage_rows(2, list(range(300, 304)), 4, [20, 3, 4, 5])  # reached the full length: no failing stage
    )


def make_run(rows=None) -> CramRun:
    rows = synthetic_rows() if rows is None else rows
    config = {"settings": {"kind": "progressive", "model": "synthetic", "layout": LAYOUT}}
    return CramRun("progressive", samples_from_rows(rows, "progressive", Layout()), rows, config)


def cell(z, i, n_cols=16):
    return z[i // n_cols][i % n_cols]


# ----------------------------------------------------------------------------------------------- token explorer
def test_explorer_one_slider_step_per_stage_and_colours_mark_the_horizon():
    run = make_run()
    fig, data = F.token_explorer(run, sample_ids=[0])
    steps = fig.layout.sliders[0].steps
    traj = run.trajectory(0)
    assert len(steps) == len(traj) == 6
    assert fig.layout.sliders[0].active == 5
    for k, step in enumerate(steps):
        z = step.args[0]["z"][0]
        horizon = max([r["stage_seq_len"] for r in traj[: k + 1] if r["converged"]], default=0)
        assert data["samples"][0]["stages"][k]["horizon"] == horizon
        shown = len(data["samples"][0]["tokens"])
        for i in range(shown):
            reconstructed = cell(z, i) in (F.RECONSTRUCTED, F.JUST_ADDED)
            assert reconstructed == (i < horizon), (k, i)
        if traj[k]["converged"]:
            assert cell(z, k) == F.JUST_ADDED  # the token this stage added
            assert sum(cell(z, i) == F.JUST_ADDED for i in range(shown)) == 1
        else:
            assert cell(z, k) == F.FAILED and all(cell(z, i) != F.FAILED for i in range(shown) if i != k)
    # the figure opens on the final state, the one a static export shows
    assert [list(r) for r in fig.data[0].z] == steps[-1].args[0]["z"][0]


def test_explorer_hover_has_surprisal_and_marginal_steps():
    run = make_run()
    fig, data = F.token_explorer(run, sample_ids=[0], decode=lambda t: f"w{t}")
    toks = data["samples"][0]["tokens"]
    assert (
        toks[2]["label"] == "w102"
        and toks[2]["surprisal"] == pytest.approx(4.5)
        and toks[2]["marginal_steps"] == 7
    )
    assert toks[0]["surprisal"] is None  # the first token has no surprisal
    assert toks[5]["converged"] is False and toks[5]["marginal_steps"] == 1000
    assert toks[7]["stage"] is None  # beyond the last stage
    hover = fig.data[0].hovertext[0][2]
    assert "surprisal 4.50 bits" in hover and "marginal steps 7" in hover and "w102" in hover
    assert fig.data[0].text[0][2] == "w102"
    # shown span: longest stage (6) + 16 tokens of context, capped by the sequence (20)
    assert len(toks) == 20


def test_explorer_several_samples_dropdown_and_clamped_steps():
    run = make_run()
    fig, data = F.token_explorer(run)
    assert len(fig.data) == 3
    assert [t.visible for t in fig.data] == [True, False, False]  # longest horizon shown first
    assert len(fig.layout.updatemenus[0].buttons) == 3
    steps = fig.layout.sliders[0].steps
    assert len(steps) == 6  # the most stages of any sample
    z_last_s1 = steps[-1].args[0]["z"][1]  # sample 1 has 3 stages: steps beyond keep its final state
    assert z_last_s1 == steps[2].args[0]["z"][1]
    assert [cell(z_last_s1, i) for i in range(4)] == [F.RECONSTRUCTED, F.RECONSTRUCTED, F.FAILED, F.NOT_YET]
    # sample 2 reached its full length (4 tokens): all reconstructed, no failure
    z2 = steps[-1].args[0]["z"][2]
    assert [cell(z2, i) for i in range(4)] == [F.RECONSTRUCTED] * 3 + [F.JUST_ADDED]


def test_token_label_makes_whitespace_visible():
    assert F.token_label("\n") == "↵" and F.token_label("  ") == "··" and F.token_label(" the") == " the"


# ----------------------------------------------------------------------------------------------- schematic, bars
def test_schematic_data_is_per_stage_steps_and_surprisal():
    run = make_run()
    fig, rows = F.progressive_schematic(run)  # default: the longest horizon (sample 0)
    assert [r["length"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["marginal_steps"] for r in rows] == [30, 5, 7, 9, 11, 1000]
    assert rows[0]["surprisal"] is None and rows[3]["surprisal"] == pytest.approx(6.0)
    assert [r["converged"] for r in rows] == [True] * 5 + [False]
    assert list(fig.data[0].y) == [30, 5, 7, 9, 11, 1000]
    assert (
        list(fig.data[0].marker.color)[-1] != list(fig.data[0].marker.color)[0]
    )  # the failed stage stands out
    assert fig.layout.yaxis.title.text and fig.layout.yaxis2.title.text and fig.layout.xaxis2.title.text


def test_horizon_ig_bars():
    run = make_run()
    fig, rows = F.horizon_ig_bars(run)
    assert [r["horizon"] for r in rows] == [5, 2, 4]
    assert [r["information_gain_bits"] for r in rows] == pytest.approx([6.0, 1.5, 4.5])
    assert list(fig.data[0].y) == [5, 2, 4]
    assert list(fig.data[2].y) == pytest.approx([6.0, 1.5, 4.5]) and list(fig.data[1].y) == pytest.approx(
        [8, 2, 6]
    )


def test_horizon_one_has_zero_information_gain():
    run = make_run(stage_rows(0, [1, 2, 3], 1, [50, 1000]))
    _, rows = F.horizon_ig_bars(run)
    assert rows[0]["horizon"] == 1 and rows[0]["information_gain_bits"] == 0.0


# ----------------------------------------------------------------------------------------------- tables
BRITTLE = [
    {"method": "full @0.99", "sample_id": 0, "tokens": 64, "tf_accuracy": 0.99, "greedy_match": 0.1,
     "greedy_exact": False, "first_mismatch": 0, "tf_first_mismatch": 0},
    {"method": "full @0.99", "sample_id": 1, "tokens": 64, "tf_accuracy": 0.98, "greedy_match": 0.3,
     "greedy_exact": False, "first_mismatch": 1, "tf_first_mismatch": 5},
    {"method": "progressive", "sample_id": 0, "tokens": 7, "tf_accuracy": 1.0, "greedy_match": 1.0,
     "greedy_exact": True, "first_mismatch": None, "tf_first_mismatch": None},
    {"method": "progressive", "sample_id": 1, "tokens": 9, "tf_accuracy": 1.0, "greedy_match": 1.0,
     "greedy_exact": True, "first_mismatch": None, "tf_first_mismatch": None},
]  # fmt: skip


def test_brittleness_table_numbers():
    fig, rows = T.brittleness_table({"prog6": BRITTLE})
    full, prog = rows
    assert full["tf_pct"] == pytest.approx(98.5) and full["greedy_pct"] == pytest.approx(20.0)
    assert (full["mismatch_by_0"], full["mismatch_by_1"], full["mismatch_by_2"]) == (50, 100, 100)
    assert prog["tokens"] == 8 and prog["exact_pct"] == 100 and prog["mismatch_by_2"] == 0
    cols = fig.data[0].cells.values
    assert list(cols[0][:2]) == ["prog6", "prog6"] and list(cols[1][:2]) == ["full @0.99", "progressive"]
    assert cols[4][0] == "98.50" and cols[5][0] == "20.00" and cols[7][0] == "50/100/100"
    assert cols[6][1] == "100" and cols[3][1] == "8.0"
    assert len(cols[0]) == 2 + len(T.PAPER_BRITTLENESS)  # ours, then the paper's rows


def test_diversity_table_row():
    s = {"N": 12, "ig_cv": 1.234, "sol_dist_median": 1.5, "sol_dist_q1": 1.4, "sol_dist_q3": 1.6, "dir_cos": 0.05,
         "random_cos": 1 / math.sqrt(576), "disp_ratio": 14.6, "lrs": [0.01, 0.5]}  # fmt: skip
    fig, _ = T.diversity_table(s, "ours")
    cols = fig.data[0].cells.values
    assert [c[0] for c in cols] == ["ours", "12", "1.2%", "1.50 [1.40, 1.60]", "+0.05 (1/√d = 0.042)", "15x"]


# ----------------------------------------------------------------------------------------------- make_figures
def write_run(path, rows, kind="progressive"):
    config = {"settings": {"kind": kind, "model": "synthetic", "layout": LAYOUT}, "created": "now"}
    rd = RunDir.open(path, config)
    rd.append_rows(rows)
    return path


def test_make_figures_writes_html_readme_and_skips_missing(tmp_path, capsys):
    main = make_figures_script().main

    runs, out = tmp_path / "runs", tmp_path / "fig"
    write_run(runs / "prog6", synthetic_rows())
    (runs / "prog6" / "brittleness.json").write_text(json.dumps(BRITTLE))
    main(["--out", str(out), "--runs", str(runs), "--results", str(tmp_path / "results"), "--no-png"])
    log = capsys.readouterr().out
    made = {"brittleness_table", "progressive_schematic", "token_explorer", "horizon_ig", "pca_trajectories",
            "pca99_vs_length", "surprisal_vs_steps"}  # fmt: skip
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
    assert f"skip pca_reconstruction: {tmp_path / 'results'}/trajectory/trajectory.json is absent; make it with: " \
           "python scripts/trajectory.py" in log  # fmt: skip
    assert "skip solution_diversity: 0 " in log and "scripts/diversity.py run" in log
    assert "skip depth_heatmap: no " in log
    waiting = readme.split("## Waiting for inputs")[1]
    assert "| pca_reconstruction |" in waiting and "| knockout_cumulative |" in waiting
    assert "made token_explorer" in log


def test_make_figures_without_any_run_skips_everything(tmp_path, capsys):
    main = make_figures_script().main

    # --results too: the repository's own figures/<analysis>/ result files must not leak in
    main(["--out", str(tmp_path / "f"), "--runs", str(tmp_path / "none"), "--results", str(tmp_path / "none"),
          "--no-png"])  # fmt: skip
    log = capsys.readouterr().out
    assert f"skip token_explorer: run directory {tmp_path / 'none' / 'prog6'} is absent; make it with: python " \
           "scripts/progressive.py" in log  # fmt: skip
    assert "0 figures" in log and (tmp_path / "f" / "README.md").exists()


def test_png_failure_warns_once_stops_the_server_and_keeps_html(tmp_path, capsys, monkeypatch):
    import kaleido
    import plotly.graph_objects as go

    import analyses.figure_io as fio

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

    import analyses.figure_io as fio

    assert not no_browser.exists() and fio.find_browser() is None
    monkeypatch.setattr(
        kaleido, "start_sync_server", lambda **k: pytest.fail("server started without a browser")
    )
    # the whole make_figures path, PNG export requested
    write_run(tmp_path / "runs" / "prog6", synthetic_rows())
    mf = make_figures_script()
    mf.main(["--out", str(tmp_path / "f"), "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "none"),
             "--only", "horizon_ig", "token_explorer"])  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("PNG export off (no Chrome-family browser found)") == 1, err
    assert (tmp_path / "f" / "horizon_ig.html").exists() and not list((tmp_path / "f").glob("*.png"))
    # and save_figure, twice in one process: one warning, HTML each time, no PNG
    fig = go.Figure(go.Scatter(x=[0, 1], y=[1, 0]))
    assert fio.save_figure(fig, tmp_path / "a") == [tmp_path / "a.html"]
    assert fio.save_figure(fig, tmp_path / "b") == [tmp_path / "b.html"]
    assert capsys.readouterr().err.count("PNG export off") == 1


def test_registry_names_are_unique_and_commands_known():
    names = [s.name for s in reg.REGISTRY]
    assert len(names) == len(set(names))
    assert all(s.command in reg.COMMANDS for s in reg.REGISTRY)


def choice_summary(conv=75.0, base=40.0, cram=30.0) -> dict:
    def v(acc):
        return {"context_ending": {"acc": acc, "acc_tok": acc + 1, "n": 8}}

    return {"n_items": 8, "conv_pct": conv, "base": v(base), "base_converged": v(base + 2), "cram": v(cram),
            "cram_converged": v(cram + 2)}  # fmt: skip


def test_downstream_mmlu_and_sink_tables():
    arc = {**choice_summary(50, 60, 45), "random_converged": {"context_ending": {"acc": 37.5, "n": 8}}}
    fig, rows = T.downstream_table({"hellaswag": choice_summary(), "arc_easy": arc}, "m")
    cols = fig.data[0].cells.values
    assert list(cols[0][:2]) == ["m: hellaswag", "m: arc_easy"]
    assert [cols[i][0] for i in range(2, 8)] == ["75.0", "40.0", "41.0", "42.0", "32.0", "30.0"]
    assert list(cols[8][:2]) == ["–", "37.5"]  # the random-memory control, where it was scored
    assert cols[0][2].startswith("paper SmolLM2-1.7B") and rows[1]["cram_acc"] == 45
    modes = {"baseline": {"n": 4, "acc": 50.0, "valid": 100.0, "acc_ref": 50.0, "valid_ref": 100.0,
                          "cram_tf": float("nan")},
             "few_shot": {"n": 4, "acc": 25.0, "valid": 75.0, "acc_ref": 25.0, "valid_ref": 100.0, "cram_tf": 1.0}}  # fmt: skip
    fig, _ = T.mmlu_table({"modes": modes, "subjects": ["a"], "steps": 5}, "m")
    cols = fig.data[0].cells.values
    assert list(cols[0]) == ["baseline", "few_shot"] and list(cols[3]) == ["100.0", "75.0"]
    assert list(cols[6]) == ["–", "1.000"] and cols[7][1] == "45.91 (100)"
    sink = {"model": "smollm2-135m", "n": 3, "table": {
        "compression": {"mean": 55.5, "std": 3.0, "diff": -10.25, "corr": 0.9},
        "orig": {"mean": 65.75, "std": 1.0, "diff": 0.0, "corr": 1.0},
        "control": {"mean": 60.0, "std": 2.0, "diff": -5.75, "corr": 0.95}}}  # fmt: skip
    fig, _ = T.sink_table([sink])
    cols = fig.data[0].cells.values
    assert [c[0] for c in cols[:6]] == [
        "smollm2-135m",
        "3",
        "55.50 ± 3.00",
        "65.75 ± 1.00",
        "-10.25",
        "0.9000",
    ]
    assert cols[0][1] == "paper: SmolLM2-135M" and cols[2][1] == "60.79 ± 17.6"


def test_make_figures_draws_knockout_downstream_and_sink_results(tmp_path, capsys):
    main = make_figures_script().main
    runs = tmp_path / "runs"
    ko = runs / "knockout"
    ko.mkdir(parents=True)
    L = 3
    summ = {"base": {"acc": 40.0, "tf": float("nan")}, "cram": {"acc": 30.0, "tf": 1.0}}
    for k in range(1, L + 1):
        summ[f"forward:{k}"] = {"acc": 30.0 + 3 * k, "tf": 1 - 0.2 * k}
        summ[f"reverse:{k}"] = {"acc": 30.0 + k, "tf": 1 - 0.1 * k}
    for k in range(L):
        summ[f"per_layer:{k}"] = {"acc": 31.0, "tf": 0.9}
    (ko / "summary.json").write_text(json.dumps({"summary": summ, "n_layers": L, "model": "m", "n_items": 4,
                                                 "attention_mass_pct": [10.0, 20.0, 30.0]}))  # fmt: skip
    sink = {"model": "m", "n": 2, "table": {k: {"mean": 1.0, "std": 0.0, "diff": 0.0, "corr": 1.0}
                                            for k in ("compression", "orig")}}  # fmt: skip
    (ko / "sink_m.json").write_text(json.dumps(sink))
    for task in ("hellaswag", "mmlu"):
        (runs / "downstream" / task).mkdir(parents=True)
    (runs / "downstream" / "hellaswag" / "summary.json").write_text(json.dumps(choice_summary()))
    mm = {"modes": {"baseline": {"n": 2, "acc": 50.0, "valid": 100.0, "acc_ref": 50.0, "valid_ref": 100.0,
                                 "cram_tf": None}}, "subjects": ["x"], "steps": 3}  # fmt: skip
    (runs / "downstream" / "mmlu" / "summary.json").write_text(json.dumps(mm))
    out = tmp_path / "fig"
    only = ["knockout_cumulative", "knockout_per_layer", "sink_table", "downstream_table", "mmlu_modes"]
    main(["--out", str(out), "--runs", str(runs), "--no-png", "--only", *only])
    log = capsys.readouterr().out
    for name in ("knockout_cumulative_accuracy_m", "knockout_cumulative_reconstruction_m", "knockout_per_layer_m",
                 "sink_table", "downstream_table", "downstream_accuracy", "mmlu_modes", "mmlu_accuracy"):  # fmt: skip
        assert (out / f"{name}.html").exists(), (name, log)
    assert "skip " not in log and "FAIL" not in log and "8 figures" in log
    assert not (out / "README.md").exists()  # --only never replaces the index of the full set


def test_make_figures_draws_the_other_analyses_results(tmp_path, capsys):
    """trajectory.json (landscape, PCA reconstruction), probes.json, LR sweep, depth and capacity results."""
    main = make_figures_script().main
    runs, results = tmp_path / "runs", tmp_path / "results"
    write_run(runs / "prog6", synthetic_rows())
    for lr in (0.1, 0.5):  # the diversity sweep: same texts and seed, two learning rates
        config = {"settings": {"kind": "progressive", "model": "synthetic", "layout": LAYOUT, "seed": 0,
                               "recipe": {"lr": lr, "init": "random0.02"}}, "created": "now"}  # fmt: skip
        RunDir.open(runs / f"lrsweep_{lr:g}", config).append_rows(synthetic_rows())
    grid = [[0.1 * (i + j) for j in range(3)] for i in range(3)]
    land = {"0": {"basin": {"3": 0.5}, "anchors": {"3": [0.0, 0.0]}, "pc12": 0.9, "a": [-1, 0, 1], "b": [-1, 0, 1],
                  "maps": {"3": grid}}}  # fmt: skip
    recon = [{"sample_id": 0, "k": k, "length": 5, "accuracy": a, "first_wrong": 0, "explained": a, "rel_error": 1 - a}
             for k, a in ((0, 0.2), (2, 0.6), (4, 1.0))]  # fmt: skip
    (results / "trajectory").mkdir(parents=True)
    (results / "trajectory" / "trajectory.json").write_text(
        json.dumps({"source": str(runs / "prog6"), "pca_reconstruction": recon, "landscape": land})
    )
    probes = [{"condition": c, "task": "token@1", "kind": "identity", "layer": layer, "score": 0.5 + 0.1 * layer,
               "shuffled": 0.5, "chance": 0.5} for c in ("crammed", "random") for layer in range(3)]  # fmt: skip
    (results / "probes").mkdir()
    (results / "probes" / "probes.json").write_text(json.dumps({"meta": {"names": {"token@1": "token 1"}, "n": 9,
                                                                         "model": "m"}, "rows": probes}))  # fmt: skip
    cap = runs / "capacity" / "m"
    for variant, h in (("first1", 3.0), ("full", 8.0)):
        (cap / variant).mkdir(parents=True)
        (cap / variant / "result.json").write_text(
            json.dumps({"model": "m", "variant": variant, "horizon_mean": h})
        )
    sample = {"source": "pg19", "variant": "full", "text_id": "t", "horizon": 5, "seq_len": 8, "h_lm_bits": 30.0,
              "h_comp_bits": 5.0, "information_gain_bits": 25.0, "compression_ratio": 5.0, "utilisation": 0.01,
              "bits_per_token": 7.5, "steps": 100}  # fmt: skip
    (cap / "capacity_samples.json").write_text(
        json.dumps([sample, {**sample, "source": "builtin", "horizon": 7}])
    )
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
    for name in ("accuracy_landscape_sample0", "pca_reconstruction", "probes", "solution_diversity", "depth_heatmap",
                 "capacity_bits_m"):  # fmt: skip
        assert (tmp_path / "f" / f"{name}.html").exists(), (name, log)


def test_analysis_figures_are_written_for_offline_viewing(tmp_path):
    import plotly.graph_objects as go

    from analyses.figure_io import save_figure

    files = save_figure(go.Figure(go.Scatter(x=[0, 1], y=[1, 0])), tmp_path / "sub" / "fig.html")
    assert files[0] == tmp_path / "sub" / "fig.html"
    html = files[0].read_text()
    assert 'src="plotly.min.js"' in html and "cdn.plot.ly" not in html
    assert (tmp_path / "sub" / "plotly.min.js").exists()


def test_downstream_bars_show_every_scoring_variant_of_the_converged_subset():
    from analyses.eval_figures import downstream_figure

    s = choice_summary()
    for key, acc in (("base_converged", 47.0), ("cram_converged", 45.0)):
        s[key]["ending_only"] = {"acc": acc, "acc_tok": acc, "n": 8}
    fig = downstream_figure({"hellaswag": s}, "m")
    base, cram = fig.data
    assert list(base.x) == ["hellaswag<br>context+ending", "hellaswag<br>ending only"]
    assert list(base.y) == [42.0, 47.0] and list(cram.y) == [32.0, 45.0]
    only_default = downstream_figure({"hellaswag": choice_summary()}, "m")
    assert list(only_default.data[0].x) == ["hellaswag<br>context+ending"]


def test_model_of_a_task_finds_nested_crams(tmp_path):
    from analyses.figure_registry import _model_of

    cfg = tmp_path / "mmlu" / "crams" / "management" / "few_shot" / "config.json"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(json.dumps({"settings": {"model": "smollm2-135m"}}))
    assert _model_of(tmp_path / "mmlu") == "smollm2-135m"
    assert _model_of(tmp_path / "empty") == ""
