"""Optimisation recipes: every knob of a cramming run, with named presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from .errors import CramlensError, check

# how the optimisation forward/backward runs (cramlens.judge): in the model's own precision, or bf16 with an fp32 judge
SEARCH_DTYPES = ("model", "bfloat16")


@dataclass(frozen=True)
class Recipe:
    """Settings of the optimiser, schedule, budgets and stopping rule (REFERENCE A.8 names in comments).

    A field's ``metadata`` (``help``, and ``flag`` / ``dest`` / ``choices`` / ``type`` / ``apply`` where the
    command line differs from the field) makes it a command-line option of every script that takes a recipe
    (:func:`cramlens.cli.add_recipe_args`): a new field with ``help`` is a new option, with no other edit.
    """

    lr: float = field(default=0.1, metadata={"help": "peak learning rate"})
    min_lr: float = field(default=1e-3, metadata={"help": "floor of the cosine schedule"})
    warmup: int = field(default=100, metadata={"help": "linear warmup steps"})
    schedule: str = field(
        default="cosine_with_min_lr",
        metadata={
            "help": "learning-rate schedule",
            "flag": "--schedule-kind",  # --schedule is the stage schedule of progressive cramming
            "dest": "lr_schedule",
            "choices": ["cosine_with_min_lr", "constant"],
        },
    )
    betas: tuple[float, float] = field(
        default=(0.9, 0.9),
        metadata={
            "help": "AdamW beta2 (beta1 stays 0.9)",
            "flag": "--beta2",
            "dest": "beta2",
            "type": float,
            "apply": lambda recipe, beta2: (recipe.betas[0], beta2),
        },
    )
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW decoupled weight decay"})
    eps: float = field(default=1e-8, metadata={"help": "AdamW epsilon"})
    init: str = field(
        default="random0.02",
        metadata={
            "help": "memory init: random<s> (U[0,s)), normal<s>, neg_random<s>, zeros, mean_token_embeds, "
            "file:<path>"
        },
    )
    # max_optimization_steps_per_token
    steps_per_stage: int = field(default=1000, metadata={"help": "budget of one stage (progressive)"})
    # max_optimization_steps_per_sample (also the schedule length)
    steps_per_sample: int = field(
        default=10_000,
        metadata={
            "help": "budget of one sample (all its stages)",
            "flag": "--max-steps",
            "dest": "max_steps",
        },
    )
    # teacher-forced accuracy that passes a stage / stops full cramming
    threshold: float = field(
        default=1.0,
        metadata={"help": "teacher-forced accuracy that passes (1.0; 0.99 reproduces the 99%% protocol)"},
    )
    # CE + alpha * sum_l (1 - cos) activation alignment (0: plain CE)
    hybrid_alpha: float = field(
        default=0.0,
        metadata={
            "help": "activation-alignment weight: CE + alpha*sum(1-cos) over the first --align-layers layers"
        },
    )
    # K: HF hidden-state indices 0..K-1 (index 0 = embeddings)
    align_layers: int = field(default=8, metadata={"help": "K layers for the hybrid loss (HF index 0..K-1)"})
    leading_weight: float = field(
        default=1.0, metadata={"help": "CE weight of the first --leading-count targets"}
    )
    leading_count: int = field(default=0, metadata={"help": "how many leading targets get --leading-weight"})
    search_dtype: str = field(
        default="model",
        metadata={
            "help": "model: optimise in the model's own dtype; bfloat16: optimisation forward/backward in bf16 "
            "with fp32 memory and Adam state, and a stage passes only when an fp32 forward agrees (teacher-forced, "
            "and generated exactly when --threshold is 1); needs a float32 model",
            "choices": list(SEARCH_DTYPES),
        },
    )

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
        check(
            self.search_dtype in SEARCH_DTYPES,
            f"search_dtype={self.search_dtype!r}; use one of {', '.join(SEARCH_DTYPES)}",
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        if d["search_dtype"] == "model":  # written only when set: older runs' configs stay equal and resume
            del d["search_dtype"]
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
