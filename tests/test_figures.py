"""Figure builders and make_figures on synthetic runs (no model): the data behind each figure, not its pixels."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from analyses.plots import registry as reg
from analyses.plots import run_figures as F
from analyses.plots import tables as T
from analyses.plots import token_explorer as TE
from analyses.plots import tokens
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
        rows.append(
            {
                "sample_id": sid,
                "text_id": f"t{sid}",
                "text": f"text {sid}",
                "stage_index": k,
                "stage_seq_len": L,
                "input_ids": seq,
                "embedding": torch.rand(1, D, generator=g) * (k + 1),
                "converged": ok,
                "final_convergence": 1.0 if ok else (L - 1) / L,
                "steps_taken": cum,
                "steps_spent": cum,
                "marginal_steps": steps[k],
                "new_token_surprisal_bits": float("nan") if L == 1 else 1.5 * L,
                "h_lm_bits": 2.0 * (L - 1),
                "h_comp_bits": 0.5 * (L - 1),
                "information_gain_bits": 1.5 * (L - 1),
                "final": not ok,
                "reason": "" if ok else "stage budget exhausted",
            }
        )
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
    fig, data = TE.token_explorer(run, sample_ids=[0])
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
            reconstructed = cell(z, i) in (TE.RECONSTRUCTED, TE.JUST_ADDED)
            assert reconstructed == (i < horizon), (k, i)
        if traj[k]["converged"]:
            assert cell(z, k) == TE.JUST_ADDED  # the token this stage added
            assert sum(cell(z, i) == TE.JUST_ADDED for i in range(shown)) == 1
        else:
            assert cell(z, k) == TE.FAILED and all(cell(z, i) != TE.FAILED for i in range(shown) if i != k)
    # the figure opens on the final state, the one a static export shows
    assert [list(r) for r in fig.data[0].z] == steps[-1].args[0]["z"][0]


def test_explorer_hover_has_surprisal_and_marginal_steps():
    run = make_run()
    fig, data = TE.token_explorer(run, sample_ids=[0], decode=lambda t: f"w{t}")
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
    fig, data = TE.token_explorer(run)
    assert len(fig.data) == 3
    assert [t.visible for t in fig.data] == [True, False, False]  # longest horizon shown first
    assert len(fig.layout.updatemenus[0].buttons) == 3
    steps = fig.layout.sliders[0].steps
    assert len(steps) == 6  # the most stages of any sample
    z_last_s1 = steps[-1].args[0]["z"][1]  # sample 1 has 3 stages: steps beyond keep its final state
    assert z_last_s1 == steps[2].args[0]["z"][1]
    assert [cell(z_last_s1, i) for i in range(4)] == [
        TE.RECONSTRUCTED,
        TE.RECONSTRUCTED,
        TE.FAILED,
        TE.NOT_YET,
    ]
    # sample 2 reached its full length (4 tokens): all reconstructed, no failure
    z2 = steps[-1].args[0]["z"][2]
    assert [cell(z2, i) for i in range(4)] == [TE.RECONSTRUCTED] * 3 + [TE.JUST_ADDED]


def test_token_label_makes_whitespace_visible():
    assert (
        tokens.token_label("\n") == "↵"
        and tokens.token_label("  ") == "··"
        and tokens.token_label(" the") == " the"
    )


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
    # the paper's units beside ours: IG at the final stage, compressed tokens (in the hover), intervals
    final = [s.information_gain_bits_final for s in run.samples]
    assert "final (failing) stage" in fig.data[3].name and list(fig.data[3].y) == pytest.approx(final)
    assert [r["compressed_tokens"] for r in rows] == [s.compressed_tokens for s in run.samples]
    assert "compressed tokens (paper's unit)" in fig.layout.title.text and "(n=3)" in fig.layout.title.text


def test_horizon_one_has_zero_information_gain():
    run = make_run(stage_rows(0, [1, 2, 3], 1, [50, 1000]))
    _, rows = F.horizon_ig_bars(run)
    assert rows[0]["horizon"] == 1 and rows[0]["information_gain_bits"] == 0.0


# ----------------------------------------------------------------------------------------------- tables
BRITTLE = [
    {
        "method": "full @0.99",
        "sample_id": 0,
        "tokens": 64,
        "tf_accuracy": 0.99,
        "greedy_match": 0.1,
        "greedy_exact": False,
        "first_mismatch": 0,
        "tf_first_mismatch": 0,
    },
    {
        "method": "full @0.99",
        "sample_id": 1,
        "tokens": 64,
        "tf_accuracy": 0.98,
        "greedy_match": 0.3,
        "greedy_exact": False,
        "first_mismatch": 1,
        "tf_first_mismatch": 5,
    },
    {
        "method": "progressive",
        "sample_id": 0,
        "tokens": 7,
        "tf_accuracy": 1.0,
        "greedy_match": 1.0,
        "greedy_exact": True,
        "first_mismatch": None,
        "tf_first_mismatch": None,
    },
    {
        "method": "progressive",
        "sample_id": 1,
        "tokens": 9,
        "tf_accuracy": 1.0,
        "greedy_match": 1.0,
        "greedy_exact": True,
        "first_mismatch": None,
        "tf_first_mismatch": None,
    },
]


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


# ----------------------------------------------------------------------------------------------- make_figures
def write_run(path, rows, kind="progressive"):
    config = {"settings": {"kind": kind, "model": "synthetic", "layout": LAYOUT}, "created": "now"}
    rd = RunDir.open(path, config)
    rd.append_rows(rows)
    return path


def test_registry_names_are_unique_and_commands_known():
    names = [s.name for s in reg.REGISTRY]
    assert len(names) == len(set(names))
    assert all(s.command in reg.COMMANDS for s in reg.REGISTRY)


def choice_summary(conv=75.0, base=40.0, cram=30.0) -> dict:
    def v(acc):
        return {"context_ending": {"acc": acc, "acc_tok": acc + 1, "n": 8}}

    return {
        "n_items": 8,
        "conv_pct": conv,
        "base": v(base),
        "base_converged": v(base + 2),
        "cram": v(cram),
        "cram_converged": v(cram + 2),
    }


def test_downstream_mmlu_and_sink_tables():
    arc = {**choice_summary(50, 60, 45), "random_converged": {"context_ending": {"acc": 37.5, "n": 8}}}
    arc["paired_converged"] = {"base_vs_cram": {"context_ending": {"a_only": 1, "b_only": 8, "p": 0.0390625}}}
    fig, rows = T.downstream_table({"hellaswag": choice_summary(), "arc_easy": arc}, "m")
    cols = fig.data[0].cells.values
    assert list(cols[0][:2]) == ["m: hellaswag", "m: arc_easy"]
    assert [cols[i][0] for i in (2, 4)] == ["75.0", "41.0"]
    # accuracies with n and their Wilson interval: 40% of 8 items = 3.2 -> 3 hits of 8
    assert (
        cols[3][0] == "40.0 [13.7, 69.4] (n=8)" and cols[7][0].startswith("30.0 [") and "(n=8)" in cols[6][0]
    )
    assert list(cols[8][:2]) == ["–", "37.5 [13.7, 69.4] (n=8)"]  # the random-memory control, where scored
    assert list(cols[9][:2]) == ["–", "+8/-1 p=0.0391"]  # paired: cram vs base, converged
    assert cols[0][2].startswith("paper SmolLM2-1.7B") and rows[1]["cram_acc"] == 45
    modes = {
        "baseline": {
            "n": 4,
            "acc": 50.0,
            "valid": 100.0,
            "acc_ref": 50.0,
            "valid_ref": 100.0,
            "cram_tf": float("nan"),
        },
        "few_shot": {
            "n": 4,
            "acc": 25.0,
            "valid": 75.0,
            "acc_ref": 25.0,
            "valid_ref": 100.0,
            "cram_tf": 1.0,
            "vs_baseline": {"correct": {"a_only": 1, "b_only": 0, "p": 1.0, "n": 4}},
        },
    }
    fig, _ = T.mmlu_table({"modes": modes, "subjects": ["a"], "steps": 5}, "m")
    cols = fig.data[0].cells.values
    assert list(cols[0]) == ["baseline", "few_shot"] and cols[3][1].startswith("75.0 [")
    assert cols[2][0] == "50.0 [15.0, 85.0] (n=4)"
    assert list(cols[6]) == ["–", "1.000 (no interval)"] and list(cols[7]) == ["–", "+0/-1 p=1"]
    assert cols[8][1] == "45.91 (100)"
    sink = {
        "model": "smollm2-135m",
        "n": 3,
        "table": {
            "compression": {"mean": 55.5, "std": 3.0, "diff": -10.25, "corr": 0.9},
            "orig": {"mean": 65.75, "std": 1.0, "diff": 0.0, "corr": 1.0},
            "control": {"mean": 60.0, "std": 2.0, "diff": -5.75, "corr": 0.95},
        },
    }
    fig, rows = T.sink_table([sink, {**sink, "embeddings": ["progressive"]}])
    cols = fig.data[0].cells.values
    # a file without the field is from the older full-cram protocol; newer files say what they measured
    assert cols[0][2] == "smollm2-135m<br>progressive embeddings" and rows[1]["embeddings"] == "progressive"
    assert [c[0] for c in cols[:6]] == [
        "smollm2-135m<br>full embeddings (older file)",
        "3",
        "55.50 ± 3.00",
        "65.75 ± 1.00",
        "-10.25",
        "0.9000",
    ]
    assert cols[0][1] == "paper: SmolLM2-135M" and cols[2][1] == "60.79 ± 17.6"


def test_downstream_bars_show_every_scoring_variant_of_the_converged_subset():
    from analyses.plots.eval_figures import downstream_figure

    s = choice_summary()
    for key, acc in (("base_converged", 47.0), ("cram_converged", 45.0)):
        s[key]["ending_only"] = {"acc": acc, "acc_tok": acc, "n": 8}
    fig = downstream_figure({"hellaswag": s}, "m")
    base, cram = fig.data
    assert list(base.x) == ["hellaswag<br>context+ending", "hellaswag<br>ending only"]
    assert list(base.y) == [42.0, 47.0] and list(cram.y) == [32.0, 45.0]
    only_default = downstream_figure({"hellaswag": choice_summary()}, "m")
    assert list(only_default.data[0].x) == ["hellaswag<br>context+ending"]
