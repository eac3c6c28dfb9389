"""Truncated-depth variants (analyses.depth, analyses.recovery_finetune): exactness of truncation, cfg consistency,
finetuning."""

from __future__ import annotations

import json

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from analyses.depth import kept_layers, truncate, variant_name
from analyses.recovery_finetune import FinetuneConfig, evaluate, finetune, lm_corpus, load_finetuned
from cramlens.errors import CramlensError


@pytest.fixture(scope="module")
def local_global() -> HookedTransformer:
    """4-block rotary model with alternating sliding-window / global attention and a per-type rotary base
    (the per-layer structure of Gemma 3), window 4 so that windows matter on short inputs."""
    cfg = HookedTransformerConfig(
        d_model=32,
        d_head=8,
        n_heads=4,
        n_key_value_heads=2,
        n_layers=4,
        n_ctx=64,
        d_vocab=97,
        d_mlp=64,
        act_fn="silu",
        gated_mlp=True,
        normalization_type="RMSPre",
        final_rms=True,
        positional_embedding_type="rotary",
        rotary_dim=8,
        rotary_base=1_000_000,
        rotary_base_local=10_000,
        attn_types=["local", "local", "global", "local"],
        window_size=4,
        use_local_attn=True,
        device="cpu",
        dtype=torch.float32,
        init_weights=True,
        seed=None,
        default_prepend_bos=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        m = HookedTransformer(cfg, move_to_device=False)
    return m.eval().requires_grad_(False)


def test_kept_layers_and_names():
    assert kept_layers(30, 4) == [0, 1, 2, 3]
    assert kept_layers(30, 2, "last") == [28, 29]
    assert kept_layers(30, 2, "first_last") == [0, 1, 28, 29]
    assert kept_layers(5, None) == [0, 1, 2, 3, 4]
    assert [variant_name(None), variant_name(4), variant_name(2, "last"), variant_name(4, "first_last")] == [
        "full",
        "first4",
        "last2",
        "first4+last4",
    ]
    with pytest.raises(CramlensError, match="keeps 6 blocks"):
        kept_layers(5, 3, "first_last")
    with pytest.raises(CramlensError, match="scheme"):
        kept_layers(5, 1, "middle")


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_gpt2"])
def test_all_layers_kept_is_identical(name, request):
    model = request.getfixturevalue(name)
    before = dict(model.cfg.to_dict())
    full = truncate(model)
    tokens = torch.randint(0, 5000, (2, 12))
    assert torch.equal(full(tokens), model(tokens))
    assert full.cfg.n_layers == model.cfg.n_layers and full is not model
    assert dict(model.cfg.to_dict()) == before  # the source's cfg is untouched
    assert full.cfg.default_prepend_bos == model.cfg.default_prepend_bos
    assert not any(p.requires_grad for p in full.parameters())


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_gpt2"])
def test_first_n_equals_first_blocks_then_unembed(name, request):
    model = request.getfixturevalue(name)
    tokens = torch.randint(0, 5000, (2, 12))
    first = truncate(model, 1)
    _, cache = model.run_with_cache(tokens, names_filter="blocks.0.hook_resid_post")
    ref = model.unembed(model.ln_final(cache["blocks.0.hook_resid_post"]))
    assert torch.equal(first(tokens), ref)
    assert first.cfg.n_layers == 1 and len(first.blocks) == 1
    assert first.cfg.n_params == model.cfg.n_params // model.cfg.n_layers
    assert first.cfg.model_name.endswith("first1")


def _run_blocks(model: HookedTransformer, tokens: torch.Tensor, layers: list[int]) -> torch.Tensor:
    resid = model.embed(tokens)
    for i in layers:
        resid = model.blocks[i](resid)
    return model.unembed(model.ln_final(resid))


@pytest.mark.parametrize("scheme,n", [("first", 3), ("last", 2), ("first_last", 1), ("first", 4)])
def test_per_layer_attention_types_carry_over(local_global, scheme, n):
    m = local_global
    keep = kept_layers(4, n, scheme)
    v = truncate(m, n, scheme)
    assert v.cfg.attn_types == [m.cfg.attn_types[i] for i in keep]
    assert [b.attn.attn_type for b in v.blocks] == [m.blocks[i].attn.attn_type for i in keep]
    assert v.kept_layers == keep
    tokens = torch.randint(0, 97, (2, 20))  # longer than the window: local layers must stay local
    assert torch.equal(v(tokens), _run_blocks(m, tokens, keep))


def test_window_and_rotary_base_actually_matter(local_global):
    """Guard for the test above: the same weights with every layer global give other logits, so a lost
    attention type (window or rotary base) would be caught."""
    d = dict(local_global.cfg.to_dict())
    d.update(attn_types=["global"] * 4, n_params=None)
    with torch.random.fork_rng(devices=[]):
        glob = HookedTransformer(HookedTransformerConfig(**d), move_to_device=False)
    glob.load_state_dict(local_global.state_dict())
    tokens = torch.randint(0, 97, (1, 20))
    assert not torch.allclose(glob(tokens), local_global(tokens), atol=1e-4)
    assert local_global.cfg.attn_types == ["local", "local", "global", "local"]


def test_explicit_layers_and_bad_input(tiny_llama):
    assert truncate(tiny_llama, layers=[1]).cfg.model_name.endswith("last1")
    with pytest.raises(CramlensError, match="increasing"):
        truncate(tiny_llama, layers=[1, 0])
    with pytest.raises(CramlensError, match="keeps 3 blocks"):
        truncate(tiny_llama, 3)


def test_fast_path_carries_over(tiny_llama):
    from cramlens import fast

    src = truncate(tiny_llama)  # a private copy: the session fixture must stay unoptimised
    fast.optimize(src)
    v = truncate(src, 1)
    assert fast.is_optimized(v) and fast.precision(v) == "fp32"
    tokens = torch.randint(0, 5000, (1, 10))
    ref = truncate(tiny_llama, 1)(tokens)
    torch.testing.assert_close(v(tokens), ref, rtol=1e-4, atol=1e-4)


def test_lm_corpus_windows(tiny_gpt2, tiny_llama):
    train, val = lm_corpus(tiny_gpt2, "builtin", seq_len=16, val_docs=2, max_docs=6)
    assert train.shape[1] == 16 and val.shape[1] == 16 and len(train) > len(val) > 0
    assert (train[:, 0] == tiny_gpt2.tokenizer.bos_token_id).all()  # the model adds BOS
    train2, _ = lm_corpus(tiny_llama, "builtin", seq_len=16, val_docs=2, max_docs=6)
    assert not (train2[:, 0] == tiny_llama.tokenizer.bos_token_id).all()  # SmolLM2-style: no BOS


def test_finetune_lowers_validation_loss_and_resumes(tiny_llama, tmp_path):
    w_src = tiny_llama.blocks[0].attn.W_Q.clone()
    model = truncate(tiny_llama, 1)
    corpus = lm_corpus(model, "builtin", seq_len=16, val_docs=2, max_docs=12)
    cfg = FinetuneConfig(
        steps=40, seq_len=16, batch_size=8, lr=3e-3, warmup=4, checkpoint_every=20, max_val_windows=16
    )
    res = finetune(model, cfg, out=tmp_path / "ft", corpus=corpus)
    assert res.val_loss_after < res.val_loss_before - 0.3
    assert abs(evaluate(model, corpus[1][:16]) - res.val_loss_after) < 1e-5
    assert not any(p.requires_grad for p in model.parameters())
    assert (tmp_path / "ft" / "model.safetensors").exists() and not (
        tmp_path / "ft" / "checkpoint.pt"
    ).exists()
    assert json.loads((tmp_path / "ft" / "finetune.json").read_text())["steps"] == 40
    # a finished run is loaded, not retrained; the weights come back on a fresh truncation
    again = truncate(tiny_llama, 1)
    res2 = finetune(again, cfg, out=tmp_path / "ft", corpus=corpus)
    assert res2.val_loss_after == res.val_loss_after
    # the record without its weights retrains (same seed, same result) instead of failing to load
    (tmp_path / "ft" / "model.safetensors").unlink()
    res3 = finetune(truncate(tiny_llama, 1), cfg, out=tmp_path / "ft", corpus=corpus)
    assert res3.val_loss_after == pytest.approx(res.val_loss_after, abs=1e-4)
    assert (tmp_path / "ft" / "model.safetensors").exists()
    tokens = torch.randint(0, 5000, (1, 8))
    assert torch.equal(again(tokens), model(tokens))
    third = load_finetuned(truncate(tiny_llama, 1), tmp_path / "ft")
    assert torch.equal(third(tokens), model(tokens))
    assert torch.equal(tiny_llama.blocks[0].attn.W_Q, w_src)  # the source model was never trained


def test_finetune_resume_from_checkpoint_matches(tiny_llama, tmp_path):
    """Interrupt after the first checkpoint, resume: same weights as an uninterrupted run."""
    corpus = lm_corpus(tiny_llama, "builtin", seq_len=16, val_docs=2, max_docs=8)
    cfg = FinetuneConfig(
        steps=6, seq_len=16, batch_size=4, lr=1e-3, warmup=2, checkpoint_every=3, trainable="blocks"
    )
    whole = truncate(tiny_llama, 1)
    finetune(whole, cfg, corpus=corpus)

    class Stop(Exception):
        pass

    def stop_at(step, loss):
        if step == 4:
            raise Stop

    part = truncate(tiny_llama, 1)
    with pytest.raises(Stop):
        finetune(part, cfg, out=tmp_path, corpus=corpus, progress=stop_at)
    assert (tmp_path / "checkpoint.pt").exists()
    resumed = truncate(tiny_llama, 1)
    finetune(resumed, cfg, out=tmp_path, corpus=corpus)
    for (k, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=k)
    # "blocks" left the embedding and unembedding untouched
    assert torch.equal(resumed.W_E, tiny_llama.W_E) and torch.equal(resumed.W_U, tiny_llama.W_U)


def test_depth_script_smoke(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import depth as script

    args = [
        "--grid",
        "tiny-llama=1,full",
        "--samples",
        "2",
        "--seq-len",
        "4",
        "--data",
        "builtin",
        "--ft-steps",
        "3",
        "--ft-seq-len",
        "8",
        "--ft-skip-docs",
        "0",
        "--steps-per-stage",
        "3",
        "--max-steps",
        "6",
        "--out",
        str(tmp_path),
        "--figures",
        "",
    ]
    script.main(args)
    assert (tmp_path / "tiny-llama" / "first1" / "result.json").exists()
    assert "first1" in (tmp_path / "depth_report.md").read_text()
    full = json.loads((tmp_path / "tiny-llama" / "full" / "result.json").read_text())
    cut = json.loads((tmp_path / "tiny-llama" / "first1" / "result.json").read_text())
    # the full model is not finetuned but gets its loss on the same held-out windows, as a reference
    assert not full["finetuned"] and full["val_loss_before"] == full["val_loss_after"] > 0
    assert cut["finetuned"] and cut["val_loss_before"] != cut["val_loss_after"]
    assert f"| {full['val_loss_before']:.2f} |" in (tmp_path / "depth_report.md").read_text()
    script.main(args)  # resumes: everything is already there


@pytest.mark.integration
def test_gemma_truncation_is_exact(gemma):
    """Gemma 3: first-6 (five sliding-window layers + the first global one) equals the source's residual at block
    5 through ln_final + unembed; last-3 equals running the source's last three blocks."""
    tokens = torch.tensor([[2] + list(range(1000, 1030))])
    first = truncate(gemma, 6)
    assert first.cfg.attn_types == ["local"] * 5 + ["global"]
    _, cache = gemma.run_with_cache(tokens, names_filter="blocks.5.hook_resid_post")
    ref = gemma.unembed(gemma.ln_final(cache["blocks.5.hook_resid_post"]))
    assert torch.equal(first(tokens), ref)
    last = truncate(gemma, 3, "last")
    assert [b.attn.attn_type for b in last.blocks] == ["local", "local", "global"]
    torch.testing.assert_close(last(tokens), _run_blocks(gemma, tokens, [15, 16, 17]), rtol=0, atol=1e-5)
