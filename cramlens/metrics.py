"""Reconstruction metrics: teacher-forced accuracy, greedy reconstruction from the memory alone (real generation,
``cramlens.generation``), surprisal and information gain (definitions in REFERENCE.md B)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from transformer_lens import HookedTransformer

from .forward import LN2, logits_from_residual, score, target_logits
from .generation import regenerate_many
from .hooks import EMPTY, HookSet, inject
from .layout import Layout, build_batch, placeholder_id


@torch.no_grad()
def teacher_forced_accuracy(
    model: HookedTransformer,
    memory: torch.Tensor,
    sequences: Sequence[Sequence[int]],
    layout: Layout = Layout(),
    lengths: Sequence[int] | None = None,
    hooks: HookSet = EMPTY,
) -> torch.Tensor:
    """Per-sample argmax accuracy ``[B]`` of ``seq[:L]`` given the memory (``sequences`` from ``layout.sequence``)."""
    lengths = [len(s) for s in sequences] if lengths is None else lengths
    batch = build_batch(model, sequences, lengths, layout)
    return score(target_logits(model, memory, batch, hooks), batch).accuracy


@torch.no_grad()
def greedy_decode(
    model: HookedTransformer,
    memory: torch.Tensor,
    n_tokens: int,
    layout: Layout = Layout(),
    hooks: HookSet = EMPTY,
    prompt: torch.Tensor | None = None,
) -> torch.Tensor:
    """Argmax-decode ``n_tokens`` tokens from the memory with a full forward per step (no KV cache): a reference.

    This is not how text is generated (``generation.generate`` is: KV cache, one token per call); it is the
    step-by-step decode that generation is checked against, and the one to use with ``hooks`` (knockouts), which
    assume whole-sequence positions.

    ``prompt`` (``[B, k]``) is fed after the memory before decoding: the input-only first token of Kuratov's
    scoring (``Layout(score_from="text")``), which the memory is never trained to predict.

    ``memory`` is ``[B, m, d]``. Returns ``[B, n_tokens]``.
    """
    mem = memory if memory.dim() == 3 else memory.unsqueeze(0)
    B, m = mem.shape[0], mem.shape[1]
    prefix = layout.prefix(model)
    p0 = len(prefix)
    out = torch.empty((B, 0), dtype=torch.long, device=model.cfg.device)
    base = torch.tensor(
        prefix + [placeholder_id(model)] * m, dtype=torch.long, device=model.cfg.device
    ).expand(B, -1)
    if prompt is not None:
        base = torch.cat([base, prompt.to(model.cfg.device).long().expand(B, -1)], dim=1)
    hs = inject(mem, list(range(p0, p0 + m))) + hooks
    for _ in range(n_tokens):
        ids = torch.cat([base, out], dim=1)
        with model.hooks(fwd_hooks=list(hs)):
            resid = model(ids, stop_at_layer=model.cfg.n_layers, padding_side="right")
        last = resid[:, -1]
        nxt = logits_from_residual(model, last).argmax(dim=-1)
        out = torch.cat([out, nxt[:, None]], dim=1)
    return out


#: Greedy reconstruction by real generation (``generation.regenerate_many``: KV cache, own tokens fed back, in the
#: model's dtype or a cast copy); the name callers and ``cramlens`` use.
greedy_reconstruction = regenerate_many


@torch.no_grad()
def surprisal_bits(model: HookedTransformer, sequence: Sequence[int]) -> torch.Tensor:
    """Base-model surprisal ``-log2 p(t_i | t_<i)`` for i = 1..N-1 (no memory); ``[N]`` with ``nan`` at 0."""
    ids = torch.tensor([list(sequence)], dtype=torch.long, device=model.cfg.device)
    out = torch.full((ids.shape[1],), float("nan"))
    if ids.shape[1] < 2:
        return out
    logits = model(ids[:, :-1], padding_side="right").float()
    lp = F.log_softmax(logits[0], dim=-1)
    out[1:] = (-lp.gather(1, ids[0, 1:, None]).squeeze(1) / LN2).cpu()
    return out


def information_gain(h_lm_bits: float, h_comp_bits: float) -> float:
    """``IG = H_LM - H_comp`` in bits (both summed over t_1..t_{N-1}; t_0 is scored in neither)."""
    return float(h_lm_bits - h_comp_bits)


def compression_ratio(n_tokens: int, n_mem: int) -> float:
    """Tokens reconstructed per memory vector."""
    return n_tokens / max(1, n_mem)
