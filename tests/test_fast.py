"""cramlens.fast: the optimised hot path must give TL's results, hooks included (tiny random models)."""

from __future__ import annotations

import copy

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from cramlens import fast
from cramlens.forward import logits_from_residual, residual_at_targets, score
from cramlens.hooks import capture, capture_attention_to, forward_knockout, inject, knockout
from cramlens.layout import Layout, build_batch

ATOL = 2e-5


def _randomize_biases(model: HookedTransformer, seed: int) -> None:
    """TL initialises biases to zero; random ones make the fused-bias code paths observable."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.split(".")[-1].lstrip("_").startswith("b") or name.endswith(".w"):
                p.add_(torch.randn(p.shape, generator=g) * 0.1)


def llama_cfg(**kw) -> HookedTransformerConfig:
    base = dict(
        n_layers=3,
        d_model=64,
        n_heads=6,
        n_key_value_heads=2,
        d_head=16,
        d_mlp=96,
        d_vocab=101,
        n_ctx=64,
        act_fn="silu",
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_dim=16,
        rotary_adjacent_pairs=False,
        gated_mlp=True,
        final_rms=True,
        default_prepend_bos=False,
        original_architecture="LlamaForCausalLM",
        seed=0,
        dtype=torch.float32,
    )
    base.update(kw)
    return HookedTransformerConfig(**base)


def gpt2_cfg(**kw) -> HookedTransformerConfig:
    base = dict(
        n_layers=2,
        d_model=48,
        n_heads=4,
        d_head=12,
        d_mlp=192,
        d_vocab=97,
        n_ctx=64,
        act_fn="gelu_new",
        normalization_type="LN",
        positional_embedding_type="standard",
        default_prepend_bos=False,
        seed=1,
        dtype=torch.float32,
    )
    base.update(kw)
    return HookedTransformerConfig(**base)


CONFIGS = {
    "llama_gqa": llama_cfg,
    "llama_mha_adjacent_rope": lambda: llama_cfg(
        n_key_value_heads=None, n_heads=4, rotary_adjacent_pairs=True
    ),
    "llama_partial_rope": lambda: llama_cfg(rotary_dim=8),
    "gpt2": gpt2_cfg,
    # the processed forms cramlens.models.load_model produces (fold_ln=True): gain-free norms
    "llama_rmspre": lambda: llama_cfg(normalization_type="RMSPre"),
    "gpt2_lnpre": lambda: gpt2_cfg(normalization_type="LNPre"),
}


def pair(kind: str, precision: str = "fp32") -> tuple[HookedTransformer, HookedTransformer]:
    """(reference TL model, optimised deep copy) with identical weights, both frozen."""
    ref = HookedTransformer(CONFIGS[kind]())
    _randomize_biases(ref, 3)
    ref.eval().requires_grad_(False)
    opt = fast.optimize(copy.deepcopy(ref), precision=precision)
    return ref, opt


def tokens(B=3, T=12, vocab=97, seed=0) -> torch.Tensor:
    return torch.randint(1, vocab, (B, T), generator=torch.Generator().manual_seed(seed))


def memory(B, d, seed=0) -> torch.Tensor:
    return (torch.rand(B, 1, d, generator=torch.Generator().manual_seed(seed)) * 2).requires_grad_(True)


def logits_and_grad(model, toks, mem, extra=()):
    mem = mem.detach().clone().requires_grad_(True)
    with model.hooks(fwd_hooks=list(inject(mem)) + list(extra)):
        logits = model(toks)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), toks[:, 1:].flatten())
    loss.backward()
    return logits.detach(), mem.grad


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_logits_and_memory_grad_match(kind):
    ref, opt = pair(kind)
    toks = tokens(vocab=ref.cfg.d_vocab)
    mem = memory(3, ref.cfg.d_model)
    l0, g0 = logits_and_grad(ref, toks, mem)
    l1, g1 = logits_and_grad(opt, toks, mem)
    torch.testing.assert_close(l1, l0, atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(g1, g0, atol=ATOL, rtol=1e-4)
    assert fast.stats(opt)["fast_attn"] == ref.cfg.n_layers and fast.stats(opt)["tl_attn"] == 0


@pytest.mark.parametrize("kind", ["llama_gqa", "gpt2"])
def test_knockout_hook_uses_tl_attention(kind):
    ref, opt = pair(kind)
    toks = tokens(vocab=ref.cfg.d_vocab)
    mem = memory(3, ref.cfg.d_model)
    ko = list(knockout(ref, [0, ref.cfg.n_layers - 1], keys=[0]))
    l0, g0 = logits_and_grad(ref, toks, mem, ko)
    l1, g1 = logits_and_grad(opt, toks, mem, ko)
    torch.testing.assert_close(l1, l0, atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(g1, g0, atol=ATOL, rtol=1e-4)
    s = fast.stats(opt)
    assert s["tl_attn"] == 2 and s["fast_attn"] == ref.cfg.n_layers - 2
    # the knockout really changes the result (so the comparison above is not vacuous)
    l2, _ = logits_and_grad(opt, toks, mem)
    assert (l2 - l1).abs().max() > 1e-3


def test_forward_knockout_and_attention_capture_through_cramlens_hooksets():
    ref, opt = pair("llama_gqa")
    toks = tokens(B=2, vocab=ref.cfg.d_vocab)
    mem = memory(2, ref.cfg.d_model)
    stores = []
    for model in (ref, opt):
        store: dict[int, torch.Tensor] = {}
        hs = forward_knockout(model, 2) + capture_attention_to(model, store)
        lg, g = logits_and_grad(model, toks, mem, list(hs))
        stores.append((lg, g, store))
    (l0, g0, s0), (l1, g1, s1) = stores
    torch.testing.assert_close(l1, l0, atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(g1, g0, atol=ATOL, rtol=1e-4)
    assert set(s0) == set(s1) == set(range(ref.cfg.n_layers))
    for k in s0:
        torch.testing.assert_close(s1[k], s0[k], atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("kind", ["llama_gqa", "gpt2"])
def test_run_with_cache_has_every_key(kind):
    ref, opt = pair(kind)
    toks = tokens(B=2, vocab=ref.cfg.d_vocab)
    _, c0 = ref.run_with_cache(toks)
    _, c1 = opt.run_with_cache(toks)
    assert set(c1.keys()) == set(c0.keys())
    assert any(k.endswith("hook_pattern") for k in c1.keys())
    for k in c0.keys():
        torch.testing.assert_close(c1[k], c0[k], atol=ATOL, rtol=1e-5, msg=k)
    # with a filter that leaves the attention internals alone the fast path runs and the hooks still fire
    before = fast.stats(opt)["fast_attn"]
    want = (
        "hook_resid_post",
        "hook_rot_q",
        "hook_q",
        "hook_k",
        "hook_v",
        "hook_mlp_out",
        "ln_final.hook_normalized",
    )
    _, c2 = opt.run_with_cache(toks, names_filter=lambda n: n.endswith(want))
    _, c3 = ref.run_with_cache(toks, names_filter=lambda n: n.endswith(want))
    assert fast.stats(opt)["fast_attn"] == before + ref.cfg.n_layers
    assert set(c2.keys()) == set(c3.keys()) and len(c2.keys()) > 0
    for k in c3.keys():
        torch.testing.assert_close(c2[k], c3[k], atol=ATOL, rtol=1e-5, msg=k)


def test_ln1_hook_sends_block_through_tl():
    ref, opt = pair("llama_gqa")
    toks = tokens(B=1, vocab=ref.cfg.d_vocab)
    seen = {"ref": 0, "opt": 0}

    def counter(which):
        def fn(x, hook):
            seen[which] += 1

        return fn

    ref.run_with_hooks(toks, fwd_hooks=[("blocks.1.ln1.hook_normalized", counter("ref"))])
    opt.run_with_hooks(toks, fwd_hooks=[("blocks.1.ln1.hook_normalized", counter("opt"))])
    assert seen["opt"] == seen["ref"] == 3  # TL calls ln1 for q, k and v


def test_cramlens_forward_batch_matches():
    """The cramming hot path (right-padded stages of different lengths, scored rows only)."""
    ref, opt = pair("llama_gqa")
    seqs = [tokens(B=1, T=20, vocab=ref.cfg.d_vocab, seed=s)[0].tolist() for s in range(3)]
    lengths = [5, 20, 11]
    out = []
    for model in (ref, opt):
        batch = build_batch(model, seqs, lengths, Layout())
        mem = memory(3, ref.cfg.d_model, seed=4)
        sc = score(logits_from_residual(model, residual_at_targets(model, mem, batch)), batch)
        sc.loss.sum().backward()
        out.append((sc.loss.detach(), sc.margin, sc.correct, mem.grad))
    torch.testing.assert_close(out[1][0], out[0][0], atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(out[1][1], out[0][1], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(out[1][3], out[0][3], atol=ATOL, rtol=1e-4)


def test_weight_edits_invalidate_cached_layouts():
    ref, opt = pair("llama_gqa")
    toks = tokens(B=1, vocab=ref.cfg.d_vocab)
    opt(toks)  # build caches
    with torch.no_grad():
        for m in (ref, opt):
            m.blocks[1].attn.W_Q.mul_(1.5)
            m.blocks[0].attn._W_V.add_(0.05)
            m.blocks[2].mlp.W_gate.mul_(-1.0)
    torch.testing.assert_close(opt(toks), ref(toks), atol=ATOL, rtol=1e-5)
    sd = {k: v * 0.9 for k, v in ref.state_dict().items()}
    ref.load_state_dict(sd)
    opt.load_state_dict(sd)
    torch.testing.assert_close(opt(toks), ref(toks), atol=ATOL, rtol=1e-5)


def test_weight_gradients_when_parameters_require_grad():
    ref, opt = pair("llama_gqa")
    ref.requires_grad_(True)
    opt.requires_grad_(True)
    toks = tokens(B=2, vocab=ref.cfg.d_vocab)
    for m in (ref, opt):
        m(toks).logsumexp(-1).sum().backward()
    g0 = dict(ref.named_parameters())
    for name, p in opt.named_parameters():
        q = g0[name]
        if q.grad is None:
            assert p.grad is None or float(p.grad.abs().max()) == 0.0, name
            continue
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-4, msg=name)


def test_optimize_is_idempotent_and_restorable():
    ref, opt = pair("llama_gqa")
    fast.optimize(opt)
    assert fast.is_optimized(opt) and fast.precision(opt) == "fp32"
    toks = tokens(B=1, vocab=ref.cfg.d_vocab)
    fast.restore(opt)
    assert not fast.is_optimized(opt) and fast.precision(opt) == "tl"
    assert not any(n.startswith("_cramlens") or n == "forward" for m in opt.modules() for n in vars(m))
    assert torch.equal(opt(toks), ref(toks))  # TL's own code again: bit-identical


def test_bf16_path_close_and_memory_grad_fp32():
    ref, opt = pair("llama_gqa", precision="bf16")
    toks = tokens(vocab=ref.cfg.d_vocab)
    mem = memory(3, ref.cfg.d_model)
    l0, g0 = logits_and_grad(ref, toks, mem)
    l1, g1 = logits_and_grad(opt, toks, mem)
    assert l1.dtype == torch.float32 and g1.dtype == torch.float32
    assert float((l1 - l0).abs().max()) < 0.05 * float(l0.abs().max())
    assert torch.nn.functional.cosine_similarity(g1.flatten(), g0.flatten(), dim=0) > 0.99
    # knockout layers run TL's code under autocast; still fine
    ko = list(knockout(ref, [1], keys=[0]))
    l2, _ = logits_and_grad(opt, toks, mem, ko)
    assert torch.isfinite(l2).all() and fast.stats(opt)["tl_attn"] == 1


def test_capture_resid_post_fires_on_fast_path():
    """The hybrid loss captures hook_resid_post with the graph attached: it must fire and carry gradients."""
    ref, opt = pair("llama_gqa")
    toks = tokens(B=2, vocab=ref.cfg.d_vocab)
    grads = []
    for m in (ref, opt):
        store: dict[str, torch.Tensor] = {}
        mem = memory(2, ref.cfg.d_model, seed=7)
        with m.hooks(
            fwd_hooks=list(inject(mem) + capture(["blocks.0.hook_resid_post"], store, detach=False))
        ):
            m(toks, stop_at_layer=1)
        store["blocks.0.hook_resid_post"].pow(2).sum().backward()
        grads.append(mem.grad)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-4, rtol=1e-4)


def test_attention_mask_all_ones_is_fast_and_padding_mask_uses_tl():
    ref, opt = pair("llama_gqa")
    toks = tokens(B=2, vocab=ref.cfg.d_vocab)
    ones = torch.ones_like(toks)
    torch.testing.assert_close(
        opt(toks, attention_mask=ones), ref(toks, attention_mask=ones), atol=ATOL, rtol=1e-5
    )
    assert fast.stats(opt) == {"fast_attn": ref.cfg.n_layers, "tl_attn": 0}
    left_pad = ones.clone()
    left_pad[0, :3] = 0
    out0, out1 = ref(toks, attention_mask=left_pad), opt(toks, attention_mask=left_pad)
    torch.testing.assert_close(out1[:, 3:], out0[:, 3:], atol=ATOL, rtol=1e-5)
    assert fast.stats(opt)["tl_attn"] == ref.cfg.n_layers


def test_bf16_weights_model_is_not_upcast():
    """A model loaded in bf16 keeps computing in bf16 on the fast path (default precision follows the weights)."""
    ref = HookedTransformer(llama_cfg(dtype=torch.bfloat16))
    ref.eval().requires_grad_(False)
    opt = fast.optimize(copy.deepcopy(ref))
    toks = tokens(B=2, vocab=ref.cfg.d_vocab)
    a, b = ref(toks), opt(toks)
    assert b.dtype == a.dtype == torch.bfloat16
    assert float((a.float() - b.float()).abs().max()) < 0.05 * float(a.float().abs().max())
    assert opt.blocks[0].attn._cramlens_qkv.dtypes == [torch.bfloat16]


def test_using_switches_precision_for_a_block_and_keeps_both_weight_caches():
    ref, opt = pair("llama_gqa")
    toks = tokens(B=1, vocab=ref.cfg.d_vocab)
    fp32 = opt(toks)
    with fast.using(opt, "bf16") as m:
        assert m is opt and fast.precision(opt) == "bf16"
        low = opt(toks)
    assert fast.precision(opt) == "fp32"
    assert not torch.equal(low, fp32) and float((low - fp32).abs().max()) < 0.05 * float(fp32.abs().max())
    assert opt.blocks[0].attn._cramlens_qkv.dtypes == [torch.float32, torch.bfloat16]  # one entry per dtype
    assert torch.equal(opt(toks), fp32)  # back at fp32 from the cached fp32 layout
    with pytest.raises(ValueError, match="fast.optimize"):
        with fast.using(ref, "bf16"):
            pass


def test_shared_copy_shares_weights_and_leaves_the_model_alone():
    ref, _ = pair("llama_gqa")
    toks = tokens(B=1, vocab=ref.cfg.d_vocab)
    want = ref(toks)
    twin = fast.shared_copy(ref, "bf16")
    assert fast.shared_copy(ref, "bf16") is twin  # built once per model
    assert not fast.is_optimized(ref) and fast.precision(twin) == "bf16"
    own = dict(ref.named_parameters())
    assert all(p is own[n] for n, p in twin.named_parameters())
    assert torch.equal(ref(toks), want)  # TL's own forward, untouched
    close = lambda a, b: float((a - b).abs().max()) < 0.05 * float(b.abs().max())  # noqa: E731
    assert close(twin(toks), want)
    with torch.no_grad():
        ref.blocks[0].mlp.W_in.mul_(3.0)  # an edit of the model reaches the copy (its caches rebuild)
    assert close(twin(toks), ref(toks)) and not close(twin(toks), want)


def test_bf16_unembedding_backward_at_32_rows_of_a_49152_vocabulary():
    """SmolLM2's shape at which the old layout's oneDNN bf16 kernel died with SIGFPE (a batch with 32 targets)."""
    from cramlens.fast.layers import _LinearLowPrecisionBackward

    W_U = torch.randn(576, 49152, generator=torch.Generator().manual_seed(0))
    x = torch.randn(1, 32, 576, requires_grad=True)
    _LinearLowPrecisionBackward.apply(x, W_U.t(), None, W_U.t().contiguous().bfloat16()).sum().backward()
    want = W_U.sum(1).expand(1, 32, 576)
    assert float((x.grad - want).abs().max()) < 0.01 * float(want.abs().max())
