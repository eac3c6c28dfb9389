"""Linear probes on the residual stream at the memory position: what does a crammed embedding put there?

The paper has no probes (REFERENCE C.10); this is the design used here.

**Inputs.** ``N`` crammed embeddings ``e_i`` (``[m, d]``; e.g. full cramming of short texts, keeping the samples that
reconstruct their text exactly) and the texts' tokens ``x_1..x_n``.

**Activations** (:func:`memory_activations`). ``run_with_cache`` on the input ``[prefix][mem]`` *alone*, memory injected
at ``hook_embed``: attention is causal, so the residual stream at the memory positions is exactly what it is during
reconstruction, whatever tokens follow; none of the text is in the input, so anything a probe reads there comes from
the embedding. Read at the last memory position (the one that predicts ``x_1``), at ``blocks.0.hook_resid_pre``
(layer "0": the injected vector, plus positional embedding where the model has one) and after every block
(``blocks.{l}.hook_resid_post``, layer ``l+1``).

**Conditions.**
``crammed``: the embeddings above.
``random``: control; per sample a Gaussian direction scaled to that sample's ``||e_i||`` (same norms, no text).
``clean_first``: control; position 0 of the *uncrammed* text run through the model (``[BOS] x`` or ``x``): BOS when
the tokenizer adds one (holds nothing about the text), else ``x_1`` itself (holds the first token and nothing else).
``clean_last``: reference; the last position of the uncrammed text, the model's own contextual state after reading
it (what a normal forward pass keeps about earlier tokens).

**Tasks** (labels per text).
``token@k``: identity of the ``k``-th text token (1-based). The vocabulary is far larger than ``N``, so identity is
decoded by a linear map (ridge, multi-output, :func:`ridge_loo_predict`) from activations into the model's input-embedding space (targets
``W_E[x_k]``, unit-normalised) and scored by **2-vs-2 accuracy** on held-out samples: for every held-out pair ``i, j``
with different tokens, correct when ``cos(p_i, t_i) + cos(p_j, t_j) > cos(p_i, t_j) + cos(p_j, t_i)``. Chance 0.5;
unseen token classes can be decoded.
``has:<word>``: does the token occur anywhere in ``x_1..x_n``; words chosen automatically with prevalence in
``[lo, hi]``. Linear classifier (``RidgeClassifierCV``, balanced class weights), **balanced accuracy**, chance 0.5.

**Splits and chance.** K-fold over samples (``GroupKFold`` on ``groups``, so several embeddings of one text never
straddle train and test); standardisation and the ridge penalty (efficient leave-one-out over an ``alpha`` grid) are
fit on the training folds only. Each score comes with an empirical chance level: the same pipeline with the labels
permuted across samples (mean of ``n_shuffles`` permutations, with its t interval).

**Intervals.** Both scores are ratios of per-row sums over the held-out rows (2-vs-2 wins over pairs; class-weighted
hits over weights); :func:`score_interval` gives the score a 95% t interval over texts from the per-row terms,
summed per text since the stage embeddings of one text are not independent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from sklearn.linear_model import RidgeClassifierCV
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import StandardScaler

from cramlens.errors import check
from cramlens.hooks import inject
from cramlens.layout import Layout, placeholder_id
from cramlens.stats import MeanCI, mean_ci

ALPHAS = np.logspace(-1, 6, 15)


def layer_hooks(model, layers: Sequence[int] | None = None) -> tuple[list[int], list[str]]:
    """Layer indices (0 = input to block 0, l = after block l-1) and their hook names."""
    n = model.cfg.n_layers
    if layers is None:  # all layers of small models; ~14 spread over the depth (denser early) otherwise
        layers = (
            list(range(n + 1))
            if n <= 13
            else sorted({0, 1, 2, 3, *np.linspace(0, n, 11).round().astype(int)})
        )
    layers = [int(x) for x in layers]
    check(all(0 <= x <= n for x in layers), f"probe layers must be in 0..{n}")
    names = ["blocks.0.hook_resid_pre" if x == 0 else f"blocks.{x - 1}.hook_resid_post" for x in layers]
    return layers, names


@torch.no_grad()
def memory_activations(
    model,
    embeddings: torch.Tensor,
    layout: Layout = Layout(),
    layers: Sequence[int] | None = None,
    batch_size: int = 64,
) -> torch.Tensor:
    """Residual stream at the last memory position of ``[prefix][mem]``: ``[N, n_layers, d]`` (fp32, CPU)."""
    _, names = layer_hooks(model, layers)
    prefix = layout.prefix(model)
    m = embeddings.shape[1]
    ids = torch.tensor([prefix + [placeholder_id(model)] * m], device=model.cfg.device)
    pos = len(prefix) + m - 1
    out = []
    for i in range(0, embeddings.shape[0], batch_size):
        mem = embeddings[i : i + batch_size].to(model.cfg.device, torch.float32)
        with model.hooks(fwd_hooks=list(inject(mem, list(range(len(prefix), len(prefix) + m))))):
            _, cache = model.run_with_cache(ids.expand(mem.shape[0], -1), names_filter=lambda n: n in names)
        out.append(torch.stack([cache[n][:, pos] for n in names], dim=1).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def text_activations(
    model,
    sequences: Sequence[Sequence[int]],
    where: str = "first",
    layers: Sequence[int] | None = None,
    batch_size: int = 32,
) -> torch.Tensor:
    """Residual stream of the uncrammed texts (``sequences`` = ``[BOS?] + x``) at position 0 (``"first"``) or at
    each text's last token (``"last"``): ``[N, n_layers, d]``."""
    check(where in ("first", "last"), "text_activations: where must be 'first' or 'last'")
    _, names = layer_hooks(model, layers)
    out = []
    for i in range(0, len(sequences), batch_size):
        seqs = [list(s) for s in sequences[i : i + batch_size]]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), placeholder_id(model), dtype=torch.long)
        for b, s in enumerate(seqs):
            ids[b, : len(s)] = torch.tensor(s)
        pos = torch.tensor([0 if where == "first" else len(s) - 1 for s in seqs])
        _, cache = model.run_with_cache(
            ids.to(model.cfg.device), names_filter=lambda n: n in names, padding_side="right"
        )
        out.append(torch.stack([cache[n][torch.arange(len(seqs)), pos] for n in names], dim=1).float().cpu())
    return torch.cat(out)


def random_like(embeddings: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Gaussian directions with each row's norm (per sample, over its ``[m, d]`` block)."""
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(embeddings.shape, generator=g)
    dims = tuple(range(1, embeddings.dim()))
    return r * (embeddings.float().norm(dim=dims, keepdim=True) / r.norm(dim=dims, keepdim=True))


def choose_words(
    token_lists: Sequence[Sequence[int]], lo: float = 0.2, hi: float = 0.8, max_words: int = 5
) -> list[int]:
    """Token ids present in a fraction of texts within ``[lo, hi]``, most balanced first."""
    n = len(token_lists)
    counts: dict[int, int] = {}
    for toks in token_lists:
        for t in set(toks):
            counts[t] = counts.get(t, 0) + 1
    ok = [(abs(c / n - 0.5), t) for t, c in counts.items() if lo <= c / n <= hi]
    return [t for _, t in sorted(ok)[:max_words]]


def _folds(n: int, groups: Sequence | None, n_splits: int):
    groups = np.arange(n) if groups is None else np.asarray(groups)
    k = min(n_splits, len(np.unique(groups)))
    check(k >= 2, "probes need at least two distinct samples")
    return list(GroupKFold(n_splits=k).split(np.zeros(n), groups=groups))


def ridge_loo_predict(Xtr: np.ndarray, Ytr: np.ndarray, Xte: np.ndarray, alphas=ALPHAS) -> np.ndarray:
    """Multi-output ridge with an unpenalised intercept, ``alpha`` chosen by exact leave-one-out error (summed over
    outputs), solved in the dual (``n << d``): the same estimator as ``sklearn.linear_model.RidgeCV`` (checked in the
    tests), ~100x faster for hundreds of outputs."""
    mx, my = Xtr.mean(0), Ytr.mean(0)
    Xc, Yc = Xtr - mx, Ytr - my
    n = Xc.shape[0]
    lam, Q = np.linalg.eigh(Xc @ Xc.T)
    lam = lam.clip(min=0.0)
    QtY = Q.T @ Yc
    best, best_a = np.inf, alphas[0]
    for a in alphas:
        w = lam / (lam + a)
        resid = Yc - Q @ (w[:, None] * QtY)
        h = (Q**2) @ w + 1.0 / n  # diagonal of the hat matrix, intercept included
        err = float(((resid / (1.0 - h).clip(min=1e-12)[:, None]) ** 2).sum())
        if err < best:
            best, best_a = err, a
    dual = Q @ (QtY / (lam + best_a)[:, None])
    return (Xte - mx) @ Xc.T @ dual + my


def identity_2v2_items(
    X: np.ndarray, tokens: np.ndarray, W_E: np.ndarray, folds
) -> tuple[np.ndarray, np.ndarray]:
    """Per row: its share of the held-out 2-vs-2 wins and of the scored pairs (a pair counts half for each member),
    so that the 2-vs-2 accuracy is ``wins.sum() / pairs.sum()`` (:func:`identity_2v2`)."""
    T = W_E[tokens]
    T = T / np.linalg.norm(T, axis=1, keepdims=True).clip(1e-12)
    wins, pairs = np.zeros(len(X)), np.zeros(len(X))
    for tr, te in folds:
        sc = StandardScaler().fit(X[tr])
        P = ridge_loo_predict(sc.transform(X[tr]), T[tr], sc.transform(X[te]))
        P = P / np.linalg.norm(P, axis=1, keepdims=True).clip(1e-12)
        S = P @ T[te].T  # S[i, j] = cos(p_i, t_j)
        d = np.diag(S)
        ok = tokens[te][:, None] != tokens[te][None, :]
        iu = np.triu(ok, 1)
        won = ((d[:, None] + d[None, :]) > (S + S.T)) & iu
        wins[te] += 0.5 * (won.sum(1) + won.sum(0))
        pairs[te] += 0.5 * (iu.sum(1) + iu.sum(0))
    return wins, pairs


def identity_2v2(X: np.ndarray, tokens: np.ndarray, W_E: np.ndarray, folds) -> float:
    """Held-out 2-vs-2 accuracy of a ridge map from ``X`` to unit token embeddings ``W_E[tokens]``."""
    return _ratio(*identity_2v2_items(X, tokens, W_E, folds))


def binary_predictions(X: np.ndarray, y: np.ndarray, folds) -> np.ndarray:
    """Held-out predictions of a ridge classifier (balanced class weights) on ``X``."""
    pred = np.zeros_like(y)
    for tr, te in folds:
        if len(np.unique(y[tr])) < 2:
            pred[te] = y[tr][0]
            continue
        sc = StandardScaler().fit(X[tr])
        clf = RidgeClassifierCV(alphas=ALPHAS, class_weight="balanced").fit(sc.transform(X[tr]), y[tr])
        pred[te] = clf.predict(sc.transform(X[te]))
    return pred


def balanced_items(y: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: correctness weighted by ``1 / (classes * rows of its class)``, and that weight; their sums' ratio
    is the balanced accuracy (the mean recall over the classes present in ``y``)."""
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    w = 1.0 / (len(classes) * counts[inverse])
    return w * (pred == y), w


def binary_probe(X: np.ndarray, y: np.ndarray, folds) -> float:
    """Held-out balanced accuracy of a ridge classifier (balanced class weights) on ``X``."""
    return float(balanced_accuracy_score(y, binary_predictions(X, y, folds)))


#: How a probe score gets its interval; named in the tables' headers.
SCORE_INTERVAL = "95% t over texts (per-item correctness, clustered by text)"


def score_interval(
    num: np.ndarray, den: np.ndarray, groups: Sequence | None = None, level: float = 0.95
) -> MeanCI:
    """The score ``sum(num) / sum(den)`` with a t interval over ``groups`` (one id per row; rows alone when None).

    A probe score is a ratio of per-row sums (2-vs-2 wins over pairs, weighted hits over weights). Its linearised
    per-row terms ``(num_i - R den_i) / mean(den)`` are summed per group (rows of one text are not independent), and
    ``R + (G / N) * group sum`` gives G values whose mean is ``R`` and whose t interval is the cluster-robust one;
    ``n`` is the number of groups.
    """
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    R = _ratio(num, den)
    if np.isnan(R):
        return mean_ci([])
    g = np.arange(len(num)) if groups is None else np.asarray(groups)
    _, gi = np.unique(g, return_inverse=True)
    per_group = np.bincount(gi, weights=(num - R * den) / den.mean())
    return mean_ci(R + len(per_group) / len(num) * per_group, level)


def _ratio(num: np.ndarray, den: np.ndarray) -> float:
    total = float(np.sum(den))
    return float(np.sum(num)) / total if total else float("nan")


def shuffled_scores(
    fn: Callable[[np.ndarray], float], labels: np.ndarray, n_shuffles: int = 3, seed: int = 0
) -> list[float]:
    """``fn`` of ``n_shuffles`` permutations of ``labels`` across samples (the empirical chance level)."""
    rng = np.random.default_rng(seed)
    return [fn(labels[rng.permutation(len(labels))]) for _ in range(n_shuffles)]


def with_chance(
    fn: Callable[[np.ndarray], float], labels: np.ndarray, n_shuffles: int = 3, seed: int = 0
) -> tuple[float, float]:
    """``(score, shuffled-label score)``: ``fn(labels)`` and the mean over label permutations across samples."""
    shuf = shuffled_scores(fn, labels, n_shuffles, seed)
    return fn(labels), float(np.mean(shuf)) if shuf else float("nan")


def make_tasks(
    token_lists: Sequence[Sequence[int]], ks: Sequence[int], words: Sequence[int], min_rows: int = 10
) -> dict[str, tuple]:
    """``{name: (kind, labels, rows)}``: ``token@k`` (token ids, on the rows whose text has >= k tokens) and
    ``has:<id>`` (0/1, all rows); ``rows`` is a boolean mask over ``token_lists``."""
    tasks: dict[str, tuple] = {}
    for k in ks:
        mask = np.array([len(t) >= k for t in token_lists])
        if mask.sum() >= min_rows:
            labels = np.array([t[k - 1] if len(t) >= k else -1 for t in token_lists])
            tasks[f"token@{k}"] = ("identity", labels, mask)
    for w in words:
        tasks[f"has:{w}"] = (
            "binary",
            np.array([int(w in set(t)) for t in token_lists]),
            np.ones(len(token_lists), bool),
        )
    return tasks


def run_probes(
    acts: Mapping[str, torch.Tensor],
    tasks: Mapping[str, tuple],
    W_E: torch.Tensor | np.ndarray,
    layers: Sequence[int],
    groups: Sequence | None = None,
    n_splits: int = 5,
    n_shuffles: int = 3,
    seed: int = 0,
) -> list[dict]:
    """Every (condition, task, layer): held-out score and shuffled-label chance. ``acts[c]`` is ``[N, len(layers), d]``;
    ``groups`` (one id per row, e.g. the text) keeps all rows of a group in one fold.

    ``score_ci``: the score with its :data:`SCORE_INTERVAL` (:func:`score_interval`, ``n`` = groups);
    ``shuffled_ci``: the mean over the ``n_shuffles`` permutations with its t interval (``n`` = permutations).
    """
    W = np.asarray(W_E.detach().cpu().float() if isinstance(W_E, torch.Tensor) else W_E, dtype=np.float64)
    out = []
    for cond, A in acts.items():
        A = np.asarray(A.detach().cpu().double() if isinstance(A, torch.Tensor) else A)
        g_all = np.arange(A.shape[0]) if groups is None else np.asarray(groups)
        for name, task in tasks.items():
            kind, labels, mask = task if len(task) == 3 else (*task, np.ones(A.shape[0], bool))
            idx = np.flatnonzero(mask)
            folds = _folds(len(idx), g_all[idx], n_splits)
            for j, layer in enumerate(layers):
                X = A[idx, j]
                if kind == "identity":
                    items = lambda y, X=X, f=folds: identity_2v2_items(X, y, W, f)  # noqa: E731
                else:
                    items = lambda y, X=X, f=folds: balanced_items(y, binary_predictions(X, y, f))  # noqa: E731
                shuf = shuffled_scores(
                    lambda y, items=items: _ratio(*items(y)), labels[idx], n_shuffles, seed
                )
                ci = score_interval(*items(labels[idx]), g_all[idx])
                chance = mean_ci(shuf)
                out.append(
                    {
                        "condition": cond,
                        "task": name,
                        "kind": kind,
                        "layer": int(layer),
                        "score": ci.mean,
                        "shuffled": chance.mean,
                        "chance": 0.5,
                        "n_rows": len(idx),
                        "n_groups": len(np.unique(g_all[idx])),
                        "score_ci": ci.to_dict(),
                        "shuffled_ci": chance.to_dict(),
                    }
                )
    return out


def best_by(rows: Sequence[dict]) -> dict[tuple[str, str], dict]:
    """Best layer per (condition, task), with ``shuffled_max``: the best layer of the shuffled-label probes, the
    chance level matched to picking the best of many layers."""
    out: dict[tuple[str, str], dict] = {}
    for r in rows:
        key = (r["condition"], r["task"])
        if key not in out or r["score"] > out[key]["score"]:
            out[key] = {**r, "shuffled_max": out.get(key, {}).get("shuffled_max", -1.0)}
        out[key]["shuffled_max"] = max(out[key]["shuffled_max"], r["shuffled"])
    return out
