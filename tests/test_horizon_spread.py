"""Horizons as draws (issue 23): seeds in one run, variance components, divergence of twin runs."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import seqs, tiny

import cramlens as cl
from analyses.divergence import DivergenceSpec, Trace, paths_compared, perturbed_starts, summarise, twin_runs
from analyses.horizon_spread import Draw, analyse, draws_from_runs, texts_needed, variance_components
from cramlens.errors import CramlensError
from cramlens.recipe import Recipe
from cramlens.spec import CramSpec, parse_seeds
from cramlens.stats import hierarchical_mean_ci

QUICK = Recipe(warmup=0, steps_per_stage=60, steps_per_sample=600)


@pytest.fixture(scope="module")
def model():
    return tiny("llama", False)


def test_seeds_run_draws_each_text_per_seed_from_the_plain_runs_start(model):
    texts = seqs(2, 10)
    both = cl.progressive_cram(model, texts, recipe=QUICK, seeds=(3, 5), batch_size=1, check_greedy=False)
    five = cl.progressive_cram(model, texts, recipe=QUICK, seed=5, batch_size=1, check_greedy=False)
    assert [(s.sample_id, s.text_id, s.seed) for s in both.samples] == [
        (0, "ids:0", 3),
        (1, "ids:0", 5),
        (2, "ids:1", 3),
        (3, "ids:1", 5),
    ]
    # batch 1 in both runs: the seed-5 draws of the two-seed run are the plain seed-5 run, step for step
    for mine, plain in zip(both.samples[1::2], five.samples, strict=True):
        assert mine.horizon == plain.horizon and mine.steps == plain.steps
        assert torch.equal(mine.embedding, plain.embedding)
    seed3 = {r["seed"] for r in both.rows if r["sample_id"] in (0, 2)}
    assert seed3 == {3}
    s = both.summary()
    assert s["texts"] == 2 and s["samples"] == 4 and s["horizon"].n == 2


def test_seed_lists_parse_and_bad_ones_say_how():
    assert parse_seeds("0,1,2") == (0, 1, 2) and parse_seeds("2-4") == (2, 3, 4)
    with pytest.raises(CramlensError, match="integers like 0,1,2"):
        parse_seeds("a,b")
    with pytest.raises(CramlensError, match="repeat a seed"):
        CramSpec(seeds=(1, 1))
    assert CramSpec.from_dict(CramSpec(seeds=(0, 2)).to_dict()).seeds == (0, 2)


def test_init_perturbation_moves_the_start_by_its_relative_size(model):
    from cramlens.params import make_memory

    base = make_memory(model, 1, CramSpec(seed=0)).materialize().detach()
    moved = make_memory(model, 1, CramSpec(seed=0, init_perturbation=1e-3)).materialize().detach()
    rel = float((moved - base).pow(2).mean().sqrt() / base.pow(2).mean().sqrt())
    assert 5e-4 < rel < 2e-3


def test_variance_components_of_a_balanced_design_by_hand():
    c = variance_components({"a": [1, 2, 3], "b": [4, 5, 6], "c": [7, 8, 9]})
    # MSB = 3 * (9 + 0 + 9) / 2 = 27, MSW = 6 / 6 = 1, n0 = 3: sigma_b^2 = 26/3, ICC = (26/3) / (29/3)
    assert c.within_var == pytest.approx(1.0)
    assert c.between_var == pytest.approx(26 / 3)
    assert c.icc == pytest.approx(26 / 29)
    # F = 27, F(0.975; 2, 6) = 7.2599: F_L = 3.719, ICC_L = (F_L - 1) / (F_L + 2) = 0.4755
    assert c.icc_lo == pytest.approx(0.4755, abs=1e-3)
    assert c.icc_lo < c.icc < c.icc_hi <= 1
    assert c.mean.mean == pytest.approx(5.0) and c.mean.n == 3


def test_seed_noise_only_gives_an_icc_near_zero_and_texts_only_near_one():
    noise = variance_components({"a": [1, 9, 5], "b": [9, 1, 5], "c": [5, 1, 9]})
    assert noise.icc == pytest.approx(0.0) and noise.between_var == 0.0
    texts = variance_components({"a": [1, 1.01], "b": [5, 5.01], "c": [9, 9.01]})
    assert texts.icc > 0.99


def test_hierarchical_interval_is_wider_than_the_naive_one_when_seeds_vary():
    wide = {"a": [0, 20], "b": [5, 25], "c": [10, 30], "d": [2, 22]}
    h = hierarchical_mean_ci(wide, n_boot=4000)
    means_only = cl.stats.mean_ci([10, 15, 20, 12])
    assert h.mean == pytest.approx(means_only.mean)
    assert (h.hi - h.lo) > 0.8 * (means_only.hi - means_only.lo)
    assert h.lo < h.mean < h.hi


def test_analyse_counts_censored_draws_and_compares_cvs():
    def d(t, s, ct, ig, cens=False):
        return Draw(t, s, "fast", cens, {"compressed_tokens": ct, "information_gain_bits": ig})

    draws = [d("a", 0, 10, 100), d("a", 1, 20, 110), d("b", 0, 30, 300), d("b", 1, 15, 290, True)]
    rep = analyse(draws)
    assert rep.censored == 1
    # IG's seed CV (~0.07, ~0.02) is far below the tokens' (~0.47, ~0.47): the difference is negative
    assert rep.ig_vs_horizon.mean < -0.3
    c = rep.components["compressed_tokens"]
    assert texts_needed(c, 2.0, 3) > texts_needed(c, 10.0, 3) > 0


def test_draws_from_runs_label_variants(model):
    run = cl.progressive_cram(model, seqs(2, 6), recipe=QUICK, seeds=(0, 1), batch_size=4, check_greedy=False)
    draws = draws_from_runs({"fast": run})
    assert len(draws) == 4 and {d.seed for d in draws} == {0, 1} and {d.variant for d in draws} == {"fast"}
    assert all(d.values["compressed_tokens"] >= 1 for d in draws)


def test_twin_runs_trace_each_perturbation_and_the_zero_delta_row_stays_put(model):
    spec = DivergenceSpec(deltas=(0.0, 1e-6, 1e-3), stage_len=4, max_steps=40)
    rc = QUICK.with_(lr=0.1)
    div = twin_runs(model, seqs(1, 8)[0], rc, spec)
    assert [t.delta for t in div.traces] == [0.0, 1e-6, 1e-3]
    assert len(div.traces[2].distance) > 3
    assert max(div.traces[0].distance) == 0.0  # rows of one batch do not perturb each other
    small, big = div.traces[1].distance[0], div.traces[2].distance[0]
    assert big > 100 * small > 0  # the distance starts at its delta
    out = summarise([div])
    assert out["zero_delta_max_distance"] == 0.0


def test_lyapunov_of_an_exponential_trace_is_its_rate():
    tr = Trace(1e-6, distance=[1e-6 * math.exp(0.05 * t) for t in range(200)])
    assert tr.lyapunov([1.0] * 200, saturation=0.1) == pytest.approx(0.05, rel=1e-6)
    # saturation stops the fit where the distance reaches a tenth of the memory's norm
    sat = Trace(1e-6, distance=[min(1e-6 * math.exp(0.1 * t), 0.5) for t in range(300)])
    assert sat.lyapunov([1.0] * 300, saturation=0.1) == pytest.approx(0.1, rel=1e-6)


def test_perturbed_starts_share_one_direction():
    e0 = torch.rand(1, 8) * 0.02
    rows = perturbed_starts(e0, (1e-4, 1e-2), seed=0)
    d1, d2 = rows[1] - rows[0], rows[2] - rows[0]
    assert torch.allclose(d2, 100 * d1, rtol=1e-3, atol=1e-9)


def test_plain_and_fast_paths_start_together(model):
    out = paths_compared(model, seqs(1, 6)[0], QUICK, DivergenceSpec(stage_len=3, max_steps=15))
    assert out["loss_plain"][0] == pytest.approx(out["loss_fast"][0], rel=1e-4)
    assert len(out["distance"]) >= 1 and out["distance"][0] < 1e-4


def test_seeds_run_then_spread_and_divergence_scripts_end_to_end(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import divergence as div_script
    import horizon_spread as spread_script
    import progressive as prog_script

    run = tmp_path / "seeds"
    common = ["--model", "tiny-llama", "--data", "random-words", "--samples", "2", "--seq-len", "6"]
    prog_script.main(
        common
        + ["--recipe", "fast", "--steps-per-stage", "40", "--max-steps", "200", "--seeds", "0,1,2"]
        + ["--batch-size", "6", "--no-progress", "--out", str(run)]
    )
    spread_script.main(["--run", f"fast={run}", "--out", str(tmp_path / "spread")])
    rep = json.loads((tmp_path / "spread" / "spread.json").read_text())
    assert rep["n_draws"] == 6 and rep["n_texts"] == 2 and rep["variants"] == ["fast"]
    assert sorted(d["seed"] for d in rep["draws"]) == [0, 0, 1, 1, 2, 2]
    assert set(rep["components"]) >= {"compressed_tokens", "information_gain_bits", "steps"}
    assert (tmp_path / "spread" / "horizon_spread.html").exists()
    div_script.main(
        common
        + ["--recipe", "fast", "--max-steps-div", "20", "--deltas", "0,1e-4", "--warm-run", str(run)]
        + ["--out", str(tmp_path / "div")]
    )
    out = json.loads((tmp_path / "div" / "divergence.json").read_text())
    assert len(out["stage1"]) == 2 and len(out["paths"]) == 2
    assert [d["text_id"] for d in out["later"]] == [d["text_id"] for d in out["stage1"]][: len(out["later"])]
    assert out["summary"]["stage1"]["zero_delta_max_distance"] == 0.0
    assert (tmp_path / "div" / "divergence.html").exists()
