"""Fused causal attention: one QKV GEMM, rotary without copies, ``scaled_dot_product_attention``.

Taken only while nothing can observe the layer's attention internals (see the package docstring); otherwise the
layer runs TransformerLens's own ``forward`` for that call. TL state read here: the grouped-query attention's
``_W_K`` / ``_b_K`` / ``_W_V`` / ``_b_V`` parameters, the only handle on the ``n_key_value_heads`` K/V weights
(TL's public ``W_K`` / ``W_V`` are fresh repeat-interleaved copies with ``n_heads`` heads, on every access).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformer_lens.components import AbstractAttention, GroupedQueryAttention

from .state import FastState, global_hooks, maybe_autocast, observed

_OLMO_QK = ("OlmoeForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM")


def static_ok(attn: AbstractAttention) -> bool:
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


def _qkv_build(W_Q, b_Q, W_K, b_K, W_V, b_V) -> dict[str, torch.Tensor]:
    def flat(w: torch.Tensor) -> torch.Tensor:  # [head, d_model, d_head] -> [(head d_head), d_model]
        return w.permute(0, 2, 1).reshape(-1, w.shape[1])

    return {
        "w": torch.cat([flat(W_Q), flat(W_K), flat(W_V)], dim=0),
        "b": torch.cat([b_Q.reshape(-1), b_K.reshape(-1), b_V.reshape(-1)]),
    }


def _o_build(W_O, b_O) -> dict[str, torch.Tensor]:  # [head, d_head, d_model] -> [d_model, (head d_head)]
    return {"w": W_O.reshape(-1, W_O.shape[-1]).t(), "b": b_O}


def _rope_build(sin, cos, n_rot: int, adjacent: bool) -> dict[str, torch.Tensor]:
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
    t = attn._cramlens_rope.get(
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


def _qk_norm(norm: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """TL's QK norm: the head-wise RMSNorm module on ``[batch * pos * head, d_head]`` rows (the shape its hooks see)."""
    return norm(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def attention_forward(
    self: AbstractAttention,
    query_input,
    key_input,
    value_input,
    past_kv_cache_entry=None,
    additive_attention_mask=None,
    attention_mask=None,
    position_bias=None,
) -> torch.Tensor:
    """``AbstractAttention.forward`` with TL's signature: the fused path when allowed, else TL's own code."""
    state: FastState = self._cramlens_state
    n_pos = query_input.shape[1]
    if attention_mask is not None and past_kv_cache_entry is None and bool(attention_mask.all()):
        # no padding (TL builds an all-ones mask for left-padding tokenizers): the same as no mask
        attention_mask = None
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
        and not (observed(self.hook_attn_scores) or observed(self.hook_pattern) or observed(self.hook_z))
        and not global_hooks()
    )
    if not fast:
        state.stats["tl_attn"] += 1
        with maybe_autocast(state, query_input.device.type):
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
    qkv_w = self._cramlens_qkv.get(src, _qkv_build, dtype)
    x = query_input.to(dtype)
    qkv = F.linear(x, qkv_w["w"], qkv_w["b"])
    B, P = qkv.shape[:2]
    q, k, v = qkv.split([n_q * d_head, n_kv * d_head, n_kv * d_head], dim=-1)
    q = self.hook_q(q.view(B, P, n_q, d_head))
    k = self.hook_k(k.view(B, P, n_kv, d_head))
    v = self.hook_v(v.view(B, P, n_kv, d_head))
    if c.use_qk_norm:
        q = _qk_norm(self.q_norm, q).to(dtype)
        k = _qk_norm(self.k_norm, k).to(dtype)
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
    o = self._cramlens_o.get((self.W_O, self.b_O), _o_build, dtype)
    return F.linear(z, o["w"], o["b"]).to(query_input.dtype)
