"""Texts ready to cram: token ids cut to length, the layout's sequence after the memory, base-model surprisal."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from transformer_lens import HookedTransformer

from .errors import check
from .layout import Layout
from .metrics import surprisal_bits


@dataclass(frozen=True)
class Prepared:
    """A text ready to cram: ids, the sequence after the memory, and base-model surprisal."""

    sample_id: int
    text_id: str
    text: str
    token_ids: list[int]
    sequence: list[int]
    surprisal: torch.Tensor  # [len(sequence)] bits, nan at 0
    seed: int | None = None  # memory-init seed (None: the spec's ``seed``)
    init_index: int | None = None  # index that seeds the init with ``seed`` (None: ``sample_id``)

    @property
    def draw(self) -> int:
        """The index that, with the seed, draws this sample's initial memory."""
        return self.sample_id if self.init_index is None else self.init_index


def prepare_texts(
    model: HookedTransformer, texts: Sequence, layout: Layout, seq_len: int | None = None, first_id: int = 0
) -> list[Prepared]:
    """Tokenise (if needed), cut to ``seq_len``, add the layout's BOS and compute base-model surprisal."""
    check(len(texts) > 0, "no texts to cram; pass at least one text")
    out = []
    for i, t in enumerate(texts):
        if hasattr(t, "token_ids"):
            ids, text, tid = list(t.token_ids), t.text, t.sample_id
        elif isinstance(t, str):
            check(
                model.tokenizer is not None,
                "the model has no tokenizer; pass token-id lists instead of strings",
            )
            ids, text, tid = (
                model.tokenizer(t, add_special_tokens=False)["input_ids"],
                t,
                f"text:{first_id + i}",
            )
        else:
            ids = [int(x) for x in t]
            text = model.tokenizer.decode(ids) if model.tokenizer is not None else ""
            tid = f"ids:{first_id + i}"
        if seq_len is not None:
            check(len(ids) >= seq_len, f"text {tid!r} has {len(ids)} tokens, fewer than --seq-len {seq_len}")
            ids = ids[:seq_len]
            if isinstance(t, str):
                text = model.tokenizer.decode(ids)
        check(len(ids) > 0, f"text {tid!r} is empty; remove it or pick another source")
        seq = layout.sequence(model, ids)
        need = len(layout.prefix(model)) + layout.n_mem + len(seq) - 1
        check(
            need <= model.cfg.n_ctx,
            f"text {tid!r}: {need} positions exceed the model context {model.cfg.n_ctx}; use a shorter --seq-len",
        )
        out.append(Prepared(first_id + i, str(tid), text, ids, seq, surprisal_bits(model, seq)))
    return out


def repeat_over_seeds(prepared: list[Prepared], seeds: Sequence[int]) -> list[Prepared]:
    """Each text once per seed (text-major), so a run holds texts x seeds draws of the horizon.

    With k seeds, text ``i`` under its ``r``-th seed gets ``sample_id = i * k + r`` and draws its initial memory
    from ``(seed, i)``: the draw of seed ``s`` is the one a plain ``--seed s`` run starts from. One seed leaves
    the samples as they are (ids and draws unchanged).
    """
    if len(seeds) <= 1:
        return [replace(p, seed=int(seeds[0])) if seeds else p for p in prepared]
    k = len(seeds)
    return [
        replace(p, sample_id=p.sample_id * k + r, seed=int(s), init_index=p.sample_id)
        for p in prepared
        for r, s in enumerate(seeds)
    ]
