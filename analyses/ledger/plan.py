"""What a ledger run will do and how long it should take: a few cram steps are timed on the model at the start
(:func:`measure_step_cost`), each step's work (:mod:`analyses.ledger.steps`) is multiplied by that cost, and the
plan is printed as a table before anything runs."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from rich.table import Table

from .context import RESULT, ModelInfo, Step, Work
from .protocols import Protocol


@dataclass(frozen=True)
class StepCost:
    """CPU seconds per optimisation iteration: ``fixed`` + ``per_token_step`` × (samples × tokens). CPU time, not
    wall time, because a shared machine's load changes the wall time of the same work; ``busy`` (CPU seconds per
    wall second while measuring) turns it into the wall time to expect at the load measured."""

    fixed_s: float
    per_token_step_s: float
    busy: float

    def seconds(self, work: Work) -> float:
        return work.iterations * self.fixed_s + work.token_steps * self.per_token_step_s

    def to_dict(self) -> dict:
        return asdict(self)


def _time_cram(model, batch: int, length: int, steps: int) -> tuple[float, float]:
    from cramlens import cram

    g = torch.Generator().manual_seed(0)
    hi = min(int(model.cfg.d_vocab), 30_000)
    texts = [torch.randint(100 if hi > 200 else 1, hi, (length,), generator=g).tolist() for _ in range(batch)]
    wall, cpu = time.perf_counter(), time.process_time()
    cram(model, texts, max_steps=steps, batch_size=batch, check_greedy=False, warmup=0)
    return time.perf_counter() - wall, time.process_time() - cpu


def measure_step_cost(
    model, shapes: tuple[tuple[int, int], ...] = ((2, 12), (16, 28)), steps=(1, 4)
) -> StepCost:
    """Time full cramming at two (batch, length) shapes and two step counts; fit ``fixed + per_token × tokens``
    to the CPU time of the extra steps (setup costs cancel)."""
    per_iter, tokens, walls, cpus = [], [], 0.0, 0.0
    for batch, length in shapes:
        (w1, c1), (w2, c2) = (_time_cram(model, batch, length, k) for k in steps)
        per_iter.append(max(c2 - c1, 1e-6) / (steps[1] - steps[0]))
        tokens.append(batch * (length + 1))
        walls, cpus = walls + w1 + w2, cpus + c1 + c2
    slope = max((per_iter[1] - per_iter[0]) / (tokens[1] - tokens[0]), 1e-9)
    fixed = max(per_iter[0] - slope * tokens[0], 0.0)
    return StepCost(fixed, slope, min(max(cpus / max(walls, 1e-9), 1e-3), float(torch.get_num_threads())))


@dataclass(frozen=True)
class PlannedStep:
    name: str
    what: str
    work: Work
    expected_s: float  # CPU seconds
    done: bool


def plan(
    steps: list[Step], protocol: Protocol, info: ModelInfo, cost: StepCost, root: Path
) -> list[PlannedStep]:
    """Each step's work and expected CPU time; ``done`` when its result is already on disk (it will be skipped)."""
    out = []
    for s in steps:
        work = s.work(protocol, info)
        out.append(PlannedStep(s.name, s.what, work, cost.seconds(work), (root / s.name / RESULT).exists()))
    return out


def hours(seconds: float) -> str:
    """``2 h 05 min`` / ``14 min`` / ``40 s``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    m = int(round(seconds / 60))
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{m} min"


def plan_table(planned: list[PlannedStep], info: ModelInfo, protocol: Protocol, cost: StepCost) -> Table:
    todo = sum(p.expected_s for p in planned if not p.done)
    t = Table(
        title=f"ledger plan: {info.name}, protocol {protocol.name} — expected {hours(todo)} of CPU time for the "
        f"steps left (≈ {hours(todo / cost.busy)} wall at the load measured now)",
        title_justify="left",
    )
    for c in ("step", "what it runs", "token-steps", "expected CPU", "status"):
        t.add_column(c, justify="right" if c in ("token-steps", "expected CPU") else "left")
    for p in planned:
        t.add_row(
            p.name,
            p.what,
            f"{p.work.token_steps:,.0f}",
            hours(p.expected_s),
            "done (skipped)" if p.done else "to run",
        )
    t.caption = (
        f"measured here: {cost.fixed_s * 1000:.0f} ms + {cost.per_token_step_s * 1e3:.2f} ms per sample-token of CPU "
        f"per iteration, {cost.busy:.2f} CPU s per wall s; work assumes every budget is spent (early stops make it "
        "shorter)"
    )
    return t
