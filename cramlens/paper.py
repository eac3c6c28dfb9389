"""Published numbers the toolkit puts beside its own, each with its unit and the model it was measured on.

Values from ``shared/REFERENCE.md`` (Tarasov et al., ICML 2026, model-scale sweep, 10 PG-19 samples per model,
reported as mean ± sd). The paper's "compressed tokens" counts stage rows: horizon + 1 with a stage step of 1
(the final, failing stage is counted).
"""

from __future__ import annotations

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
