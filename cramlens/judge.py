"""bf16 search, fp32 judge (``Recipe.search_dtype="bfloat16"``): what the engine measures a stage with.

The optimisation forward and backward of :class:`cramlens.engine.CramLoop` run on the fast path's bf16 weights
(:mod:`cramlens.fast`, ``precision="bf16"``: bf16 block GEMMs, fp32 residual stream, norms, unembedding and loss);
the memory and its Adam state stay fp32 and get the gradient. A bf16 forward is not trusted to end a stage: stage
margins are often 0.002-0.02 logits, below bf16's resolution, so a memory bf16 calls exact may not be exact in fp32.
A row that bf16 says passes (or whose stage budget ran out) is re-measured by the **judge**: one fp32 forward of
those rows at their stage lengths with the model as loaded (fp32), and, when the threshold is 1.0, real greedy
generation in fp32 (:func:`cramlens.generation.regenerate_many`, KV cache) of the rows whose teacher-forced margin
is small enough for rounding to matter (:data:`GENERATION_MARGIN`). The stage passes only when the judge
says so, and the recorded numbers (accuracy, loss, bits, margin, exact prefix) are the judge's, so rows and
embeddings are fp32-exact by construction. A row the judge rejects steps on in fp32 until its stage ends
(:func:`search_forward`; measured cheaper than staying in bf16, see there); :class:`Verdict` counts the judge's work.

``search_dtype="model"`` is the original loop: one forward in the model's own precision decides, no judge.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from transformer_lens import HookedTransformer

from . import fast
from .errors import check
from .forward import Measured, score, target_logits
from .generation import regenerate_many
from .layout import build_batch
from .recipe import Recipe

if TYPE_CHECKING:
    from .engine import CramLoop

# Teacher-forced exact in fp32 means generation sees the same inputs, so it can differ only by rounding: the
# KV-cache generation's logits differed from the teacher-forced forward's by at most 1.4e-4 (median 4e-5) on
# SmolLM2-135M (logits up to ~40; 3 memories x 24 steps, fast path and TL alike), so a target margin moves by at
# most ~3e-4. Generation (~0.13 s per token there: TL's KV-cache attention) is run only for rows whose minimum
# teacher-forced margin is below this bound, 30x that; above it the teacher-forced verdict already implies it.
GENERATION_MARGIN = 0.01


def check_model(model: HookedTransformer, recipe: Recipe) -> None:
    """bf16 search needs an fp32 model: the model as loaded is the judge."""
    check(
        recipe.search_dtype == "model" or model.cfg.dtype == torch.float32,
        f"search_dtype={recipe.search_dtype} needs a float32 model (it is the fp32 judge), not "
        f"{str(model.cfg.dtype).removeprefix('torch.')}; load the model with dtype float32 or use search_dtype=model",
    )


@contextlib.contextmanager
def search_model(model: HookedTransformer, search_dtype: str) -> Iterator[HookedTransformer]:
    """The model the optimisation forward runs on: ``model`` itself, or the same weights at bf16 on the fast path
    (an optimised model switched to bf16 for the block; an unoptimised one through its cached shared-weight copy)."""
    if search_dtype == "model":
        yield model
    elif fast.is_optimized(model):
        with fast.using(model, "bf16") as m:
            yield m
    else:
        yield fast.shared_copy(model, "bf16")


def judge_model(model: HookedTransformer) -> contextlib.AbstractContextManager[HookedTransformer]:
    """The fp32 judge: the model as loaded (an optimised one computing at fp32 even if it was set to bf16)."""
    return fast.using(model, "fp32") if fast.is_optimized(model) else contextlib.nullcontext(model)


@dataclass
class Verdict:
    """The judge's answer for some samples of a loop: ``measured`` row ``k`` is ``samples[k]`` (fp32)."""

    samples: list[int]
    measured: Measured
    passed: list[bool]
    # rows also regenerated (teacher-forced exact, threshold 1.0, minimum margin below GENERATION_MARGIN)
    generated: int = 0
    rejected_by_generation: int = 0  # of those, rows whose fp32 generation missed a token

    def info(self, claimed: set[int]) -> dict:
        """For the engine's per-iteration info: samples judged, and those the search forward passed (``claimed``)
        that the judge rejected."""
        rejected = [j for j, ok in zip(self.samples, self.passed, strict=True) if j in claimed and not ok]
        return {
            "judged": list(self.samples),
            "rejected": rejected,
            "generated": self.generated,
            "rejected_by_generation": self.rejected_by_generation,
        }


@torch.no_grad()
def judge(loop: CramLoop, samples: list[int]) -> Verdict:
    """fp32 teacher-forced forward of ``samples`` at their stage lengths (and fp32 generation of the exact ones)."""
    lengths = [int(loop.state.length[j]) for j in samples]
    sequences = [loop.sequences[j] for j in samples]
    memory = loop.memory.materialize().detach()[samples]
    recipe = loop.recipe
    with judge_model(loop.model) as model:
        batch = build_batch(model, sequences, lengths, loop.layout)
        scores = score(
            target_logits(model, memory, batch, loop.hooks),
            batch,
            recipe.leading_weight,
            recipe.leading_count,
        )
        measured = Measured(batch, scores)
        passed = [bool(measured.accuracy[k] >= recipe.threshold) for k in range(len(samples))]
        # generation runs without the loop's extra hooks (a knockout is defined on the full-sequence forward, not
        # on one-token KV-cache calls), so with hooks the teacher-forced verdict stands alone
        regen = []
        if recipe.threshold >= 1.0 and not list(loop.hooks):
            regen = [k for k, ok in enumerate(passed) if ok and measured.stage_end(k)[1] < GENERATION_MARGIN]
        verdict = Verdict(samples, measured, passed, generated=len(regen))
        if regen:
            generations = regenerate_many(
                model, memory[regen], [sequences[k][: lengths[k]] for k in regen], loop.layout
            )
            for k, g in zip(regen, generations, strict=True):
                if not g.exact:
                    passed[k] = False
                    verdict.rejected_by_generation += 1
    return verdict


@dataclass
class SearchForward:
    """The optimisation forwards of one iteration, per active sample (in ``rows`` order)."""

    rows: list[int]
    loss: torch.Tensor  # [R] objective, graph attached
    accuracy: torch.Tensor  # [R] teacher-forced accuracy (CPU)
    ce: torch.Tensor  # [R] cross-entropy part of the objective (CPU)
    where: list[tuple[Measured, int]]  # per row: the forward it was measured in and its row there


def search_forward(loop: CramLoop, rows: list[int]) -> SearchForward:
    """Forward ``rows`` for the optimisation step: in the model's precision (``search_dtype="model"``), else in bf16,
    except the rows the judge already rejected in this stage, which continue in fp32.

    Why fp32 after a rejection (issue 22, ``benchmarks/bench_precision.py --continuation 4``, SmolLM2-135M, fast
    recipe): from the same state right after four rejections, the row alone reached the fp32 pass in 0/2/2/2 fp32
    steps (1.58 CPU s in all) against 0/2/9/5 bf16 steps with the judge (3.35 CPU s); presumably because the fp32
    gradient works on the very margins the judge reads, while bf16's sees argmaxes that already look right.
    """
    st = loop.state
    if loop.recipe.search_dtype == "model":
        groups = [(rows, search_model(loop.model, "model"))]
    else:
        fresh = [j for j in rows if int(st.judged[j]) == 0]
        rejected = [j for j in rows if int(st.judged[j]) > 0]
        groups = [(fresh, search_model(loop.model, "bfloat16")), (rejected, judge_model(loop.model))]
    parts = []
    for group, precision in groups:
        if group:
            with precision as model:
                batch, scores, loss = loop._forward(group, model)
            parts.append((group, Measured(batch, scores), loss))
    if (
        len(parts) == 1
    ):  # one forward (always with search_dtype="model"): its rows are ``rows``, nothing to join
        group, m, loss = parts[0]
        return SearchForward(rows, loss, m.accuracy, m.loss, [(m, r) for r in range(len(group))])
    order = [j for group, _, _ in parts for j in group]
    where = [(m, r) for _, m, _ in parts for r in range(len(m.accuracy))]
    loss = torch.cat([loss for _, _, loss in parts])
    accuracy = torch.cat([m.accuracy for _, m, _ in parts])
    ce = torch.cat([m.loss for _, m, _ in parts])
    if order != rows:  # back to the rows' order
        perm = [order.index(j) for j in rows]
        loss, accuracy, ce, where = loss[perm], accuracy[perm], ce[perm], [where[k] for k in perm]
    return SearchForward(rows, loss, accuracy, ce, where)
