"""Solution-diversity metrics (REFERENCE C.3) on planted geometry, and the shared-init LR sweep on a tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from analyses import diversity as dv
from analyses.plots import tables
from cramlens import CramRun
from cramlens.params import make_memory
from cramlens.spec import CramSpec


def test_orthogonal_displacements_give_zero_cosine():
    g = torch.Generator().manual_seed(0)
    d = 64
    e0 = torch.randn(d, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(d, 4, generator=g, dtype=torch.float64))
    sols = [e0 + 2.0 * q[:, i] for i in range(4)]
    m = dv.group_metrics(e0, sols, [10.0, 10.0, 10.0, 10.0])
    assert abs(m["dir_cos"]) < 1e-12
    assert m["sol_dist"] == pytest.approx(math.sqrt(2), rel=1e-9)  # equal lengths, orthogonal
    assert m["ig_cv"] == 0.0
    assert m["disp"] == pytest.approx([2.0] * 4)


def test_parallel_and_antiparallel_displacements():
    e0 = torch.zeros(8)
    v = torch.ones(8)
    m = dv.group_metrics(e0, [e0 + v, e0 + 3 * v], [1.0, 3.0])
    assert m["dir_cos"] == pytest.approx(1.0)
    assert m["sol_dist"] == pytest.approx(1.0)  # |3v - v| / mean(|v|, |3v|) = 2 / 2
    assert m["ig_cv"] == pytest.approx(50.0)  # pstd 1 / mean 2
    m2 = dv.group_metrics(e0, [e0 + v, e0 - v], [1.0, 1.0])
    assert m2["dir_cos"] == pytest.approx(-1.0) and m2["sol_dist"] == pytest.approx(2.0)


def test_random_displacements_match_the_inverse_sqrt_d_baseline():
    g = torch.Generator().manual_seed(1)
    d = 576
    e0 = torch.randn(d, generator=g)
    coss = [
        dv.group_metrics(e0, [e0 + torch.randn(d, generator=g) for _ in range(2)], [1.0, 1.0])["dir_cos"]
        for _ in range(400)
    ]
    sd = float(torch.tensor(coss).std())
    assert abs(float(torch.tensor(coss).mean())) < 0.01
    assert sd == pytest.approx(1 / math.sqrt(d), rel=0.15)


def test_geometric_grid():
    g = dv.geometric_grid(4, 100, 24)
    assert g[0] == 4 and g[-1] == 100 and g == sorted(set(g)) and len(g) <= 24
    assert dv.geometric_grid(4, 4) == [4] and dv.geometric_grid(5, 4) == []
    assert dv.geometric_grid(4, 10, 24) == list(range(4, 11))


def _sweep_run(lr: float, trajs: dict[int, torch.Tensor], horizon: dict[int, int], seed: int = 0) -> CramRun:
    rows = []
    for sid, X in trajs.items():
        for k, x in enumerate(X):
            L = k + 1
            rows.append(
                {
                    "sample_id": sid,
                    "stage_index": k,
                    "stage_seq_len": L,
                    "embedding": x.reshape(1, -1),
                    "converged": L <= horizon[sid],
                    "information_gain_bits": 2.0 * L,
                }
            )
    cfg = {"settings": {"kind": "progressive", "seed": seed, "recipe": {"init": "random0.02", "lr": lr}}}
    return CramRun("progressive", [], rows, cfg)


def test_solution_groups_and_summary_on_planted_sweep():
    d, n = 16, 12
    e0 = {s: make_memory_row(s, d) for s in range(2)}
    g = torch.Generator().manual_seed(2)
    runs = {}
    for j, lr in enumerate([0.01, 0.1, 0.5]):
        scale = [1.0, 4.0, 20.0][j]
        trajs = {s: e0[s] + scale * torch.randn(n, d, generator=g) for s in range(2)}
        runs[lr] = _sweep_run(lr, trajs, {0: 10 - j, 1: 12})
    groups = dv.solution_groups(runs, n_lengths=24, min_length=4)
    # sample 0: lengths 4..8 (min over runs of the horizons 10, 9, 8); sample 1: 4..12
    assert sorted((gr.sample_id, gr.length) for gr in groups) == [(0, L) for L in range(4, 9)] + [
        (1, L) for L in range(4, 13)
    ]
    s = dv.summarize(groups, d)
    assert s["N"] == len(groups) and s["ig_cv"] == 0.0
    assert 10 < s["disp_ratio"] < 40  # planted 20x
    assert abs(s["dir_cos"]) < 0.35 and s["random_cos"] == pytest.approx(0.25)


def test_shared_grid_top_survives_a_run_stuck_at_the_start():
    d, n = 16, 12
    e0 = {0: make_memory_row(0, d)}
    g = torch.Generator().manual_seed(3)
    runs = {
        lr: _sweep_run(lr, {0: e0[0] + torch.randn(n, d, generator=g)}, {0: h})
        for lr, h in ((0.01, 1), (0.1, 9), (0.5, 12))
    }
    assert dv.solution_groups(runs, min_length=4) == []  # the paper's grid ends at the stuck run's 1 token
    groups = dv.solution_groups(runs, min_length=4, grid_top="shared")
    assert [gr.length for gr in groups] == list(range(4, 10)) and all(gr.lrs == [0.1, 0.5] for gr in groups)
    with pytest.raises(ValueError, match="grid_top"):
        dv.solution_groups(runs, grid_top="max")


def make_memory_row(sid: int, d: int) -> torch.Tensor:
    from cramlens.params import init_rows

    return init_rows("random0.02", (1, d), 0, sid).reshape(-1)


def test_mismatched_inits_are_refused():
    d = 8
    X = torch.zeros(6, d)
    runs = {0.1: _sweep_run(0.1, {0: X}, {0: 6}, seed=0), 0.5: _sweep_run(0.5, {0: X}, {0: 6}, seed=1)}
    with pytest.raises(ValueError, match="different inits"):
        dv.solution_groups(runs)


def test_lr_sweep_shares_the_init(tiny_llama, tmp_path):
    texts = [[5, 9, 13], [11, 4, 8]]
    runs = dv.run_lr_sweep(
        tiny_llama,
        texts,
        [0.1, 0.4],
        tmp_path,
        seq_len=None,
        recipe="fast",
        batch_size=2,
        steps_per_stage=25,
        steps_per_sample=100,
    )
    assert sorted(runs) == [0.1, 0.4] and (tmp_path / "lrsweep_0.1" / "rows.jsonl").exists()
    mem = make_memory(tiny_llama, 2, CramSpec(seed=0).with_(init="random0.02"), [0, 1]).materialize().detach()
    for sid in (0, 1):
        a, b = dv.initial_embedding(runs[0.1], sid), dv.initial_embedding(runs[0.4], sid)
        assert torch.equal(a, b) and torch.equal(a, mem[sid])  # the engine's actual init
    assert sorted(dv.load_sweep(tmp_path)) == [0.1, 0.4]
    again = dv.run_lr_sweep(
        tiny_llama,
        texts,
        [0.1],
        tmp_path,
        seq_len=None,
        recipe="fast",
        batch_size=2,
        steps_per_stage=25,
        steps_per_sample=100,
    )  # resumes: nothing to do
    assert len(again[0.1].rows) == len(runs[0.1].rows)


def _group(sid: int, cos: float, sol: float, ig_cv: float, disp: dict) -> dv.Group:
    return dv.Group(sid, 4, sorted(disp), sol, cos, ig_cv, disp, sol * 1.1)


def test_summary_gives_every_statistic_n_and_a_95_interval():
    groups = [
        _group(i, cos, sol, cv, {0.1: 1.0, 0.5: ratio})
        for i, (cos, sol, cv, ratio) in enumerate(
            [(0.1, 1.0, 1, 8), (0.2, 2.0, 2, 10), (0.3, 3.0, 3, 12), (0.4, 4.0, 4, 10), (0.5, 5.0, 5, 10)]
        )
    ]
    s = dv.summarize(groups, 576)
    # means over groups: Student-t, values 1..5 -> mean 3, [1.04, 4.96]
    assert s["ig_cv"] == 3.0 and s["ig_cv_ci"]["n"] == 5
    assert (s["ig_cv_ci"]["lo"], s["ig_cv_ci"]["hi"]) == pytest.approx((1.0367, 4.9633), abs=1e-4)
    assert (s["dir_cos_ci"]["lo"], s["dir_cos_ci"]["hi"]) == pytest.approx((0.10367, 0.49633), abs=1e-5)
    # the median and the ratio of means: percentile bootstrap around the point value
    assert s["sol_dist_median"] == 3.0 and s["sol_dist_median_ci"]["n"] == 5
    assert 1.0 <= s["sol_dist_median_ci"]["lo"] < 3.0 < s["sol_dist_median_ci"]["hi"] <= 5.0
    assert (
        s["disp_ratio"] == pytest.approx(10.0)
        and 8 <= s["disp_ratio_ci"]["lo"] < 10 < s["disp_ratio_ci"]["hi"]
    )
    assert s["disp_by_lr_ci"][0.5]["mean"] == pytest.approx(10.0) and s["disp_by_lr_ci"][0.5]["n"] == 5
    from analyses.plots.tables import diversity_cells

    assert diversity_cells(s, "ours")[2] == "3.0 [1.0, 5.0] (n=5)"


def test_bootstrap_ci_percentiles_rows_and_degenerate_inputs():
    import numpy as np

    from cramlens.stats import bootstrap_ci

    ci = bootstrap_ci([1, 2, 3, 4, 5, 100])
    assert ci.mean == 3.5 and ci.n == 6 and ci.lo >= 1 and ci.hi <= 100 and ci.lo < 3.5 < ci.hi
    assert bootstrap_ci([1, 2, 3, 4, 5, 100]) == ci  # seeded: the same interval every time
    same = bootstrap_ci([2.0] * 10)
    assert (same.mean, same.lo, same.hi) == (2.0, 2.0, 2.0)
    ratio = bootstrap_ci(
        np.array([[2.0, 1.0], [4.0, 2.0], [6.0, 3.0]]), lambda a: a[:, 0].mean() / a[:, 1].mean()
    )
    assert (ratio.mean, ratio.lo, ratio.hi) == pytest.approx((2.0, 2.0, 2.0))  # rows resampled together
    one, none = bootstrap_ci([float("nan"), 4.0]), bootstrap_ci([])
    assert one.n == 1 and one.mean == 4.0 and math.isnan(one.lo) and none.n == 0 and "no interval" in str(one)


def test_diversity_table_row():
    from cramlens.stats import mean_ci

    s = {
        "N": 5,
        "ig_cv": 3.0,
        "sol_dist_median": 1.5,
        "sol_dist_q1": 1.4,
        "sol_dist_q3": 1.6,
        "dir_cos": 0.05,
        "random_cos": 1 / math.sqrt(576),
        "disp_ratio": 14.6,
        "lrs": [0.01, 0.5],
        "ig_cv_ci": mean_ci([1, 2, 3, 4, 5]).to_dict(),  # t interval [1.04, 4.96]
        "sol_dist_median_ci": {"mean": 1.5, "lo": 1.45, "hi": 1.55, "n": 5, "sd": 0.03, "level": 0.95},
        "dir_cos_ci": {"mean": 0.05, "lo": -0.01, "hi": 0.11, "n": 5, "sd": 0.05, "level": 0.95},
        "disp_ratio_ci": {"mean": 14.6, "lo": 12.0, "hi": 18.04, "n": 4, "sd": 1.0, "level": 0.95},
    }
    fig, _ = tables.diversity_table(s, "ours")
    cols = fig.data[0].cells.values
    assert [c[0] for c in cols] == [
        "ours",
        "5",
        "3.0 [1.0, 5.0] (n=5)",
        "1.50 [1.40, 1.60]",
        "1.50 [1.45, 1.55] (n=5)",
        "+0.05 [-0.01, +0.11] (n=5) (1/√d = 0.042)",
        "14.6 [12.0, 18.0] (n=4)",
    ]
    assert [c[1] for c in cols] == [
        "paper: Llama-3.1-8B",
        "224",
        "0.9%",
        "1.49 [1.43, 1.53]",
        "–",
        "+0.18",
        "15x",
    ]
    assert (
        tables.estimate_cell({"x": 3.0, "x_ci": mean_ci([1, 2, 3, 4, 5]).to_dict()}, "x")
        == "3.00 [1.04, 4.96] (n=5)"
    )
    old = {k: v for k, v in s.items() if not k.endswith("_ci")}  # a summary written before the intervals
    cols = tables.diversity_table(old, "ours")[0].data[0].cells.values
    assert [cols[i][0] for i in (2, 4, 6)] == [
        "3.0 (no interval)",
        "1.50 (no interval)",
        "14.6 (no interval)",
    ]
