"""Optimisation recipes: every knob of a cramming run, with named presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from .errors import CramlensError, check


@dataclass(frozen=True)
class Recipe:
    """Settings of the optimiser, schedule, budgets and stopping rule (REFERENCE A.8 names in comments)."""

    lr: float = 0.1
    min_lr: float = 1e-3
    warmup: int = 100
    schedule: str = "cosine_with_min_lr"  # or "constant"
    betas: tuple[float, float] = (0.9, 0.9)
    weight_decay: float = 0.01
    eps: float = 1e-8
    init: str = "random0.02"
    steps_per_stage: int = 1000  # max_optimization_steps_per_token
    steps_per_sample: int = 10_000  # max_optimization_steps_per_sample (also the schedule length)
    threshold: float = 1.0  # teacher-forced accuracy that passes a stage / stops full cramming
    hybrid_alpha: float = 0.0  # CE + alpha * sum_l (1 - cos) activation alignment (0: plain CE)
    align_layers: int = 8  # K: HF hidden-state indices 0..K-1 (index 0 = embeddings)
    leading_weight: float = 1.0  # CE weight of the first `leading_count` targets
    leading_count: int = 0

    def __post_init__(self):
        check(self.lr > 0, f"lr={self.lr}; the learning rate must be positive")
        check(0 <= self.min_lr <= self.lr, f"min_lr={self.min_lr} must be in [0, lr]")
        check(self.warmup >= 0, "warmup must be >= 0")
        check(
            self.schedule in ("cosine_with_min_lr", "constant"),
            "schedule must be cosine_with_min_lr or constant",
        )
        check(self.steps_per_stage >= 1 and self.steps_per_sample >= 1, "step budgets must be >= 1")
        check(0 < self.threshold <= 1.0, f"threshold={self.threshold}; use a value in (0, 1]")
        check(all(0 <= b < 1 for b in self.betas), "betas must be in [0, 1)")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    def with_(self, **changes) -> Recipe:
        names = [f.name for f in fields(self)]
        unknown = sorted({k for k, v in changes.items() if v is not None} - set(names))
        check(not unknown, f"unknown recipe setting(s) {', '.join(unknown)}; valid: {', '.join(names)}")
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


PRESETS: dict[str, Recipe] = {
    # The paper's progressive recipe (REFERENCE A.2/A.8): lr 0.1, warmup 100, 1000/stage, 10,000/sample.
    "paper": Recipe(),
    # The FBL quickstart for SmolLM2-135M (500 steps per stage).
    "quickstart": Recipe(steps_per_stage=500, steps_per_sample=4000),
    # Full-cramming brittleness protocol (C.1): lr 0.01, no warmup, U[0,1) init, stop at TF >= 0.99.
    "brittleness": Recipe(
        lr=0.01, warmup=0, init="random1", steps_per_stage=5000, steps_per_sample=5000, threshold=0.99
    ),
    # Downstream/knockout crams (C.4): lr 0.1, cosine, no warmup, N(0, 0.02^2), betas (0.9, 0.999), 1000 steps.
    "downstream": Recipe(
        warmup=0,
        min_lr=0.0,
        init="normal0.02",
        betas=(0.9, 0.999),
        steps_per_stage=1000,
        steps_per_sample=1000,
    ),
}
# The paper's recipe without warmup: the default, because it reached the most horizon per step spent in the
# start-up sweep of docs/notebook.md (1.33 vs 1.20 tokens per 100 steps; two texts, so a small margin). The
# larger lever found there is the layout, not the recipe: `Layout(bos=True, mem_first=False)` (`--bos-first`)
# took the memory off the attention-sink position 0 and reached 3.3 tokens per 100 steps.
PRESETS["fast"] = Recipe(warmup=0)
DEFAULT_PRESET = "fast"


def get_recipe(name: str = DEFAULT_PRESET, **overrides) -> Recipe:
    """A named preset with ``overrides`` (``None`` values ignored)."""
    if name not in PRESETS:
        raise CramlensError(f"unknown recipe {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name].with_(**overrides)
