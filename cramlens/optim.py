"""Per-sample AdamW and the ``cosine_with_min_lr`` schedule, vectorised over the batch dimension.

Every trainable tensor has a leading sample dimension. Each sample keeps its own step count, learning-rate
position and Adam moments, and only samples in ``active`` change: a converged (or finished) sample is bit-for-bit
frozen, with no weight-decay or momentum drift. The update is ``torch.optim.AdamW``'s (decoupled weight decay,
bias-corrected moments), checked against it in the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Schedule:
    """HF ``cosine_with_min_lr``: linear warmup 0→lr, then cosine to ``min_lr`` at ``total`` steps."""

    lr: float = 0.1
    min_lr: float = 1e-3
    warmup: int = 100
    total: int = 10_000
    kind: str = "cosine_with_min_lr"  # or "constant"

    def __call__(self, step: torch.Tensor) -> torch.Tensor:
        """Learning rate used by the optimizer step taken when ``step`` steps were already taken."""
        t = step.double()
        if self.kind == "constant":
            return torch.full_like(t, self.lr)
        warm = t / max(1, self.warmup)
        progress = (t - self.warmup) / max(1, self.total - self.warmup)
        rate = self.min_lr / self.lr if self.lr > 0 else 0.0
        cos = 0.5 * (1.0 + torch.cos(math.pi * progress.clamp(max=1.0)))
        decay = (cos * (1 - rate) + rate).clamp(min=0.0)
        return (self.lr * torch.where(t < self.warmup, warm, decay)).float()


@dataclass
class BatchedAdamW:
    """AdamW over tensors shaped ``[B, ...]`` with per-sample step counts and an ``active`` mask."""

    params: list[torch.Tensor]
    schedule: Schedule
    betas: tuple[float, float] = (0.9, 0.9)
    weight_decay: float = 0.01
    eps: float = 1e-8
    exp_avg: list[torch.Tensor] = field(default_factory=list)
    exp_avg_sq: list[torch.Tensor] = field(default_factory=list)
    steps: torch.Tensor | None = None  # [B] long: optimizer steps taken per sample

    def __post_init__(self):
        B = self.params[0].shape[0]
        if not self.exp_avg:
            self.exp_avg = [torch.zeros_like(p) for p in self.params]
            self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        if self.steps is None:
            self.steps = torch.zeros(B, dtype=torch.long, device=self.params[0].device)

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        """One update for samples where ``active`` ([B] bool) holds; gradients are read from ``.grad``."""
        if not bool(active.any()):
            return
        b1, b2 = self.betas
        lr = self.schedule(self.steps)  # lr for this update, from the steps already taken
        t = (self.steps + 1).double()
        bc1 = (1 - b1**t).float()
        bc2_sqrt = (1 - b2**t).sqrt().float()
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            shape = (-1,) + (1,) * (p.dim() - 1)
            act = active.view(shape)
            lr_b = lr.view(shape).to(p.dtype)
            new_p = p * (1 - lr_b * self.weight_decay)
            new_m = m * b1 + g * (1 - b1)
            new_v = v * b2 + g * g * (1 - b2)
            denom = new_v.sqrt() / bc2_sqrt.view(shape) + self.eps
            new_p = new_p - (lr_b / bc1.view(shape)) * new_m / denom
            p.copy_(torch.where(act, new_p, p))
            m.copy_(torch.where(act, new_m, m))
            v.copy_(torch.where(act, new_v, v))
        self.steps += active.long()

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {"steps": self.steps}
        for i, (m, v) in enumerate(zip(self.exp_avg, self.exp_avg_sq, strict=True)):
            out[f"exp_avg.{i}"] = m
            out[f"exp_avg_sq.{i}"] = v
        return out

    def load_state_tensors(self, state: dict[str, torch.Tensor]) -> None:
        self.steps.copy_(state["steps"])
        for i in range(len(self.params)):
            self.exp_avg[i].copy_(state[f"exp_avg.{i}"])
            self.exp_avg_sq[i].copy_(state[f"exp_avg_sq.{i}"])
