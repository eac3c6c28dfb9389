"""Likelihood multiple choice with and without a crammed context embedding (REFERENCE C.4): the one scorer that
the downstream evaluation and the knockout sweeps both use.

An item's choice ``j`` is the token sequence ``seq_j = [BOS?] + tokens(context + joiner + choice_j)`` (BOS when the
model's tokenizer adds one). Base scores ``seq_j`` alone; Cram prepends the item's memory vector(s):
``[mem] + seq_j`` (the original context stays in the text, as in the reference). Per token ``t`` of ``seq_j`` the
negative log-likelihood ``-log p(seq_j[t] | mem?, seq_j[:t])`` is computed once, and the variants are means over
token ranges (the prediction is the argmin, i.e. the lowest perplexity):

- ``context_ending`` (reference default): tokens ``1..n-1`` (all but the first);
- ``ending_only``: the choice's tokens only (``ctx_len..n-1``);
- ``edge``: tokens ``0..n-1`` (adds the memory's prediction of the first token; with no memory = context_ending);
- ``compression_only``: ``[mem] + [BOS?] + tokens(choice)``, the choice's tokens (the context text removed).

``joiner`` is the text between context and choice: the reference uses ``" "`` for its baseline and ``""`` for its
compressed text (REFERENCE E.9); we use ``" "`` for both so that Base and Cram score the same tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from transformer_lens import HookedTransformer

from cramlens.errors import check
from cramlens.forward import logits_from_residual
from cramlens.hooks import EMPTY, HookSet, inject
from cramlens.layout import Batch, Layout, build_batch
from cramlens.stats import MeanCI

from .tasks import Item


# ------------------------------------------------------------------------------------------- batches
def sequence_batch(model: HookedTransformer, seqs: Sequence[Sequence[int]], n_mem: int) -> Batch:
    """Rows ``[mem]*n_mem + seq[:-1]`` for whole sequences that already carry their BOS (``layout.build_batch``).

    With memory every token is a target (the last memory slot predicts ``seq[0]``); with ``n_mem=0`` (no memory)
    every token but the first.
    """
    layout = Layout(n_mem=n_mem, bos=False) if n_mem else None
    return build_batch(model, seqs, [len(s) for s in seqs], layout)


def residual(
    model: HookedTransformer,
    batch: Batch,
    memory: torch.Tensor | None = None,
    hooks: HookSet = EMPTY,
    start_at_layer: int | None = None,
    resid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Final residual ``[B, T, d]`` (before ``ln_final``); from ``resid`` at ``start_at_layer`` when given."""
    hs = hooks
    if start_at_layer is None and batch.mem_positions:
        hs = inject(memory, batch.mem_positions) + hooks
    with model.hooks(fwd_hooks=list(hs)):
        if start_at_layer is None:
            return model(batch.input_ids, stop_at_layer=model.cfg.n_layers, padding_side="right")
        return model(resid, start_at_layer=start_at_layer, stop_at_layer=model.cfg.n_layers)


def nll_at(model: HookedTransformer, resid: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(nll [K], argmax-correct [K])`` at the scored positions of ``batch`` (unembedding only there)."""
    logits = logits_from_residual(model, resid[batch.t_row, batch.t_pos]).float()
    nll = F.cross_entropy(logits, batch.t_ids, reduction="none")
    return nll, logits.argmax(-1) == batch.t_ids


def per_sequence(values: torch.Tensor, batch: Batch, fill: float = float("nan")) -> list[torch.Tensor]:
    """Scatter flat per-target values back into one ``[len(seq)]`` tensor per sequence."""
    out = [torch.full((n,), fill, dtype=torch.float32) for n in batch.lengths]
    v, r, i = values.detach().float().cpu(), batch.t_row.cpu(), batch.t_index.cpu()
    for b in range(len(out)):
        m = r == b
        out[b][i[m]] = v[m]
    return out


@torch.no_grad()
def token_nll(
    model: HookedTransformer,
    seqs: Sequence[Sequence[int]],
    memory: torch.Tensor | None = None,
    hooks: HookSet = EMPTY,
    batch_size: int = 32,
) -> list[torch.Tensor]:
    """Per sequence ``[len(seq)]`` natural-log NLL of each token (``nan`` where nothing predicts it).

    ``memory``: ``None`` (no memory) or ``[len(seqs), m, d]``, one memory per sequence, at positions ``0..m-1``.
    """
    n_mem = 0 if memory is None else memory.shape[1]
    out: list[torch.Tensor] = []
    for s in range(0, len(seqs), batch_size):
        batch = sequence_batch(model, seqs[s : s + batch_size], n_mem)
        mem = None if memory is None else memory[s : s + batch_size]
        nll, _ = nll_at(model, residual(model, batch, mem, hooks), batch)
        out.extend(per_sequence(nll, batch))
    return out


# ------------------------------------------------------------------------------------------- choices
def choice_sequences(model: HookedTransformer, item: Item, joiner: str = " ") -> tuple[list[list[int]], int]:
    """``([BOS?] + tokens(context + joiner + choice_j) for j, ctx_len)``; ``ctx_len`` = shared prefix with the context."""
    ctx = model.to_tokens(item.context)[0].tolist()
    seqs = [model.to_tokens(item.context + joiner + c)[0].tolist() for c in item.choices]
    n = len(ctx)
    for s in seqs:  # BPE may merge across the boundary: keep only the common prefix as "context"
        k = 0
        while k < min(n, len(s) - 1) and s[k] == ctx[k]:
            k += 1
        n = k
    return seqs, n


def _mean(v: torch.Tensor, lo: int, hi: int) -> float:
    x = v[lo:hi]
    x = x[~torch.isnan(x)]
    return float(x.mean()) if len(x) else float("inf")


@dataclass
class ChoiceScores:
    """Per variant, per item, per choice: mean NLL (lower is better); ``n_tokens`` of context + correct choice."""

    nll: dict[str, list[list[float]]]
    n_tokens: list[int]
    ctx_len: list[int]


@torch.no_grad()
def score_items(
    model: HookedTransformer,
    items: Sequence[Item],
    memory: torch.Tensor | None = None,
    variants: Sequence[str] = ("context_ending",),
    joiner: str = " ",
    hooks: HookSet = EMPTY,
    batch_size: int = 32,
) -> ChoiceScores:
    """Score every choice of every item; ``memory`` is ``None`` or ``[len(items), m, d]`` (one per item)."""
    bad = set(variants) - {"context_ending", "ending_only", "edge", "compression_only"}
    assert not bad, f"unknown scoring variants {sorted(bad)}"
    enc = [choice_sequences(model, it, joiner) for it in items]
    flat = [s for seqs, _ in enc for s in seqs]
    owner = [i for i, (seqs, _) in enumerate(enc) for _ in seqs]
    mem = None if memory is None else memory[owner]
    nlls = token_nll(model, flat, mem, hooks, batch_size) if set(variants) - {"compression_only"} else []
    out: dict[str, list[list[float]]] = {v: [[] for _ in items] for v in variants}
    for v in set(variants) - {"compression_only"}:
        for k, nll in enumerate(nlls):
            i = owner[k]
            lo = {"context_ending": 1, "ending_only": enc[i][1], "edge": 0}[v]
            out[v][i].append(_mean(nll, lo, len(nll)))
    if "compression_only" in variants:
        bos = 1 if model.cfg.default_prepend_bos else 0
        ends = [model.to_tokens(c)[0].tolist() for it in items for c in it.choices]
        if memory is None:  # no memory: the choice alone, its tokens after the first
            seqs_nll = token_nll(model, ends, None, hooks, batch_size)
        else:
            seqs_nll = token_nll(model, ends, mem, hooks, batch_size)
        for k, nll in enumerate(seqs_nll):
            out["compression_only"][owner[k]].append(_mean(nll, bos, len(nll)))
    n_tokens = [len(enc[i][0][it.label]) for i, it in enumerate(items)]
    return ChoiceScores(out, n_tokens, [c for _, c in enc])


def predict(nll: Sequence[Sequence[float]]) -> list[int]:
    """Argmin of the mean NLL per item (ties: the first choice)."""
    return [min(range(len(row)), key=lambda j: row[j]) for row in nll]


def accuracy(pred: Sequence[int], labels: Sequence[int], mask: Sequence[bool] | None = None) -> float:
    """Plain accuracy (%) over the items in ``mask`` (all by default)."""
    keep = [i for i in range(len(labels)) if mask is None or mask[i]]
    return 100.0 * sum(pred[i] == labels[i] for i in keep) / len(keep) if keep else float("nan")


def token_normalized_accuracy(
    pred: Sequence[int], labels: Sequence[int], n_tokens: Sequence[int], mask: Sequence[bool] | None = None
) -> float:
    """The paper's Base metric (%): ``sum_i 1[correct_i] ntok_i / sum_i ntok_i`` (ntok = context + correct choice)."""
    keep = [i for i in range(len(labels)) if mask is None or mask[i]]
    den = sum(n_tokens[i] for i in keep)
    return 100.0 * sum(n_tokens[i] * (pred[i] == labels[i]) for i in keep) / den if den else float("nan")


def mcnemar(a_right: Sequence[bool], b_right: Sequence[bool]) -> dict[str, float]:
    """Exact two-sided McNemar test of paired outcomes: items right under ``a`` only / ``b`` only, and the p-value.

    The discordant items are ``n = a_only + b_only`` fair coin flips under "no difference": ``p`` is twice the
    binomial tail of the smaller count (capped at 1); +8/-1 gives p = 20/512 = 0.039.
    """
    check(len(a_right) == len(b_right), "mcnemar: the two outcome lists must pair up item by item")
    a_only = sum(1 for a, b in zip(a_right, b_right, strict=True) if a and not b)
    b_only = sum(1 for a, b in zip(a_right, b_right, strict=True) if b and not a)
    n, k = a_only + b_only, min(a_only, b_only)
    p = min(1.0, 2 * sum(math.comb(n, j) for j in range(k + 1)) / 2**n) if n else 1.0
    return {"a_only": a_only, "b_only": b_only, "p": p}


def paired_flips(
    pred_a: Sequence[int], pred_b: Sequence[int], labels: Sequence[int], mask: Sequence[bool] | None = None
) -> dict[str, float]:
    """Items right under ``a`` only / ``b`` only, and the exact two-sided McNemar p-value of that split."""
    keep = [i for i in range(len(labels)) if mask is None or mask[i]]
    return mcnemar([pred_a[i] == labels[i] for i in keep], [pred_b[i] == labels[i] for i in keep])


#: How every accuracy (a proportion of items) gets its interval; named in the tables' headers.
ACC_INTERVAL = "95% Wilson"


def wilson_ci(hits: int, n: int, level: float = 0.95) -> MeanCI:
    """Accuracy in % (``hits`` of ``n`` items) with its Wilson score interval; ``sd``: one item's binomial sd (%)."""
    from scipy.stats import binomtest

    nan = float("nan")
    if n == 0:
        return MeanCI(nan, nan, nan, 0, nan, level)
    ci = binomtest(int(hits), int(n)).proportion_ci(confidence_level=level, method="wilson")
    q = hits / n
    return MeanCI(100.0 * q, 100.0 * ci.low, 100.0 * ci.high, n, 100.0 * math.sqrt(q * (1 - q)), level)


def accuracy_ci(acc_pct: float | None, n: int | None) -> MeanCI | None:
    """The Wilson interval of an accuracy stored as ``%`` of ``n`` items (older summaries hold only these two)."""
    if acc_pct is None or n is None or acc_pct != acc_pct or n <= 0:
        return None
    return wilson_ci(round(acc_pct * n / 100.0), n)


def with_interval(d: dict, keys: Sequence[str]) -> dict:
    """``d`` plus ``<key>_lo`` / ``<key>_hi``: the Wilson interval of each accuracy ``d[key]`` (% of ``d["n"]``)."""
    out = dict(d)
    for k in keys:
        ci = accuracy_ci(d.get(k), d.get("n"))
        out[f"{k}_lo"], out[f"{k}_hi"] = (ci.lo, ci.hi) if ci else (float("nan"), float("nan"))
    return out


def acc_cell(d: dict | None, key: str = "acc", fmt: str = "{:.1f}") -> str:
    """``41.2 [35.0, 47.5] (n=64)`` for the accuracy ``d[key]`` of ``d["n"]`` items; ``–`` when absent."""
    if not d or d.get(key) is None or d[key] != d[key]:
        return "–"
    ci = accuracy_ci(d[key], d.get("n"))
    return fmt.format(d[key]) + " (no interval)" if ci is None else replace(ci, mean=d[key]).format(fmt)


def flips_cell(f: dict | None) -> str:
    """``+8/-1 p=0.039``: items the second of a pair turns right / wrong and the exact McNemar p."""
    return "–" if not f else f"+{f['b_only']}/-{f['a_only']} p={f['p']:.3g}"


def summarize_choice_scores(
    nll: dict[str, Sequence[Sequence[float]]],
    labels: Sequence[int],
    n_tokens: Sequence[int],
    mask: Sequence[bool] | None = None,
) -> dict[str, dict[str, float]]:
    """Per variant: ``{"acc": %, "acc_lo", "acc_hi": its 95% Wilson interval, "acc_tok": % token-normalised
    (a weighted proportion: no interval), "n": items}``."""
    out = {}
    for v, rows in nll.items():
        p = predict(rows)
        n = sum(1 for i in range(len(labels)) if mask is None or mask[i])
        d = {
            "acc": accuracy(p, labels, mask),
            "acc_tok": token_normalized_accuracy(p, labels, n_tokens, mask),
            "n": n,
        }
        out[v] = with_interval(d, ["acc"])
    return out
