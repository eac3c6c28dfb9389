"""One value for every setting of a cramming run: :class:`CramSpec`.

The spec flows from the command line (:func:`cramlens.cli.spec_from_args`) or from IPython keyword overrides
(``progressive_cram(model, texts, recipe="paper", batch_size=4)``) to the engine, and its :meth:`CramSpec.to_dict`
is what a run directory's ``config.json`` holds under ``settings`` (the flat keys older runs wrote, so their
directories load and resume unchanged). What a run *does* with its results (``out``, ``resume``, ``overwrite``,
``progress``, ``hooks``, ``first_id``) is not part of the spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from .errors import CramlensError, check
from .layout import Layout
from .recipe import DEFAULT_PRESET, Recipe, get_recipe

PARAMETRIZATIONS = ("direct", "low_dim", "pca")
SCHEDULES = ("linear", "geometric")
STAGE_KEYS = ("min_len", "step", "schedule")  # full cramming has no stage schedule


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> ``(0, 1, 2)``; ``"0-4"`` -> ``(0, 1, 2, 3, 4)``."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-") if not part.startswith("-") else (part, "", "")
        try:
            out += list(range(int(lo), int(hi) + 1)) if sep else [int(part)]
        except ValueError:
            raise CramlensError(f"--seeds {text!r}: use integers like 0,1,2 or a range like 0-4") from None
    check(len(out) > 0, f"--seeds {text!r} names no seed; use e.g. 0,1,2")
    return tuple(out)


@dataclass(frozen=True)
class CramSpec:
    """Recipe, layout, memory parametrisation, stage schedule, batch size and seed of a cramming run.

    ``parametrization``: ``direct`` (the memory rows), ``low_dim`` (``e = W z + b`` with ``z`` of rank
    ``low_dim``; one ``W, b`` for the run with ``shared_projection``) or ``pca`` (coefficients over a basis given
    to the run as ``pca_basis``). Stages (progressive cramming): lengths ``min_len, min_len + step, ...``
    (``schedule="linear"``, the paper's) or doubling then bisection (``"geometric"``). The model's dtype and
    device are the model's own: the engine reads them from ``model.cfg``.
    """

    recipe: Recipe = field(default_factory=lambda: get_recipe(DEFAULT_PRESET))
    layout: Layout = field(default_factory=Layout)
    parametrization: str = "direct"  # on the command line: low_dim when --low-dim k >= 1
    # ``metadata``: the field's command-line option (cramlens.cli.add_dataclass_args) in its option ``group``
    low_dim: int = field(
        default=0, metadata={"help": "train e = W z + b with z of this rank (0: direct)", "group": "layout"}
    )
    shared_projection: bool = field(
        default=False, metadata={"help": "one W, b for the whole run (with --low-dim)", "group": "layout"}
    )
    min_len: int = field(
        default=1, metadata={"help": "first stage length (tokens, BOS included)", "group": "stages"}
    )
    step: int = field(default=1, metadata={"help": "tokens added per stage", "group": "stages"})
    schedule: str = field(
        default="linear",
        metadata={
            "help": "linear (paper) or geometric growth + bisection with warm restore",
            "choices": list(SCHEDULES),
            "group": "stages",
        },
    )
    batch_size: int = field(
        default=1,
        metadata={"help": "samples optimised together (each keeps its own state)", "group": "run"},
    )
    seed: int = field(
        default=0, metadata={"help": "seed of the text sampling and the memory init", "group": "run"}
    )
    # a horizon is one draw of a chaotic optimisation: repeats make its spread measurable (issue 23)
    seeds: tuple[int, ...] = field(
        default=(),
        metadata={
            "help": "cram every text once per memory-init seed, e.g. 0,1,2 (default: just --seed)",
            "type": parse_seeds,
            "group": "run",
        },
    )
    init_perturbation: float = field(
        default=0.0,
        metadata={
            "help": "add delta * rms(e0) * N(0,1) to every initial memory (a numeric variant of the same e0)",
            "group": "run",
        },
    )

    def __post_init__(self):
        check(isinstance(self.recipe, Recipe), f"recipe {self.recipe!r}: pass a Recipe or a preset name")
        check(isinstance(self.layout, Layout), f"layout {self.layout!r}: pass a cramlens.Layout")
        check(
            self.parametrization in PARAMETRIZATIONS,
            f"unknown parametrisation {self.parametrization!r}; use {', '.join(PARAMETRIZATIONS)}",
        )
        check(self.schedule in SCHEDULES, f"schedule {self.schedule!r}; use linear or geometric")
        check(self.step >= 1 and self.min_len >= 1, "--step and --min-len must be >= 1")
        check(self.batch_size >= 1, f"batch size {self.batch_size}; use at least 1")
        check(self.low_dim >= 0, f"low_dim={self.low_dim}; use a rank >= 0")
        object.__setattr__(self, "seeds", tuple(int(x) for x in self.seeds))
        check(
            len(set(self.seeds)) == len(self.seeds), f"seeds {list(self.seeds)} repeat a seed; list each once"
        )
        check(self.init_perturbation >= 0, f"init_perturbation={self.init_perturbation}; use a size >= 0")

    def with_(self, **overrides) -> CramSpec:
        """A copy with spec fields and recipe fields replaced (``recipe`` as a preset name or a Recipe).

        ``None`` values are ignored, as in :meth:`Recipe.with_`; an unknown name is an error that lists the
        valid ones.
        """
        overrides = {k: v for k, v in overrides.items() if v is not None}
        names = {f.name for f in fields(self)}
        mine = {k: v for k, v in overrides.items() if k in names}
        rest = {k: v for k, v in overrides.items() if k not in names}
        recipe = mine.pop("recipe", self.recipe)
        if isinstance(recipe, str):
            recipe = get_recipe(recipe)
        if rest:  # Recipe.with_ names the unknown settings
            recipe = recipe.with_(**rest)
        return replace(self, recipe=recipe, **mine)

    def to_dict(self) -> dict:
        """The ``settings`` keys of ``config.json`` (JSON-ready)."""
        lay = self.layout
        return {
            "recipe": self.recipe.to_dict(),
            "layout": {
                "n_mem": lay.n_mem,
                "bos": lay.bos,
                "score_from": lay.score_from,
                "mem_first": lay.mem_first,
            },
            "parametrization": self.parametrization,
            "low_dim": self.low_dim,
            "shared_projection": self.shared_projection,
            "min_len": self.min_len,
            "step": self.step,
            "schedule": self.schedule,
            "batch_size": self.batch_size,
            "seed": self.seed,
            # written only when set, so the config of a run without repeats is what older code wrote and resumes
            **({"seeds": list(self.seeds)} if self.seeds else {}),
            **({"init_perturbation": self.init_perturbation} if self.init_perturbation else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> CramSpec:
        """The spec of a ``to_dict`` (or of a run's ``config.json`` settings: other keys are ignored, missing
        ones take their defaults)."""
        kw = {k: d[k] for k in (f.name for f in fields(cls)) if k in d and k not in ("recipe", "layout")}
        if "seeds" in kw:
            kw["seeds"] = tuple(kw["seeds"])
        if d.get("recipe") is not None:
            r = d["recipe"]
            known = {f.name for f in fields(Recipe)}
            r = {k: (tuple(v) if k == "betas" else v) for k, v in r.items() if k in known}
            kw["recipe"] = Recipe(**r)
        if d.get("layout") is not None:
            kw["layout"] = Layout(**d["layout"])
        return cls(**kw)


def build_spec(spec: CramSpec | None, overrides: dict) -> CramSpec:
    """``spec`` (default: the default spec) with keyword ``overrides`` of spec or recipe fields."""
    base = spec if spec is not None else CramSpec()
    check(isinstance(base, CramSpec), f"spec {spec!r}: pass a CramSpec (or keyword settings)")
    return base.with_(**overrides)
