"""Parametrisations of the memory embedding and their initialisation.

- ``direct``: the memory rows themselves are trained, ``[B, m, d]``.
- ``low_dim``: ``e = W z + b`` with ``z`` ``[B, m, k]`` and ``W, b`` learned jointly, per sample (``[B, d, k]``)
  or shared across the run (``[1, d, k]``, stepped by its own optimizer).
- ``pca``: ``e = z C + mu`` over a fixed basis ``C`` ``[k, d]`` (e.g. fitted to earlier trajectories).

Initialisation is seeded per sample (from ``seed`` and the sample's index in the run), so a sample starts from
the same point whatever batch it lands in.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .errors import CramlensError, check

if TYPE_CHECKING:
    from .spec import CramSpec

INIT_HELP = (
    "random<s> (U[0,s), paper: random0.02), neg_random<s> (U[-s,s)), normal<s> (N(0,s^2)), zeros, "
    "mean_token_embeds, file:<path.safetensors|.pt>"
)


def sample_generator(seed: int, index: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + int(index) * 7919 + 17) % (2**63 - 1))
    return g


def init_rows(
    method: str,
    shape: tuple[int, ...],
    seed: int,
    index: int,
    token_embeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """One sample's initial tensor of ``shape`` (fp32, CPU) for init ``method``."""
    g = sample_generator(seed, index)
    if method == "zeros":
        return torch.zeros(shape)
    if method == "mean_token_embeds":
        check(token_embeds is not None, "init mean_token_embeds needs the sample's token embeddings")
        return token_embeds.float().mean(dim=0).expand(shape).clone()
    if method.startswith("file:"):
        return load_init_tensor(method[5:], shape, index)
    m = re.fullmatch(r"(random|neg_random|normal|random_norm_?)([0-9.eE-]*)", method)
    if not m:
        raise CramlensError(f"unknown init {method!r}; use one of: {INIT_HELP}")
    kind, scale_s = m.group(1), m.group(2)
    scale = float(scale_s) if scale_s else 1.0
    u = torch.rand(shape, generator=g)
    if kind == "random":
        return u * scale
    if kind == "neg_random":
        return (u * 2 - 1) * scale
    return torch.randn(shape, generator=g) * scale


def load_init_tensor(path: str, shape: tuple[int, ...], index: int) -> torch.Tensor:
    p = Path(path)
    check(p.exists(), f"init file {p} does not exist; pass an existing .safetensors or .pt file")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        t = next(iter(load_file(str(p)).values()))
    else:
        t = torch.load(p, map_location="cpu", weights_only=True)
    t = t.float()
    if t.dim() == len(shape) + 1:  # one row per sample
        check(index < t.shape[0], f"init file {p} has {t.shape[0]} samples; sample {index} is missing")
        t = t[index]
    check(tuple(t.shape) == tuple(shape), f"init file {p}: shape {tuple(t.shape)} != expected {tuple(shape)}")
    return t.clone()


@dataclass
class Memory:
    """Trainable memory of a batch: per-sample tensors (leading dim B) and optional shared tensors."""

    kind: str  # direct | low_dim | pca
    per_sample: dict[str, torch.Tensor]
    shared: dict[str, torch.Tensor] = field(default_factory=dict)
    fixed: dict[str, torch.Tensor] = field(default_factory=dict)  # PCA basis/mean: never trained

    def materialize(self) -> torch.Tensor:
        """The memory rows ``[B, m, d]`` fed to the model."""
        if self.kind == "direct":
            return self.per_sample["embedding"]
        if self.kind == "low_dim":
            z = self.per_sample["z"]  # [B, m, k]
            W = self.per_sample.get("W", self.shared.get("W"))  # [B|1, d, k]
            b = self.per_sample.get("b", self.shared.get("b"))  # [B|1, d]
            return torch.einsum("bmk,bdk->bmd", z, W.expand(z.shape[0], -1, -1)) + b[:, None, :]
        z = self.per_sample["z"]
        return z @ self.fixed["components"] + self.fixed["mean"]

    def coefficients(self) -> torch.Tensor | None:
        return self.per_sample.get("z")

    def trainable_per_sample(self) -> list[torch.Tensor]:
        return list(self.per_sample.values())

    def trainable_shared(self) -> list[torch.Tensor]:
        return list(self.shared.values())


def make_memory(
    model,
    n_samples: int,
    spec: CramSpec,
    indices: list[int] | None = None,
    shared_projection: dict[str, torch.Tensor] | None = None,
    pca_basis: tuple[torch.Tensor, torch.Tensor] | None = None,
    token_embeds: list[torch.Tensor] | None = None,
    seeds: list[int] | None = None,
) -> Memory:
    """Initial trainable memory for ``n_samples`` samples (global run indices ``indices`` seed each one).

    ``spec`` gives the memory's shape and kind: ``layout.n_mem`` rows, ``recipe.init``, ``seed``,
    ``parametrization`` and ``low_dim``. ``shared_projection`` is the run's shared ``W, b`` (``low_dim`` with
    ``shared_projection``), ``pca_basis`` the ``(components, mean)`` of ``pca``, ``token_embeds`` the samples'
    token embeddings (init ``mean_token_embeds``), ``seeds`` each sample's init seed (default ``spec.seed``).
    ``spec.init_perturbation`` > 0 adds ``delta * rms(e0) * N(0, 1)`` (its own generator) to each initial tensor.
    """
    n_mem, init, seed = spec.layout.n_mem, spec.recipe.init, spec.seed
    parametrization, low_dim = spec.parametrization, spec.low_dim
    d = model.cfg.d_model
    device = model.cfg.device
    indices = list(range(n_samples)) if indices is None else indices
    check(len(indices) == n_samples, "make_memory: one index per sample")
    seeds = [seed] * n_samples if seeds is None else [int(s) for s in seeds]
    delta = float(spec.init_perturbation)

    def rows(shape, which: int) -> torch.Tensor:
        te = token_embeds[which] if token_embeds is not None else None
        e0 = init_rows(init, shape, seeds[which], indices[which], te)
        return perturb(e0, delta, seeds[which], indices[which]) if delta > 0 else e0

    def stack(shape) -> torch.Tensor:
        return torch.stack([rows(shape, j) for j in range(n_samples)]).to(device).requires_grad_(True)

    if parametrization == "direct":
        return Memory("direct", {"embedding": stack((n_mem, d))})
    if parametrization == "low_dim":
        check(low_dim >= 1, "low_dim parametrisation needs --low-dim k >= 1")
        z = stack((n_mem, low_dim)) if init != "mean_token_embeds" else None
        check(z is not None, "mean_token_embeds init is not defined in the low-dim space; use random0.02")
        if shared_projection is not None:
            return Memory("low_dim", {"z": z}, shared=shared_projection)
        Ws, bs = [], []
        bound = 1.0 / math.sqrt(low_dim)  # nn.Linear's default init: U(-1/sqrt(k), 1/sqrt(k))
        for j in range(n_samples):
            g = sample_generator(seed + 104729, indices[j])
            Ws.append((torch.rand((d, low_dim), generator=g) * 2 - 1) * bound)
            bs.append((torch.rand((d,), generator=g) * 2 - 1) * bound)
        W = torch.stack(Ws).to(device).requires_grad_(True)
        b = torch.stack(bs).to(device).requires_grad_(True)
        return Memory("low_dim", {"z": z, "W": W, "b": b})
    if parametrization == "pca":
        check(pca_basis is not None, "pca parametrisation needs a fitted basis (components, mean)")
        comps, mean = pca_basis
        g = torch.stack(
            [torch.randn((n_mem, comps.shape[0]), generator=sample_generator(seed, i)) * 0.1 for i in indices]
        )
        return Memory(
            "pca",
            {"z": g.to(device).requires_grad_(True)},
            fixed={"components": comps.float().to(device), "mean": mean.float().to(device)},
        )
    raise CramlensError(f"unknown parametrisation {parametrization!r}; use direct, low_dim or pca")


def perturb(e0: torch.Tensor, delta: float, seed: int, index: int) -> torch.Tensor:
    """``e0 + delta * rms(e0) * N(0, 1)``: the same start moved by a relative amount ``delta``."""
    scale = float(e0.pow(2).mean().sqrt())
    check(scale > 0, "init_perturbation needs a nonzero init (zeros has no scale); use e.g. random0.02")
    g = sample_generator(seed + 31337, index)
    return e0 + delta * scale * torch.randn(e0.shape, generator=g)


def new_shared_projection(d_model: int, k: int, seed: int, device="cpu") -> dict[str, torch.Tensor]:
    """One ``W [1, d, k]``, ``b [1, d]`` shared by every sample of a run (nn.Linear default init)."""
    g = sample_generator(seed + 7, 10**9)
    bound = 1.0 / math.sqrt(k)
    W = ((torch.rand((1, d_model, k), generator=g) * 2 - 1) * bound).to(device).requires_grad_(True)
    b = ((torch.rand((1, d_model), generator=g) * 2 - 1) * bound).to(device).requires_grad_(True)
    return {"W": W, "b": b}
