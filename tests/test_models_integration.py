"""Real offline models: cramlens's HookedTransformers against transformers loaded from the same GGUF.

Each class loads its HF reference once (SmolLM2 ~20 s, Gemma ~1 min and ~4 GB while parsing the
GGUF) and frees it when the class is done. The cramlens models come from the session fixtures in
conftest.py (cached fp32 copies; the first run ever converts them from GGUF).
"""

from __future__ import annotations

import gc
import json
import math
import re

import pytest
import torch

from cramlens.gguf_loading import gguf_file
from cramlens.model_cache import FORMAT_VERSION, cache_dir

pytestmark = pytest.mark.integration

N_TOKENS = 64
PROMPT = "Once upon a time, in a small village by the sea,"


def _first_text(shared_data) -> str:
    path = shared_data / "pg19" / "pg19_style_gutenberg_excerpts_100.jsonl"
    with path.open() as f:
        return json.loads(f.readline())["text"]


@pytest.fixture(scope="class")
def model(request):
    """The cramlens model of the requesting class (a session fixture from conftest.py)."""
    return request.getfixturevalue(request.cls.FIXTURE)


@pytest.fixture(scope="class")
def reference(request):
    """(HF model, HF tokenizer) dequantized by transformers from the same GGUF file; freed after the class."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_file(request.cls.NAME)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    hf_model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    yield hf_model.eval(), tokenizer
    del hf_model
    gc.collect()


@pytest.fixture(scope="class")
def ids(reference, shared_data):
    """The first 64 tokens of a real text, tokenized by the model's own HF tokenizer."""
    _, tokenizer = reference
    ids = tokenizer(_first_text(shared_data), return_tensors="pt")["input_ids"][:, :N_TOKENS]
    assert ids.shape == (1, N_TOKENS)
    return ids


class _RealModel:
    NAME: str
    FIXTURE: str
    ADDS_BOS: bool
    EMBED_SCALE: float  # hook_embed space / HF inputs_embeds space

    def test_logits_match_hf(self, model, reference, ids):
        hf_model, _ = reference
        with torch.no_grad():
            ref = hf_model(ids).logits
            out = model(ids)
        diff = (out - ref).abs().max().item()
        print(f"{self.NAME}: max abs logit diff over {N_TOKENS} tokens = {diff:.2e} (fp32)")
        assert out.dtype == torch.float32
        assert diff < 1e-3
        assert torch.equal(out.argmax(-1), ref.argmax(-1))

    def test_bos_policy_and_tokenization(self, model, reference, ids, shared_data):
        _, tokenizer = reference
        assert model.cfg.default_prepend_bos is self.ADDS_BOS
        assert (ids[0, 0].item() == tokenizer.bos_token_id) is self.ADDS_BOS
        assert torch.equal(model.to_tokens(_first_text(shared_data))[:, :N_TOKENS], ids)

    def test_embedding_space(self, model, reference, ids):
        hf_model, _ = reference
        captured = {}
        model.run_with_hooks(
            ids, fwd_hooks=[("hook_embed", lambda x, hook: captured.setdefault("embed", x.detach()))]
        )
        hf_embeds = hf_model.get_input_embeddings().weight[ids[0]]  # what inputs_embeds takes
        torch.testing.assert_close(captured["embed"][0], hf_embeds * self.EMBED_SCALE, rtol=1e-5, atol=1e-5)

    def test_greedy_generation_is_english(self, model):
        text = model.generate(PROMPT, max_new_tokens=20, do_sample=False, verbose=False)
        continuation = text[len(PROMPT) :]
        print(f"{self.NAME}: {PROMPT!r} -> {continuation!r}")
        words = continuation.split()
        english = [w for w in words if re.fullmatch(r"[\"'(]?[A-Za-z]+(['’-][A-Za-z]+)*[.,;:!?\"')]*", w)]
        assert len(words) >= 6
        assert len(english) >= 0.7 * len(words)

    def test_crammed_stage_loss_and_gradient_match_the_reference_way(self, model, reference, ids):
        """The reference trainer's stage loss (transformers, ``inputs_embeds = [mem; embed(x)]``, logits ``[:, :-1]``,
        the memory predicting x0) equals cramlens's, plain TL and fast path, in loss and memory gradient."""
        from cramlens import fast
        from cramlens.forward import score, target_logits
        from cramlens.layout import Layout, build_batch

        hf_model, _ = reference
        x = ids[:, :16]  # the stage: [BOS?] + the first text tokens, as the model's tokenizer gives them
        g = torch.Generator().manual_seed(0)
        mem0 = torch.randn(1, 1, model.cfg.d_model, generator=g) * model.W_E.std().item()

        emb = hf_model.get_input_embeddings()
        mem = mem0.clone().requires_grad_(True)
        # the reference feeds embed_tokens(x) (Gemma's scaled embedding included) beside the memory as is
        logits = hf_model(inputs_embeds=torch.cat([mem, emb(x).detach()], dim=1)).logits[:, :-1]
        ref_loss = torch.nn.functional.cross_entropy(logits[0], x[0])
        (ref_grad,) = torch.autograd.grad(ref_loss, mem)

        # cramlens: the text after the memory is x itself (x already starts with BOS where the model uses one)
        seq = x[0].tolist()
        layout = Layout(bos=False)
        batch = build_batch(model, [seq], [len(seq)], layout)
        was_fast = fast.is_optimized(model)
        try:
            for fast_path in (False, True):
                (fast.optimize if fast_path else fast.restore)(model)
                m = mem0.clone().requires_grad_(True)
                loss = score(target_logits(model, m, batch), batch).loss.sum()
                (grad,) = torch.autograd.grad(loss, m)
                rel = ((grad - ref_grad).abs().max() / ref_grad.abs().max()).item()
                print(
                    f"{self.NAME} fast={fast_path}: loss {loss.item():.6f} vs ref {ref_loss.item():.6f}, "
                    f"grad rel diff {rel:.1e}"
                )
                assert abs(loss.item() - ref_loss.item()) < 1e-4 * max(1.0, ref_loss.item())
                assert rel < 1e-3
        finally:
            (fast.optimize if was_fast else fast.restore)(model)

    def test_cached(self, model):
        entry = cache_dir() / f"v{FORMAT_VERSION}" / self.NAME
        meta = json.loads((entry / "meta.json").read_text())
        assert meta["adds_bos"] is self.ADDS_BOS
        assert (entry / "model.safetensors").stat().st_size > 4 * 100e6  # fp32, >100M params


class TestSmolLM2(_RealModel):
    NAME = "smollm2-135m"
    FIXTURE = "smollm2"
    ADDS_BOS = False
    EMBED_SCALE = 1.0

    def test_architecture(self, model):
        cfg = model.cfg
        assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_key_value_heads) == (30, 576, 9, 3)
        assert cfg.d_vocab == 49152 and cfg.normalization_type == "RMSPre"
        assert not any(p.requires_grad for p in model.parameters()) and not model.training


class TestGemma(_RealModel):
    NAME = "gemma-3-270m"
    FIXTURE = "gemma"
    ADDS_BOS = True
    EMBED_SCALE = math.sqrt(640)  # TL folds Gemma's sqrt(d_model) into W_E

    def test_architecture(self, model):
        cfg = model.cfg
        assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_key_value_heads) == (18, 640, 4, 1)
        assert cfg.d_vocab == 262144 and cfg.window_size == 512
        assert cfg.attn_types.count("local") == 15
        assert not any(p.requires_grad for p in model.parameters()) and not model.training
