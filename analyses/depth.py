"""Truncated-depth variants of any HookedTransformer (REFERENCE C.8, CH ``make_first_last_layers_ckpt.py``).

:func:`truncate` keeps the blocks :func:`kept_layers` names for a scheme — ``first`` (``0..N-1``, the paper's
main table), ``last`` (``L-N..L-1``) or ``first_last`` (``0..N-1`` + ``L-N..L-1``, the width ablation) — with the
embedding, the final norm and the unembedding, and returns a *new* ``HookedTransformer`` whose ``cfg`` is rebuilt
through ``HookedTransformerConfig`` (so ``n_layers`` and ``n_params`` are consistent) with every per-layer config
list sliced to the kept blocks (Gemma's ``attn_types``: sliding-window vs global, which also picks the local rotary
base ``rotary_base_local``). Blocks are renumbered ``0..n-1`` (hook names follow), as the paper renumbers
``layer_idx``; per-block values derived from the *original* index (``attn_scale`` under
``scale_attn_by_inverse_layer_idx``) are copied from the source block, so each kept block computes exactly
what it computed in the full model. The source model is never modified (weights are copied). If the source
carries ``cramlens.fast.optimize``'s fast forwards, the variant gets them too, at the same precision.

The short finetune that restores language modelling after a cut is :mod:`analyses.recovery_finetune`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from transformer_lens import HookedTransformer
from transformer_lens.config.hooked_transformer_config import HookedTransformerConfig

from cramlens.errors import check

__all__ = ["SCHEMES", "kept_layers", "variant_name", "truncate"]

SCHEMES = ("first", "last", "first_last")
_PER_LAYER_CFG = ("attn_types",)  # config lists indexed by layer (TL 3.9: Gemma 2/3, GPT-Neo local/global)


def kept_layers(n_layers: int, n: int | None, scheme: str = "first") -> list[int]:
    """Indices of the blocks a scheme keeps from an ``n_layers``-block model (``n=None``: all of them)."""
    check(scheme in SCHEMES, f"unknown scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
    if n is None:
        return list(range(n_layers))
    check(isinstance(n, int) and n >= 1, f"depth N={n!r}; use an integer >= 1")
    total = 2 * n if scheme == "first_last" else n
    check(total <= n_layers, f"scheme {scheme} with N={n} keeps {total} blocks but the model has {n_layers}")
    if scheme == "first":
        return list(range(n))
    if scheme == "last":
        return list(range(n_layers - n, n_layers))
    return list(range(n)) + list(range(n_layers - n, n_layers))


def variant_name(n: int | None, scheme: str = "first") -> str:
    """``full``, ``first4``, ``last2``, ``first4+last4``."""
    if n is None:
        return "full"
    return f"first{n}+last{n}" if scheme == "first_last" else f"{scheme}{n}"


def _truncated_cfg(cfg: HookedTransformerConfig, keep: Sequence[int]) -> HookedTransformerConfig:
    d = copy.deepcopy(dict(cfg.to_dict()))  # TL's to_dict() returns the live __dict__: never edit it
    d["n_layers"] = len(keep)
    for key in _PER_LAYER_CFG:
        if d.get(key) is not None:
            d[key] = [d[key][i] for i in keep]
    d.pop("n_params", None)  # recomputed by __post_init__ for the new depth
    d["seed"] = None  # a cfg seed would reseed the global RNGs
    return HookedTransformerConfig.from_dict(d)


def truncate(
    model: HookedTransformer,
    n: int | None = None,
    scheme: str = "first",
    layers: Sequence[int] | None = None,
) -> HookedTransformer:
    """A new model with only some blocks of ``model`` (see module doc); frozen and in eval mode, like the source.

    Pass ``n`` and ``scheme`` (``first``/``last``/``first_last``), or an explicit increasing list ``layers``.
    """
    L = model.cfg.n_layers
    keep = list(layers) if layers is not None else kept_layers(L, n, scheme)
    check(len(keep) >= 1, "truncate: keep at least one block")
    check(
        all(0 <= i < L for i in keep) and keep == sorted(set(keep)),
        f"truncate: layers {keep} must be increasing indices in 0..{L - 1}",
    )
    cfg = _truncated_cfg(model.cfg, keep)
    cfg.model_name = f"{model.cfg.model_name}-{_name_for(keep, L)}"
    from cramlens.tl_compat import quiet_tl

    with torch.random.fork_rng(devices=[]), quiet_tl():
        new = HookedTransformer(cfg, tokenizer=model.tokenizer, move_to_device=False)
    state = {}
    for k, v in model.state_dict().items():
        if k.startswith("blocks."):
            _, idx, rest = k.split(".", 2)
            if int(idx) not in keep:
                continue
            k = f"blocks.{keep.index(int(idx))}.{rest}"
        state[k] = v
    new.load_state_dict(state, strict=True)  # copies: the source keeps its own tensors
    for j, i in enumerate(keep):
        new.blocks[j].attn.attn_scale = model.blocks[i].attn.attn_scale
        check(
            getattr(new.blocks[j].attn, "attn_type", None)
            == getattr(model.blocks[i].attn, "attn_type", None),
            f"truncate: block {i} attention type did not carry over",
        )
    new.to(model.cfg.device, print_details=False)
    new.cfg.default_prepend_bos = model.cfg.default_prepend_bos
    new.eval()
    new.requires_grad_(any(p.requires_grad for p in model.parameters()))
    new.kept_layers = keep  # provenance: indices in the source model
    from cramlens import fast

    if fast.is_optimized(model):
        fast.optimize(new, fast.precision(model))
    return new


def _name_for(keep: Sequence[int], L: int) -> str:
    n = len(keep)
    if keep == list(range(L)):
        return "full"
    if keep == list(range(n)):
        return f"first{n}"
    if keep == list(range(L - n, L)):
        return f"last{n}"
    h = n // 2
    if n % 2 == 0 and keep == list(range(h)) + list(range(L - h, L)):
        return f"first{h}+last{h}"
    return "layers" + "-".join(map(str, keep))
