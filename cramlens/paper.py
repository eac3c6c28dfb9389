"""Published numbers the toolkit puts beside its own, each with its unit and the model it was measured on.

Values from ``shared/REFERENCE.md``: :data:`COMPRESSED_TOKENS` (Tarasov et al., ICML 2026, model-scale sweep, 10
PG-19 samples per model, reported as mean ± sd) and :data:`CLAIMS`, one entry per claim of the claims ledger
(``analyses.ledger``), each naming its REFERENCE section. The paper's "compressed tokens" counts stage rows:
horizon + 1 with a stage step of 1 (the final, failing stage is counted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .stats import mean_ci


@dataclass(frozen=True)
class PaperValue:
    value: float
    sd: float
    n: int
    unit: str
    model: str  # the model the paper measured it on
    source: str


COMPRESSED_TOKENS = {
    "smollm2-135m": PaperValue(38.5, 14.1, 10, "compressed tokens", "SmolLM2-135M", "model-scale sweep"),
    "gemma-3-270m": PaperValue(71.2, 14.2, 10, "compressed tokens", "Gemma-3-270M", "model-scale sweep"),
}


def compressed_tokens(horizon: int) -> int:
    """The paper's unit for one sample of a linear, step-1 progressive run: stage rows = horizon + 1."""
    return int(horizon) + 1


def horizon_line(horizons: list[int], model: str) -> str:
    """One line placing a run's horizons, in the paper's unit with n and a 95% interval, beside the paper's."""
    ours = mean_ci([compressed_tokens(h) for h in horizons])
    line = f"compressed tokens (paper's unit, horizon + 1): {ours}"
    ref = COMPRESSED_TOKENS.get(model)
    if ref is None:
        return line + f"; the paper has no number for {model}"
    return (
        line + f"; paper, {ref.model}: {ref.value} ± {ref.sd} (sd, n={ref.n} PG-19 texts, {ref.source})"
        " — one run per text is one draw; compare distributions, not single runs"
    )


# --- values behind the claims ledger (analyses.ledger): one entry per claim, keyed by our model name; "*" is the
# value the paper gives for another model (the ledger names that model). REFERENCE section in ``source``. A value
# derived from two published numbers (a difference, a ratio) names both; sd is nan and n is 0 where the paper
# gives none (a figure read, one sample).
NAN = float("nan")
CLAIMS: dict[str, dict[str, PaperValue]] = {
    "brittleness_gap": {
        "*": PaperValue(
            0.0019 - 0.9904,
            NAN,
            50,
            "greedy − TF accuracy",
            "Llama-3.2-1B, full cramming @512 tokens",
            "D.3 compression_reconstruction_main (common): TF 0.9904, greedy 0.0019",
        )
    },
    "progressive_greedy_exact": {
        "*": PaperValue(
            1.0,
            0.0,
            50,
            "fraction greedy-exact",
            "Llama-3.1-8B and Pythia-1.4B (all 8 rows: 100%)",
            "D.2 full_vs_progressive: Prog. TF/greedy 100/100",
        )
    },
    "compressed_tokens": dict(COMPRESSED_TOKENS),
    "ig_final_bits": {
        "*": PaperValue(
            1208.0, 162.0, 50, "bits (IG at the final stage)", "SmolLM2-1.7B", "D.1 progressive_modifications"
        )
    },
    "pc12_share": {
        "*": PaperValue(
            0.657,
            NAN,
            1,
            "fraction of variance",
            "Llama-3.1-8B, one length-1000 sample",
            "D.4 / C.2 (Fig. 3)",
        )
    },
    "pca99": {
        "smollm2-135m": PaperValue(
            12.2, NAN, 10, "components", "SmolLM2-135M", "D.1 model-scale sweep (PCA99)"
        ),
        "gemma-3-270m": PaperValue(
            18.5, NAN, 10, "components", "Gemma-3-270M", "D.1 model-scale sweep (PCA99)"
        ),
    },
    "pca99_growth": {
        "*": PaperValue(
            (78 - 26) / 3,
            NAN,
            0,
            "components per doubling of length",
            "Llama-3.1-8B, lr 0.1",
            "D.4 pca_components_vs_seqlen [≈fig]: 26 at L=128 → 78 at L=1024",
        )
    },
    "pca_reconstruction_gap": {
        "*": PaperValue(
            -0.15,
            NAN,
            0,
            "TF accuracy at k = PCA99, minus 1",
            "Llama-3.1-8B",
            "D.4 pca_reconstruction_accuracy [≈fig]: TF ≈ 0.82 at k=75, 0.87 at k=100; PCA99 = 83",
        )
    },
    "solution_distance": {
        "*": PaperValue(
            1.61,
            NAN,
            239,
            "Sol. dist. (median over groups)",
            "SmolLM2-1.7B",
            "D.5 solution_diversity: 1.61 [1.58, 1.64] IQR; 1.49–1.63 over 4 models",
        )
    },
    "direction_cosine": {
        "*": PaperValue(
            0.10,
            NAN,
            239,
            "mean pairwise cosine",
            "SmolLM2-1.7B",
            "D.5 solution_diversity: +0.04 … +0.24 over 4 models",
        )
    },
    "surprisal_steps": {
        "*": PaperValue(
            0.53,
            NAN,
            16654,
            "Spearman ρ (pooled pairs)",
            "SmolLM2-1.7B",
            "D.11 surprisal_steps_correlation: 0.53 [0.51, 0.55]; 0.44–0.59 over 4 models",
        )
    },
    "hellaswag_cram_vs_none": {
        "*": PaperValue(
            38.71 - 53.56,
            NAN,
            512,
            "accuracy points (cram − base)",
            "SmolLM2-1.7B",
            "D.6 semantic_evaluation: Base 53.56, Full Acc 38.71 (Conv 96.88%)",
        )
    },
    "arc_easy_cram_vs_none": {
        "*": PaperValue(
            53.29 - 67.26,
            NAN,
            512,
            "accuracy points (cram − base)",
            "SmolLM2-1.7B",
            "D.6 semantic_evaluation: Base 67.26, Full Acc 53.29 (Conv 97.85%)",
        )
    },
    "mmlu_few_shot_vs_baseline": {
        "*": PaperValue(
            45.91 - 50.98,
            NAN,
            512,
            "accuracy points (few_shot − baseline)",
            "SmolLM2-1.7B",
            "D.7 rebuttle_mmlu: Base 50.98, few_shot 45.91 (Valid 100%)",
        )
    },
    "mmlu_few_shot_valid": {
        "*": PaperValue(
            100.0,
            NAN,
            512,
            "% valid answers",
            "SmolLM2-1.7B",
            "D.7 rebuttle_mmlu: few_shot Valid 100% (Pythia-1.4B 95.70%)",
        )
    },
    "mmlu_full_prefix_valid": {
        "*": PaperValue(
            0.0,
            NAN,
            512,
            "% valid answers",
            "SmolLM2-1.7B",
            "D.7 rebuttle_mmlu: full_prefix Valid 0.00% (Pythia-1.4B 24.80%)",
        )
    },
    "mmlu_random_vs_baseline": {
        "*": PaperValue(
            46.66 - 50.98,
            NAN,
            512,
            "accuracy points (random − baseline)",
            "SmolLM2-1.7B",
            "D.7 rebuttle_mmlu: random 46.66 (Llama −0.51, Gemma +1.05)",
        )
    },
    "knockout_forward": {
        "*": PaperValue(
            0.705 - 1.0,
            NAN,
            512,
            "TF accuracy change, first 2 layers knocked out",
            "Llama-3.1-8B",
            "D.8 attention_knockout [≈fig]: TF 1.00 → 0.705 at k=2",
        )
    },
    "knockout_reverse": {
        "*": PaperValue(
            0.0,
            NAN,
            512,
            "TF accuracy change, last 2 layers knocked out",
            "Llama-3.1-8B",
            "D.8 attention_knockout [≈fig]: TF ≈ 1.0 for k ≤ 3",
        )
    },
    "sink_share": {
        "smollm2-135m": PaperValue(
            60.79,
            17.6,
            0,
            "% attention on position 0",
            "SmolLM2-135M",
            "D.9 attn_hijacking (mean over layers)",
        ),
        "gemma-3-270m": PaperValue(
            12.94,
            3.04,
            0,
            "% attention on position 0",
            "Gemma-3-270M",
            "D.9 attn_hijacking (mean over layers)",
        ),
    },
    "sink_correlation": {
        "smollm2-135m": PaperValue(
            0.8475, NAN, 0, "Pearson r of layer profiles", "SmolLM2-135M", "D.9 attn_hijacking (Corr.)"
        ),
        "gemma-3-270m": PaperValue(
            0.3448, NAN, 0, "Pearson r of layer profiles", "Gemma-3-270M", "D.9 attn_hijacking (Corr.)"
        ),
    },
    "capacity_law": {
        "*": PaperValue(
            abs(math.log(512 / 316)) - abs(math.log(2120 / 2265)),
            NAN,
            50,
            "|ln token ratio| − |ln bit ratio| (PG-19 vs random text)",
            "Llama-3.2-1B (Kuratov et al.)",
            "D.13: tokens 512 vs 316, CE reduction 2120 vs 2265 nats",
        )
    },
    "model_size": {
        "*": PaperValue(
            71.2 - 38.5,
            NAN,
            10,
            "compressed tokens (larger − smaller model)",
            "Gemma-3-270M vs SmolLM2-135M",
            "D.1 model-scale sweep: 71.2 ± 14.2 vs 38.5 ± 14.1",
        )
    },
}
# REFERENCE D.10: mean perfectly-crammed tokens of SmolLM2-1.7B truncated to its first N layers (finetuned).
DEPTH_SMOLLM2_17B = {1: 50.0, 2: 241.0, 4: 404.0, 8: 455.0}


def depth_gain(shallow: int, deep: int) -> PaperValue:
    """The paper's capacity gain from keeping ``deep`` instead of ``shallow`` first layers (SmolLM2-1.7B, D.10);
    the nearest published depths stand in for others."""
    near = {n: min(DEPTH_SMOLLM2_17B, key=lambda k: abs(k - n)) for n in (shallow, deep)}
    a, b = near[shallow], near[deep]
    return PaperValue(
        DEPTH_SMOLLM2_17B[b] - DEPTH_SMOLLM2_17B[a],
        NAN,
        50,
        f"tokens (first-{b} − first-{a})",
        "SmolLM2-1.7B",
        f"D.10 depth_size_pivot: first-{a} {DEPTH_SMOLLM2_17B[a]:.0f}, first-{b} {DEPTH_SMOLLM2_17B[b]:.0f}",
    )


def paper_value(claim: str, model: str) -> PaperValue | None:
    """The paper's value for ``claim`` on ``model``, else the one it gives for another model (``None``: neither)."""
    values = CLAIMS.get(claim, {})
    return values.get(model, values.get("*"))
