"""Trajectory geometry and surprisal-vs-steps on synthetic trajectories of known shape, plus tiny/real runs."""

from __future__ import annotations

import math

import pytest
import torch

from analyses import surprisal as su
from analyses import trajectory as tj
from cramlens import CramRun, progressive_cram


def fake_run(
    trajs: dict[int, torch.Tensor], converged_until: dict[int, int] | None = None, **extra
) -> CramRun:
    """A CramRun whose sample ``s`` has stage embeddings ``trajs[s]`` ([n, d]); stages > converged_until fail."""
    rows = []
    for sid, X in trajs.items():
        for k, x in enumerate(X):
            ok = converged_until is None or k + 1 <= converged_until[sid]
            row = {
                "sample_id": sid,
                "stage_index": k,
                "stage_seq_len": k + 1,
                "embedding": x.reshape(1, -1),
                "converged": ok,
                "final_convergence": 1.0 if ok else 0.5,
                "steps_taken": 10 * (k + 1),
            }
            row.update({key: v[sid][k] for key, v in extra.items()})
            rows.append(row)
    return CramRun("progressive", [], rows, {"settings": {"kind": "progressive"}})


def test_straight_line_has_one_component():
    g = torch.Generator().manual_seed(0)
    d = 64
    e0, v = torch.randn(d, generator=g), torch.randn(d, generator=g)
    t = torch.linspace(0, 5, 30) ** 1.7  # uneven spacing along one line
    X = e0 + t[:, None] * v
    geo = tj.sample_geometry(fake_run({0: X}), 0)
    assert geo["pc1"] > 0.9999 and geo["pca99"] == 1
    assert geo["traj_length"] == pytest.approx(float((X[-1] - X[0]).norm()), rel=1e-6)


def test_planar_circle_and_random_walk():
    g = torch.Generator().manual_seed(1)
    d = 50
    q, _ = torch.linalg.qr(torch.randn(d, 2, generator=g))
    th = torch.linspace(0, 2 * math.pi, 41)[:-1]
    circle = torch.stack([th.cos(), th.sin()], 1) @ q.T * 3
    geo = tj.sample_geometry(fake_run({0: circle}), 0)
    assert geo["pc12"] == pytest.approx(1.0, abs=1e-9) and geo["pca99"] == 2
    assert abs(geo["pc1"] - 0.5) < 0.01  # a circle spreads its variance evenly over two axes
    walk = torch.cumsum(torch.randn(40, d, generator=g), 0)
    gw = tj.sample_geometry(fake_run({0: walk}), 0)
    assert gw["pca99"] > 10  # a random walk is not low-dimensional at 99 %


def test_components_for_edges():
    assert tj.components_for(torch.tensor([0.5, 0.48, 0.02], dtype=torch.float64)) == 3
    assert tj.components_for(torch.tensor([0.5, 0.49, 0.01], dtype=torch.float64)) == 2  # cumulative >= 0.99
    assert tj.components_for(torch.tensor([0.995, 0.005])) == 1
    assert tj.components_for(torch.zeros(3)) == 0
    const = tj.pca(torch.ones(5, 4))
    assert const.n_for() == 0


def test_pca99_vs_length_grows_with_prefix():
    g = torch.Generator().manual_seed(2)
    X = torch.cumsum(torch.randn(30, 40, generator=g), 0)
    rows = tj.pca99_vs_length(fake_run({0: X}), 0, [5, 10, 20, 30])
    vals = [r["pca99"] for r in rows]
    assert vals == sorted(vals) and vals[0] < vals[-1]
    assert [r["stages"] for r in rows] == [5, 10, 20, 30]


def test_pca_reconstruct_full_rank_is_exact():
    g = torch.Generator().manual_seed(3)
    X = torch.randn(6, 20, generator=g, dtype=torch.float64)
    fit = tj.pca(X)
    r = fit.components.shape[0]
    assert torch.allclose(fit.reconstruct(X[-1], r), X[-1], atol=1e-10)
    assert torch.allclose(fit.reconstruct(X[-1], 0), X.mean(0), atol=1e-12)


def test_converged_only_drops_failed_stage():
    X = torch.randn(8, 10)
    run = fake_run({0: X}, converged_until={0: 7})
    assert tj.sample_geometry(run, 0)["stages"] == 8
    assert tj.sample_geometry(run, 0, converged_only=True)["stages"] == 7
    assert tj.sample_geometry(run, 0)["horizon"] == 7


# ---- surprisal vs steps ---------------------------------------------------------------------------------------


def test_spearman_planted_monotone_and_partial():
    g = torch.Generator().manual_seed(4)
    s = torch.rand(200, generator=g).tolist()
    steps = [math.exp(3 * x) for x in s]  # monotone, non-linear
    assert su.spearman(s, steps) == pytest.approx(1.0)
    assert su.spearman(s, [-x for x in steps]) == pytest.approx(-1.0)
    pos = list(range(200))
    steps_pos = [p + 0.0 for p in pos]  # steps depend on position only
    s_pos = [
        p + 80 * float(torch.rand(1, generator=g)) for p in pos
    ]  # surprisal correlated with position only
    assert su.spearman(s_pos, steps_pos) > 0.5
    assert abs(su.partial_spearman(s_pos, steps_pos, pos)) < 0.1
    noise = torch.rand(200, generator=g).tolist()
    assert abs(su.spearman(s, noise)) < 0.2


def test_step_pairs_and_correlation_on_planted_runs():
    g = torch.Generator().manual_seed(5)
    n, S = 25, 6
    trajs, sur, cum = {}, {}, {}
    for sid in range(S):
        s = (torch.rand(n, generator=g) * 10).tolist()
        s[0] = float("nan")
        marg = [0] + [int(round(5 * 2**x)) for x in s[1:]]  # steps grow with surprisal
        trajs[sid] = torch.randn(n, 4, generator=g)
        sur[sid] = s
        cum[sid] = [sum(marg[: k + 1]) for k in range(n)]
    run = fake_run(trajs, converged_until={sid: n - 1 for sid in range(S)}, new_token_surprisal_bits=sur)
    for r in run.rows:
        r["steps_taken"] = cum[r["sample_id"]][r["stage_index"]]
    pairs = su.step_pairs(run)
    assert len(pairs) == S * (n - 2)  # stage 1 has no surprisal, the last stage failed
    c = su.correlation(pairs, n_boot=200)
    assert c["rho"] > 0.95 and c["ci_low"] > 0.9 and c["pct_positive"] == 100.0
    assert c["ci_low"] <= c["rho"] <= c["ci_high"]


def test_step_pairs_need_consecutive_converged_stages():
    X = torch.randn(5, 3)
    run = fake_run({0: X}, new_token_surprisal_bits={0: [float("nan"), 1.0, 2.0, 3.0, 4.0]})
    run.rows = [r for r in run.rows if r["stage_seq_len"] != 3]  # stage 3 missing: L=4 has no L-1
    assert [p["length"] for p in su.step_pairs(run)] == [2, 5]


# ---- model-backed --------------------------------------------------------------------------------------------


def test_reconstruction_and_landscape_evaluate_the_right_embeddings(tiny_llama):
    """Batched evaluations agree with cramlens.teacher_forced_accuracy on the exact embeddings they claim to build."""
    from cramlens import teacher_forced_accuracy

    model = tiny_llama
    g = torch.Generator().manual_seed(6)
    seq = [5, 9, 13, 21, 7, 3]
    n, d = 6, model.cfg.d_model
    X = torch.cumsum(torch.randn(n, d, generator=g), 0)
    run = fake_run({0: X}, converged_until={0: 5}, input_ids={0: [seq] * n})
    rec = tj.pca_reconstruction(model, run, 0)
    full = max(rec, key=lambda r: r["k"])
    assert full["rel_error"] < 1e-6 and full["length"] == 5
    want = float(teacher_forced_accuracy(model, X[4].reshape(1, 1, d), [seq], lengths=[5])[0])
    assert full["accuracy"] == pytest.approx(want)
    mean_acc = float(teacher_forced_accuracy(model, X.mean(0).reshape(1, 1, d), [seq], lengths=[5])[0])
    assert next(r for r in rec if r["k"] == 0)["accuracy"] == pytest.approx(mean_acc)
    land = tj.accuracy_landscape(model, run, 0, [2, 4], grid=4, batch_size=5)
    for L in (2, 4):
        tf = float(teacher_forced_accuracy(model, X[L - 1].reshape(1, 1, d), [seq], lengths=[L])[0])
        assert land["anchor_accuracy"][L] == pytest.approx(tf)
        assert land["maps"][L].shape == (4, 4)
    assert land["coords"].shape == (n, 2)


@pytest.mark.integration
def test_smollm2_short_trajectory(smollm2):
    """A real (very short) progressive run through geometry, reconstruction and surprisal pairs."""
    run = progressive_cram(
        smollm2,
        ["The cat sat on the mat"],
        seq_len=3,
        recipe="fast",
        steps_per_stage=120,
        steps_per_sample=400,
        check_greedy=False,
    )
    geo = tj.geometry_table(run)
    assert geo and geo[0]["stages"] >= 2 and 0 < geo[0]["pc1"] <= 1
    rec = tj.pca_reconstruction(smollm2, run, 0)
    assert max(rec, key=lambda r: r["k"])["accuracy"] == 1.0
    assert all(p["steps"] >= 0 and p["surprisal"] >= 0 for p in su.step_pairs(run))


def test_recon_mean_keeps_every_sample_past_its_rank():
    from analyses.plots import trajectory_figures as tf

    # sample 0 has 3 components, sample 1 has 8: at k = 8 sample 0 keeps its exact k = 3 reconstruction
    rows = [{"sample_id": 0, "k": k, "length": 4, "accuracy": a} for k, a in ((0, 0.0), (1, 0.5), (3, 1.0))]
    rows += [
        {"sample_id": 1, "k": k, "length": 9, "accuracy": a}
        for k, a in ((0, 0.2), (1, 0.4), (3, 0.6), (8, 1.0))
    ]
    per_k = tj.recon_by_k(rows)
    assert list(per_k) == [0, 1, 3, 8] and all(len(rs) == 2 for rs in per_k.values())
    assert [r["k"] for r in per_k[8]] == [3, 8]
    mean = tf.recon_figure(rows).data[-1]
    assert list(mean.x) == [0, 1, 3, 8] and list(mean.y) == pytest.approx([0.1, 0.45, 0.8, 1.0])
