"""Fast unit tests of cramlens.models on the tiny random models and tiny saved HF directories."""

from __future__ import annotations

import os
import time
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from transformer_lens import HookedTransformer

from cramlens import gguf_loading
from cramlens.errors import CramlensError
from cramlens.gguf_loading import smollm2_tokenizer_dir
from cramlens.model_cache import cache_dir, load_entry, save_entry
from cramlens.models import OFFLINE_NAMES, available_models, load_model

TEXT = "The quick brown fox jumps over the lazy dog."


def _one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    msg = str(excinfo.value)
    assert isinstance(excinfo.value, CramlensError)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------- registry and tiny models


def test_available_models_lists_offline_names():
    models = available_models()
    assert list(models) == ["smollm2-135m", "gemma-3-270m", "tiny-llama", "tiny-gpt2"]
    assert tuple(models) == OFFLINE_NAMES
    assert all(isinstance(d, str) and d and "\n" not in d for d in models.values())


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_gpt2"])
def test_tiny_models_load_frozen_eval(fixture, request):
    model = request.getfixturevalue(fixture)
    assert isinstance(model, HookedTransformer)
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    cfg = model.cfg
    assert (cfg.n_layers, cfg.d_model, cfg.d_head, cfg.n_ctx, cfg.d_vocab) == (2, 64, 16, 512, 49152)
    assert model.tokenizer is not None and len(model.tokenizer) == 49152
    logits = model(model.to_tokens(TEXT))
    assert logits.shape[-1] == 49152 and torch.isfinite(logits).all()


def test_tiny_architectures(tiny_llama, tiny_gpt2):
    lc, gc = tiny_llama.cfg, tiny_gpt2.cfg
    assert lc.original_architecture == "LlamaForCausalLM"
    assert (lc.n_heads, lc.n_key_value_heads) == (4, 2)  # grouped-query attention
    assert tiny_llama.blocks[0].attn._W_K.shape == (2, 64, 16)
    assert lc.positional_embedding_type == "rotary" and lc.gated_mlp and lc.normalization_type == "RMSPre"
    assert gc.original_architecture == "GPT2LMHeadModel"
    assert gc.positional_embedding_type == "standard" and gc.normalization_type == "LNPre"
    assert gc.n_key_value_heads is None
    assert tiny_gpt2.pos_embed.W_pos.shape == (512, 64)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_tiny_models_deterministic_and_leave_global_rng_alone(name):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = load_model(name, device="cpu")
    assert torch.equal(torch.rand(3), expected)  # loading did not touch the global RNG
    second = load_model(name, device="cpu")
    sd1, sd2 = first.state_dict(), second.state_dict()
    assert sd1.keys() == sd2.keys()
    assert all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    assert first.W_E.std() > 0.05  # really initialised, not empty memory


def test_tiny_load_is_fast():
    smollm2_tokenizer_dir()  # tokenizer cached (built once from the GGUF)
    load_model("tiny-llama", device="cpu")
    wall, cpu = time.perf_counter(), time.process_time()
    load_model("tiny-gpt2", device="cpu")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"tiny-gpt2 load: {wall:.3f} s wall, {cpu:.3f} s CPU")
    assert cpu < 1.0  # ~0.3 s; CPU time, so a busy shared machine does not make it flaky


def test_bos_policies(tiny_llama, tiny_gpt2):
    hf_ids = tiny_llama.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    bos = tiny_gpt2.tokenizer.bos_token_id
    assert tiny_llama.cfg.default_prepend_bos is False
    assert tiny_llama.to_tokens(TEXT)[0].tolist() == hf_ids
    assert tiny_gpt2.cfg.default_prepend_bos is True
    assert tiny_gpt2.to_tokens(TEXT)[0].tolist() == [bos] + hf_ids


def test_case_insensitive_registry_name():
    assert load_model(" Tiny-Llama ", device="cpu").cfg.model_name == "tiny-llama"


# ---------------------------------------------------------------- dtype and device


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        ("bfloat16", torch.bfloat16),
        ("float16", torch.float16),
        (torch.bfloat16, torch.bfloat16),
        ("fp32", torch.float32),
    ],
)
def test_dtype_applied(dtype, expected):
    model = load_model("tiny-llama", device="cpu", dtype=dtype)
    assert model.cfg.dtype == expected
    assert {p.dtype for p in model.parameters()} == {expected}
    assert not any(p.requires_grad for p in model.parameters())
    if expected == torch.bfloat16:
        assert torch.isfinite(model(model.to_tokens(TEXT)).float()).all()


@pytest.mark.parametrize("dtype", ["float8", "int32", "half-ish", torch.int64])
def test_bad_dtype_is_one_line_error(dtype):
    with pytest.raises(CramlensError) as excinfo:
        load_model("tiny-llama", dtype=dtype)
    assert "float32" in _one_line_error(excinfo)


def test_default_device_is_cpu_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    assert load_model("tiny-llama").W_E.device.type == "cpu"


@pytest.mark.parametrize("device", ["tpu", "cuda:99" if torch.cuda.is_available() else "cuda"])
def test_bad_device_is_one_line_error(device):
    with pytest.raises(CramlensError) as excinfo:
        load_model("tiny-llama", device=device)
    _one_line_error(excinfo)


# ---------------------------------------------------------------- bad names


def test_unknown_name_suggests_close_match():
    with pytest.raises(CramlensError) as excinfo:
        load_model("smollm-135")
    msg = _one_line_error(excinfo)
    assert "did you mean 'smollm2-135m'" in msg
    assert all(n in msg for n in OFFLINE_NAMES)


def test_unknown_name_without_suggestion():
    with pytest.raises(CramlensError) as excinfo:
        load_model("qqqqqqqqqqq")
    msg = _one_line_error(excinfo)
    assert "unknown model 'qqqqqqqqqqq'" in msg and "did you mean" not in msg


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_name(name):
    with pytest.raises(CramlensError) as excinfo:
        load_model(name)
    _one_line_error(excinfo)


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """HF offline mode with an empty hub cache, so nothing is found locally or fetched."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


@pytest.mark.parametrize("name", ["cramlens-test/no-such-model", "gpt2", "meta-llama/Llama-3.2-1B"])
def test_offline_hub_name_says_it_needs_network(offline_hub, name):
    with pytest.raises(CramlensError) as excinfo:
        load_model(name)
    msg = _one_line_error(excinfo)
    assert "needs network" in msg and name in msg
    assert all(n in msg for n in OFFLINE_NAMES) and "local Hugging Face directory" in msg


def test_missing_directory(tmp_path):
    with pytest.raises(CramlensError) as excinfo:
        load_model(str(tmp_path / "nope" / "model"))
    assert "no such directory" in _one_line_error(excinfo)


def test_directory_without_config(tmp_path):
    with pytest.raises(CramlensError) as excinfo:
        load_model(str(tmp_path))
    assert "no config.json" in _one_line_error(excinfo)


# ---------------------------------------------------------------- cache


def test_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("CRAMLENS_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CRAMLENS_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir() == Path(os.path.expanduser("~")) / ".cache" / "cramlens"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "cramlens"


def test_smollm2_tokenizer_cached_under_cramlens_cache(monkeypatch, tmp_path):
    from transformers import AutoTokenizer

    real = smollm2_tokenizer_dir()

    def fake_gguf(path, with_model=True):  # stand-in for the 5 s GGUF tokenizer parse
        return None, AutoTokenizer.from_pretrained(real)

    monkeypatch.setattr(gguf_loading, "load_hf_from_gguf", fake_gguf)
    monkeypatch.setenv("CRAMLENS_CACHE", str(tmp_path))
    path = smollm2_tokenizer_dir()
    assert path.is_relative_to(tmp_path) and (path / "tokenizer_config.json").is_file()
    assert [p.name for p in path.parent.iterdir()] == ["smollm2"]  # no staging leftovers
    assert load_model("tiny-llama").cfg.tokenizer_name == str(path)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_cache_entry_round_trip(tmp_path, name):
    model = load_model(name, device="cpu")
    entry = tmp_path / "entry"
    save_entry(model, model.tokenizer, entry, {"adds_bos": model.cfg.default_prepend_bos})
    assert sorted(p.name for p in entry.iterdir()) == [
        "config.json",
        "meta.json",
        "model.safetensors",
        "tokenizer",
    ]
    again = load_entry(entry)
    assert again.cfg.normalization_type == model.cfg.normalization_type
    assert again.cfg.default_prepend_bos == model.cfg.default_prepend_bos
    assert again.cfg.n_key_value_heads == model.cfg.n_key_value_heads
    sd1, sd2 = model.state_dict(), again.state_dict()
    assert all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    tokens = model.to_tokens(TEXT)
    assert torch.equal(again.to_tokens(TEXT), tokens)
    assert torch.equal(again(tokens), model(tokens))


def test_killed_cache_write_leaves_no_entry(monkeypatch, tmp_path, tiny_llama):
    def boom(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr("safetensors.torch.save_file", boom)
    entry = tmp_path / "entry"
    with pytest.raises(KeyboardInterrupt):
        save_entry(tiny_llama, None, entry, {"adds_bos": False})
    assert not entry.exists()
    assert list(tmp_path.iterdir()) == []


def test_stale_entry_is_replaced(tmp_path, tiny_llama, tiny_gpt2):
    entry = tmp_path / "entry"
    save_entry(tiny_gpt2, None, entry, {"adds_bos": True})
    save_entry(tiny_llama, None, entry, {"adds_bos": False})
    assert load_entry(entry).cfg.model_name == "tiny-llama"
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]


# ---------------------------------------------------------------- local Hugging Face directories


def _save_hf_dir(hf_model, path: Path) -> Path:
    from transformers import AutoTokenizer

    hf_model.save_pretrained(path)
    AutoTokenizer.from_pretrained(smollm2_tokenizer_dir()).save_pretrained(path)
    return path


def _tiny_hf_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rope_theta=10000.0,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # random norm gains, so folding them is really exercised
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model


def _tiny_hf_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=49152, n_positions=512, n_embd=64, n_layer=2, n_head=4)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.uniform_(-0.5, 0.5)
            elif "ln" in name:
                p.uniform_(0.5, 1.5)
    return model


# "llama" in the directory name on purpose: TransformerLens sniffs model names by substring.
@pytest.mark.parametrize(
    ("builder", "dirname"), [(_tiny_hf_llama, "tiny-llama-hf"), (_tiny_hf_gpt2, "tiny-gpt2-hf")]
)
def test_local_hf_directory_matches_hf_logits(tmp_path, builder, dirname):
    hf_model = builder()
    path = _save_hf_dir(hf_model, tmp_path / dirname)
    model = load_model(str(path), device="cpu")
    assert model.cfg.default_prepend_bos is False  # the SmolLM2 tokenizer adds no BOS
    assert not any(p.requires_grad for p in model.parameters())
    tokens = model.to_tokens(TEXT * 4)
    with torch.no_grad():
        ref = hf_model(tokens).logits
        out = model(tokens)
    diff = (out - ref).abs().max().item()
    print(f"{dirname}: max abs logit diff {diff:.2e}")
    assert diff < 1e-4
    if "llama" in dirname:
        assert model.cfg.n_key_value_heads == 2
