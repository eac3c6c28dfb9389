"""How fast do tiny differences grow? Twin cramming runs from ``e0`` and ``e0 + delta`` (issue 23).

One batch of the cramming engine holds the same text several times: row 0 starts from ``e0``, row ``i`` from
``e0 + delta_i * rms(e0) * u`` (one fixed Gaussian direction ``u``, ``delta`` from 1e-8 to 1e-3 of the init
scale), and a ``delta = 0`` row checks that rows of one batch do not perturb each other. Every step records the
distance ``||e_i - e_0||`` and the loss difference ``|L_i - L_0|`` at one fixed stage: stage 1 from the initial
memory, or a later stage warm-started from a run's converged embedding. A row stops where the engine stops it
(the stage passes), so a trace ends at that row's pass; a pass at another step than row 0's is itself a
divergence.

The finite-time Lyapunov exponent of a trace is the least-squares slope of ``ln(d_t / d_0)`` per step over the
growth phase: from the start until the distance first reaches ``saturation`` (a fraction of ``||e_0||``) or the
trace ends. ``paths_compared`` runs the same ``e0`` through plain TransformerLens and the fast path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from transformer_lens import HookedTransformer

from cramlens.engine import CramLoop
from cramlens.layout import Layout
from cramlens.params import Memory, init_rows, sample_generator
from cramlens.recipe import Recipe
from cramlens.stats import MeanCI, mean_ci

DELTAS = (0.0, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3)


@dataclass(frozen=True)
class DivergenceSpec:
    """Which perturbations, at which stage, for how many steps."""

    deltas: tuple[float, ...] = DELTAS
    stage_len: int = 1  # the stage measured (tokens of the sequence after the memory)
    max_steps: int = 400
    seed: int = 0  # seeds e0 (stage 1) and the perturbation direction
    saturation: float = 0.1  # growth phase ends at d_t >= saturation * ||e_0,t||


@dataclass
class Trace:
    """Per-step distance to row 0 and loss difference of one perturbed row."""

    delta: float
    distance: list[float] = field(default_factory=list)
    loss_diff: list[float] = field(default_factory=list)
    passed_at: int | None = None  # step at which the row's stage passed (None: it did not)

    def lyapunov(self, reference_norm: Sequence[float], saturation: float) -> float:
        """Slope of ln(d_t / d_0) per step over the growth phase (nan without a usable phase)."""
        d = np.asarray(self.distance, dtype=float)
        if d.size < 3 or not d[0] > 0:
            return float("nan")
        ref = np.asarray(reference_norm[: d.size], dtype=float)
        stop = int(np.argmax(d >= saturation * ref)) if bool((d >= saturation * ref).any()) else d.size
        if stop < 3:
            return float("nan")
        t = np.arange(stop)
        return float(np.polyfit(t, np.log(d[:stop] / d[0]), 1)[0])


@dataclass
class Divergence:
    """The traces of one text at one stage; row 0 is the unperturbed run."""

    text_id: str
    stage_len: int
    path: str  # fast | plain
    reference_loss: list[float]
    reference_norm: list[float]
    reference_passed_at: int | None
    traces: list[Trace]

    def lyapunov(self, saturation: float) -> dict[float, float]:
        return {t.delta: t.lyapunov(self.reference_norm, saturation) for t in self.traces if t.delta > 0}

    def to_dict(self) -> dict:
        return asdict(self)


def perturbed_starts(e0: torch.Tensor, deltas: Sequence[float], seed: int) -> torch.Tensor:
    """``[1 + len(deltas), m, d]``: ``e0`` then ``e0 + delta * rms(e0) * u`` for each delta (one ``u``)."""
    u = torch.randn(e0.shape, generator=sample_generator(seed + 271828, 0))
    scale = float(e0.pow(2).mean().sqrt())
    return torch.stack([e0] + [e0 + float(dl) * scale * u for dl in deltas])


def twin_runs(
    model: HookedTransformer,
    sequence: Sequence[int],
    recipe: Recipe,
    spec: DivergenceSpec,
    layout: Layout | None = None,
    start: torch.Tensor | None = None,
    start_step: int = 0,
) -> Divergence:
    """Cram ``sequence`` at stage ``spec.stage_len`` from ``e0`` and its perturbations in one batch.

    ``start`` (``[m, d]``): a warm start (e.g. a run's embedding at stage ``stage_len - 1``), whose learning-rate
    position is ``start_step``; default: the recipe's init drawn with ``spec.seed``.
    """
    layout = layout or Layout()
    if start is None:
        start = init_rows(recipe.init, (layout.n_mem, model.cfg.d_model), spec.seed, 0)
    rows = perturbed_starts(start.float().cpu(), spec.deltas, spec.seed)
    L = min(spec.stage_len, len(sequence))
    losses, embs, passed = _run_rows(model, sequence, recipe, rows, L, spec.max_steps, layout, start_step)
    return _traces(losses, embs, passed, spec, L, getattr(model, "_cramlens_fast", None) is not None)


def _run_rows(
    model, sequence, recipe: Recipe, rows: torch.Tensor, L: int, max_steps: int, layout, start_step=0
):
    """The engine on ``rows`` (``[n, m, d]`` starts) of one text at stage ``L``: per-iteration losses (by row),
    the memory after each iteration, and the step at which each row's stage passed."""
    n = rows.shape[0]
    memory = Memory("direct", {"embedding": rows.to(model.cfg.device, copy=True).requires_grad_(True)})
    budget = max(recipe.steps_per_sample, start_step + max_steps)
    rc = recipe.with_(steps_per_stage=max_steps, steps_per_sample=budget)
    loop = CramLoop(model, [list(sequence)] * n, memory, rc, layout, min_len=L, max_len=[L] * n)
    loop.opt.steps.fill_(int(start_step))
    losses: list[dict[int, float]] = []
    embs: list[torch.Tensor] = []
    passed: dict[int, int] = {}

    def on_stage(rec) -> None:
        if rec.converged:
            passed[rec.sample] = int(rec.stage_steps)

    def on_iteration(lp: CramLoop, info: dict) -> None:
        losses.append(info["loss"])
        embs.append(lp.memory.materialize().detach().float().cpu().clone())

    loop.run(on_stage=on_stage, on_iteration=on_iteration)
    return losses, embs, passed


def _traces(losses, embs, passed, spec: DivergenceSpec, L: int, fast: bool) -> Divergence:
    """Distances and loss differences to row 0, each row up to its own pass (or row 0's)."""
    ref_loss = [it[0] for it in losses if 0 in it]
    ref_norm = [float(e[0].norm()) for e in embs]
    traces = []
    for i, dl in enumerate(spec.deltas, start=1):
        tr = Trace(float(dl), passed_at=passed.get(i))
        for it, e in zip(losses, embs, strict=True):
            if i not in it or 0 not in it:
                break
            tr.distance.append(float((e[i] - e[0]).norm()))
            tr.loss_diff.append(abs(it[i] - it[0]))
        traces.append(tr)
    return Divergence("", L, "fast" if fast else "plain", ref_loss, ref_norm, passed.get(0), traces)


def summarise(divs: Sequence[Divergence], saturation: float = 0.1) -> dict:
    """Lyapunov exponents per delta (mean with a t interval over texts) and overall, plus the delta = 0 check."""
    per_delta: dict[float, list[float]] = {}
    for d in divs:
        for dl, lam in d.lyapunov(saturation).items():
            if not math.isnan(lam):
                per_delta.setdefault(dl, []).append(lam)
    everything = [x for xs in per_delta.values() for x in xs]
    zero = [max(t.distance, default=0.0) for d in divs for t in d.traces if t.delta == 0]
    return {
        "lyapunov_per_delta": {str(k): mean_ci(v).to_dict() for k, v in sorted(per_delta.items())},
        "lyapunov": mean_ci(everything).to_dict(),
        "doubling_steps": _doubling(mean_ci(everything)),
        "zero_delta_max_distance": max(zero, default=float("nan")),
        "n_traces": len(everything),
    }


def _doubling(lam: MeanCI) -> float:
    """Steps for a difference to double at the mean exponent (ln 2 / lambda)."""
    return math.log(2) / lam.mean if lam.mean > 0 else float("inf")


def paths_compared(
    model: HookedTransformer, sequence: Sequence[int], recipe: Recipe, spec: DivergenceSpec, layout=None
) -> dict:
    """From one shared ``e0``: plain TransformerLens's and the fast path's loss and memory, step by step."""
    from cramlens.fast import optimize, restore

    layout = layout or Layout()
    e0 = init_rows(recipe.init, (layout.n_mem, model.cfg.d_model), spec.seed, 0)[None]
    L = min(spec.stage_len, len(sequence))
    had_fast = getattr(model, "_cramlens_fast", None) is not None
    restore(model)
    plain = _run_rows(model, sequence, recipe, e0, L, spec.max_steps, layout)
    optimize(model)
    fast = _run_rows(model, sequence, recipe, e0, L, spec.max_steps, layout)
    if not had_fast:
        restore(model)
    n = min(len(plain[0]), len(fast[0]))
    return {
        "stage_len": L,
        "loss_plain": [it[0] for it in plain[0][:n]],
        "loss_fast": [it[0] for it in fast[0][:n]],
        "distance": [float((a[0] - b[0]).norm()) for a, b in zip(plain[1][:n], fast[1][:n], strict=True)],
        "passed_plain": plain[2].get(0),
        "passed_fast": fast[2].get(0),
    }


def warm_start(run, sample_id: int) -> tuple[int, torch.Tensor, int] | None:
    """A later stage to measure in: ``(stage length L, the embedding that passed L - 1, its LR position)``. ``L`` is
    the passed stage after the first two that took the most steps, so the warm start has work to do (a stage whose
    token the previous embedding already predicts passes at step 0). None when no such stage exists."""
    traj = [r for r in run.trajectory(sample_id) if r.get("converged")]
    by_len = {int(r["stage_seq_len"]): r for r in traj}
    later = [r for r in traj if int(r["stage_seq_len"]) > 2 and int(r["stage_seq_len"]) - 1 in by_len]
    if not later:
        return None
    hard = max(later, key=lambda r: int(r.get("marginal_steps") or 0))
    prev = by_len[int(hard["stage_seq_len"]) - 1]
    emb = prev["embedding"]
    emb = emb if isinstance(emb, torch.Tensor) else torch.tensor(emb, dtype=torch.float32)
    return int(hard["stage_seq_len"]), emb.reshape(-1, int(prev["hidden_size"])), int(prev["steps_taken"])


def measure(model, prepared, recipe: Recipe, spec: DivergenceSpec, warm_run=None, layout=None) -> dict:
    """Twin runs on every prepared text at stage 1 and (with ``warm_run``, a progressive run of the same texts; its
    first draw of each text id) at a later stage, plus plain vs fast from one ``e0`` at stage 1; per-text traces and the
    summary of each stage."""
    from dataclasses import replace

    out: dict = {"stage1": [], "later": [], "paths": []}
    warm_ids: dict[str, int] = {}
    for s in warm_run.samples if warm_run is not None else []:  # the first draw of each text
        warm_ids.setdefault(s.text_id, s.sample_id)
    for p in prepared:
        d = twin_runs(model, p.sequence, recipe, replace(spec, stage_len=1), layout)
        d.text_id = p.text_id
        out["stage1"].append(d)
        if p.text_id in warm_ids and (w := warm_start(warm_run, warm_ids[p.text_id])) is not None:
            L, emb, at = w
            d = twin_runs(model, p.sequence, recipe, replace(spec, stage_len=L), layout, emb, at)
            d.text_id = p.text_id
            out["later"].append(d)
        pc = paths_compared(model, p.sequence, recipe, replace(spec, stage_len=1), layout)
        out["paths"].append({"text_id": p.text_id, **pc})
    return {
        "spec": asdict(spec),
        "summary": {k: summarise(out[k], spec.saturation) for k in ("stage1", "later") if out[k]},
        "stage1": [d.to_dict() for d in out["stage1"]],
        "later": [d.to_dict() for d in out["later"]],
        "paths": out["paths"],
    }
