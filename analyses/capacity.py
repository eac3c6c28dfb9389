"""Capacity of one memory vector, in tokens and in bits (Kuratov et al.'s cross-entropy law; REFERENCE B, C.8, D.10, D.13).

Per crammed sample (:func:`sample_capacity`): the horizon in tokens, ``H_LM`` of the horizon prefix (bits the base
model needs for ``t_1..t_{h-1}``; ``t_0`` is scored in neither term), the information gain ``IG = H_LM - H_comp``
(bits the embedding supplies) at the horizon stage, the compression ratio (tokens per memory vector) and the
capacity utilisation ``IG / (16 d_model)``. Per source or variant, mean ± std (:func:`summarise`). Kuratov's
theoretical capacity is ``16 d_model / log2 |V|`` tokens (:func:`theoretical_capacity_tokens`: the fp16 bit budget
of the vector over the bits of a uniformly random token).

Two drivers share one directory layout, ``<root>/<model>/<variant>/<source>/`` (:func:`cram_dir`; a cramlens run
directory, resumable), so the full-model PG-19 cell of the depth sweep is the PG-19 source of the capacity run when
settings agree:

- :func:`capacity_run` (issue 12, here): progressive cramming of texts from several sources on one model;
- the depth sweep (issue 9) in :mod:`analyses.depth_sweep`, which uses this module's texts, runs and per-sample
  numbers.

The published rows (:data:`PAPER_DEPTH`, :data:`PAPER_WIDTH`, :data:`KURATOV`) are printed beside ours by
:mod:`analyses.plots.capacity_report`, which also draws the figures.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from transformer_lens import HookedTransformer

from cramlens.errors import check
from cramlens.results import CramRun
from cramlens.runs import atomic_write_text

FP16_BITS = 16

# REFERENCE D.10 (mean perfectly-crammed tokens, 50 PG19 samples, L_max 4096, finetuned first-N) and C.8 width.
PAPER_DEPTH = {
    "SmolLM2-1.7B (24L)": {"first1": 50, "first2": 241, "first4": 404, "first8": 455, "full": 335},
    "SmolLM3-3B (36L)": {"first1": 20, "first2": 39, "first4": 114, "first8": 300},
    "Qwen3-4B (36L)": {"first1": 79, "first2": 147, "first4": 192, "first8": 421, "full": 512},
    "Qwen3-8B (36L)": {"first1": 119, "first2": 180, "first4": 304, "first8": 625, "full": 774},
    "Llama-3.1-8B (32L)": {"first1": 97, "first2": 184, "first4": 400, "full": 1438},
}
PAPER_WIDTH = {"SmolLM2-135M": (42.0, 15.9), "SmolLM2-360M": (84.5, 20.0), "SmolLM2-1.7B": (428.6, 67.2)}
# REFERENCE D.13 (Kuratov): model -> (d, |V|, PG19 tokens, random tokens, theoretical capacity, CE reduction PG19
# (nats, = L x mean CE drop), utilisation PG19 = token gain / theoretical capacity).
KURATOV = {
    "Pythia-160M": (768, 50304, 80, 65, 787, 396, 0.090),
    "Pythia-410M": (1024, 50304, 96, 72, 1049, 431, 0.078),
    "Pythia-1.4B": (2048, 50304, 160, 139, 2098, 793, 0.075),
    "Llama-3.2-1B": (2048, 128256, 512, 316, 1931, 2120, 0.221),
    "Llama-3.2-3B": (3072, 128256, 1024, 460, 2897, 3292, 0.249),
    "Llama-3.1-8B": (4096, 128256, 1568, 792, 3862, 4866, 0.283),
}


def theoretical_capacity_tokens(d_model: int, vocab_size: int) -> float:
    """Kuratov's upper bound: ``16 d_model / log2 |V|`` tokens (4096, 128256 -> 3862)."""
    check(d_model >= 1 and vocab_size >= 2, "theoretical capacity needs d_model >= 1 and |V| >= 2")
    return FP16_BITS * d_model / math.log2(vocab_size)


def capacity_utilisation(information_gain_bits: float, d_model: int) -> float:
    """Information gain over the vector's fp16 bit budget ``16 d_model``."""
    return information_gain_bits / (FP16_BITS * d_model)


def source_label(source: str) -> str:
    """Short name of a text source for tables and directories (``pg19`` for the PG-19-style file)."""
    s = str(source)
    if s in ("builtin", "random-words", "generated"):
        return s
    name = Path(s).name.lower()
    return "pg19" if "pg19" in name else Path(s).stem


# ----------------------------------------------------------------------------------------------- per sample
@dataclass
class SampleCapacity:
    source: str
    variant: str
    text_id: str
    horizon: int  # tokens (BOS included when the tokenizer adds it)
    seq_len: int  # length of the crammed sequence: horizon == seq_len means the cap was hit
    h_lm_bits: float  # base model, t_1..t_{h-1}
    h_comp_bits: float
    information_gain_bits: float
    compression_ratio: float
    utilisation: float  # IG / (16 d)
    bits_per_token: float  # H_LM / (h - 1)
    steps: int
    # stopped by the per-sample step budget (or not finished) before the sequence cap: horizon is a lower bound
    budget_bound: bool = False

    @property
    def capped(self) -> bool:
        """The horizon is a lower bound: it hit the sequence cap or the sample budget ran out first."""
        return self.horizon >= self.seq_len or self.budget_bound


def sample_capacity(
    run: CramRun, d_model: int, source: str = "", variant: str = "full"
) -> list[SampleCapacity]:
    """Per-sample capacity numbers of a progressive run (at each sample's horizon stage; zeros when none passed)."""
    n_mem = run.config["settings"]["layout"]["n_mem"]
    sample_budget = run.config["settings"]["recipe"]["steps_per_sample"]
    out = []
    for s in run.samples:
        rows = run.trajectory(s.sample_id)
        passed = [r for r in rows if r["converged"] and r["stage_seq_len"] == s.horizon]
        row = passed[-1] if passed else None
        failed = [r for r in rows if not r["converged"]]
        # unfinished, or its last stage failed because the whole sample's budget ran out: says nothing about capacity
        budget_bound = s.horizon < len(s.sequence) and (
            not failed or int(failed[-1]["steps_spent"]) >= sample_budget
        )
        h_lm = float(row["h_lm_bits"]) if row else 0.0
        h_comp = float(row["h_comp_bits"]) if row else 0.0
        ig = h_lm - h_comp
        out.append(
            SampleCapacity(
                source=source,
                variant=variant,
                text_id=s.text_id,
                horizon=s.horizon,
                seq_len=len(s.sequence),
                h_lm_bits=h_lm,
                h_comp_bits=h_comp,
                information_gain_bits=ig,
                compression_ratio=s.horizon / n_mem,
                utilisation=capacity_utilisation(ig, d_model),
                bits_per_token=h_lm / (s.horizon - 1) if s.horizon > 1 else float("nan"),
                steps=int(row["steps_taken"]) if row else 0,
                budget_bound=budget_bound,
            )
        )
    return out


FIELDS = (
    "horizon",
    "h_lm_bits",
    "information_gain_bits",
    "compression_ratio",
    "utilisation",
    "bits_per_token",
    "steps",
)


def _mean_std(xs: Sequence[float]) -> tuple[float, float]:
    xs = [x for x in xs if math.isfinite(x)]
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def summarise(samples: Sequence[SampleCapacity], by: str = "source") -> list[dict]:
    """Mean and std of every field per group (``source`` or ``variant``), plus counts and how many hit the cap."""
    groups: dict[str, list[SampleCapacity]] = {}
    for s in samples:
        groups.setdefault(getattr(s, by), []).append(s)
    out = []
    for key, rows in groups.items():
        d: dict = {
            by: key,
            "n": len(rows),
            "capped": sum(r.capped for r in rows),
            "seq_len": max(r.seq_len for r in rows),
        }
        for f in FIELDS:
            d[f"{f}_mean"], d[f"{f}_std"] = _mean_std([float(getattr(r, f)) for r in rows])
        out.append(d)
    return out


def stability(summary: Sequence[dict]) -> dict:
    """Spread of the per-source means: coefficient of variation and max/min ratio, for horizon and IG."""
    res = {}
    for f in ("horizon", "information_gain_bits"):
        means = [d[f"{f}_mean"] for d in summary if math.isfinite(d[f"{f}_mean"])]
        mu = statistics.fmean(means) if means else float("nan")
        sd = statistics.pstdev(means) if len(means) > 1 else 0.0
        lo = min(means) if means else float("nan")
        res[f] = {
            "cv": sd / mu if mu else float("nan"),
            "max_over_min": max(means) / lo if lo > 0 else float("inf"),
        }
    res["ig_more_stable"] = res["information_gain_bits"]["cv"] < res["horizon"]["cv"]
    return res


# ----------------------------------------------------------------------------------------------- texts and runs
def generated_texts(model: HookedTransformer, n: int, seq_len: int, prompts_from: str, prompt_len: int = 4):
    """Texts the model writes itself: a ``prompt_len``-token prompt from document i of ``prompts_from``, then its
    greedy continuation (low surprisal: the easy end of the cross-entropy law). Returns token-id lists."""
    import torch

    from cramlens.texts import load_texts

    prompts = load_texts(prompts_from, model.tokenizer, n, prompt_len)
    bos = [model.tokenizer.bos_token_id] if model.cfg.default_prepend_bos else []
    out = []
    with torch.no_grad():
        for p in prompts:
            ids = list(p.token_ids)
            while len(ids) < seq_len:
                logits = model(torch.tensor([bos + ids], device=model.cfg.device))
                ids.append(int(logits[0, -1].argmax()))
            out.append(ids)
    return out


def load_source(
    model: HookedTransformer, source: str, n: int, seq_len: int, seed: int = 0, prompts_from: str = ""
):
    from cramlens.texts import load_texts

    if source == "generated":
        return generated_texts(model, n, seq_len, prompts_from or "builtin")
    return load_texts(source, model.tokenizer, n, seq_len, seed=seed)


def cram_dir(root: str | Path, model_name: str, variant: str, source: str) -> Path:
    return Path(root) / model_name / variant / source_label(source)


def cram_source(
    model: HookedTransformer,
    texts: Sequence,
    out: Path,
    recipe,
    batch_size: int,
    seed: int = 0,
    progress=None,
) -> CramRun:
    """Progressive cramming of ``texts`` into run directory ``out`` (resumed when it exists)."""
    from cramlens import progressive_cram

    return progressive_cram(
        model, texts, recipe=recipe, batch_size=batch_size, seed=seed, out=out, resume=True, progress=progress
    )


def capacity_run(
    model: HookedTransformer,
    model_name: str,
    sources: Sequence[str | tuple[str, int]],
    n_samples: int,
    seq_len: int,
    recipe,
    root: str | Path,
    batch_size: int | None = None,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> list[SampleCapacity]:
    """Issue 12: cram texts of each source on one model (``(source, n)`` pairs override ``n_samples``).

    Returns per-sample capacity rows, also saved as ``<root>/<model>/capacity_samples.json``. Rows of other sources
    already in that file (e.g. from a run of another source in a parallel process) are kept and returned too.
    """
    rows: list[SampleCapacity] = []
    pairs = [(s, n_samples) if isinstance(s, str) else (s[0], int(s[1])) for s in sources]
    # the generated source's prompts come from the first text source (built-in text when there is none)
    prompts = next((src for src, _ in pairs if src != "generated"), "builtin")
    for src, n in pairs:
        texts = load_source(model, src, n, seq_len, seed, prompts_from=prompts)
        t0 = time.process_time()
        run = cram_source(
            model, texts, cram_dir(root, model_name, "full", src), recipe, batch_size or n, seed
        )
        rows += sample_capacity(run, model.cfg.d_model, source_label(src), "full")
        log(
            f"{model_name} {source_label(src)}: horizons {run.horizons()} ({time.process_time() - t0:.0f} CPU-s)"
        )
    path = Path(root) / model_name / "capacity_samples.json"
    done = {r.source for r in rows}
    earlier = (
        [r for r in load_capacity_samples(root, model_name) if r.source not in done] if path.exists() else []
    )
    if earlier:
        log(f"kept from earlier runs: {', '.join(sorted({r.source for r in earlier}))}")
    rows = earlier + rows
    atomic_write_text(path, json.dumps([asdict(r) for r in rows], indent=1))
    return rows


def load_capacity_samples(root: str | Path, model_name: str) -> list[SampleCapacity]:
    p = Path(root) / model_name / "capacity_samples.json"
    check(p.exists(), f"{p} does not exist; run scripts/capacity.py for {model_name} first")
    return [SampleCapacity(**d) for d in json.loads(p.read_text())]
