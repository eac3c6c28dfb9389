"""Hook sets: immutable, composable values of TransformerLens ``(hook_name, fn)`` pairs.

A ``HookSet`` is what every intervention in cramlens is made of: memory injection, activation capture,
attention knockout. Sets compose with ``+`` and are used exactly like TransformerLens hook lists::

    hs = inject(memory) + forward_knockout(model, 4)
    logits = model.run_with_hooks(tokens, fwd_hooks=list(hs))
    with model.hooks(fwd_hooks=list(hs)):
        ...
    with hs.applied(model):          # shorthand for the line above
        ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformer_lens import HookedTransformer
from transformer_lens.hook_points import HookPoint

from .errors import check

HookFn = Callable[[torch.Tensor, HookPoint], torch.Tensor | None]


@dataclass(frozen=True)
class HookSet:
    """An ordered, immutable collection of ``(hook_name, fn)`` pairs; ``a + b`` runs a's hooks first."""

    pairs: tuple[tuple[str, HookFn], ...] = ()
    label: str = ""

    def __add__(self, other: HookSet) -> HookSet:
        if not isinstance(other, HookSet):
            return NotImplemented
        label = " + ".join(x for x in (self.label, other.label) if x)
        return HookSet(self.pairs + other.pairs, label)

    def __iter__(self) -> Iterator[tuple[str, HookFn]]:
        return iter(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __bool__(self) -> bool:
        return bool(self.pairs)

    @property
    def hook_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.pairs)

    @contextmanager
    def applied(self, model: HookedTransformer):
        """Context manager: ``model.hooks(fwd_hooks=list(self))``."""
        with model.hooks(fwd_hooks=list(self.pairs)):
            yield model

    def __repr__(self) -> str:
        return f"HookSet({self.label or 'unnamed'}: {len(self.pairs)} hooks on {_names(self.hook_names) or 'nothing'})"


EMPTY = HookSet()


def combine(sets: Iterable[HookSet]) -> HookSet:
    """Sum of hook sets (``EMPTY`` for none)."""
    out = EMPTY
    for s in sets:
        out = out + s
    return out


def inject(memory: torch.Tensor, positions: Sequence[int] | None = None) -> HookSet:
    """Overwrite the ``hook_embed`` rows at ``positions`` with ``memory`` (``[batch, m, d_model]`` or ``[m, d]``).

    ``positions`` defaults to ``0..m-1``. The memory lives in the space of TransformerLens's ``hook_embed``
    output (for Gemma that is the sqrt(d_model)-scaled space). Autograd flows into ``memory``.
    """
    mem = memory if memory.dim() == 3 else memory.unsqueeze(0)
    m = mem.shape[1]
    pos = list(range(m)) if positions is None else [int(p) for p in positions]
    check(len(pos) == m, f"inject: {m} memory rows but {len(pos)} positions; pass one position per row")
    contiguous_prefix = pos == list(range(m))

    def hook_fn(embed: torch.Tensor, hook: HookPoint) -> torch.Tensor:
        rows = mem.to(embed.dtype)
        if rows.shape[0] != embed.shape[0]:
            check(rows.shape[0] == 1, f"inject: memory batch {rows.shape[0]} != input batch {embed.shape[0]}")
            rows = rows.expand(embed.shape[0], -1, -1)
        if contiguous_prefix:
            return torch.cat([rows, embed[:, m:]], dim=1)
        out = embed.clone()
        out[:, pos] = rows
        return out

    return HookSet((("hook_embed", hook_fn),), f"inject(m={m})")


def capture(names: str | Sequence[str], store: dict[str, torch.Tensor], detach: bool = True) -> HookSet:
    """Record the activations of hook points ``names`` into ``store`` (name → tensor)."""
    names = [names] if isinstance(names, str) else list(names)

    def make(name: str) -> HookFn:
        def hook_fn(act: torch.Tensor, hook: HookPoint) -> None:
            store[name] = act.detach() if detach else act

        return hook_fn

    return HookSet(tuple((n, make(n)) for n in names), f"capture({len(names)})")


def _layer_list(model: HookedTransformer, layers: Iterable[int]) -> list[int]:
    n = model.cfg.n_layers
    out = sorted({int(x) for x in layers})
    check(all(0 <= x < n for x in out), f"knockout: layers must be in 0..{n - 1}, got {out}")
    return out


def knockout(
    model: HookedTransformer,
    layers: Iterable[int],
    keys: Sequence[int] = (0,),
    queries: Sequence[int] | slice | str = "after",
) -> HookSet:
    """Block attention to key positions ``keys`` at ``layers``: pre-softmax scores set to the dtype minimum.

    Acts on ``blocks.{l}.attn.hook_attn_scores`` (``[batch, head, query, key]``) for every head, so it works
    with grouped-query attention (scores are per query head). ``queries``:
    ``"after"`` (default) masks the rows of queries after the last key (the text positions, so no row is
    left with nothing to attend to); ``"all"`` mirrors the reference code, which masks every row (the memory's
    own row then softmaxes over uniform minima); or explicit positions / a slice.
    """
    keys = [int(k) for k in keys]
    check(len(keys) > 0, "knockout: give at least one key position (the memory positions)")

    def row_index(n_q: int):
        if isinstance(queries, str):
            check(
                queries in ("after", "all"), f"knockout: queries={queries!r}; use 'after', 'all' or positions"
            )
            return slice(max(keys) + 1, n_q) if queries == "after" else slice(0, n_q)
        return queries

    def hook_fn(scores: torch.Tensor, hook: HookPoint) -> torch.Tensor:
        scores = scores.clone()
        rows = row_index(scores.shape[-2])
        neg = torch.finfo(scores.dtype).min
        if isinstance(rows, slice):
            scores[:, :, rows, keys] = neg
        else:
            idx = torch.as_tensor(list(rows), device=scores.device)
            sub = scores[:, :, idx]
            sub[..., keys] = neg
            scores[:, :, idx] = sub
        return scores

    lay = _layer_list(model, layers)
    pairs = tuple((f"blocks.{layer}.attn.hook_attn_scores", hook_fn) for layer in lay)
    return HookSet(pairs, f"knockout(layers={_span(lay)}, keys={keys})")


def forward_knockout(model: HookedTransformer, k: int, **kw) -> HookSet:
    """Knock out the first ``k`` layers (``0..k-1``)."""
    check(0 <= k <= model.cfg.n_layers, f"forward_knockout: k must be in 0..{model.cfg.n_layers}")
    return knockout(model, range(k), **kw) if k else HookSet((), "forward_knockout(0)")


def reverse_knockout(model: HookedTransformer, k: int, **kw) -> HookSet:
    """Knock out the last ``k`` layers (``L-k..L-1``)."""
    n = model.cfg.n_layers
    check(0 <= k <= n, f"reverse_knockout: k must be in 0..{n}")
    return knockout(model, range(n - k, n), **kw) if k else HookSet((), "reverse_knockout(0)")


def per_layer_knockout(model: HookedTransformer, layer: int, **kw) -> HookSet:
    """Knock out the single layer ``layer``."""
    return knockout(model, [layer], **kw)


def capture_attention_to(
    model: HookedTransformer, store: dict[int, torch.Tensor], key: int = 0, query_start: int = 1
) -> HookSet:
    """Per layer, head-averaged attention from queries ``query_start..`` to ``key`` → ``store[layer]`` ``[batch, q]``."""

    def make(layer: int) -> HookFn:
        def hook_fn(pattern: torch.Tensor, hook: HookPoint) -> None:
            store[layer] = pattern[:, :, query_start:, key].mean(dim=1).detach()

        return hook_fn

    pairs = tuple((f"blocks.{layer}.attn.hook_pattern", make(layer)) for layer in range(model.cfg.n_layers))
    return HookSet(pairs, f"capture_attention_to(key={key})")


def _names(names: Iterable[str], limit: int = 6) -> str:
    """Hook names for a repr, per-layer names folded: ``hook_embed, blocks.{0..3}.attn.hook_attn_scores``."""
    groups: dict[str, list[int]] = {}
    for name in dict.fromkeys(names):
        parts = name.split(".", 2)
        if len(parts) == 3 and parts[0] == "blocks" and parts[1].isdigit():
            groups.setdefault("blocks.{}." + parts[2], []).append(int(parts[1]))
        else:
            groups.setdefault(name, [])
    shown = [
        k.format(v[0] if len(v) == 1 else "{" + _span(sorted(v)).strip("[]") + "}") if v else k
        for k, v in groups.items()
    ]
    more = f", … ({len(shown) - limit} more)" if len(shown) > limit else ""
    return ", ".join(shown[:limit]) + more


def _span(layers: list[int]) -> str:
    if len(layers) > 2 and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}..{layers[-1]}"
    return str(layers)
