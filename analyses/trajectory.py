"""Trajectory geometry of progressive cramming (REFERENCE C.2, B, D.4): PCA of the stage embeddings.

A progressive run saves one embedding ``e^(k)`` per stage ``k`` of each sample (``CramRun.trajectory``); this module
treats that sequence as a curve in ``R^(m*d)`` and measures:

- :func:`sample_geometry`: PC1 / PC2 explained variance, components for 99 % (PCA99: SVD of the mean-centred
  stage matrix, the smallest ``k`` with cumulative explained variance >= 0.99), trajectory length
  ``sum_k ||e^(k+1) - e^(k)||`` (flattened, fp64). All saved stages are used, the final failing one included
  (REFERENCE E.5), unless ``converged_only=True``.
- :func:`pca99_vs_length`: PCA99 of the trajectory *prefix* whose stages target at most ``L`` tokens.
- :func:`pca_reconstruction`: fit the PCA on the sample's own trajectory, rebuild the final converged embedding
  from the top-``k`` components (``mean + V_k^T V_k (e* - mean)``) and measure teacher-forced accuracy on that
  prefix, for a grid of ``k``; one batched forward for the whole grid; also where the first error falls.
- :func:`accuracy_landscape`: teacher-forced accuracy on a grid in the PC1-PC2 plane at several prefix lengths.
  The plane at length ``L`` is the slice through that stage's embedding ``e^(L)`` parallel to PC1-PC2 of the whole
  trajectory: grid point ``(a, b)`` (trajectory PCA coordinates) is ``e^(L) + (a - a_L) v1 + (b - b_L) v2``, so the
  trajectory's own point at ``(a_L, b_L)`` is the converged solution itself. Grid points are evaluated in batches.
  ``basin`` is the fraction of cells above ``basin_threshold`` (app. "basin area" uses TF > 0.9).

Everything takes a :class:`cramlens.CramRun` (our run directories via ``cramlens.load_run`` or the paper's
released trajectories via ``cramlens.load_trajectories``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cramlens import CramRun
from cramlens.errors import check
from cramlens.forward import score, target_logits
from cramlens.layout import Layout, build_batch
from cramlens.rows import summarise_sample


@dataclass
class PCAFit:
    """PCA of a set of row vectors: ``mean [D]``, ``components [r, D]`` (orthonormal rows), explained variance."""

    mean: torch.Tensor
    components: torch.Tensor
    explained_ratio: torch.Tensor  # [r], sums to 1 (or all 0 for a constant set)

    def n_for(self, fraction: float = 0.99) -> int:
        return components_for(self.explained_ratio, fraction)

    def project(self, X: torch.Tensor, k: int | None = None) -> torch.Tensor:
        V = self.components if k is None else self.components[:k]
        return (X.double() - self.mean) @ V.T

    def reconstruct(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """``mean + V_k^T V_k (x - mean)`` (``k = 0``: the mean)."""
        V = self.components[:k]
        return self.mean + ((x.double() - self.mean) @ V.T) @ V


def pca(X: torch.Tensor) -> PCAFit:
    """PCA by SVD of the mean-centred rows of ``X`` ``[n, D]`` in fp64."""
    check(X.dim() == 2 and X.shape[0] >= 1, "pca: need a [n, D] matrix with at least one row")
    X = X.double()
    mean = X.mean(dim=0)
    _, S, Vt = torch.linalg.svd(X - mean, full_matrices=False)
    var = S**2
    total = var.sum()
    ratio = var / total if total > 0 else torch.zeros_like(var)
    return PCAFit(mean, Vt, ratio)


def components_for(explained_ratio: torch.Tensor, fraction: float = 0.99) -> int:
    """Smallest ``k`` whose cumulative explained variance reaches ``fraction`` (0 for a constant set)."""
    if explained_ratio.numel() == 0 or float(explained_ratio.sum()) == 0.0:
        return 0
    cum = torch.cumsum(explained_ratio, 0)
    return int((cum < fraction - 1e-12).sum().item()) + 1


def stage_rows(run: CramRun, sample_id: int, converged_only: bool = False) -> list[dict]:
    rows = run.trajectory(sample_id)
    return [r for r in rows if r.get("converged")] if converged_only else rows


def stage_matrix(rows: Sequence[dict]) -> torch.Tensor:
    """Stage embeddings as a flattened fp64 matrix ``[n_stages, m*d]``."""
    check(len(rows) > 0, "stage_matrix: no stages")
    return torch.stack([torch.as_tensor(r["embedding"]).double().reshape(-1) for r in rows])


def trajectory_length(X: torch.Tensor) -> float:
    """``sum_k ||X[k+1] - X[k]||_2`` (REFERENCE B, paper eq. 3)."""
    if X.shape[0] < 2:
        return 0.0
    return float(torch.linalg.vector_norm(X[1:].double() - X[:-1].double(), dim=1).sum())


def sample_ids(run: CramRun) -> list[int]:
    return sorted({int(r["sample_id"]) for r in run.rows})


def sample_geometry(
    run: CramRun, sample_id: int, converged_only: bool = False, fraction: float = 0.99
) -> dict:
    """Per-sample numbers: stages, horizon, PC1, PC2, PC1+PC2 (fractions), PCA99, trajectory length, norms."""
    rows = stage_rows(run, sample_id, converged_only)
    X = stage_matrix(rows)
    fit = pca(X)
    ev = fit.explained_ratio
    summary, _ = summarise_sample(run.trajectory(sample_id), run.kind)
    return {
        "sample_id": sample_id,
        "stages": len(rows),
        "horizon": summary.horizon,
        "pc1": float(ev[0]) if len(ev) > 0 else float("nan"),
        "pc2": float(ev[1]) if len(ev) > 1 else float("nan"),
        "pc12": float(ev[:2].sum()) if len(ev) > 1 else float("nan"),
        "pca99": fit.n_for(fraction) if len(rows) >= 2 else float("nan"),
        "traj_length": trajectory_length(X),
        "norm_first": float(X[0].norm()),
        "norm_last": float(X[-1].norm()),
    }


def geometry_table(run: CramRun, converged_only: bool = False, min_stages: int = 2) -> list[dict]:
    """:func:`sample_geometry` for every sample with at least ``min_stages`` stages (paper: samples with < 2 excluded)."""
    out = []
    for sid in sample_ids(run):
        if len(stage_rows(run, sid, converged_only)) >= min_stages:
            out.append(sample_geometry(run, sid, converged_only))
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return float("nan"), float("nan")
    mu = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mu) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return mu, sd


def summarize(
    table: Sequence[dict],
    keys: Sequence[str] = ("stages", "horizon", "pc1", "pc2", "pc12", "pca99", "traj_length"),
) -> dict:
    """``{key: (mean, std)}`` over samples."""
    return {k: mean_std([r[k] for r in table]) for k in keys}


def pca99_vs_length(
    run: CramRun, sample_id: int, lengths: Sequence[int] | None = None, fraction: float = 0.99
) -> list[dict]:
    """PCA99 and length of the trajectory prefix up to each target length ``L`` (stages with ``stage_seq_len <= L``)."""
    rows = run.trajectory(sample_id)
    if lengths is None:
        lengths = sorted({int(r["stage_seq_len"]) for r in rows})
    out = []
    for L in lengths:
        pre = [r for r in rows if int(r["stage_seq_len"]) <= L]
        if len(pre) >= 2:
            X = stage_matrix(pre)
            out.append(
                {
                    "sample_id": sample_id,
                    "length": int(L),
                    "stages": len(pre),
                    "pca99": pca(X).n_for(fraction),
                    "traj_length": trajectory_length(X),
                }
            )
    return out


def _layout(run: CramRun) -> Layout:
    lay = run.config.get("settings", {}).get("layout")
    if not lay:
        return Layout()
    return Layout(lay["n_mem"], lay["bos"], lay["score_from"], lay["mem_first"])


@torch.no_grad()
def evaluate_embeddings(
    model,
    embeddings: torch.Tensor,
    sequence: Sequence[int],
    length: int,
    layout: Layout,
    batch_size: int = 32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced accuracy ``[N]`` and first-wrong index ``[N]`` (``length`` if none) of ``embeddings``
    ``[N, m, d]`` on ``sequence[:length]``, in batches of ``batch_size``."""
    accs, firsts = [], []
    dev = model.cfg.device
    for i in range(0, embeddings.shape[0], batch_size):
        mem = embeddings[i : i + batch_size].to(dev, torch.float32)
        B = mem.shape[0]
        batch = build_batch(model, [list(sequence)] * B, [length] * B, layout)
        sc = score(target_logits(model, mem, batch), batch)
        accs.append(sc.accuracy.cpu())
        wrong_idx = torch.where(sc.correct, torch.full_like(batch.t_index, length), batch.t_index)
        first = torch.full((B,), length, dtype=torch.long, device=wrong_idx.device)
        first = first.scatter_reduce(0, batch.t_row, wrong_idx, reduce="amin")
        firsts.append(first.cpu())
    return torch.cat(accs), torch.cat(firsts)


def pca_reconstruction(
    model, run: CramRun, sample_id: int, ks: Sequence[int] | None = None, batch_size: int = 32
) -> list[dict]:
    """TF accuracy of the final converged embedding rebuilt from its trajectory's top-``k`` PCs, per ``k``."""
    rows = run.trajectory(sample_id)
    passed = [r for r in rows if r.get("converged")]
    check(len(passed) > 0 and len(rows) >= 2, f"sample {sample_id}: needs a converged stage and >= 2 stages")
    target = passed[-1]
    fit = pca(stage_matrix(rows))
    r_max = fit.components.shape[0]
    if ks is None:
        ks = sorted({0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, r_max} & set(range(r_max + 1)))
    ks = [int(k) for k in ks if 0 <= k <= r_max]
    e_star = torch.as_tensor(target["embedding"]).double()
    shape = e_star.shape
    recon = torch.stack([fit.reconstruct(e_star.reshape(-1), k).reshape(shape) for k in ks]).float()
    L = int(target["stage_seq_len"])
    acc, first = evaluate_embeddings(model, recon, target["input_ids"], L, _layout(run), batch_size)
    err = [float(torch.linalg.vector_norm(recon[i].double() - e_star)) for i in range(len(ks))]
    return [
        {
            "sample_id": sample_id,
            "k": k,
            "length": L,
            "accuracy": float(acc[i]),
            "first_wrong": int(first[i]),
            "explained": float(fit.explained_ratio[:k].sum()),
            "rel_error": err[i] / float(e_star.norm()),
        }
        for i, k in enumerate(ks)
    ]


def recon_by_k(rows: Sequence[dict]) -> dict[int, list[dict]]:
    """Rows of :func:`pca_reconstruction` regrouped per ``k`` over every sample: a sample whose trajectory has fewer
    components than ``k`` contributes its largest ``k`` (its reconstruction is already exact there), so means over
    ``k`` compare the same samples throughout."""
    by_sample: dict[int, list[dict]] = {}
    for r in sorted(rows, key=lambda r: r["k"]):
        by_sample.setdefault(r["sample_id"], []).append(r)
    return {
        k: [[r for r in rs if r["k"] <= k][-1] for rs in by_sample.values() if rs[0]["k"] <= k]
        for k in sorted({r["k"] for r in rows})
    }


def accuracy_landscape(
    model,
    run: CramRun,
    sample_id: int,
    lengths: Sequence[int] | None = None,
    grid: int = 21,
    margin: float = 0.15,
    batch_size: int = 32,
    basin_threshold: float = 0.9,
) -> dict:
    """TF accuracy on a ``grid x grid`` mesh of the PC1-PC2 plane through each stage ``e^(L)`` (module docstring).

    Returns ``{"coords": [n_stages, 2] trajectory in PC1/PC2, "lengths": stage lengths, "a": [grid], "b": [grid],
    "maps": {L: [grid, grid] accuracy (rows b, columns a)}, "anchors": {L: (a_L, b_L)}, "basin": {L: fraction},
    "anchor_accuracy": {L: accuracy of e^(L) itself}}``.
    """
    rows = run.trajectory(sample_id)
    X = stage_matrix(rows)
    check(X.shape[0] >= 3, f"sample {sample_id}: the landscape needs >= 3 stages")
    fit = pca(X)
    coords = fit.project(X, 2)
    passed = {int(r["stage_seq_len"]): i for i, r in enumerate(rows) if r.get("converged")}
    if lengths is None:
        ls = sorted(passed)
        lengths = sorted({ls[int(round(q * (len(ls) - 1)))] for q in (0.25, 0.5, 0.75, 1.0)})
    lo, hi = coords.min(dim=0).values, coords.max(dim=0).values
    span = (hi - lo).clamp(min=1e-6)
    a = torch.linspace(
        float(lo[0] - margin * span[0]), float(hi[0] + margin * span[0]), grid, dtype=torch.float64
    )
    b = torch.linspace(
        float(lo[1] - margin * span[1]), float(hi[1] + margin * span[1]), grid, dtype=torch.float64
    )
    B_, A_ = torch.meshgrid(b, a, indexing="ij")
    v1, v2 = fit.components[0], fit.components[1]
    layout = _layout(run)
    maps, anchors, basin, anchor_acc = {}, {}, {}, {}
    for L in lengths:
        check(L in passed, f"sample {sample_id}: stage length {L} did not converge; pick converged lengths")
        i = passed[L]
        aL, bL = coords[i]
        pts = X[i] + (A_.reshape(-1, 1) - aL) * v1 + (B_.reshape(-1, 1) - bL) * v2
        pts = torch.cat([pts, X[i : i + 1]])  # last row: the anchor itself (sanity: accuracy 1.0)
        shape = torch.as_tensor(rows[i]["embedding"]).shape
        acc, _ = evaluate_embeddings(
            model, pts.reshape(-1, *shape).float(), rows[i]["input_ids"], L, layout, batch_size
        )
        anchor_acc[L] = float(acc[-1])
        acc = acc[:-1]
        maps[L] = acc.reshape(grid, grid)
        anchors[L] = (float(aL), float(bL))
        basin[L] = float((acc > basin_threshold).float().mean())
    return {
        "coords": coords.float(),
        "lengths": [int(r["stage_seq_len"]) for r in rows],
        "a": a.float(),
        "b": b.float(),
        "maps": maps,
        "anchors": anchors,
        "basin": basin,
        "anchor_accuracy": anchor_acc,
        "pc12": float(fit.explained_ratio[:2].sum()),
    }
