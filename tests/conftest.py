"""Shared pytest fixtures.

The suite never reaches the network: HF_HUB_OFFLINE is set before transformers / huggingface_hub
are imported (they read it at import time). Real models come from the offline registry and are
cached by cramlens (first use converts from GGUF: ~30 s SmolLM2, ~1.5 min Gemma; later ~1-6 s).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from transformer_lens import HookedTransformer  # noqa: E402

from cramlens.models import load_model  # noqa: E402

#: ../shared/data next to the repository (tests never keep a copy of the data).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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
