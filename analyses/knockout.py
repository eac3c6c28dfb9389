"""Causal attention knockout sweeps (REFERENCE C.6) over crammed embeddings, and the attention mass on the memory.

Sweep: for every crammed HellaSwag context and every condition, score the item's endings with the paper's
likelihood rule (context+ending tokens after the first, ``[mem]`` prepended, argmin of the mean NLL) and measure the
teacher-forced reconstruction of the crammed context (argmax accuracy over its tokens, the memory's own prediction
of the first token included). A ``Condition`` is data: which memory sits in the slot (none = ``base``, the cram, or
an ordinary token = ``control``: knocking out key 0 moves the prediction even when it holds an ordinary token,
DESIGN 5b) and which ``Knockout`` (direction, layers, mask) is applied. Its ``name`` is the on-disk key of the rows
and summaries: ``base``, ``cram``, ``forward:k`` (layers 0..k-1), ``reverse:k`` (L-k..L-1), ``per_layer:l``,
``control_…``; the reference mask adds ``@reference`` (``forward:4@reference``), so rows written before masks
existed read back as the text mask.

Masks (``cramlens.interventions``): ``text``: the text queries lose the memory key at the masked layers;
``reference``: the research code's 4-D mask, which also makes the memory's own query row uniform over all keys,
future ones included. The two are equal when no unmasked layer follows a masked one (``reverse:k``, ``forward:L``)
and differ otherwise. :func:`summarize_sweep` keeps them apart (``forward:4`` / ``forward:4@reference``),
:func:`masks_in` says which a summary holds, and ``analyses.plots.eval_figures`` draws each one it holds.

Cost: the unmasked layers below a knockout's first masked layer are the cram forward's, so such conditions start
from its cached ``resid_pre`` (``start_at_layer``) and pay only for the layers from there.

The attention-sink table (C.7) is in :mod:`analyses.sinks`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformer_lens import HookedTransformer

import cramlens as cl
from cramlens.errors import check
from cramlens.hooks import EMPTY, HookSet, capture
from cramlens.interventions import Knockout
from cramlens.layout import Batch, placeholder_id
from cramlens.stats import mean_ci

from .scoring import choice_sequences, mcnemar, nll_at, residual, sequence_batch, with_interval
from .tasks import Item

DIRECTIONS = ("forward", "reverse", "per_layer")
MEMORIES = ("none", "cram", "control")


@dataclass(frozen=True)
class Condition:
    """One sweep cell: the memory in the slot (``none``: no slot, ``cram``, ``control``) and an optional knockout."""

    memory: str = "cram"
    knockout: Knockout | None = None

    def __post_init__(self) -> None:
        check(self.memory in MEMORIES, f"condition memory {self.memory!r}: use one of {', '.join(MEMORIES)}")
        check(self.memory != "none" or self.knockout is None, "base (no memory) has nothing to knock out")

    @property
    def name(self) -> str:
        """The on-disk key: ``base``, ``cram``, ``forward:4``, ``control_per_layer:3``, ``reverse:2@reference``."""
        if self.memory == "none":
            return "base"
        return ("control_" if self.memory == "control" else "") + (
            self.knockout.name if self.knockout else "cram"
        )

    @classmethod
    def parse(cls, name: str) -> Condition:
        """Inverse of ``name``; reads the sweep rows of every version."""
        if name == "base":
            return cls("none")
        memory = "control" if name.startswith("control_") else "cram"
        rest = name.removeprefix("control_")
        return cls(memory, None if rest == "cram" else Knockout.parse(rest))

    def hooks(self, model: HookedTransformer) -> tuple[HookSet, int | None]:
        """``(hook set, start layer)``: the layers it masks and where its forward may start (None: from the input)."""
        if self.knockout is None:
            return EMPTY, None
        return self.knockout.hooks(model), self.knockout.start_layer(model.cfg.n_layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "memory": self.memory,
            "knockout": self.knockout and self.knockout.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Condition:
        return cls(d["memory"], Knockout.from_dict(d["knockout"]) if d.get("knockout") else None)


def conditions(
    n_layers: int,
    directions: Iterable[str] = DIRECTIONS,
    control: bool = True,
    control_ks: Iterable[int] | None = None,
    ks: Iterable[int] | None = None,
    masks: Sequence[str] = ("text",),
) -> list[Condition]:
    """The conditions of a sweep: base, cram, every k (or layer) of each direction per mask, then the controls.

    ``ks`` restricts each direction to those k (layers for per-layer; all when ``None``). Controls (an ordinary
    token in the memory slot) run for the forward and per-layer directions, at ``control_ks`` (all k when ``None``).
    """
    out = [Condition("none"), Condition("cram")]
    grid = {
        d: list(range(n_layers)) if d == "per_layer" else list(range(1, n_layers + 1)) for d in directions
    }
    if ks is not None:
        wanted = set(ks)
        grid = {d: [k for k in g if k in wanted] for d, g in grid.items()}
    out += [Condition("cram", Knockout(d, k, m)) for m in masks for d, g in grid.items() for k in g]
    if control:
        out.append(Condition("control"))
        for m in masks:
            for d, g in grid.items():
                if d != "reverse":
                    keep = g if control_ks is None else [k for k in g if k in set(control_ks)]
                    out += [Condition("control", Knockout(d, k, m)) for k in keep]
    return out


def as_condition(cond: Condition | str) -> Condition:
    return cond if isinstance(cond, Condition) else Condition.parse(cond)


def knockout_hooks(model: HookedTransformer, cond: Condition | str) -> tuple[HookSet, int | None]:
    """``(hook set, start layer)`` of a condition (``Condition.hooks``; a name is parsed first)."""
    return as_condition(cond).hooks(model)


@dataclass
class Chunk:
    """A group of items packed for the sweep: 4 (or n) choice rows per item, the crammed context's location."""

    items: list[Item]
    packed: Batch  # rows with one memory slot
    packed_base: Batch  # the same sequences without memory
    owner: list[int]  # item index of each row
    n_choices: list[int]
    tf_row: list[int]  # row holding the crammed context as a prefix
    tf_len: list[int]  # tokens of the crammed sequence (targets t < tf_len of that row)
    tf_from: list[
        int
    ]  # first target its cram was trained on (0: the memory predicts t_0; 1: Kuratov's protocol)
    memory: torch.Tensor  # [rows, 1, d]


def make_chunk(model: HookedTransformer, items: Sequence[Item], crams: dict, joiner: str = " ") -> Chunk:
    """Pack ``items`` with their crams; a crammed sequence that is not a prefix of choice 0 gets its own row."""
    seqs, owner, nch, tf_row, tf_len, tf_from, mems = [], [], [], [], [], [], []
    for i, it in enumerate(items):
        s = crams[it.id]
        cs, _ = choice_sequences(model, it, joiner)
        nch.append(len(cs))
        start = len(seqs)
        seqs += cs
        owner += [i] * len(cs)
        target = list(s.sequence)
        if cs[0][: len(target)] == target and len(cs[0]) > len(target) - 1:
            tf_row.append(start)
        else:
            tf_row.append(len(seqs))
            seqs.append(target)
            owner.append(-1 - i)  # not a choice row
        tf_len.append(len(target))
        tf_from.append(s.layout.first_scored())
        mems += [s.embedding] * (len(seqs) - start)
    with_mem, without = sequence_batch(model, seqs, 1), sequence_batch(model, seqs, 0)
    return Chunk(
        list(items),
        with_mem,
        without,
        owner,
        nch,
        tf_row,
        tf_len,
        tf_from,
        torch.stack(mems).to(model.cfg.device),
    )


def _item_scores(chunk: Chunk, packed: Batch, nll: torch.Tensor, correct: torch.Tensor) -> list[dict]:
    """Per item: predicted choice (context+ending mean NLL, first token excluded), TF accuracy and context CE."""
    row, idx = packed.t_row.cpu(), packed.t_index.cpu()
    nll, correct = nll.cpu(), correct.cpu()
    scored = idx >= 1
    sums = torch.zeros(len(packed.lengths)).index_add(0, row[scored], nll[scored])
    cnts = torch.zeros(len(packed.lengths)).index_add(0, row[scored], torch.ones(int(scored.sum())))
    mean = (sums / cnts.clamp(min=1)).tolist()
    out = []
    for i, it in enumerate(chunk.items):
        rows = [r for r, o in enumerate(chunk.owner) if o == i]
        scores = [mean[r] for r in rows]
        pred = min(range(len(scores)), key=lambda j: scores[j])
        r = chunk.tf_row[i]
        m = (row == r) & (idx >= chunk.tf_from[i]) & (idx < chunk.tf_len[i])
        tf = float(correct[m].float().mean()) if m.any() else float("nan")
        ce = float(nll[m & (idx >= 1)].mean()) if (m & (idx >= 1)).any() else float("nan")
        out.append({"id": it.id, "pred": pred, "correct": pred == it.label, "tf": tf, "ce_ctx": ce})
    return out


@torch.no_grad()
def sweep_chunk(
    model: HookedTransformer,
    chunk: Chunk,
    conds: Sequence[Condition | str],
    control_token: int,
    done: Callable[[Condition], bool] = lambda c: False,
    emit: Callable[[Condition, list[dict]], None] | None = None,
) -> dict[str, list[dict]]:
    """Evaluate every condition of ``conds`` on one chunk (skipping ``done`` ones); ``emit(cond, rows)`` as they finish.

    Returns ``{condition name: per-item rows}``.
    """
    results: dict[str, list[dict]] = {}
    caches: dict[str, dict[str, torch.Tensor]] = {}

    def base_mem(kind: str) -> torch.Tensor:
        if kind == "control":
            tok = model.W_E[control_token].detach()
            return tok.expand(chunk.memory.shape[0], 1, -1).contiguous()
        return chunk.memory

    def run(cond: Condition) -> list[dict]:
        if cond.memory == "none":
            p = chunk.packed_base
            nll, ok = nll_at(model, residual(model, p), p)
            return _item_scores(chunk, p, nll, ok)
        kind = cond.memory
        hooks, start = cond.hooks(model)
        p = chunk.packed
        if start is not None and start > 0:
            if kind not in caches:
                caches[kind] = _resid_cache(model, p, base_mem(kind))
            resid = caches[kind][f"blocks.{start}.hook_resid_pre"]
            r = residual(model, p, None, hooks, start_at_layer=start, resid=resid)
        else:
            r = residual(model, p, base_mem(kind), hooks)
        nll, ok = nll_at(model, r, p)
        return _item_scores(chunk, p, nll, ok)

    for cond in map(as_condition, conds):
        if done(cond):
            continue
        results[cond.name] = run(cond)
        if emit is not None:
            emit(cond, results[cond.name])
    return results


def _resid_cache(model: HookedTransformer, p: Batch, memory: torch.Tensor) -> dict[str, torch.Tensor]:
    store: dict[str, torch.Tensor] = {}
    names = [f"blocks.{layer}.hook_resid_pre" for layer in range(model.cfg.n_layers)]
    residual(model, p, memory, capture(names, store))
    return store


# ------------------------------------------------------------------------------------------- attention mass
@torch.no_grad()
def attention_mass(
    model: HookedTransformer,
    memory: torch.Tensor,
    seqs: Sequence[Sequence[int]],
    include_key_row: bool = True,
) -> torch.Tensor:
    """Per layer, head-averaged attention to position 0 (the memory) ``[n_layers, len(seqs)]`` on ``[mem] + seq``.

    Averaged over the query rows ``0..n`` (``include_key_row``: the reference figure's rule, in which the memory's
    own row counts with its self-attention of 1) or over the text queries ``1..n``.
    """
    out = torch.zeros(model.cfg.n_layers, len(seqs))
    for i, seq in enumerate(seqs):
        ids = torch.tensor([[placeholder_id(model)] + list(seq)], device=model.cfg.device)
        store: dict[int, torch.Tensor] = {}
        hs = cl.inject(memory[i : i + 1]) + cl.capture_attention_to(model, store, key=0, query_start=0)
        with hs.applied(model):
            model(ids, stop_at_layer=model.cfg.n_layers)
        for layer, a in store.items():
            a = a[0] if include_key_row else a[0, 1:]
            out[layer, i] = a.mean()
    return out


def summarize_sweep(rows: Sequence[dict]) -> dict[str, dict[str, float]]:
    """Per condition over items: HellaSwag accuracy (%), mean TF reconstruction, exact-TF rate, context CE.

    Accuracies carry ``<key>_lo`` / ``<key>_hi`` (95% Wilson over ``n`` items), the mean TF its t interval
    (``tf_ci``, a ``MeanCI`` dict), and every condition but ``cram`` ``vs_cram``: the exact McNemar test of
    its per-item correctness against the cram's on the same items (``a`` = cram, ``b`` = this condition:
    ``b_only`` items it turns right, ``a_only`` items it turns wrong).
    """
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["cond"], []).append(r)
    cram = {r["id"]: r["correct"] for r in by.get("cram", [])}
    out = {}
    for cond, rs in by.items():
        tf = mean_ci(r["tf"] for r in rs)  # nan (no reconstruction target) rows are dropped
        ces = [r["ce_ctx"] for r in rs if not math.isnan(r["ce_ctx"])]
        tfs = [r["tf"] for r in rs if not math.isnan(r["tf"])]
        d = {
            "n": len(rs),
            "acc": 100.0 * sum(r["correct"] for r in rs) / len(rs),
            "tf": tf.mean,
            "tf_ci": tf.to_dict(),
            "tf_exact": 100.0 * sum(t >= 1.0 for t in tfs) / len(tfs) if tfs else float("nan"),
            "ce_ctx": sum(ces) / len(ces) if ces else float("nan"),
        }
        out[cond] = with_interval(d, ["acc"])
        paired = [r for r in rs if r["id"] in cram]
        if cond != "cram" and paired:
            flips = mcnemar([cram[r["id"]] for r in paired], [r["correct"] for r in paired])
            out[cond]["vs_cram"] = {**flips, "n": len(paired)}
    return out


def masks_in(summary: dict) -> list[str]:
    """The masks whose knockouts a sweep summary holds: ``text`` (names without a suffix) first, then each
    ``@mask`` suffix; ``["text"]`` when it holds no knockout (older summaries and base/cram only)."""
    found = {name.rsplit("@", 1)[1] if "@" in name else "text" for name in summary if ":" in name}
    return sorted(found, key=lambda m: (m != "text", m)) or ["text"]


def curve(
    summary: dict, direction: str, n_layers: int, field: str = "acc", mask: str = "text"
) -> list[tuple[int, float]]:
    """``[(k, value)]`` of one direction and mask; k 0 is ``cram`` (``control_cram`` for controls), per-layer has no k 0."""
    zero = "control_cram" if direction.startswith("control_") else "cram"
    ks = range(n_layers) if direction.endswith("per_layer") else range(0, n_layers + 1)
    tag = "" if mask == "text" else f"@{mask}"
    pts = []
    for k in ks:
        cond = zero if (k == 0 and not direction.endswith("per_layer")) else f"{direction}:{k}{tag}"
        if cond in summary:
            pts.append((k, summary[cond][field]))
    return pts
