"""Solution-diversity metrics (REFERENCE C.3) on planted geometry, and the shared-init LR sweep on a tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from analyses import diversity as dv
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
