"""The claims ledger's registry: one :class:`Claim` per row (statement, the paper's value from
:data:`cramlens.paper.CLAIMS`, the step that measures ours, how ours is extracted, the comparison) and
:func:`evaluate`, which turns a claim and the steps' results into a :class:`Row` with its verdict."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

from cramlens.paper import PaperValue, depth_gain, paper_value

from . import extract as ex
from . import extract_eval as ee
from . import verdict as vd

NUMERIC, DIRECTIONAL = "numeric", "directional"


@dataclass(frozen=True)
class Band:
    """The tolerance band of a numeric claim: fixed ``[lo, hi]`` (e.g. the range over the paper's models),
    ``± plus_minus`` or ``± relative`` of the paper's value, or the paper's own 95% interval (mean ± t·sd/√n)."""

    lo: float | None = None
    hi: float | None = None
    plus_minus: float = 0.0
    relative: float = 0.0
    paper_interval: bool = False
    reason: str = ""

    def resolve(self, pv: PaperValue) -> tuple[float, float] | None:
        if self.lo is not None and self.hi is not None:
            return (self.lo, self.hi)
        if self.paper_interval:
            if not (math.isfinite(pv.sd) and pv.n >= 2):
                return None
            from scipy import stats

            half = stats.t.ppf(0.975, pv.n - 1) * pv.sd / math.sqrt(pv.n)
            return (pv.value - half, pv.value + half)
        half = self.plus_minus + self.relative * abs(pv.value)
        return (pv.value - half, pv.value + half)


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    step: str
    extract: Callable[[ex.Results], ex.Ours | None]
    kind: str = NUMERIC
    band: Band | None = None  # numeric
    model_specific: bool = False  # numeric: only the paper's value for this very model counts
    sign: int = 0  # directional: +1 the effect is above ``threshold`` in the paper, -1 below
    threshold: float = 0.0
    paper_key: str | None = None  # the cramlens.paper.CLAIMS key (default: id)


def C(id, statement, step, extract, **kw) -> Claim:  # noqa: N802 (a table-building shorthand)
    return Claim(id, statement, step, extract, **kw)


def _dir(sign: int, threshold: float = 0.0) -> dict:
    return {"kind": DIRECTIONAL, "sign": sign, "threshold": threshold}


MODELS_RANGE = "the range over the paper's four models"
CLAIMS: tuple[Claim, ...] = (
    C(
        "brittleness_gap",
        "Full cramming: teacher forcing hides greedy failure (greedy ≪ TF)",
        "brittleness",
        ex.brittleness_gap,
        **_dir(-1),
    ),
    C(
        "progressive_greedy_exact",
        "Progressive cramming: every horizon prefix is reproduced exactly by greedy generation",
        "progressive",
        ex.progressive_greedy_exact,
        band=Band(0.95, 1.0, reason="≥ 95% exact"),
    ),
    C(
        "compressed_tokens",
        "Compression horizon in the paper's unit (compressed tokens = horizon + 1)",
        "progressive",
        ex.compressed_tokens,
        band=Band(paper_interval=True, reason="the paper's 95% interval"),
        model_specific=True,
    ),
    C(
        "ig_final_bits",
        "Information gain at the final stage (the paper's tables), bits",
        "progressive",
        ex.ig_final_bits,
        band=Band(paper_interval=True, reason="the paper's 95% interval"),
        model_specific=True,
    ),
    C(
        "pc12_share",
        "Trajectories are low-dimensional: PC1+PC2 hold most of the variance (> 50%)",
        "trajectory",
        ex.pc12_share,
        **_dir(+1, 0.5),
    ),
    C(
        "pca99",
        "Components for 99% of a trajectory's variance (PCA99)",
        "trajectory",
        ex.pca99,
        band=Band(relative=0.25, reason="± 25% of the paper's value"),
        model_specific=True,
    ),
    C(
        "pca99_growth",
        "PCA99 grows with the prefix length (components per doubling > 0)",
        "trajectory",
        ex.pca99_growth,
        **_dir(+1),
    ),
    C(
        "pca_reconstruction_gap",
        "The PCA99 components do not rebuild the solution exactly (TF at k = PCA99 < 1)",
        "trajectory",
        ex.pca_reconstruction_gap,
        **_dir(-1),
    ),
    C(
        "solution_distance",
        "Equally good solutions are far apart (Sol. dist., mean pairwise / mean displacement)",
        "diversity",
        ex.solution_distance,
        band=Band(1.49, 1.63, reason=MODELS_RANGE),
    ),
    C(
        "direction_cosine",
        "Displacements from one init point in nearly unrelated directions (Dir. cos.)",
        "diversity",
        ex.direction_cosine,
        band=Band(0.04, 0.24, reason=MODELS_RANGE),
    ),
    C(
        "surprisal_steps",
        "Surprising tokens take more steps to absorb (Spearman ρ, surprisal vs marginal steps)",
        "surprisal",
        ex.surprisal_steps,
        band=Band(0.44, 0.59, reason=MODELS_RANGE),
    ),
    C(
        "hellaswag_cram_vs_none",
        "HellaSwag: the crammed context lowers accuracy against no memory",
        "hellaswag",
        ee.choice_effect("hellaswag", "base"),
        **_dir(-1),
    ),
    C(
        "hellaswag_cram_vs_random",
        "HellaSwag: the drop comes from the crammed content (cram < random vector of its norm)",
        "hellaswag",
        ee.choice_effect("hellaswag", "random"),
        **_dir(-1),
    ),
    C(
        "arc_easy_cram_vs_none",
        "ARC-Easy: the crammed question lowers accuracy against no memory",
        "arc_easy",
        ee.choice_effect("arc_easy", "base"),
        **_dir(-1),
    ),
    C(
        "arc_easy_cram_vs_random",
        "ARC-Easy: the drop comes from the crammed content (cram < random vector of its norm)",
        "arc_easy",
        ee.choice_effect("arc_easy", "random"),
        **_dir(-1),
    ),
    C(
        "mmlu_few_shot_vs_baseline",
        "MMLU: a crammed 5-shot block costs accuracy against the plain prompt",
        "mmlu",
        ee.mmlu_effect("few_shot"),
        **_dir(-1),
    ),
    C(
        "mmlu_few_shot_valid",
        "MMLU: answers stay valid with a crammed 5-shot block (Valid %)",
        "mmlu",
        ee.mmlu_valid("few_shot"),
        band=Band(95.7, 100.0, reason=MODELS_RANGE),
    ),
    C(
        "mmlu_full_prefix_valid",
        "MMLU: cramming the whole prompt breaks the answer format (Valid %)",
        "mmlu",
        ee.mmlu_valid("full_prefix"),
        band=Band(0.0, 24.8, reason=MODELS_RANGE),
    ),
    C(
        "mmlu_random_vs_baseline",
        "MMLU: a random memory vector leaves accuracy about unchanged (points vs baseline)",
        "mmlu",
        ee.mmlu_effect("random"),
        band=Band(-4.32, 1.05, reason="the range over the paper's three 1.7–8B models"),
    ),
    C(
        "knockout_forward_text",
        "Knocking the memory out of the first layers destroys reconstruction (TF change; text mask)",
        "knockout",
        ee.knockout_effect("forward", "text"),
        paper_key="knockout_forward",
        **_dir(-1),
    ),
    C(
        "knockout_forward_reference",
        "Knocking the memory out of the first layers destroys reconstruction (TF change; reference mask)",
        "knockout",
        ee.knockout_effect("forward", "reference"),
        paper_key="knockout_forward",
        **_dir(-1),
    ),
    C(
        "knockout_reverse_text",
        "Knocking the memory out of the last layers leaves reconstruction intact (TF change; text mask)",
        "knockout",
        ee.knockout_effect("reverse", "text"),
        paper_key="knockout_reverse",
        band=Band(plus_minus=0.05, reason="± 0.05 (a figure read)"),
    ),
    C(
        "knockout_reverse_reference",
        "Knocking the memory out of the last layers leaves reconstruction intact (TF change; reference mask)",
        "knockout",
        ee.knockout_effect("reverse", "reference"),
        paper_key="knockout_reverse",
        band=Band(plus_minus=0.05, reason="± 0.05 (a figure read)"),
    ),
    C(
        "sink_share",
        "The memory becomes the attention sink: % of attention on it (mean over layers)",
        "sinks",
        ex.sink_share,
        band=Band(plus_minus=10.0, reason="± 10 points"),
        model_specific=True,
    ),
    C(
        "sink_correlation",
        "Its layer profile follows position 0's without memory (Pearson r)",
        "sinks",
        ex.sink_correlation,
        band=Band(plus_minus=0.15, reason="± 0.15"),
        model_specific=True,
    ),
    C(
        "depth_gain",
        "Capacity grows with retained depth (horizon, deeper minus shallower finetuned cut)",
        "depth",
        ex.depth_gain,
        **_dir(+1),
    ),
    C(
        "capacity_law",
        "Kuratov: capacity is set by bits, not tokens (|ln token ratio| − |ln bit ratio| > 0, PG-19 vs random words)",
        "capacity",
        ex.capacity_law,
        **_dir(+1),
    ),
)


@dataclass
class Row:
    """One ledger row: the claim, the paper's value, ours, the verdict and the command that made ours."""

    claim: str
    statement: str
    kind: str
    step: str
    paper: dict | None  # PaperValue fields + same_model
    band: list[float] | None
    band_reason: str
    rule: str  # e.g. "directional: < 0"
    ours: dict | None  # MeanCI fields
    note: str
    verdict: str
    reason: str
    command: str

    def to_dict(self) -> dict:
        return asdict(self)


def paper_for(claim: Claim, model: str, results: ex.Results) -> tuple[PaperValue | None, bool]:
    """The paper's value and whether it was measured on ``model`` itself."""
    from cramlens.paper import CLAIMS as VALUES

    if claim.id == "depth_gain" and "depth" in results:
        shallow, deep = results["depth"]["depths"]
        return depth_gain(shallow, deep), False
    key = claim.paper_key or claim.id
    return paper_value(key, model), model in VALUES.get(key, {})


def _rule(claim: Claim) -> str:
    if claim.kind == DIRECTIONAL:
        return f"directional: {'>' if claim.sign > 0 else '<'} {claim.threshold:g}"
    return "numeric" + (" (this model's value only)" if claim.model_specific else "")


def evaluate(claim: Claim, model: str, results: ex.Results, command: str) -> Row:
    """Extract ours from ``results``, place it beside the paper's value and apply the verdict rule."""
    pv, same = paper_for(claim, model, results)
    paper = None if pv is None else {**asdict(pv), "same_model": same}
    band = claim.band.resolve(pv) if (claim.band and pv is not None) else None
    if claim.kind == NUMERIC and claim.model_specific and not same:
        band = None  # another model's value is shown, not judged against
    ours = claim.extract(results)
    if ours is None:
        verdict = vd.Verdict(vd.NOT_RUN, f"step {claim.step} has not finished")
    elif claim.kind == DIRECTIONAL:
        verdict = vd.directional(ours.ci, claim.sign, claim.threshold, ours.bound)
    else:
        verdict = vd.numeric(ours.ci, None if pv is None else pv.value, band, ours.bound)
    return Row(
        claim.id,
        claim.statement,
        claim.kind,
        claim.step,
        paper,
        None if band is None else [band[0], band[1]],
        claim.band.reason if claim.band else "",
        _rule(claim),
        None if ours is None else ours.ci.to_dict(),
        "" if ours is None else ours.note,
        verdict.outcome,
        verdict.reason,
        command,
    )
