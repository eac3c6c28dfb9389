"""Fast forwards of the other modules: gated MLP, transformer block (one ``ln1``), unembedding, norms."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens.components import LayerNorm, RMSNorm, RMSNormPre, TransformerBlock, Unembed
from transformer_lens.components.mlps.gated_mlp import GatedMLP
from transformer_lens.hook_points import HookPoint
from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

from .state import FastState, global_hooks, observed


# --------------------------------------------------------------------------------------------------- MLP
def _gated_build(W_gate, W_in, W_out, b_in, b_out) -> dict[str, torch.Tensor]:
    # HF's nn.Linear layouts. Not fused into one [2 d_mlp, d_model] GEMM: at d_mlp=1536 the fused weight
    # (7 MB) measured up to 2x slower per FLOP than two 3.5 MB GEMMs for 64-512 rows on this CPU.
    return {
        "w_gate": W_gate.t(),  # [d_mlp, d_model]
        "w_in": W_in.t(),  # [d_mlp, d_model]
        "w_out": W_out.t(),  # [d_model, d_mlp]
        "b_in": b_in,
        "b_out": b_out,
    }


def gated_mlp_static_ok(mlp: nn.Module | None) -> bool:
    """A plain TL ``GatedMLP`` (not 4-bit, no layer-norm activation)."""
    return (
        type(mlp) is GatedMLP
        and not mlp.cfg.load_in_4bit
        and not (mlp.cfg.is_layer_norm_activation() and getattr(mlp, "ln", None) is not None)
    )


def gated_mlp_forward(self: GatedMLP, x: torch.Tensor) -> torch.Tensor:
    state: FastState = self._cramlens_state
    dtype = state.compute_dtype(self.W_gate)
    src = (self.W_gate, self.W_in, self.W_out, self.b_in, self.b_out)
    w = self._cramlens_weights.get(src, _gated_build, dtype)
    x = x.to(dtype)
    pre = self.hook_pre(F.linear(x, w["w_gate"]))
    lin = self.hook_pre_linear(F.linear(x, w["w_in"]))
    post = self.act_fn(pre) * lin
    if w["b_in"] is not None:
        post = post + w["b_in"]
    post = self.hook_post(post)
    return F.linear(post, w["w_out"], w["b_out"]).to(x.dtype)


# --------------------------------------------------------------------------------------------------- block
def block_static_ok(block: TransformerBlock) -> bool:
    c = block.cfg
    return (
        not c.use_attn_in
        and not c.use_split_qkv_input
        and c.original_architecture not in POST_NORM_ARCHITECTURES
        and not c.parallel_attn_mlp
        and not c.attn_only
    )


def block_forward(
    self: TransformerBlock,
    resid_pre: torch.Tensor,
    shortformer_pos_embed=None,
    past_kv_cache_entry=None,
    attention_mask=None,
) -> torch.Tensor:
    """TL's block with ``ln1`` computed once (TL's own ``forward`` when any ``ln1`` hook point is observed)."""
    ln1 = self.ln1
    if (
        not self._cramlens_static_ok
        or shortformer_pos_embed is not None
        or any(observed(m) for m in ln1.modules() if isinstance(m, HookPoint))
        or global_hooks()
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
        # w_low is [out, in] contiguous (W_U.T): g @ w_low. Not F.linear(g, W_U) on [in, out]: that oneDNN bf16
        # kernel dies with SIGFPE (integer divide) at exactly 32 rows x 49,152 vocabulary on this CPU (every row
        # count 1-200, 256-1024 tried: only 32), which a batch with 32 scored targets hits. This layout crashed at
        # none of them and measured 2.2-4x faster at 16-31 rows, equal at 64, 7-12% slower at 128-256 (1 thread).
        (w_low,) = ctx.saved_tensors
        return torch.matmul(g.to(w_low.dtype), w_low).to(ctx.out_dtype), None, None, None


def unembed_forward(self: Unembed, residual: torch.Tensor) -> torch.Tensor:
    residual = self.hook_in(residual)
    state: FastState = self._cramlens_state
    # W_U [d_model, d_vocab] read through a transposed view: the same GEMM without TL's 4*d*V-byte copy
    # (only the bias is cached, to know whether it is all zero)
    b = self._cramlens_bias.get((self.b_U,), lambda b_U: {"b": b_U}, self.b_U.dtype)["b"]
    w = self.W_U.t()
    frozen = not self.W_U.requires_grad and (b is None or not b.requires_grad)
    if state.precision != "fp32" and residual.requires_grad and frozen:
        w_low = self._cramlens_wlow.get((self.W_U,), lambda W_U: {"w": W_U.t()}, torch.bfloat16)["w"]
        return self.hook_out(_LinearLowPrecisionBackward.apply(residual, w, b, w_low))
    return self.hook_out(F.linear(residual, w, b))


# --------------------------------------------------------------------------------------------------- norms
def norm_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """RMSNorm / RMSNormPre / LayerNorm / LayerNormPre without their hook points (TL's code when hooked).

    ``x * rsqrt(ms + eps)`` is TL's ``x / sqrt(ms + eps)`` up to rounding, with a cheaper backward (a mul, not
    a div); LayerNorm goes through ``F.layer_norm`` (same biased variance as TL).
    """
    if observed(self.hook_scale) or observed(self.hook_normalized) or global_hooks():
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
