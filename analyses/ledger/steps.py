"""The ledger's experiments in run order, each with the work it costs (for the plan) and the steps it needs.

Work is an estimate from the protocol's budgets: every sample spends its whole step budget, a progressive prefix
grows to the smaller of the length cap and the paper's horizon for the model, and a forward-only evaluation costs
a third of an optimisation step. It is meant to be within a factor of about two (early stops make runs shorter).
"""

from __future__ import annotations

import math

from cramlens.paper import COMPRESSED_TOKENS

from . import cram_steps as cs
from . import eval_steps as es
from .context import ModelInfo, Step, Work
from .protocols import Protocol

FORWARD = 1 / 3  # a forward without backward, in optimisation steps
CHOICES = 4  # endings per likelihood item


def _prefix_len(seq_len: int, info: ModelInfo) -> float:
    """Mean target length over a progressive run: the prefix grows to min(cap, the paper's horizon)."""
    ref = COMPRESSED_TOKENS.get(info.name)
    top = min(seq_len, ref.value) if ref else seq_len
    return (top + 2) / 2


def _progressive(n: int, batch: int, steps: int, mean_len: float) -> Work:
    return Work(math.ceil(n / batch) * steps, n * steps * mean_len)


def _depth_fraction(info: ModelInfo, n: int) -> float:
    """Compute of a first-``n``-blocks cut relative to the whole model (the unembedding stays)."""
    head = info.d_vocab * info.d_model
    per_layer = max(0.0, (info.n_params - 2 * head) / info.n_layers)
    return (head + n * per_layer) / (head + info.n_layers * per_layer)


def work_progressive(p: Protocol, info: ModelInfo) -> Work:
    g = p.progressive
    return _progressive(
        g.texts * len(g.seeds), g.batch_size, g.steps_per_sample, _prefix_len(g.seq_len, info)
    )


def work_analysis(p: Protocol, info: ModelInfo) -> Work:
    """Forwards over the progressive samples (reconstruction, sink profiles)."""
    g = p.progressive
    n = g.texts * len(g.seeds)
    return Work(n, 3 * n * _prefix_len(g.seq_len, info) * FORWARD)


def work_brittleness(p: Protocol, info: ModelInfo) -> Work:
    b = p.brittleness
    return Work(b.max_steps, b.texts * (b.seq_len + 1) * b.max_steps)


def work_diversity(p: Protocol, info: ModelInfo) -> Work:
    d = p.diversity
    one = _progressive(d.texts, d.texts, d.steps_per_sample, _prefix_len(d.seq_len, info))
    return Work(one.iterations * len(d.lrs), one.token_steps * len(d.lrs))


def work_capacity(p: Protocol, info: ModelInfo) -> Work:
    g = p.progressive
    return _progressive(p.capacity.texts, g.batch_size, g.steps_per_sample, _prefix_len(g.seq_len, info))


def work_depth(p: Protocol, info: ModelInfo) -> Work:
    dp = p.depth
    total = Work(0, 0)
    for n in dp.depths:
        f = _depth_fraction(info, n)
        ft = Work(dp.ft_steps, dp.ft_steps * dp.ft_batch_size * dp.ft_seq_len * f)
        cram = _progressive(dp.texts, dp.texts, dp.steps_per_sample, (dp.seq_len + 2) / 2)
        total = total + ft + Work(cram.iterations, cram.token_steps * f)
    return total


def _work_choice(size, info: ModelInfo) -> Work:
    ctx_len = 0.75 * size.max_ctx_tokens if size.max_ctx_tokens else 48
    groups = size.max_ctx_tokens or 64  # one cram batch per context length
    cram = Work(groups * size.max_steps, size.items * ctx_len * size.max_steps)
    scoring = Work(size.items, 3 * size.items * CHOICES * 2 * ctx_len * FORWARD)  # base, cram, random
    return cram + scoring


def work_hellaswag(p: Protocol, info: ModelInfo) -> Work:
    return _work_choice(p.hellaswag, info)


def work_arc(p: Protocol, info: ModelInfo) -> Work:
    return _work_choice(p.arc_easy, info)


def work_mmlu(p: Protocol, info: ModelInfo) -> Work:
    m = p.mmlu
    prompt = 350  # tokens of a 5-shot prompt and its question (the shortest subjects are ~230)
    items = m.items or m.subjects * m.per_subject
    subjects = m.subjects or max(1, m.items // 20)
    full = items if m.full_prefix_items == 0 else subjects * m.full_prefix_items
    crams = Work(
        subjects * m.steps + full * m.full_prefix_steps,
        prompt * (subjects * m.steps + full * m.full_prefix_steps),
    )
    return crams + Work(4 * items, 4 * items * prompt * FORWARD)


def work_knockout(p: Protocol, info: ModelInfo) -> Work:
    size, ctx_len = p.knockout, 0.75 * (p.hellaswag.max_ctx_tokens or 48)
    n_conditions = 6
    return Work(
        n_conditions * size.items / size.batch_items,
        n_conditions * size.items * CHOICES * 2 * ctx_len * FORWARD,
    )


STEPS: tuple[Step, ...] = (
    Step(
        "progressive",
        "progressive cramming of PG-19 texts × seeds (horizon, IG, greedy check)",
        cs.progressive,
        work_progressive,
        reads=("progressive", "data"),
    ),
    Step(
        "trajectory",
        "PCA of each trajectory: PC1+PC2, PCA99 and its growth, PCA reconstruction",
        cs.trajectory,
        work_analysis,
        ("progressive",),
    ),
    Step(
        "surprisal",
        "surprisal of each new token vs the steps to absorb it",
        cs.surprisal,
        lambda p, i: Work(0, 0),
        ("progressive",),
    ),
    Step(
        "sinks",
        "attention to position 0 with the memory, without it, with an ordinary token",
        cs.sinks,
        work_analysis,
        ("progressive",),
        reads=("sinks",),
    ),
    Step(
        "brittleness",
        "full cramming @0.99: teacher forcing vs greedy generation",
        cs.brittleness,
        work_brittleness,
        reads=("brittleness", "data"),
    ),
    Step(
        "diversity",
        "the same texts at several learning rates: solution distance, direction cosine",
        cs.diversity,
        work_diversity,
        reads=("diversity", "data"),
    ),
    Step(
        "capacity",
        "a second text source with the progressive recipe: tokens vs bits (Kuratov)",
        cs.capacity,
        work_capacity,
        ("progressive",),
        ("capacity",),
    ),
    Step(
        "depth",
        "two truncated-depth variants, finetuned, then crammed",
        cs.depth,
        work_depth,
        reads=("depth", "data", "name"),  # the protocol's name picks the finetune recipe
    ),
    Step(
        "hellaswag",
        "HellaSwag with crammed contexts, without, with a random vector",
        es.hellaswag,
        work_hellaswag,
        reads=("hellaswag",),
    ),
    Step(
        "arc_easy",
        "ARC-Easy with crammed questions, without, with a random vector",
        es.arc_easy,
        work_arc,
        reads=("arc_easy",),
    ),
    Step(
        "mmlu",
        "generative 5-shot MMLU: baseline, random, few_shot, full_prefix",
        es.mmlu,
        work_mmlu,
        reads=("mmlu",),
    ),
    Step(
        "knockout",
        "forward / reverse knockout of the memory, both masks",
        es.knockout,
        work_knockout,
        ("hellaswag",),
        ("knockout",),
    ),
)
BY_NAME = {s.name: s for s in STEPS}


def sizes_of(name: str, protocol: dict) -> dict:
    """The protocol fields (as JSON) a step's result depends on: its own ``reads`` and those of what it needs."""
    step = BY_NAME[name]
    sizes = {field: protocol[field] for field in step.reads}
    for need in step.needs:
        sizes.update(sizes_of(need, protocol))
    return dict(sorted(sizes.items()))


def select(only: list[str] | None) -> list[Step]:
    """The steps to run, in order: ``only`` (names) and everything they need; all steps when ``None``."""
    from cramlens.errors import check

    if not only:
        return list(STEPS)
    unknown = sorted(set(only) - set(BY_NAME))
    check(not unknown, f"unknown step(s) {', '.join(unknown)}; choose from {', '.join(BY_NAME)}")
    wanted: set[str] = set()

    def add(name: str) -> None:
        if name not in wanted:
            wanted.add(name)
            for need in BY_NAME[name].needs:
                add(need)

    for name in only:
        add(name)
    return [s for s in STEPS if s.name in wanted]
