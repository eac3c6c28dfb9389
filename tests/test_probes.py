"""Linear probes: planted signals are found, shuffled labels sit at chance, activations are what the design says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analyses import probes as pr
from analyses.plots import tables
from cramlens.layout import Layout


def _folds(n, k=5):
    return pr._folds(n, None, k)


def test_binary_probe_planted_signal_and_shuffled_chance():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 20))
    y = (X @ rng.normal(size=20) > 0).astype(int)
    folds = _folds(400)
    score, shuffled = pr.with_chance(lambda lab: pr.binary_probe(X, lab, folds), y, n_shuffles=5)
    assert score > 0.9
    assert abs(shuffled - 0.5) < 0.08


def test_binary_probe_pure_noise_is_chance():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(150, 40))
    y = rng.integers(0, 2, 150)
    assert abs(pr.binary_probe(X, y, _folds(150)) - 0.5) < 0.12


def test_identity_2v2_planted_linear_map_and_shuffle():
    rng = np.random.default_rng(2)
    V, d, N = 60, 24, 120
    W_E = rng.normal(size=(V, d))
    tokens = rng.integers(0, V, N)
    A = rng.normal(size=(d, 40))
    X = W_E[tokens] @ A + 0.05 * rng.normal(
        size=(N, 40)
    )  # activations = a linear image of the token's embedding
    folds = _folds(N)
    score, shuffled = pr.with_chance(lambda t: pr.identity_2v2(X, t, W_E, folds), tokens, n_shuffles=5)
    assert score > 0.95
    assert abs(shuffled - 0.5) < 0.06


def test_random_like_matches_norms():
    e = torch.randn(7, 1, 16) * torch.arange(1, 8).float()[:, None, None]
    r = pr.random_like(e, seed=3)
    assert torch.allclose(r.norm(dim=(1, 2)), e.norm(dim=(1, 2)), rtol=1e-5)
    assert abs(float(torch.nn.functional.cosine_similarity(r.reshape(7, -1), e.reshape(7, -1)).mean())) < 0.5


def test_choose_words_and_tasks():
    toks = [[1, 2, 3], [1, 4, 5], [2, 6, 7], [8, 9, 1]]
    assert pr.choose_words(toks, 0.2, 0.8, 2)[0] == 2  # present in half of the texts: most balanced
    tasks = pr.make_tasks(toks, [1, 3, 4], [1], min_rows=1)
    assert set(tasks) == {"token@1", "token@3", "has:1"}  # no text has a 4th token
    assert tasks["has:1"][1].tolist() == [1, 1, 0, 1]
    prefixes = [[1], [1, 2], [1, 2, 3], [4], [4, 5]]  # stage rows: prefixes of two texts
    t = pr.make_tasks(prefixes, [2], [2], min_rows=1)
    assert t["token@2"][2].tolist() == [False, True, True, False, True]
    assert t["has:2"][1].tolist() == [0, 1, 1, 0, 0]


def test_grouped_folds_keep_groups_together():
    groups = np.repeat(np.arange(10), 4)
    for tr, te in pr._folds(40, groups, 5):
        assert not set(groups[tr]) & set(groups[te])


def test_memory_activations_ignore_what_follows(tiny_llama):
    """The design's premise: at the memory position the residual does not depend on the text after it."""
    model = tiny_llama
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(3, 1, model.cfg.d_model, generator=g)
    layers = [0, 1, model.cfg.n_layers]
    A = pr.memory_activations(model, emb, Layout(), layers)
    assert A.shape == (3, len(layers), model.cfg.d_model)
    assert torch.allclose(
        A[:, 0], emb[:, 0], atol=1e-6
    )  # layer 0 is the injected vector (no positional embedding)
    from cramlens.hooks import inject

    _, names = pr.layer_hooks(model, layers)
    ids = torch.tensor([[0, 5, 9, 13, 2]] * 3)
    with model.hooks(fwd_hooks=list(inject(emb, [0]))):
        _, cache = model.run_with_cache(ids, names_filter=lambda n: n in names)
    with_text = torch.stack([cache[n][:, 0] for n in names], 1)
    assert torch.allclose(A, with_text, atol=1e-5)


def test_text_activations_first_is_the_first_token(tiny_llama):
    model = tiny_llama
    seqs = [[5, 9, 13], [7, 2, 4, 8]]
    A = pr.text_activations(model, seqs, "first", [0])
    assert torch.allclose(A[:, 0], model.W_E[[5, 7]], atol=1e-6)
    last = pr.text_activations(model, seqs, "last", [0])
    assert torch.allclose(last[:, 0], model.W_E[[13, 8]], atol=1e-6)


def test_run_probes_end_to_end_on_synthetic_activations():
    rng = np.random.default_rng(4)
    N, d, V = 80, 12, 30
    W_E = rng.normal(size=(V, d))
    toks = [list(rng.integers(0, V, 4)) for _ in range(N)]
    t1 = np.array([t[0] for t in toks])
    signal = torch.tensor(
        np.stack([W_E[t1], rng.normal(size=(N, d))], 1)
    )  # layer 0 holds token 1, layer 1 noise
    tasks = pr.make_tasks(toks, [1, 4], [])
    rows = pr.run_probes({"planted": signal}, tasks, W_E, [0, 1], n_shuffles=2)
    get = {(r["task"], r["layer"]): r for r in rows}
    assert get[("token@1", 0)]["score"] > 0.9 and abs(get[("token@1", 1)]["score"] - 0.5) < 0.15
    assert abs(get[("token@4", 0)]["score"] - 0.5) < 0.15
    best = pr.best_by(rows)[("planted", "token@1")]
    assert best["layer"] == 0 and best["shuffled_max"] < 0.7


@pytest.mark.integration
def test_smollm2_memory_position_is_causal(smollm2):
    emb = torch.randn(2, 1, smollm2.cfg.d_model) * 5
    A = pr.memory_activations(smollm2, emb, Layout(), [0, 15, 30])
    from cramlens.hooks import inject

    _, names = pr.layer_hooks(smollm2, [0, 15, 30])
    with smollm2.hooks(fwd_hooks=list(inject(emb, [0]))):
        _, cache = smollm2.run_with_cache(
            torch.tensor([[0, 504, 2328, 30]] * 2), names_filter=lambda n: n in names
        )
    B = torch.stack([cache[n][:, 0] for n in names], 1)
    assert float((A - B).norm() / B.norm()) < 1e-5  # equal up to fp32 reduction order (different widths)


def test_ridge_loo_matches_sklearn():
    from sklearn.linear_model import Ridge, RidgeCV

    rng = np.random.default_rng(5)
    X, Y, Xte = rng.normal(size=(40, 90)), rng.normal(size=(40, 7)), rng.normal(size=(5, 90))
    Y[:, 0] += X[:, 0] * 3
    for a in (0.5, 30.0):  # fixed alpha: identical to sklearn's Ridge
        np.testing.assert_allclose(
            pr.ridge_loo_predict(X, Y, Xte, [a]), Ridge(alpha=a).fit(X, Y).predict(Xte), atol=1e-8
        )
    alphas = np.logspace(-2, 4, 13)  # LOO choice: the same alpha as RidgeCV's
    ref = RidgeCV(alphas=alphas, alpha_per_target=False).fit(X, Y)
    np.testing.assert_allclose(pr.ridge_loo_predict(X, Y, Xte, alphas), ref.predict(Xte), atol=1e-8)


def test_score_interval_is_the_t_interval_of_per_item_correctness():
    ci = pr.score_interval(np.array([1.0, 2, 3, 4, 5]), np.ones(5))  # one row per text: plain t interval
    assert (ci.mean, ci.n) == (3.0, 5) and (ci.lo, ci.hi) == pytest.approx((1.0367, 4.9633), abs=1e-4)
    hits = np.array([1, 1, 0, 1, 0, 0, 1, 1.0])
    texts = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    clustered = pr.score_interval(hits, np.ones(8), texts)  # rows of one text summed: n = texts
    per_text = [1.0, 0.5, 0.0, 1.0]  # equal sizes: the t interval of the per-text means
    from cramlens.stats import mean_ci

    assert clustered.n == 4 and clustered.mean == pytest.approx(0.625)
    assert (clustered.lo, clustered.hi) == pytest.approx((mean_ci(per_text).lo, mean_ci(per_text).hi))


def test_per_item_terms_add_up_to_the_scores():
    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(60, 8)), rng.integers(0, 2, 60)
    y[:45] = 1  # imbalanced: balanced accuracy differs from accuracy
    folds = _folds(60)
    num, den = pr.balanced_items(y, pr.binary_predictions(X, y, folds))
    assert num.sum() / den.sum() == pytest.approx(pr.binary_probe(X, y, folds))
    W_E, toks = rng.normal(size=(20, 8)), rng.integers(0, 20, 60)
    wins, pairs = pr.identity_2v2_items(X, toks, W_E, folds)
    assert wins.sum() / pairs.sum() == pytest.approx(pr.identity_2v2(X, toks, W_E, folds))
    assert np.all(wins <= pairs)


def test_run_probes_rows_carry_n_and_intervals():
    rng = np.random.default_rng(7)
    N, d = 60, 6
    toks = [list(rng.integers(0, 9, 3)) for _ in range(N)]
    acts = torch.tensor(rng.normal(size=(N, 1, d)))
    groups = np.repeat(np.arange(20), 3)
    rows = pr.run_probes(
        {"noise": acts},
        pr.make_tasks(toks, [1], [int(toks[0][0])]),
        rng.normal(size=(9, d)),
        [0],
        groups,
        n_shuffles=3,
    )
    for r in rows:
        assert r["score_ci"]["n"] == 20 == r["n_groups"] and r["score_ci"]["mean"] == pytest.approx(
            r["score"]
        )
        assert r["score_ci"]["lo"] < r["score"] < r["score_ci"]["hi"]
        assert r["shuffled_ci"]["n"] == 3 and r["shuffled_ci"]["mean"] == pytest.approx(r["shuffled"])


def test_probe_cells_carry_the_interval_over_texts_or_say_there_is_none():
    rows = [
        {"condition": "crammed", "task": "token@1", "layer": 0, "score": 0.6, "shuffled": 0.5},
        {"condition": "crammed", "task": "token@1", "layer": 3, "score": 0.7, "shuffled": 0.55},
    ]
    cols, cells = tables.probe_cells(rows, {"token@1": "first token"})
    assert cols[1] == "crammed" and "95% t over texts" in cols[0]
    assert cells == [["first token", "0.70 (no interval) / 0.55 (L3)"]]  # an older probes.json
    rows[1]["score_ci"] = {"mean": 0.7, "lo": 0.62, "hi": 0.78, "n": 38, "sd": 0.2, "level": 0.95}
    assert tables.probe_cells(rows, {})[1] == [["token@1", "0.70 [0.62, 0.78] (n=38) / 0.55 (L3)"]]
