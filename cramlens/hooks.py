"""Hook-set builders: thin constructors over the intervention dataclasses (``cramlens.interventions``).

A ``HookSet`` is what every intervention in cramlens is made of: memory injection, activation capture,
attention knockout. Sets compose with ``+`` and are used exactly like TransformerLens hook lists::

    hs = inject(memory) + forward_knockout(model, 4)
    logits = model.run_with_hooks(tokens, fwd_hooks=list(hs))
    with model.hooks(fwd_hooks=list(hs)):
        ...
    with hs.applied(model):          # the same, filter names resolved and checked against the model
        ...

To save an intervention with a run, build the dataclass (``Knockout("forward", 4)``) and write ``to_dict()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from transformer_lens import HookedTransformer

from .errors import check
from .hookset import EMPTY, HookFn, HookName, HookSet, combine
from .interventions import Capture, CaptureAttention, Inject, Knockout

__all__ = [
    "EMPTY",
    "HookFn",
    "HookName",
    "HookSet",
    "capture",
    "capture_attention_to",
    "combine",
    "forward_knockout",
    "inject",
    "knockout",
    "per_layer_knockout",
    "reverse_knockout",
]


def inject(memory: torch.Tensor, positions: Sequence[int] | None = None) -> HookSet:
    """``Inject(memory, positions).hooks()``: overwrite the ``hook_embed`` rows at ``positions`` (default ``0..m-1``)."""
    return Inject(memory, None if positions is None else tuple(positions)).hooks()


def capture(names: str | Sequence[str], store: dict[str, torch.Tensor], detach: bool = True) -> HookSet:
    """Record the activations of hook points ``names`` into ``store`` (name → tensor)."""
    return Capture(names, detach, store).hooks()


def capture_attention_to(
    model: HookedTransformer, store: dict[int, torch.Tensor], key: int = 0, query_start: int = 1
) -> HookSet:
    """Per layer, head-averaged attention from queries ``query_start..`` to ``key`` → ``store[layer]`` ``[batch, q]``."""
    return CaptureAttention(key, query_start, store).hooks(model)


def knockout(
    model: HookedTransformer, layers: Iterable[int], keys: Sequence[int] = (0,), mask: str = "text"
) -> HookSet:
    """Block attention to key positions ``keys`` at ``layers`` (``Knockout("layers", layers, mask, keys)``).

    ``mask="text"``: the queries after the last key lose the keys; ``"reference"``: the research code's mask, in
    which the memory's own rows become uniform over all keys (``cramlens.interventions``).
    """
    return Knockout("layers", tuple(layers), mask, tuple(keys)).hooks(model)


def forward_knockout(
    model: HookedTransformer, k: int, keys: Sequence[int] = (0,), mask: str = "text"
) -> HookSet:
    """Knock out the first ``k`` layers (``0..k-1``)."""
    check(0 <= k <= model.cfg.n_layers, f"forward_knockout: k must be in 0..{model.cfg.n_layers}")
    return Knockout("forward", k, mask, tuple(keys)).hooks(model) if k else HookSet((), "forward_knockout(0)")


def reverse_knockout(
    model: HookedTransformer, k: int, keys: Sequence[int] = (0,), mask: str = "text"
) -> HookSet:
    """Knock out the last ``k`` layers (``L-k..L-1``)."""
    check(0 <= k <= model.cfg.n_layers, f"reverse_knockout: k must be in 0..{model.cfg.n_layers}")
    return Knockout("reverse", k, mask, tuple(keys)).hooks(model) if k else HookSet((), "reverse_knockout(0)")


def per_layer_knockout(
    model: HookedTransformer, layer: int, keys: Sequence[int] = (0,), mask: str = "text"
) -> HookSet:
    """Knock out the single layer ``layer``."""
    return Knockout("per_layer", layer, mask, tuple(keys)).hooks(model)
