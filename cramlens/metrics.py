"""Reconstruction metrics: teacher-forced accuracy, greedy decoding from the memory alone, surprisal and
information gain (definitions in REFERENCE.md B)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformer_lens import HookedTransformer

from .forward import LN2, logits_from_residual, score, target_logits
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


@dataclass
class Greedy:
    """Greedy reconstruction of one sample."""

    tokens: list[int]  # generated sequence (same indexing as the target sequence)
    target: list[int]
    match: float  # position-wise accuracy
    exact: bool
    first_mismatch: int | None  # index of the first wrong token, None if exact

    def mismatch_at(self, k: int) -> bool:
        return k < len(self.target) and (k >= len(self.tokens) or self.tokens[k] != self.target[k])


@torch.no_grad()
def greedy_decode(
    model: HookedTransformer,
    memory: torch.Tensor,
    n_tokens: int,
    layout: Layout = Layout(),
    pad_to: int | None = None,
    hooks: HookSet = EMPTY,
    prompt: torch.Tensor | None = None,
) -> torch.Tensor:
    """Greedy-decode ``n_tokens`` tokens from the memory alone (no KV cache, full forward each step).

    ``prompt`` (``[B, k]``) is fed after the memory before decoding: the input-only first token of Kuratov's
    scoring (``Layout(score_from="text")``), which the memory is never trained to predict.

    ``memory`` is ``[B, m, d]``. With ``pad_to`` every forward is right-padded to that many positions, so it runs
    with the same shapes (and kernels) as the training forward: causal masking makes the padding inert, and the
    decoded prefix then sees bit-identical logits to teacher forcing (REFERENCE C.1, zero-margin argmax).
    Returns ``[B, n_tokens]``.
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
        width = ids.shape[1]
        if pad_to is not None and pad_to > width:
            ids = torch.cat([ids, ids.new_full((B, pad_to - width), placeholder_id(model))], dim=1)
        with model.hooks(fwd_hooks=list(hs)):
            resid = model(ids, stop_at_layer=model.cfg.n_layers, padding_side="right")
        last = resid[:, width - 1]
        nxt = logits_from_residual(model, last).argmax(dim=-1)
        out = torch.cat([out, nxt[:, None]], dim=1)
    return out


def compare(generated: Sequence[int], target: Sequence[int]) -> Greedy:
    gen, tgt = [int(x) for x in generated], [int(x) for x in target]
    hits = [i < len(gen) and gen[i] == t for i, t in enumerate(tgt)]
    first = next((i for i, h in enumerate(hits) if not h), None)
    return Greedy(gen, tgt, sum(hits) / max(1, len(tgt)), first is None, first)


def greedy_reconstruction(
    model: HookedTransformer,
    memory: torch.Tensor,
    sequences: Sequence[Sequence[int]],
    layout: Layout = Layout(),
    shape_consistent: bool = True,
) -> list[Greedy]:
    """Greedy reconstruction of each target sequence from its memory row (one sample at a time).

    Under Kuratov's scoring the first token is input only: it is given, and the rest is decoded and compared
    (``first_mismatch`` still indexes ``seq``).
    """
    mem = memory if memory.dim() == 3 else memory.unsqueeze(0)
    k = layout.first_scored()
    results = []
    for j, seq in enumerate(sequences):
        n = len(seq)
        pad_to = len(layout.prefix(model)) + layout.n_mem + n - 1 if shape_consistent else None
        prompt = torch.tensor([list(seq[:k])], dtype=torch.long) if k else None
        gen = greedy_decode(model, mem[j : j + 1], n - k, layout, pad_to=pad_to, prompt=prompt)[0].tolist()
        results.append(compare(list(seq[:k]) + gen, seq))
    return results


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
