"""``HookSet``: an immutable, composable value of TransformerLens ``(hook_name, fn)`` pairs.

A name is an exact hook point name (``"blocks.3.attn.hook_attn_scores"``) or, as in TransformerLens, a filter: a
``Callable[[str], bool]`` on hook names. Filters are resolved against ``model.hook_dict`` when the set is applied
(``applied``) or listed (``resolve`` / ``names``); ``list(hs)`` hands the raw pairs to ``run_with_hooks``, which
resolves filters itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformer_lens import HookedTransformer
from transformer_lens.hook_points import HookPoint

from .errors import check

HookFn = Callable[[torch.Tensor, HookPoint], torch.Tensor | None]
HookName = str | Callable[[str], bool]


@dataclass(frozen=True)
class HookSet:
    """An ordered, immutable collection of ``(hook_name or filter, fn)`` pairs; ``a + b`` runs a's hooks first."""

    pairs: tuple[tuple[HookName, HookFn], ...] = ()
    label: str = ""

    def __add__(self, other: HookSet) -> HookSet:
        if not isinstance(other, HookSet):
            return NotImplemented
        label = " + ".join(x for x in (self.label, other.label) if x)
        return HookSet(self.pairs + other.pairs, label)

    def __iter__(self) -> Iterator[tuple[HookName, HookFn]]:
        return iter(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __bool__(self) -> bool:
        return bool(self.pairs)

    @property
    def hook_names(self) -> tuple[str, ...]:
        """Names as given; a filter shows as ``<filter name>`` (``resolve`` gives the matched hook points)."""
        return tuple(_show(name) for name, _ in self.pairs)

    def resolve(self, model: HookedTransformer) -> list[tuple[str, HookFn]]:
        """Exact ``(hook point, fn)`` pairs on ``model``: filters expanded in ``hook_dict`` order, names checked."""
        out: list[tuple[str, HookFn]] = []
        for name, fn in self.pairs:
            if isinstance(name, str):
                check(
                    name in model.hook_dict, f"hook point {name!r} is not in this model ({_example(model)})"
                )
                out.append((name, fn))
            else:
                hits = [n for n in model.hook_dict if name(n)]
                check(
                    bool(hits),
                    f"hook filter {_show(name)} matches no hook point of this model ({_example(model)})",
                )
                out += [(n, fn) for n in hits]
        return out

    def names(self, model: HookedTransformer) -> tuple[str, ...]:
        """The hook points of ``model`` this set touches, filters resolved."""
        return tuple(n for n, _ in self.resolve(model))

    @contextmanager
    def applied(self, model: HookedTransformer):
        """Context manager: ``model.hooks(fwd_hooks=self.resolve(model))``."""
        with model.hooks(fwd_hooks=self.resolve(model)):
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


def _show(name: HookName) -> str:
    return name if isinstance(name, str) else f"<filter {getattr(name, '__name__', type(name).__name__)}>"


def _example(model: HookedTransformer) -> str:
    names = list(model.hook_dict)
    return f"{len(names)} hook points, e.g. {names[0]!r}, {names[-1]!r}" if names else "no hook points"


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
        k.format(v[0] if len(v) == 1 else "{" + span(sorted(v)).strip("[]") + "}") if v else k
        for k, v in groups.items()
    ]
    more = f", … ({len(shown) - limit} more)" if len(shown) > limit else ""
    return ", ".join(shown[:limit]) + more


def span(layers: Iterable[int]) -> str:
    """``0..5`` for a run of more than two consecutive layers, else the list."""
    layers = list(layers)
    if len(layers) > 2 and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}..{layers[-1]}"
    return str(layers)
