"""Interventions as data: frozen dataclasses that print, save into ``config.json`` and build a ``HookSet``.

    ko = Knockout("forward", 4, mask="reference")      # layers 0..3, the research code's mask
    hs = Inject(memory).hooks(model) + ko.hooks(model)
    config["interventions"] = [ko.to_dict()]           # {"type": "knockout", "direction": "forward", ...}
    intervention_from_dict(config["interventions"][0]) == ko

Tensors are not written into a config: ``Inject.to_dict`` records ``ref`` (a name chosen by the caller, e.g.
``"embeddings.safetensors#sample-3"``, where the run keeps its embeddings) and ``from_dict(d, tensors={ref: t})``
puts the tensor back. Capture stores are runtime dicts and are not written either.

Knockout masks (pre-softmax, on ``blocks.{l}.attn.hook_attn_scores``, per query head, so grouped-query attention
needs nothing special):

- ``"text"`` (ours, the default): the text queries' scores on the memory keys are set to the dtype minimum. Rows of
  the memory positions are untouched, so each memory row still attends to itself.
- ``"reference"`` (the research code behind the paper's figures): the memory columns of an HF-style additive mask
  are replaced for every row. A row whose every causally visible key is a memory key (the memory's own rows) is
  then all minima and softmaxes to uniform over all keys, future text tokens included; later unmasked layers see
  that changed memory residual. Text rows are masked as by ``"text"``. So the two agree when no unmasked layer
  follows a masked one (``reverse:k``, ``forward:L``, the last layer alone) and differ otherwise.

TransformerLens applies its causal mask as ``-inf`` before ``hook_attn_scores``, so the dtype minimum on a memory
row's own key cannot empty it: masking "every row" without making the row uniform equals ``"text"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch
from transformer_lens import HookedTransformer
from transformer_lens.hook_points import HookPoint

from .errors import CramlensError, check
from .hookset import HookFn, HookSet, span

DIRECTIONS = ("forward", "reverse", "per_layer", "layers")
MASKS = ("text", "reference")


@dataclass(frozen=True)
class Inject:
    """Overwrite the ``hook_embed`` rows at ``positions`` with ``embedding`` (``[batch, m, d]`` or ``[m, d]``).

    ``positions`` defaults to ``0..m-1``. The embedding lives in the space of TransformerLens's ``hook_embed``
    output (for Gemma that is the sqrt(d_model)-scaled space). Autograd flows into it.
    """

    embedding: torch.Tensor | None = field(default=None, compare=False, repr=False)
    positions: tuple[int, ...] | None = None
    ref: str = ""  # where the tensor lives on disk (written into config.json instead of the tensor)
    type: ClassVar[str] = "inject"

    def __post_init__(self) -> None:
        if self.positions is not None:
            object.__setattr__(self, "positions", tuple(int(p) for p in self.positions))

    def __repr__(self) -> str:
        shape = "no tensor" if self.embedding is None else "x".join(map(str, self.embedding.shape))
        pos = "" if self.positions is None else f", positions={list(self.positions)}"
        ref = f", ref={self.ref!r}" if self.ref else ""
        return f"Inject({shape}{pos}{ref})"

    def hooks(self, model: HookedTransformer | None = None) -> HookSet:
        emb = self.embedding
        check(emb is not None, f"{self!r} has no tensor: pass tensors={{ref: tensor}} to from_dict")
        mem = emb if emb.dim() == 3 else emb.unsqueeze(0)
        m = mem.shape[1]
        pos = list(range(m)) if self.positions is None else list(self.positions)
        check(len(pos) == m, f"inject: {m} memory rows but {len(pos)} positions; pass one position per row")
        contiguous_prefix = pos == list(range(m))

        def hook_fn(embed: torch.Tensor, hook: HookPoint) -> torch.Tensor:
            rows = mem.to(embed.dtype)
            if rows.shape[0] != embed.shape[0]:
                check(
                    rows.shape[0] == 1,
                    f"inject: memory batch {rows.shape[0]} != input batch {embed.shape[0]}",
                )
                rows = rows.expand(embed.shape[0], -1, -1)
            if contiguous_prefix:
                return torch.cat([rows, embed[:, m:]], dim=1)
            out = embed.clone()
            out[:, pos] = rows
            return out

        return HookSet((("hook_embed", hook_fn),), f"inject(m={m})")

    def to_dict(self) -> dict[str, Any]:
        pos = None if self.positions is None else list(self.positions)
        return {"type": self.type, "positions": pos, "ref": self.ref}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], tensors: Mapping[str, torch.Tensor] | None = None) -> Inject:
        ref = d.get("ref", "")
        return cls((tensors or {}).get(ref), d.get("positions"), ref)


@dataclass(frozen=True)
class Capture:
    """Record the activations of hook points ``names`` into ``store`` (name → tensor)."""

    names: tuple[str, ...]
    detach: bool = True
    store: dict = field(default_factory=dict, compare=False, repr=False)
    type: ClassVar[str] = "capture"

    def __post_init__(self) -> None:
        names = (self.names,) if isinstance(self.names, str) else tuple(self.names)
        object.__setattr__(self, "names", names)

    def hooks(self, model: HookedTransformer | None = None) -> HookSet:
        store, detach = self.store, self.detach

        def make(name: str) -> HookFn:
            def hook_fn(act: torch.Tensor, hook: HookPoint) -> None:
                store[name] = act.detach() if detach else act

            return hook_fn

        return HookSet(tuple((n, make(n)) for n in self.names), f"capture({len(self.names)})")

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "names": list(self.names), "detach": self.detach}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], tensors: Mapping[str, torch.Tensor] | None = None) -> Capture:
        return cls(tuple(d["names"]), d.get("detach", True))


@dataclass(frozen=True)
class CaptureAttention:
    """Per layer, head-averaged attention from queries ``query_start..`` to ``key`` → ``store[layer]`` ``[batch, q]``."""

    key: int = 0
    query_start: int = 1
    store: dict = field(default_factory=dict, compare=False, repr=False)
    type: ClassVar[str] = "capture_attention"

    def hooks(self, model: HookedTransformer) -> HookSet:
        store, key, q0 = self.store, self.key, self.query_start

        def make(layer: int) -> HookFn:
            def hook_fn(pattern: torch.Tensor, hook: HookPoint) -> None:
                store[layer] = pattern[:, :, q0:, key].mean(dim=1).detach()

            return hook_fn

        pairs = tuple(
            (f"blocks.{layer}.attn.hook_pattern", make(layer)) for layer in range(model.cfg.n_layers)
        )
        return HookSet(pairs, f"capture_attention_to(key={key})")

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "key": self.key, "query_start": self.query_start}

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], tensors: Mapping[str, torch.Tensor] | None = None
    ) -> CaptureAttention:
        return cls(int(d.get("key", 0)), int(d.get("query_start", 1)))


@dataclass(frozen=True)
class Knockout:
    """Block attention to the memory keys at some layers, with one of two masks (module docstring).

    ``direction`` and ``layers``: ``"forward"``, k → layers ``0..k-1``; ``"reverse"``, k → ``L-k..L-1``;
    ``"per_layer"``, l → layer l alone; ``"layers"``, a tuple → those layers. ``resolve(n_layers)`` gives the list.
    """

    direction: str
    layers: int | tuple[int, ...]
    mask: str = "text"
    keys: tuple[int, ...] = (0,)
    type: ClassVar[str] = "knockout"

    def __post_init__(self) -> None:
        check(
            self.direction in DIRECTIONS,
            f"knockout direction {self.direction!r}: use one of {', '.join(DIRECTIONS)}",
        )
        check(self.mask in MASKS, f"knockout mask {self.mask!r}: use one of {', '.join(MASKS)}")
        keys = tuple(sorted({int(k) for k in self.keys}))
        check(
            len(keys) > 0 and keys[0] >= 0, "knockout: give at least one key position (the memory positions)"
        )
        object.__setattr__(self, "keys", keys)
        if self.direction == "layers":
            lay = (self.layers,) if isinstance(self.layers, int) else self.layers
            object.__setattr__(self, "layers", tuple(sorted({int(x) for x in lay})))
        else:
            check(
                isinstance(self.layers, int),
                f"knockout {self.direction}: layers is one integer, got {self.layers!r}",
            )
            check(self.layers >= 0, f"knockout {self.direction}: {self.layers} is negative")

    def resolve(self, n_layers: int) -> list[int]:
        """The layers masked in a model of ``n_layers`` layers (checked)."""
        d, k, n = self.direction, self.layers, n_layers
        if d in ("forward", "reverse"):
            check(k <= n, f"knockout {d}:{k}: k must be in 0..{n} for a model of {n} layers")
            return list(range(k)) if d == "forward" else list(range(n - k, n))
        out = [k] if d == "per_layer" else list(k)
        check(all(0 <= x < n for x in out), f"knockout: layers must be in 0..{n - 1}, got {out}")
        return out

    def start_layer(self, n_layers: int) -> int | None:
        """First masked layer: the layers below it are the unmasked forward's (``None`` when nothing is masked)."""
        lay = self.resolve(n_layers)
        return min(lay) if lay else None

    @property
    def name(self) -> str:
        """Short label, ``forward:4``; a non-default mask or keys add ``@reference`` / ``#keys=0,1``."""
        k = ",".join(map(str, self.layers)) if self.direction == "layers" else str(self.layers)
        keys = "" if self.keys == (0,) else "#keys=" + ",".join(map(str, self.keys))
        return f"{self.direction}:{k}{keys}" + ("" if self.mask == "text" else f"@{self.mask}")

    @classmethod
    def parse(cls, name: str) -> Knockout:
        """Inverse of ``name`` (also reads the old sweep strings ``forward:4``, ``per_layer:3``)."""
        try:
            rest, _, mask = name.partition("@")
            rest, _, keys = rest.partition("#keys=")
            d, _, k = rest.partition(":")
            ks = tuple(int(x) for x in keys.split(",")) if keys else (0,)
            lay: int | tuple[int, ...] = tuple(int(x) for x in k.split(",")) if d == "layers" else int(k)
        except ValueError:
            raise CramlensError(
                f"knockout {name!r}: expected e.g. 'forward:4', 'layers:1,3' or 'reverse:2@reference'"
            ) from None
        return cls(d, lay, mask or "text", ks)

    def hooks(self, model: HookedTransformer) -> HookSet:
        lay = self.resolve(model.cfg.n_layers)
        fn = _text_mask(self.keys) if self.mask == "text" else _reference_mask(self.keys)
        pairs = tuple((f"blocks.{layer}.attn.hook_attn_scores", fn) for layer in lay)
        return HookSet(pairs, f"knockout(layers={span(lay)}, keys={list(self.keys)}, mask={self.mask})")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["keys"] = list(self.keys)
        if isinstance(self.layers, tuple):
            d["layers"] = list(self.layers)
        return {"type": self.type, **d}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], tensors: Mapping[str, torch.Tensor] | None = None) -> Knockout:
        lay = d["layers"]
        return cls(
            d["direction"],
            tuple(lay) if isinstance(lay, list) else int(lay),
            d.get("mask", "text"),
            tuple(d.get("keys", (0,))),
        )


def _text_mask(keys: tuple[int, ...]) -> HookFn:
    """Queries after the last memory key lose the memory keys; memory rows keep theirs (never an empty row)."""

    def hook_fn(scores: torch.Tensor, hook: HookPoint) -> torch.Tensor:
        scores = scores.clone()
        scores[:, :, max(keys) + 1 :, list(keys)] = torch.finfo(scores.dtype).min
        return scores

    return hook_fn


def _reference_mask(keys: tuple[int, ...]) -> HookFn:
    """The research code's mask: memory columns set for every row; rows left with no visible key become uniform."""

    def hook_fn(scores: torch.Tensor, hook: HookPoint) -> torch.Tensor:
        neg = torch.finfo(scores.dtype).min
        q, k = scores.shape[-2:]
        out = scores.clone()
        out[..., list(keys)] = neg
        # A row whose causally visible keys are all memory keys is all minima under an additive HF mask (future keys
        # carry the minimum there, TL's causal mask has -inf): softmax makes it uniform over every key.
        visible = torch.ones(q, k, dtype=torch.bool, device=scores.device).tril()
        visible[:, list(keys)] = False
        empty = ~visible.any(-1)
        out[:, :, empty, :] = neg
        return out

    return hook_fn


INTERVENTIONS: dict[str, type] = {c.type: c for c in (Inject, Capture, CaptureAttention, Knockout)}
Intervention = Inject | Capture | CaptureAttention | Knockout


def intervention_from_dict(
    d: Mapping[str, Any], tensors: Mapping[str, torch.Tensor] | None = None
) -> Intervention:
    """Read back one ``to_dict()`` (``tensors`` maps an ``Inject``'s ``ref`` to its embedding)."""
    kind = d.get("type")
    check(kind in INTERVENTIONS, f"intervention type {kind!r}: expected one of {', '.join(INTERVENTIONS)}")
    return INTERVENTIONS[kind].from_dict(d, tensors)


def interventions_to_config(items: Sequence[Intervention]) -> list[dict[str, Any]]:
    """The ``config.json`` form of a list of interventions."""
    return [x.to_dict() for x in items]


def hooks_of(items: Sequence[Intervention], model: HookedTransformer) -> HookSet:
    """One hook set from several interventions, in order."""
    out = HookSet()
    for x in items:
        out = out + x.hooks(model)
    return out
