"""Every figure the toolkit can draw: name → builder, inputs, the command that makes the inputs, what it shows.

A builder takes a :class:`Sources` (where run directories and analysis results live) and returns a list of
:class:`Built` figures, or raises :class:`Missing` with the input it lacks. Builders read run directories and
result files only: they never load a model. Figures whose numbers need forwards of a model (PCA reconstruction,
accuracy landscape, knockout, downstream, probes, brittleness) are drawn from the result files their analysis
script saves.

The inputs are the committed summaries in ``results/`` (:mod:`analyses.results_export`), or run
directories. ``scripts/make_figures.py`` runs the registry and writes HTML + PNG + ``README.md``; ``REGISTRY`` is also what
``make_figures.py --list`` prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import builders as B
from .builders import _model_of
from .sources import COMMANDS, Built, Missing, Sources, tokenizer_for

__all__ = [
    "COMMANDS",
    "REGISTRY",
    "Built",
    "FigureSpec",
    "Missing",
    "Sources",
    "get",
    "tokenizer_for",
    "_model_of",
]


@dataclass(frozen=True)
class FigureSpec:
    name: str
    shows: str  # one line: what the figure shows
    paper: str  # the paper's figure/table (REFERENCE section)
    inputs: str  # what it reads ({runs}/{results} placeholders)
    command: str  # key of COMMANDS: how to make the inputs
    build: Callable[[Sources], list[Built]]


REGISTRY: list[FigureSpec] = [
    FigureSpec(
        "brittleness_table",
        "full cramming stopped at 99% TF vs progressive: TF, greedy, exact, first mismatch (table)",
        "Tables full_vs_progressive, compression_reconstruction (D.2, D.3)",
        "{results}/*/brittleness.json",
        "brittleness",
        B.build_brittleness,
    ),
    FigureSpec(
        "progressive_schematic",
        "one sample (longest horizon): optimizer steps per stage and surprisal of the token each stage adds",
        "Fig. 1 schematic (data)",
        "progressive run dir",
        "progressive",
        B.build_schematic,
    ),
    FigureSpec(
        "token_explorer",
        "interactive: tokens coloured by reconstructed-up-to-horizon, slider = stage, "
        "dropdown = sample, hover = surprisal, marginal steps",
        "project-page token explorer",
        "progressive run dir",
        "progressive",
        B.build_explorer,
    ),
    FigureSpec(
        "horizon_ig",
        "per sample: compression horizon (tokens) and information gain vs H_LM (bits)",
        "Table progressive_modifications (D.1), per sample",
        "progressive run dir",
        "progressive",
        B.build_horizon_ig,
    ),
    FigureSpec(
        "pca_trajectories",
        "each sample's stage embeddings in its own PC1-PC2 plane",
        "Fig. 3 (C.2, D.4)",
        "progressive run dir",
        "progressive",
        B.build_pca_trajectories,
    ),
    FigureSpec(
        "accuracy_landscape",
        "TF accuracy on the PC1-PC2 plane through stage embeddings, trajectory on top",
        "Fig. 3 accuracy landscape (C.2)",
        "{results}/trajectory/trajectory.json",
        "trajectory",
        B.build_landscape,
    ),
    FigureSpec(
        "pca99_vs_length",
        "components for 99% variance of the trajectory prefix vs prefix length",
        "Fig. pca_from_seq_length (C.2, D.4)",
        "progressive run dir",
        "progressive",
        B.build_pca99_vs_length,
    ),
    FigureSpec(
        "pca_reconstruction",
        "TF accuracy of the final embedding rebuilt from its top-k trajectory PCs",
        "Fig. pca_reconstruction_accuracy (C.2, D.4)",
        "{results}/trajectory/trajectory.json",
        "trajectory",
        B.build_pca_reconstruction,
    ),
    FigureSpec(
        "surprisal_vs_steps",
        "surprisal of the new token vs marginal steps, Spearman with cluster CI",
        "Table surprisal_steps_correlation (C.9, D.11)",
        "progressive run dir",
        "progressive",
        B.build_surprisal,
    ),
    FigureSpec(
        "solution_diversity",
        "same init, different learning rates: Sol. dist., Dir. cos., IG CV, Disp. ratio (table; paper grid, or the "
        "lengths two runs share when a run is stuck at the start)",
        "Table solution_diversity (C.3, D.5)",
        "{results}/lrsweep_*",
        "diversity",
        B.build_diversity,
    ),
    FigureSpec(
        "downstream_table",
        "HellaSwag / ARC-E accuracy with and without the crammed context and with a same-norm random vector (control), Conv%",
        "Table semantic_evaluation (C.4, D.6)",
        "{results}/downstream/{hellaswag,arc_easy}/summary.json",
        "downstream",
        B.build_downstream,
    ),
    FigureSpec(
        "mmlu_modes",
        "5-shot MMLU Acc / Valid: baseline, few_shot, full_prefix, random",
        "Table rebuttle_mmlu (C.5, D.7)",
        "{results}/downstream/mmlu/summary.json",
        "mmlu",
        B.build_mmlu,
    ),
    FigureSpec(
        "knockout_cumulative",
        "HellaSwag accuracy and TF reconstruction vs #layers knocked out, forward and reverse; a --mask both "
        "sweep draws the reference mask (dashed) beside the text mask",
        "Fig. knockout_cumulative (C.6, D.8)",
        "{results}/knockout*/summary.json",
        "knockout",
        B.build_knockout_cumulative,
    ),
    FigureSpec(
        "knockout_per_layer",
        "per-layer knockout (each mask the sweep holds) with attention mass on the memory",
        "Fig. knockout_per_layer (C.6, D.8)",
        "{results}/knockout*/summary.json",
        "knockout",
        B.build_knockout_per_layer,
    ),
    FigureSpec(
        "sink_table",
        "attention mass on the memory vs on BOS, mean over layers, correlation (table)",
        "Table attn_hijacking (C.7, D.9)",
        "{results}/knockout*/sink_*.json",
        "sink",
        B.build_sink,
    ),
    FigureSpec(
        "depth_heatmap",
        "mean horizon per (model, blocks kept: first N, first 4 + last 4, full) beside the paper's pivot; "
        "'≥' / 'lb' mark horizons that hit the length cap or step budget (lower bounds), 'no ft' rows were not finetuned",
        "Table depth_size_pivot (C.8, D.10)",
        "{results}/capacity/*/*/result.json",
        "depth",
        B.build_depth,
    ),
    FigureSpec(
        "capacity_bits",
        "per text source: horizon vs information gain (Kuratov's cross-entropy law)",
        "Kuratov Table 1 (D.13)",
        "{results}/capacity/*/capacity_samples.json",
        "capacity",
        B.build_capacity,
    ),
    FigureSpec(
        "probes",
        "linear probes on the residual stream at the memory position, per layer, vs controls",
        "none in the paper (C.10)",
        "{results}/probes/probes.json",
        "probes",
        B.build_probes,
    ),
    FigureSpec(
        "horizon_spread",
        "every draw (text x seed) of the compressed tokens and of IG at the final stage, the text means and the "
        "intra-class correlation: how much of a horizon is the text's",
        "none in the paper (REFERENCE: run-to-run variance unknown)",
        "{results}/horizon_spread/spread.json",
        "horizon_spread",
        B.build_horizon_spread,
    ),
    FigureSpec(
        "divergence",
        "twin runs from e0 and e0 + delta: distance per step in stage 1 and a later stage, finite-time Lyapunov "
        "exponents in the titles",
        "none in the paper",
        "{results}/divergence/divergence.json",
        "divergence",
        B.build_divergence,
    ),
]


def get(name: str) -> FigureSpec:
    for s in REGISTRY:
        if s.name == name:
            return s
    raise KeyError(f"no figure {name!r}; known: {', '.join(s.name for s in REGISTRY)}")
