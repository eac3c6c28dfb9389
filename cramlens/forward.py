"""The hot path: one forward of the frozen model with the memory injected, scored only where targets are.

The residual stream is computed through ``model(..., stop_at_layer=n_layers)`` with the injection hook, then the
final norm and unembedding run only on the scored rows (for 262k-vocabulary Gemma the unembedding dominates).
Per-sample losses are per-sample means, and the batch objective is their *sum*, so each sample's gradient is
exactly what it would be alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformer_lens import HookedTransformer
from transformer_lens.utilities.activation_functions import apply_softcap

from .hooks import EMPTY, HookSet, inject
from .layout import Batch

LN2 = 0.6931471805599453


def residual_at_targets(
    model: HookedTransformer, memory: torch.Tensor, batch: Batch, hooks: HookSet = EMPTY
) -> torch.Tensor:
    """Final-layer residual (before ``ln_final``) at the scored positions: ``[K, d_model]``."""
    hs = inject(memory, batch.mem_positions) + hooks
    with model.hooks(fwd_hooks=list(hs)):
        resid = model(batch.input_ids, stop_at_layer=model.cfg.n_layers, padding_side="right")
    return resid[batch.t_row, batch.t_pos]


def logits_from_residual(model: HookedTransformer, resid: torch.Tensor) -> torch.Tensor:
    if model.cfg.normalization_type is not None:
        resid = model.ln_final(resid.unsqueeze(0)).squeeze(0)
    logits = model.unembed(resid.unsqueeze(0)).squeeze(0)
    return apply_softcap(logits, model.cfg.output_logits_soft_cap)


def target_logits(
    model: HookedTransformer, memory: torch.Tensor, batch: Batch, hooks: HookSet = EMPTY
) -> torch.Tensor:
    """Logits ``[K, d_vocab]`` at the scored positions of ``batch`` with ``memory`` injected."""
    return logits_from_residual(model, residual_at_targets(model, memory, batch, hooks))


@dataclass
class Scores:
    """Per-target and per-sample quantities from one forward."""

    ce: torch.Tensor  # [K] natural-log cross-entropy per target (graph attached)
    correct: torch.Tensor  # [K] bool, argmax == target
    margin: torch.Tensor  # [K] logit(target) - best other logit (detached)
    loss: torch.Tensor  # [B] per-sample objective (graph attached)
    accuracy: torch.Tensor  # [B] teacher-forced argmax accuracy (detached)
    ce_bits_from1: torch.Tensor  # [B] sum of CE in bits over targets with index >= 1 (H_comp)


def score(
    logits: torch.Tensor,
    batch: Batch,
    leading_weight: float = 1.0,
    leading_count: int = 0,
) -> Scores:
    """Cross-entropy, argmax accuracy and margins per target; per-sample aggregates."""
    logits = logits.float()
    ce = F.cross_entropy(logits, batch.t_ids, reduction="none")
    with torch.no_grad():
        margin, correct = _margin_and_correct(logits, batch.t_ids)
    B = batch.batch_size
    counts = batch.counts().clamp(min=1).to(ce.dtype)
    weights = torch.ones_like(ce)
    if leading_count > 0 and leading_weight != 1.0:
        weights = torch.where(batch.t_index < leading_count, torch.full_like(ce, leading_weight), weights)
    loss = torch.zeros(B, dtype=ce.dtype, device=ce.device).index_add(0, batch.t_row, ce * weights) / counts
    acc = torch.zeros(B, device=ce.device).index_add(0, batch.t_row, correct.float()) / counts
    from1 = (batch.t_index >= 1).to(ce.dtype)
    bits = torch.zeros(B, device=ce.device).index_add(0, batch.t_row, ce.detach() * from1) / LN2
    return Scores(ce=ce, correct=correct, margin=margin, loss=loss, accuracy=acc, ce_bits_from1=bits)


def _margin_and_correct(logits: torch.Tensor, t_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``logit(target) - max other logit`` and ``argmax == target`` in one top-2 pass (no [K, V] copy).

    Same values as masking the target with a scatter and taking the max: with the target at top-1 the best
    other is top-2, else top-1 (ties give margin 0 either way). ``argmax`` (first maximal index) is needed
    only where the margin is exactly 0.
    """
    true = logits.gather(1, t_ids[:, None]).squeeze(1)
    values, indices = logits.topk(2, dim=1)
    other = torch.where(indices[:, 0] == t_ids, values[:, 1], values[:, 0])
    margin = true - other
    correct = margin > 0
    ties = (margin == 0).nonzero().squeeze(1)
    if len(ties):
        correct[ties] = logits[ties].argmax(dim=1) == t_ids[ties]
    return margin, correct


def exact_prefix(batch: Batch, correct: torch.Tensor) -> torch.Tensor:
    """Per batch row: the index of the first wrongly predicted target (its length when every target is right)."""
    lengths = torch.tensor(batch.lengths, dtype=torch.long)
    wrong_at = torch.where(correct.cpu(), lengths.max() + 1, batch.t_index.cpu())
    first = lengths.clone().scatter_reduce(0, batch.t_row.cpu(), wrong_at, "amin")
    return torch.minimum(first, lengths)


class Measured:
    """One forward's per-row numbers. The reductions only a finished stage records (bits, minimum margin, exact
    prefix) are made on the first stage end of the iteration, not on every step."""

    def __init__(self, batch: Batch, scores: Scores) -> None:
        self.batch, self.scores = batch, scores
        self.accuracy = scores.accuracy.detach().cpu()
        self.loss = scores.loss.detach().cpu()
        self._ends: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def stage_end(self, r: int) -> tuple[float, float, int]:
        """``(h_comp bits, minimum target margin, teacher-forced exact prefix)`` of batch row ``r``."""
        if self._ends is None:
            b, sc = self.batch, self.scores
            margin = torch.full((b.batch_size,), float("inf"))
            margin = margin.scatter_reduce(0, b.t_row.cpu(), sc.margin.float().cpu(), "amin")
            self._ends = (sc.ce_bits_from1.cpu(), margin, exact_prefix(b, sc.correct))
        bits, margin, prefix = self._ends
        return float(bits[r]), float(margin[r]), int(prefix[r])
