"""Where the memory embedding sits in the input, and which logits predict which tokens.

Default layout (the reference's): ``[mem_1..mem_m][BOS?][x_1..x_n]``. With ``seq = [BOS?] + x`` (BOS only when
the model's tokenizer adds one: ``model.cfg.default_prepend_bos``), the logit at position ``m-1+i`` predicts
``seq[i]``: the last memory position predicts the first token of ``seq`` (BOS when there is one).
``score_from="text"`` drops that prediction (Kuratov's protocol: BOS is input only). ``mem_first=False`` is the
control layout ``[BOS][mem][x]``, which moves the memory off the attention-sink position 0.

Only the input tokens whose logits are needed are fed: the last target token is never an input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from .errors import check

PLACEHOLDER_ID = 0  # default id in the memory slots and right padding: the hook overwrites the memory rows


def placeholder_id(model) -> int:
    """Token id for the memory slots and padding, never the tokenizer's pad id.

    TransformerLens builds an attention mask from the tokens when the tokenizer pads on the left (Gemma's does) and
    masks every leading pad token: a placeholder equal to the pad id (0 for Gemma) would hide the memory at
    position 0 from every query.
    """
    tok = getattr(model, "tokenizer", None)
    pad = getattr(tok, "pad_token_id", None) if tok is not None else None
    return PLACEHOLDER_ID if pad != PLACEHOLDER_ID else PLACEHOLDER_ID + 1


@dataclass(frozen=True)
class Layout:
    """Memory count and placement; each field's ``metadata`` is its command-line option
    (:func:`cramlens.cli.add_layout_args`; ``const``: the value a switch sets)."""

    n_mem: int = field(default=1, metadata={"help": "number of memory vectors m", "flag": "--mem-tokens"})
    # None: the model's tokenizer rule (cfg.default_prepend_bos)
    bos: bool | None = field(
        default=None,
        metadata={"help": "drop BOS even if the tokenizer adds one", "flag": "--no-bos", "const": False},
    )
    score_from: Literal["memory", "text"] = field(
        default="memory",
        metadata={
            "help": "do not score the memory's prediction of the first token (Kuratov's protocol)",
            "flag": "--score-from-text",
            "const": "text",
        },
    )
    mem_first: bool = field(
        default=True,
        metadata={
            "help": "control layout [BOS][mem][x] (memory off position 0)",
            "flag": "--bos-first",
            "const": False,
        },
    )

    def __post_init__(self):
        check(self.n_mem >= 1, f"layout: n_mem={self.n_mem}; use at least one memory vector")
        check(self.score_from in ("memory", "text"), "layout: score_from must be 'memory' or 'text'")

    def uses_bos(self, model) -> bool:
        return bool(model.cfg.default_prepend_bos) if self.bos is None else bool(self.bos)

    def sequence(self, model, token_ids: Sequence[int]) -> list[int]:
        """The tokens that follow the memory (``[BOS?] + x``), i.e. what stage lengths count."""
        ids = [int(t) for t in token_ids]
        if self.uses_bos(model) and self.mem_first:
            bos_id = model.tokenizer.bos_token_id if model.tokenizer is not None else None
            check(bos_id is not None, "layout: the tokenizer has no BOS token; pass bos=False")
            return [bos_id] + ids
        return ids

    def prefix(self, model) -> list[int]:
        """Real tokens placed before the memory (``[BOS]`` in the control layout)."""
        if not self.mem_first and self.uses_bos(model):
            return [model.tokenizer.bos_token_id]
        return []

    def first_scored(self) -> int:
        return 0 if self.score_from == "memory" else 1


@dataclass
class Batch:
    """A right-padded batch: inputs plus the flat list of (row, position, target) that are scored."""

    input_ids: torch.Tensor  # [B, T]
    mem_positions: list[int]
    t_row: torch.Tensor  # [K] batch row of each scored target
    t_pos: torch.Tensor  # [K] input position whose logit predicts it
    t_ids: torch.Tensor  # [K] the target token id
    t_index: torch.Tensor  # [K] index i of the target within its sequence (0 = first token after memory)
    lengths: list[int]  # stage length L of each row (targets seq[:L])

    @property
    def batch_size(self) -> int:
        return self.input_ids.shape[0]

    def counts(self) -> torch.Tensor:
        """Number of scored targets per row."""
        return torch.bincount(self.t_row, minlength=self.batch_size)


def build_batch(
    model,
    sequences: Sequence[Sequence[int]],
    lengths: Sequence[int],
    layout: Layout | None,
    pad_to: int | None = None,
) -> Batch:
    """Batch of rows ``prefix + [mem]*m + seq[:L-1]`` scoring ``seq[first_scored:L]`` (``sequences`` from ``layout.sequence``).

    ``layout=None`` is the plain text with no memory slot (a baseline): rows ``seq[:L-1]`` scoring ``seq[1:L]``,
    since nothing predicts the first token.
    """
    check(len(sequences) == len(lengths) and len(sequences) > 0, "build_batch: one length per sequence")
    prefix = [] if layout is None else layout.prefix(model)
    m = 0 if layout is None else layout.n_mem
    first = 1 if layout is None else layout.first_scored()
    p0 = len(prefix)
    ph = placeholder_id(model)
    rows, t_row, t_pos, t_ids, t_index = [], [], [], [], []
    for b, (seq, L) in enumerate(zip(sequences, lengths, strict=True)):
        check(1 <= L <= len(seq), f"build_batch: length {L} outside 1..{len(seq)}")
        rows.append(prefix + [ph] * m + [int(t) for t in seq[: L - 1]])
        for i in range(first, L):
            t_row.append(b)
            t_pos.append(p0 + m - 1 + i)
            t_ids.append(int(seq[i]))
            t_index.append(i)
    # at least one position: a one-token text without memory has an empty row (and nothing to score)
    width = max(1, max(len(r) for r in rows))
    if pad_to is not None:
        width = max(width, pad_to)
    n_ctx = model.cfg.n_ctx
    check(
        width <= n_ctx,
        f"input of {width} positions exceeds the model context {n_ctx}; use a shorter --seq-len",
    )
    device = model.cfg.device
    ids = torch.full((len(rows), width), ph, dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, : len(r)] = torch.tensor(r, dtype=torch.long)

    def as_t(x: list[int]) -> torch.Tensor:
        return torch.tensor(x, dtype=torch.long, device=device)

    return Batch(
        input_ids=ids.to(device),
        mem_positions=list(range(p0, p0 + m)),
        t_row=as_t(t_row),
        t_pos=as_t(t_pos),
        t_ids=as_t(t_ids),
        t_index=as_t(t_index),
        lengths=[int(x) for x in lengths],
    )
