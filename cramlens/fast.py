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
"""

from __future__ import annotations

import contextlib
import types
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens import HookedTransformer
from transformer_lens.components import (
    AbstractAttention,
    GroupedQueryAttention,
    LayerNorm,
    LayerNormPre,
    RMSNorm,
    RMSNormPre,
    TransformerBlock,
    Unembed,
)
from transformer_lens.components.mlps.gated_mlp import GatedMLP
from transformer_lens.hook_points import HookPoint
from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
_OLMO_QK = ("OlmoeForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM")


@dataclass
class _Cache:
    """Derived weights of one module in one dtype, valid while the source parameters are unchanged."""

    key: tuple = ()
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class FastState:
    """What ``optimize`` attached to a model (``model._cramlens_fast``)."""

    precision: str = "fp32"
    modules: list[nn.Module] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=lambda: {"fast_attn": 0, "tl_attn": 0})

    def compute_dtype(self, weight: torch.Tensor) -> torch.dtype:
        """GEMM dtype for a module whose weights are ``weight``: bf16 when asked, else the weights' own dtype
        (an fp32 model stays fp32; a model loaded in bf16/fp16 is not silently upcast)."""
        return torch.bfloat16 if self.precision == "bf16" else weight.dtype


# --------------------------------------------------------------------------------------------------- helpers
def _observed(hp: nn.Module | None) -> bool:
    """True when a hook (TL's or a raw PyTorch one) could observe this hook point."""
    if hp is None:
        return False
    return bool(hp._forward_hooks or hp._forward_pre_hooks or hp._backward_hooks or hp._backward_pre_hooks)


def _global_hooks() -> bool:
    m = torch.nn.modules.module
    return bool(
        m._global_forward_hooks
        or m._global_forward_pre_hooks
        or m._global_backward_hooks
        or m._global_backward_pre_hooks
    )


def _weights(module: nn.Module, sources: tuple[torch.Tensor, ...], build, dtype: torch.dtype) -> dict:
    """Cached ``build(*sources)`` cast to ``dtype``; rebuilt when a source changes; differentiable when needed."""
    if torch.is_grad_enabled() and any(p.requires_grad for p in sources):
        return {k: v.to(dtype) for k, v in build(*sources).items()}  # weight grads requested: no cache
    key = tuple((id(p), p.data_ptr(), p._version, p.dtype, p.device) for p in sources)
    caches: dict[torch.dtype, _Cache] = module._cramlens_cache
    cache = caches.setdefault(dtype, _Cache())
    if cache.key != key:
        with torch.no_grad():
            built = {k: v.to(dtype).contiguous() for k, v in build(*sources).items()}
            # an all-zero bias (Llama-family models have none; TL stores zeros) is dropped: ``addmm`` would
            # first copy the broadcast bias into the [rows, out] result, which for the unembedding is M x d_vocab
            cache.tensors = {
                k: (None if k.startswith("b") and not bool(v.any()) else v) for k, v in built.items()
            }
        cache.key = key
    return cache.tensors


def _state(module: nn.Module) -> FastState:
    return module._cramlens_state


@contextlib.contextmanager
def _maybe_autocast(state: FastState, device_type: str):
    if state.precision == "fp32" or torch.is_autocast_enabled(device_type):
        yield
    else:
        with torch.autocast(device_type, dtype=torch.bfloat16):
            yield


# --------------------------------------------------------------------------------------------------- attention
def _attn_static_ok(attn: AbstractAttention) -> bool:
    """Config features the fast attention implements (checked once at ``optimize``)."""
    c = attn.cfg
    return (
        not c.load_in_4bit
        and not c.use_attn_result
        and not c.use_split_qkv_input
        and not c.use_attn_in
        and c.positional_embedding_type in ("standard", "rotary")
        and not c.attn_scores_soft_cap > 0
        and not getattr(c, "use_attention_sinks", False)
        and c.original_architecture not in _OLMO_QK
        and getattr(c, "clip_qkv", None) is None
        and not getattr(c, "use_logn_attn", False)
        and not getattr(c, "use_dynamic_ntk_rope", False)
        and c.attention_dir == "causal"
        and (c.positional_embedding_type != "rotary" or c.rotary_dim is not None)
        and not (isinstance(attn, GroupedQueryAttention) and c.ungroup_grouped_query_attention)
        and type(attn).calculate_attention_scores
        in (AbstractAttention.calculate_attention_scores, GroupedQueryAttention.calculate_attention_scores)
    )


def _qkv_build(W_Q, b_Q, W_K, b_K, W_V, b_V):
    def flat(w):  # [head, d_model, d_head] -> [(head d_head), d_model]
        return w.permute(0, 2, 1).reshape(-1, w.shape[1])

    return {
        "w": torch.cat([flat(W_Q), flat(W_K), flat(W_V)], dim=0),
        "b": torch.cat([b_Q.reshape(-1), b_K.reshape(-1), b_V.reshape(-1)]),
    }


def _o_build(W_O, b_O):  # [head, d_head, d_model] -> [d_model, (head d_head)]
    return {"w": W_O.reshape(-1, W_O.shape[-1]).t(), "b": b_O}


def _rope_build(sin, cos, n_rot: int, adjacent: bool):
    """sin with the sign of the rotate-half folded in: x*cos + swap(x)*sin_signed == TL's apply_rotary."""
    s = sin.clone()
    if adjacent:
        s[..., ::2] = -s[..., ::2]
    else:
        s[..., : n_rot // 2] = -s[..., : n_rot // 2]
    return {"sin": s, "cos": cos}


def _rotary(attn: AbstractAttention, x: torch.Tensor) -> torch.Tensor:
    """TL's ``apply_rotary`` (no cache offset, no attention mask) without the clone + slice copies."""
    n_rot = attn.cfg.rotary_dim
    pos = x.shape[1]
    if pos > attn.rotary_cos.shape[0]:
        return attn.apply_rotary(x, 0, None)  # TL extends its tables
    t = _weights(
        attn._cramlens_rope,
        (attn.rotary_sin, attn.rotary_cos),
        lambda s, c: _rope_build(s, c, n_rot, attn.cfg.rotary_adjacent_pairs),
        attn.rotary_cos.dtype,
    )
    cos = t["cos"][None, :pos, None, :]
    sin = t["sin"][None, :pos, None, :]
    xr = x[..., :n_rot]
    if attn.cfg.rotary_adjacent_pairs:
        swapped = xr.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
    else:
        h = n_rot // 2
        swapped = torch.cat([xr[..., h:], xr[..., :h]], dim=-1)
    out = xr * cos.to(x.dtype) + swapped * sin.to(x.dtype)
    if n_rot < x.shape[-1]:
        out = torch.cat([out, x[..., n_rot:]], dim=-1)
    return out


def _attn_forward(
    self: AbstractAttention,
    query_input,
    key_input,
    value_input,
    past_kv_cache_entry=None,
    additive_attention_mask=None,
    attention_mask=None,
    position_bias=None,
):
    state = _state(self)
    n_pos = query_input.shape[1]
    if attention_mask is not None and past_kv_cache_entry is None and bool(attention_mask.all()):
        attention_mask = (
            None  # no padding (TL builds an all-ones mask for left-padding tokenizers): same as None
        )
    fast = (
        self._cramlens_static_ok
        and past_kv_cache_entry is None
        and additive_attention_mask is None
        and attention_mask is None
        and position_bias is None
        and query_input is key_input
        and key_input is value_input
        and query_input.dim() == 3
        and not (self.attn_type == "local" and n_pos > self.cfg.window_size)
        and not (_observed(self.hook_attn_scores) or _observed(self.hook_pattern) or _observed(self.hook_z))
        and not _global_hooks()
    )
    if not fast:
        state.stats["tl_attn"] += 1
        with _maybe_autocast(state, query_input.device.type):
            out = type(self).forward(
                self,
                query_input,
                key_input,
                value_input,
                past_kv_cache_entry=past_kv_cache_entry,
                additive_attention_mask=additive_attention_mask,
                attention_mask=attention_mask,
                position_bias=position_bias,
            )
        return out.to(query_input.dtype)
    state.stats["fast_attn"] += 1
    c = self.cfg
    gqa = isinstance(self, GroupedQueryAttention)
    n_q = c.n_heads
    n_kv = c.n_key_value_heads if gqa else c.n_heads
    d_head = c.d_head
    if gqa:
        src = (self.W_Q, self.b_Q, self._W_K, self._b_K, self._W_V, self._b_V)
    else:
        src = (self.W_Q, self.b_Q, self.W_K, self.b_K, self.W_V, self.b_V)
    dtype = state.compute_dtype(self.W_Q)
    qkv_w = _weights(self._cramlens_qkv, src, _qkv_build, dtype)
    x = query_input.to(dtype)
    qkv = F.linear(x, qkv_w["w"], qkv_w["b"])
    B, P = qkv.shape[:2]
    q, k, v = qkv.split([n_q * d_head, n_kv * d_head, n_kv * d_head], dim=-1)
    q = self.hook_q(q.view(B, P, n_q, d_head))
    k = self.hook_k(k.view(B, P, n_kv, d_head))
    v = self.hook_v(v.view(B, P, n_kv, d_head))
    if c.use_qk_norm:
        q = self._apply_qk_norm(q, self.q_norm).to(dtype)
        k = self._apply_qk_norm(k, self.k_norm).to(dtype)
    if c.positional_embedding_type == "rotary":
        q = self.hook_rot_q(_rotary(self, q))
        k = self.hook_rot_k(_rotary(self, k))
    # the attention core stays in the input precision: CPU flash attention measured slower in bf16 than fp32
    act = query_input.dtype
    z = F.scaled_dot_product_attention(
        q.transpose(1, 2).to(act),
        k.transpose(1, 2).to(act),
        v.transpose(1, 2).to(act),
        is_causal=True,
        scale=1.0 / self.attn_scale,
        enable_gqa=n_kv != n_q,
    )  # [batch, head, pos, d_head]
    z = z.transpose(1, 2).reshape(B, P, n_q * d_head).to(dtype)
    o = _weights(self._cramlens_o, (self.W_O, self.b_O), _o_build, dtype)
    return F.linear(z, o["w"], o["b"]).to(query_input.dtype)


# --------------------------------------------------------------------------------------------------- MLP
def _gated_build(W_gate, W_in, W_out, b_in, b_out):
    # HF's nn.Linear layouts. Not fused into one [2 d_mlp, d_model] GEMM: at d_mlp=1536 the fused weight
    # (7 MB) measured up to 2x slower per FLOP than two 3.5 MB GEMMs for 64-512 rows on this CPU.
    return {
        "w_gate": W_gate.t(),  # [d_mlp, d_model]
        "w_in": W_in.t(),  # [d_mlp, d_model]
        "w_out": W_out.t(),  # [d_model, d_mlp]
        "b_in": b_in,
        "b_out": b_out,
    }


def _gated_mlp_forward(self: GatedMLP, x):
    state = _state(self)
    dtype = state.compute_dtype(self.W_gate)
    src = (self.W_gate, self.W_in, self.W_out, self.b_in, self.b_out)
    w = _weights(self._cramlens_cache_owner, src, _gated_build, dtype)
    x = x.to(dtype)
    pre = self.hook_pre(F.linear(x, w["w_gate"]))
    lin = self.hook_pre_linear(F.linear(x, w["w_in"]))
    post = self.act_fn(pre) * lin
    if w["b_in"] is not None:
        post = post + w["b_in"]
    post = self.hook_post(post)
    return F.linear(post, w["w_out"], w["b_out"]).to(x.dtype)


# --------------------------------------------------------------------------------------------------- block
def _block_static_ok(block: TransformerBlock) -> bool:
    c = block.cfg
    return (
        not c.use_attn_in
        and not c.use_split_qkv_input
        and c.original_architecture not in POST_NORM_ARCHITECTURES
        and not c.parallel_attn_mlp
        and not c.attn_only
    )


def _block_forward(
    self: TransformerBlock,
    resid_pre,
    shortformer_pos_embed=None,
    past_kv_cache_entry=None,
    attention_mask=None,
):
    ln1 = self.ln1
    if (
        not self._cramlens_static_ok
        or shortformer_pos_embed is not None
        or any(_observed(m) for m in ln1.modules() if isinstance(m, HookPoint))
        or _global_hooks()
    ):
        return type(self).forward(self, resid_pre, shortformer_pos_embed, past_kv_cache_entry, attention_mask)
    resid_pre = self.hook_resid_pre(resid_pre)
    x = ln1(resid_pre)  # once: TL computes the same ln1(resid_pre) for q, k and v separately
    attn_out = self.attn(
        query_input=x,
        key_input=x,
        value_input=x,
        past_kv_cache_entry=past_kv_cache_entry,
        attention_mask=attention_mask,
    )
    if self.cfg.use_normalization_before_and_after:
        attn_out = self.ln1_post(attn_out)
    attn_out = self.hook_attn_out(attn_out)
    resid_mid = self.hook_resid_mid(resid_pre + attn_out)
    mlp_in = resid_mid if not self.cfg.use_hook_mlp_in else self.hook_mlp_in(resid_mid.clone())
    mlp_out = self.apply_mlp(self.ln2(mlp_in))
    return self.hook_resid_post(resid_mid + mlp_out)


# --------------------------------------------------------------------------------------------------- unembed
class _LinearLowPrecisionBackward(torch.autograd.Function):
    """``F.linear(x, w, b)`` in full precision; the input gradient ``g @ w`` from a low-precision copy of ``w``.

    For a frozen weight only the input gradient exists, so the forward (logits, argmax, margins: every
    convergence decision) stays exact fp32 while the backward GEMM runs on the bf16 kernels.
    """

    @staticmethod
    def forward(ctx, x, w, b, w_low):
        ctx.save_for_backward(w_low)
        ctx.out_dtype = x.dtype
        return F.linear(x, w, b)

    @staticmethod
    def backward(ctx, g):
        (w_low,) = ctx.saved_tensors  # [in, out]: F.linear(g, w_low) = g @ w_low.T (the faster layout here)
        return F.linear(g.to(w_low.dtype), w_low).to(ctx.out_dtype), None, None, None


def _unembed_forward(self: Unembed, residual):
    residual = self.hook_in(residual)
    state = _state(self)
    # W_U [d_model, d_vocab] read through a transposed view: the same GEMM without TL's 4*d*V-byte copy
    # (only the bias is cached, to know whether it is all zero)
    b = _weights(self._cramlens_holder, (self.b_U,), lambda b_U: {"b": b_U}, self.b_U.dtype)["b"]
    w = self.W_U.t()
    frozen = not self.W_U.requires_grad and (b is None or not b.requires_grad)
    if state.precision != "fp32" and residual.requires_grad and frozen:
        w_low = _weights(self._cramlens_wlow, (self.W_U,), lambda W_U: {"w": W_U}, torch.bfloat16)["w"]
        return self.hook_out(_LinearLowPrecisionBackward.apply(residual, w, b, w_low))
    return self.hook_out(F.linear(residual, w, b))


# --------------------------------------------------------------------------------------------------- norms
def _norm_forward(self: nn.Module, x):
    """RMSNorm / RMSNormPre / LayerNorm / LayerNormPre without their hook points (TL's code when hooked).

    ``x * rsqrt(ms + eps)`` is TL's ``x / sqrt(ms + eps)`` up to rounding, with a cheaper backward (a mul, not
    a div); LayerNorm goes through ``F.layer_norm`` (same biased variance as TL).
    """
    if _observed(self.hook_scale) or _observed(self.hook_normalized) or _global_hooks():
        return type(self).forward(self, x)
    if self.cfg.dtype not in (torch.float32, torch.float64):
        x = x.to(torch.float32)
    kind = type(self)
    w = getattr(self, "w", None)
    if kind in (RMSNorm, RMSNormPre):
        x = (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)).to(self.cfg.dtype)
        return x * w if w is not None else x
    if kind is LayerNorm:
        return F.layer_norm(x, (x.shape[-1],), eps=self.eps).to(self.cfg.dtype) * w + self.b
    return F.layer_norm(x, (x.shape[-1],), eps=self.eps).to(self.cfg.dtype)


# --------------------------------------------------------------------------------------------------- public API
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
            attn._cramlens_state = state
            attn._cramlens_static_ok = _attn_static_ok(attn)
            attn._cramlens_qkv = types.SimpleNamespace(_cramlens_cache={})
            attn._cramlens_o = types.SimpleNamespace(_cramlens_cache={})
            attn._cramlens_rope = types.SimpleNamespace(_cramlens_cache={})
            attn.forward = types.MethodType(_attn_forward, attn)
            state.modules.append(attn)
        mlp = getattr(block, "mlp", None)
        if (
            type(mlp) is GatedMLP
            and not mlp.cfg.load_in_4bit
            and not (mlp.cfg.is_layer_norm_activation() and getattr(mlp, "ln", None) is not None)
        ):
            mlp._cramlens_state = state
            mlp._cramlens_cache_owner = types.SimpleNamespace(_cramlens_cache={})
            mlp.forward = types.MethodType(_gated_mlp_forward, mlp)
            state.modules.append(mlp)
        if type(block).forward is TransformerBlock.forward:
            block._cramlens_static_ok = _block_static_ok(block)
            block.forward = types.MethodType(_block_forward, block)
            state.modules.append(block)
    unembed = getattr(model, "unembed", None)
    if type(unembed) is Unembed:
        unembed._cramlens_state = state
        unembed._cramlens_holder = types.SimpleNamespace(_cramlens_cache={})
        unembed._cramlens_wlow = types.SimpleNamespace(_cramlens_cache={})
        unembed.forward = types.MethodType(_unembed_forward, unembed)
        state.modules.append(unembed)
    for m in model.modules():
        if type(m) in (RMSNorm, RMSNormPre, LayerNorm, LayerNormPre):
            m.forward = types.MethodType(_norm_forward, m)
            state.modules.append(m)
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
