"""A fast, hook-faithful hot path for frozen HookedTransformers: ``optimize(model)``.

TransformerLens 3.9 rebuilds weight layouts on every forward (``W.T.contiguous()`` in the gated MLP and the
unembedding, einops rearranges of ``W_Q/W_K/W_V/W_O`` in attention), runs attention as explicit
``scores -> mask -> softmax -> pattern @ v`` with ``repeat_interleave`` for grouped-query heads, and computes
``ln1`` three times per block. For cramming (a frozen model, thousands of forward+backward passes that differ
only in one injected vector) that overhead was ~2x a plain transformers step. ``optimize(model)`` swaps faster
``forward`` methods onto the *module instances* (classes untouched; ``restore(model)`` undoes it):

- **Weights in the layout the forward reads**, cached: per attention layer one fused
  ``[(n_q + 2 n_kv) d_head, d_model]`` QKV matrix (one GEMM instead of three) and ``W_O`` as
  ``[d_model, n_q d_head]``; per gated MLP ``W_gate``/``W_in``/``W_out`` in ``nn.Linear`` layout (kept as two
  GEMMs: a fused 7 MB gate+in weight measured slower per FLOP at 64-512 rows here); ``W_U`` read through a free
  transposed view. All-zero biases (Llama-family models have none; TL stores zeros) are dropped so ``addmm``
  does not first copy a broadcast bias into every output. Caches are keyed on each source parameter's
  identity, storage and version counter: any in-place edit (``load_state_dict``, ``param.data.copy_``, a
  weight ablation) rebuilds them on the next forward. If a source parameter requires grad while autograd is
  on, the layout is built differentiably per call instead, so weight gradients stay exact.
- **Fused causal attention** (``F.scaled_dot_product_attention`` with native grouped-query heads) *only while
  nothing can observe the layer's attention internals*: any forward/backward hook on that layer's
  ``hook_attn_scores``, ``hook_pattern`` or ``hook_z`` (knockout, attention capture, ``run_with_cache``) sends
  that layer through TransformerLens's own ``forward`` for that call. So do KV caches, explicit attention
  masks (left padding), ``use_attn_result``, alibi / relative biases, score soft-capping, attention sinks,
  OLMo QK-norm, ``clip_qkv``, log-n / dynamic-NTK rotary, split QKV inputs, and local windows shorter than
  the sequence.
- **One ``ln1`` per block** (TL calls it separately for the q, k and v inputs); any hook on
  ``blocks.{l}.ln1.*`` sends the block through TL's ``forward``, so those hooks fire three times as in TL.
- **Norms** (RMSNorm, RMSNormPre, LayerNorm, LayerNormPre) as ``x * rsqrt(ms + eps)`` / ``F.layer_norm``
  (cheaper backward than TL's division) while their ``hook_scale`` / ``hook_normalized`` are unobserved.
- **bf16** (``optimize(model, precision="bf16")``, opt-in): the block GEMMs (QKV, O, MLP) run in bfloat16 on
  cached bf16 weights (oneDNN AVX512-BF16 kernels, ~2.2x fp32 throughput here). The residual stream, norms,
  rotary, the attention core (CPU flash attention is slower in bf16), the unembedding *forward* and the loss
  stay fp32, so logits, argmax and margins are computed at fp32 from a bf16-perturbed residual; the
  unembedding's input-gradient GEMM uses a bf16 copy of ``W_U``. Layers that fall back to TL run TL's code
  under ``torch.autocast("cpu", bfloat16)``. The memory parameter and its Adam state are untouched (fp32).
  Measured horizon differences: ``benchmarks/results_perf.md``.

**Hook points on the fast path.** Still fire, with TL's shapes and values (up to fp32 rounding of the fused
kernels): ``hook_embed``, ``hook_pos_embed``, ``hook_tokens``; every block's ``hook_resid_pre``,
``hook_attn_out``, ``hook_resid_mid``, ``hook_mlp_in``, ``hook_mlp_out``, ``hook_resid_post``; attention
``hook_q``, ``hook_k``, ``hook_v`` (K/V with ``n_key_value_heads`` heads, as TL), ``hook_rot_q``,
``hook_rot_k``; MLP ``hook_pre``, ``hook_pre_linear``, ``hook_post``; ``unembed.hook_in`` / ``hook_out``.
Hooking any of the following switches just that module to TL's code for that call, so they too fire exactly
as in TL: ``attn.hook_attn_scores``, ``attn.hook_pattern``, ``attn.hook_z``, every norm's ``hook_scale`` /
``hook_normalized``. (``hook_result`` exists only with ``use_attn_result``, which always takes TL's path.)
Global ``nn.Module`` hooks disable the fast path everywhere. Numerics: fused GEMMs and SDPA accumulate in a
different order than TL's kernels, so fp32 logits agree with the unoptimised model to ~1e-5, not bit for bit.
``stats(model)`` counts attention calls per path.

**Switching precision.** ``using(model, "bf16")`` runs an optimised model at another precision for a ``with``
block; the weight caches keep one entry per dtype, so switching back and forth rebuilds nothing (the bf16 search
of :mod:`cramlens.judge` alternates bf16 optimisation forwards with fp32 judge forwards this way).
``shared_copy(model, precision)`` is an optimised copy of an *unoptimised* model that shares its parameters and
buffers (so its caches are the only new memory), built once per model.

Modules: ``state`` (settings, weight caches, the hook tests), ``attention`` (fused attention), ``layers`` (MLP,
block, unembedding, norms); this file installs and removes them.
"""

from __future__ import annotations

import contextlib
import copy
import types
import weakref
from collections.abc import Iterator

from torch import nn
from transformer_lens import HookedTransformer
from transformer_lens.components import (
    AbstractAttention,
    LayerNorm,
    LayerNormPre,
    RMSNorm,
    RMSNormPre,
    TransformerBlock,
    Unembed,
)

from . import attention, layers
from .state import PRECISIONS, FastState, WeightCache

__all__ = [
    "PRECISIONS",
    "FastState",
    "is_optimized",
    "optimize",
    "precision",
    "restore",
    "shared_copy",
    "stats",
    "using",
]


def _install(module: nn.Module, forward, into: FastState, **attrs: object) -> None:
    """Bind ``forward`` on this instance (the class is untouched), set its ``_cramlens_*`` attributes and record
    the module in ``into.modules`` for :func:`restore`."""
    for name, value in attrs.items():
        setattr(module, f"_cramlens_{name}", value)
    module.forward = types.MethodType(forward, module)
    into.modules.append(module)


def optimize(model: HookedTransformer, precision: str = "fp32") -> HookedTransformer:
    """Install the fast forward methods on ``model``'s modules (in place; idempotent; undo with :func:`restore`).

    ``precision``: ``"fp32"`` (default; same results as TL up to fp32 rounding) or ``"bf16"`` (bf16 GEMMs in the
    blocks, fp32 residual stream / norms / unembedding / loss; opt-in, see the module docstring).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    old = getattr(model, "_cramlens_fast", None)
    if old is not None:
        old.precision = precision
        return model
    state = FastState(precision=precision)
    for block in getattr(model, "blocks", []):
        if not isinstance(block, TransformerBlock):
            continue
        attn = block.attn
        if isinstance(attn, AbstractAttention) and type(attn).forward is AbstractAttention.forward:
            caches = {"qkv": WeightCache(), "o": WeightCache(), "rope": WeightCache()}
            ok = attention.static_ok(attn)
            _install(attn, attention.attention_forward, state, state=state, static_ok=ok, **caches)
        mlp = getattr(block, "mlp", None)
        if layers.gated_mlp_static_ok(mlp):
            _install(mlp, layers.gated_mlp_forward, state, state=state, weights=WeightCache())
        if type(block).forward is TransformerBlock.forward:
            _install(block, layers.block_forward, state, static_ok=layers.block_static_ok(block))
    unembed = getattr(model, "unembed", None)
    if type(unembed) is Unembed:
        _install(unembed, layers.unembed_forward, state, state=state, bias=WeightCache(), wlow=WeightCache())
    for m in model.modules():
        if type(m) in (RMSNorm, RMSNormPre, LayerNorm, LayerNormPre):
            _install(m, layers.norm_forward, state)
    model._cramlens_fast = state
    return model


def restore(model: HookedTransformer) -> HookedTransformer:
    """Undo :func:`optimize`: TL's own forward methods, no cached weights."""
    state = getattr(model, "_cramlens_fast", None)
    if state is None:
        return model
    for m in state.modules:
        for name in list(vars(m)):
            if name == "forward" or name.startswith("_cramlens"):
                delattr(m, name)
    del model._cramlens_fast
    return model


def is_optimized(model: HookedTransformer) -> bool:
    return getattr(model, "_cramlens_fast", None) is not None


def precision(model: HookedTransformer) -> str:
    """``"fp32"``/``"bf16"`` for an optimised model, ``"tl"`` for an untouched one."""
    state = getattr(model, "_cramlens_fast", None)
    return "tl" if state is None else state.precision


def stats(model: HookedTransformer) -> dict[str, int]:
    """Counts of attention calls that took the fused path vs TL's path (for tests and diagnostics)."""
    state = getattr(model, "_cramlens_fast", None)
    return dict(state.stats) if state is not None else {}


@contextlib.contextmanager
def using(model: HookedTransformer, precision: str) -> Iterator[HookedTransformer]:
    """An optimised ``model`` computing at ``precision`` inside the ``with`` block (restored on exit)."""
    state = getattr(model, "_cramlens_fast", None)
    if state is None:
        raise ValueError("fast.using needs a model prepared by fast.optimize")
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    old, state.precision = state.precision, precision
    try:
        yield model
    finally:
        state.precision = old


_SHARED_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def shared_copy(model: HookedTransformer, precision: str) -> HookedTransformer:
    """An optimised copy of ``model`` on the *same* parameter, buffer and tokenizer objects, at ``precision``.

    For an unoptimised model that must stay as it is (TransformerLens's own forward) while another forward of the
    same weights runs on the fast path. Built once per model (and per precision); an in-place edit of a shared
    weight reaches the copy, whose caches rebuild on the next forward.
    """
    copies = _SHARED_COPIES.setdefault(model, {})
    if precision not in copies:
        memo: dict[int, object] = {id(t): t for t in (*model.parameters(), *model.buffers())}
        tok = getattr(model, "tokenizer", None)
        if tok is not None:
            memo[id(tok)] = tok
        out = copy.deepcopy(model, memo)
        if is_optimized(out):  # the source was optimised after all: start from TL's forwards
            restore(out)
        copies[precision] = optimize(out, precision)
    return copies[precision]
