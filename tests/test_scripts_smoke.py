"""The analysis scripts end to end on a tiny model: each writes its results and its figures (HTML at least)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cramlens as cl

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))


def test_downstream_script_scores_hellaswag_and_draws_its_figure(tmp_path, monkeypatch):
    import downstream as script

    script.main(
        [
            "--model",
            "tiny-llama",
            "--task",
            "hellaswag",
            "--limit",
            "2",
            "--max-steps",
            "2",
            "--out",
            str(tmp_path / "runs"),
            "--figures",
            str(tmp_path / "f"),
        ]
    )
    summary = json.loads((tmp_path / "runs" / "hellaswag" / "summary.json").read_text())
    assert summary
    assert (tmp_path / "f" / "tiny-llama_choices.html").exists()
    # rerun (everything resumes) with --figures '': no figure anywhere, the working directory included
    monkeypatch.chdir(tmp_path)
    script.main(
        [
            "--model",
            "tiny-llama",
            "--task",
            "hellaswag",
            "--limit",
            "2",
            "--max-steps",
            "2",
            "--out",
            str(tmp_path / "runs"),
            "--figures",
            "",
        ]
    )
    assert not list(tmp_path.glob("*.html"))


def test_knockout_sweep_script_writes_rows_summary_and_figures(tmp_path):
    import knockout as script

    script.main(
        [
            "--model",
            "tiny-llama",
            "--direction",
            "all",
            "--ks",
            "0,1,2",
            "--no-control",
            "--items",
            "2",
            "--candidates",
            "2",
            "--max-steps",
            "2",
            "--batch-size",
            "2",
            "--crams",
            str(tmp_path / "crams"),
            "--out",
            str(tmp_path / "ko"),
            "--figures",
            str(tmp_path / "f"),
        ]
    )
    rows = [json.loads(x) for x in (tmp_path / "ko" / "sweep.jsonl").read_text().splitlines()]
    conds = {r["cond"] for r in rows}
    assert {"base", "cram", "forward:1", "forward:2", "reverse:2", "per_layer:0", "per_layer:1"} <= conds
    assert "forward:3" not in conds  # --ks restricts the grid
    assert json.loads((tmp_path / "ko" / "summary.json").read_text())["n_items"] == 2
    assert (tmp_path / "f" / "tiny-llama_all_knockout_accuracy.html").exists()


def test_trajectory_script_analyses_a_progressive_run_and_draws_its_figures(tmp_path, capsys):
    import trajectory as script

    model = cl.load_model("tiny-llama", device="cpu")
    texts = cl.load_texts("builtin", model.tokenizer, n_samples=2, seq_len=6)
    recipe = cl.get_recipe("fast", steps_per_stage=150, steps_per_sample=1000)
    cl.progressive_cram(model, texts, recipe=recipe, batch_size=2, out=tmp_path / "run")
    script.main(
        [
            "--run",
            str(tmp_path / "run"),
            "--model",
            "tiny-llama",
            "--figures",
            str(tmp_path / "f"),
            "--grid",
            "3",
            "--boot",
            "50",
        ]
    )
    assert (tmp_path / "f" / "pca_trajectories.html").exists()
    assert (tmp_path / "f" / "trajectory.json").exists()
    assert "mean [95% t-CI]" in capsys.readouterr().out  # every reported mean carries n and an interval
