"""Shared command-line plumbing for ``scripts/*.py``: common flags, one-line errors, model/text loading."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from .errors import CramlensError
from .recipe import DEFAULT_PRESET, PRESETS, Recipe, get_recipe

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def default_data() -> str:
    """``../shared/data/pg19`` beside the checkout when present, else the built-in documentation texts."""
    pg = SHARED_DATA / "pg19"
    return str(pg) if pg.exists() else "builtin"


def add_model_args(p: argparse.ArgumentParser, model: str = "smollm2-135m") -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default=model,
        help="registry name (smollm2-135m, gemma-3-270m, tiny-llama, tiny-gpt2), "
        "a local Hugging Face directory, or a hub id (needs network)",
    )
    g.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda when available, else cpu)"
    )
    g.add_argument("--dtype", default="float32", help="float32 (default), bfloat16 or float16")
    g.add_argument(
        "--no-fast",
        action="store_true",
        help="run TransformerLens's own forward (no fused weights / SDPA fast path; same results)",
    )
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def add_data_args(p: argparse.ArgumentParser, samples: int = 4, seq_len: int = 64) -> None:
    g = p.add_argument_group("texts")
    g.add_argument(
        "--data",
        default=default_data(),
        help="builtin (CPython docs), random-words, a .txt/.jsonl file or folder, or a hub data set "
        "(pg19, pg19_1k; needs network). Default: ../shared/data/pg19 when present, else builtin",
    )
    g.add_argument("--samples", type=int, default=samples, help="number of texts to cram")
    g.add_argument("--skip", type=int, default=0, help="skip the source's first N documents")
    g.add_argument("--seq-len", type=int, default=seq_len, help="tokens per text (BOS not counted)")
    g.add_argument(
        "--offset",
        default="start",
        choices=["start", "random"],
        help="which window of each document: its first tokens (paper) or a seeded random window",
    )


def add_recipe_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("optimisation (defaults come from --recipe)")
    g.add_argument(
        "--recipe",
        default=DEFAULT_PRESET,
        choices=sorted(PRESETS),
        help=f"named preset (default {DEFAULT_PRESET}; 'paper' is the paper's progressive recipe)",
    )
    g.add_argument("--lr", type=float, default=None, help="peak learning rate")
    g.add_argument("--min-lr", type=float, default=None, help="floor of the cosine schedule")
    g.add_argument("--warmup", type=int, default=None, help="linear warmup steps")
    g.add_argument(
        "--schedule-kind",
        dest="lr_schedule",
        default=None,
        choices=["cosine_with_min_lr", "constant"],
        help="learning-rate schedule",
    )
    g.add_argument("--beta2", type=float, default=None, help="AdamW beta2 (beta1 stays 0.9)")
    g.add_argument("--weight-decay", type=float, default=None, help="AdamW decoupled weight decay")
    g.add_argument(
        "--init",
        default=None,
        help="memory init: random<s> (U[0,s)), normal<s>, neg_random<s>, zeros, mean_token_embeds, file:<path>",
    )
    g.add_argument("--steps-per-stage", type=int, default=None, help="budget of one stage (progressive)")
    g.add_argument("--max-steps", type=int, default=None, help="budget of one sample (all its stages)")
    g.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="teacher-forced accuracy that passes (1.0; 0.99 reproduces the 99%% protocol)",
    )
    g.add_argument(
        "--hybrid-alpha",
        type=float,
        default=None,
        help="activation-alignment weight: CE + alpha*sum(1-cos) over the first --align-layers layers",
    )
    g.add_argument(
        "--align-layers", type=int, default=None, help="K layers for the hybrid loss (HF index 0..K-1)"
    )
    g.add_argument(
        "--leading-weight", type=float, default=None, help="CE weight of the first --leading-count targets"
    )
    g.add_argument(
        "--leading-count", type=int, default=None, help="how many leading targets get --leading-weight"
    )


def add_layout_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("layout and parametrisation")
    g.add_argument("--mem-tokens", type=int, default=1, help="number of memory vectors m")
    g.add_argument("--no-bos", action="store_true", help="drop BOS even if the tokenizer adds one")
    g.add_argument(
        "--score-from-text",
        action="store_true",
        help="do not score the memory's prediction of the first token (Kuratov's protocol)",
    )
    g.add_argument(
        "--bos-first", action="store_true", help="control layout [BOS][mem][x] (memory off position 0)"
    )
    g.add_argument("--low-dim", type=int, default=0, help="train e = W z + b with z of this rank (0: direct)")
    g.add_argument(
        "--shared-projection", action="store_true", help="one W, b for the whole run (with --low-dim)"
    )


def add_run_args(p: argparse.ArgumentParser, out: str) -> None:
    g = p.add_argument_group("run")
    g.add_argument(
        "--batch-size", type=int, default=1, help="samples optimised together (each keeps its own state)"
    )
    g.add_argument("--seed", type=int, default=0, help="seed of the text sampling and the memory init")
    g.add_argument("--out", default=out, help="run directory (results are written incrementally)")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    g.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    g.add_argument("--no-progress", action="store_true", help="no live table (logs only)")


def recipe_from_args(a: argparse.Namespace) -> Recipe:
    base = get_recipe(a.recipe)
    betas = (base.betas[0], a.beta2) if getattr(a, "beta2", None) is not None else None
    return base.with_(
        lr=a.lr,
        min_lr=a.min_lr,
        warmup=a.warmup,
        schedule=a.lr_schedule,
        betas=betas,
        weight_decay=a.weight_decay,
        init=a.init,
        steps_per_stage=a.steps_per_stage,
        steps_per_sample=a.max_steps,
        threshold=a.threshold,
        hybrid_alpha=a.hybrid_alpha,
        align_layers=a.align_layers,
        leading_weight=a.leading_weight,
        leading_count=a.leading_count,
    )


def layout_from_args(a: argparse.Namespace):
    from .layout import Layout

    return Layout(
        n_mem=a.mem_tokens,
        bos=False if a.no_bos else None,
        score_from="text" if a.score_from_text else "memory",
        mem_first=not a.bos_first,
    )


def spec_from_args(a: argparse.Namespace):
    """The :class:`~cramlens.spec.CramSpec` of the parsed flags (the one place flags become settings); stage
    flags (``--min-len``, ``--step``, ``--schedule``) are read when the script has them."""
    from .spec import CramSpec

    return CramSpec(
        recipe=recipe_from_args(a),
        layout=layout_from_args(a),
        parametrization="low_dim" if a.low_dim else "direct",
        low_dim=a.low_dim,
        shared_projection=a.shared_projection,
        min_len=getattr(a, "min_len", 1),
        step=getattr(a, "step", 1),
        schedule=getattr(a, "schedule", "linear"),
        batch_size=a.batch_size,
        seed=a.seed,
    )


def load_model_from_args(a: argparse.Namespace, name: str | None = None):
    """The model of ``--model`` (or ``name``), ``--device``, ``--dtype``, ``--threads``; the one place that
    decides the fast path: on unless ``--no-fast``."""
    import torch

    from .fast import optimize
    from .models import load_model

    if a.threads:
        torch.set_num_threads(a.threads)
    device = a.device
    if device == "cuda" and "LOCAL_RANK" in os.environ:  # one GPU per rank under torchrun / accelerate
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    model = load_model(name or a.model, device=device, dtype=a.dtype)
    return model if a.no_fast else optimize(model)


def load_model_and_texts(a: argparse.Namespace):
    from .texts import load_texts

    model = load_model_from_args(a)
    texts = load_texts(
        a.data,
        model.tokenizer,
        n_samples=a.samples,
        seq_len=a.seq_len,
        seed=a.seed,
        offset=a.offset,
        skip=a.skip,
    )
    return model, texts


def console() -> Console:
    """A rich console; piped to a file or log it is 160 columns wide, so tables are not truncated to 80."""
    c = Console()
    return c if c.is_terminal else Console(width=160)


def run_main(main: Callable[[], object]) -> None:
    """Run a script's main: bad input → one line on stderr and exit 2; Ctrl-C → exit 130 with a resume hint."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        main()
    except CramlensError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(
            "\ninterrupted: finished stages are saved; rerun the same command with --resume", file=sys.stderr
        )
        sys.exit(130)


def elapsed(seconds: float) -> str:
    """``4 min 12 s`` / ``37 s``: wall time as a person reads it."""
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s} s" if m else f"{s} s"
