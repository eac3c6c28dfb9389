"""How much of each experiment a protocol runs: ``smoke`` (minutes, the test suite), ``cpu`` (one model's ledger in
about six core-hours on a 2-core machine) and ``paper`` (the paper's sample sizes, for a GPU).

Every size lives here, in one frozen dataclass per experiment, so the ledger can state what was run
(:func:`describe`) and a protocol can be tuned in one place.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from cramlens.errors import check


@dataclass(frozen=True)
class ProgressiveSize:
    """Progressive cramming of PG-19 texts under several seeds (the paper's recipe, budgets cut for the CPU)."""

    texts: int
    seq_len: int  # the cap on the horizon
    seeds: tuple[int, ...] = (0,)
    steps_per_stage: int = 1000
    steps_per_sample: int = 10_000
    batch_size: int = 20


@dataclass(frozen=True)
class FullSize:
    """Full cramming at the brittleness protocol (lr 0.01, U[0,1) init, stop at TF >= 0.99)."""

    texts: int
    seq_len: int
    max_steps: int


@dataclass(frozen=True)
class SweepSize:
    """The learning-rate sweep of the solution-diversity claims (same texts, seed and init at every lr)."""

    texts: int
    seq_len: int
    lrs: tuple[float, ...]
    steps_per_stage: int
    steps_per_sample: int


@dataclass(frozen=True)
class CapacitySize:
    """Kuratov's law: a second text source crammed like the progressive step's PG-19 texts (its first seed)."""

    texts: int
    source: str = "random-words"


@dataclass(frozen=True)
class DepthSize:
    """Two truncations (first ``depths[0]`` vs first ``depths[1]`` blocks), each finetuned, then crammed."""

    depths: tuple[int, int]
    texts: int
    seq_len: int
    steps_per_stage: int
    steps_per_sample: int
    ft_steps: int
    ft_batch_size: int = 8
    ft_seq_len: int = 64
    ft_trainable: str = (
        "blocks"  # "all": the paper's; "blocks" keeps the (un)embedding frozen, cheap on a CPU
    )


#: How a likelihood step crams its contexts (``ChoiceSize.score_from``), as the ledger names it.
SCORING = {
    "memory": "the paper's cram scoring (the memory also predicts the first context token)",
    "text": "Kuratov's cram scoring (the first context token is input only; deviates from the paper)",
}


@dataclass(frozen=True)
class ChoiceSize:
    """A likelihood task (HellaSwag, ARC-Easy): contexts of at most ``max_ctx_tokens`` tokens in file order."""

    items: int
    max_ctx_tokens: int  # 0: any length (the paper's)
    max_steps: int
    batch_size: int = 16
    # a key of SCORING: "text" is for models that cannot reach the paper's converged subset within the budget
    score_from: str = "memory"


@dataclass(frozen=True)
class MMLUSize:
    """Generative 5-shot MMLU: ``subjects`` subjects with the shortest prompts × ``per_subject`` items (0: the
    paper's first ``items`` test rows)."""

    subjects: int
    per_subject: int
    steps: int
    full_prefix_items: int  # per subject (0: all)
    full_prefix_steps: int
    items: int = 0


@dataclass(frozen=True)
class KnockoutSize:
    """Forward / reverse knockout of ``k`` layers on the first ``items`` crammed HellaSwag contexts, both masks."""

    items: int
    k: int = 2
    batch_items: int = 8


@dataclass(frozen=True)
class SinkSize:
    """The sink table reads the progressive samples that reconstruct at least ``min_tokens`` tokens. The paper's
    rule averages over lengths 1 .. the shortest such prefix, so one 2-token horizon would reduce the whole table
    to the first text token's attention; 2 is the paper's (every sample with something to measure)."""

    min_tokens: int = 2


@dataclass(frozen=True)
class Protocol:
    name: str
    purpose: str
    progressive: ProgressiveSize
    brittleness: FullSize
    diversity: SweepSize
    capacity: CapacitySize
    depth: DepthSize
    hellaswag: ChoiceSize
    arc_easy: ChoiceSize
    mmlu: MMLUSize
    knockout: KnockoutSize
    sinks: SinkSize = field(default_factory=SinkSize)
    # "pg19": ../shared/data/pg19 when present (else built-in text); "pg19_1k": the paper's texts (hub, needs network)
    data: str = field(default="pg19")

    def to_dict(self) -> dict:
        return asdict(self)


PROTOCOLS: dict[str, Protocol] = {
    "smoke": Protocol(
        "smoke",
        "tiny budgets: checks the machinery end to end in minutes (the test suite runs it on a tiny model); "
        "its numbers mean nothing",
        ProgressiveSize(texts=3, seq_len=6, steps_per_stage=8, steps_per_sample=30, batch_size=3),
        FullSize(texts=2, seq_len=6, max_steps=10),
        SweepSize(texts=2, seq_len=6, lrs=(0.1, 0.5), steps_per_stage=8, steps_per_sample=20),
        CapacitySize(texts=3),
        DepthSize(depths=(1, 2), texts=2, seq_len=5, steps_per_stage=5, steps_per_sample=15, ft_steps=2),
        ChoiceSize(items=6, max_ctx_tokens=12, max_steps=5),
        ChoiceSize(items=6, max_ctx_tokens=10, max_steps=5),
        MMLUSize(subjects=1, per_subject=2, steps=3, full_prefix_items=1, full_prefix_steps=2),
        KnockoutSize(items=4, k=1),
    ),
    "cpu": Protocol(
        "cpu",
        "about six core-hours for one model on a 2-core CPU (resumable across days): the paper's recipe with CPU "
        "budgets and short texts, more texts and items than the first round of experiments",
        ProgressiveSize(
            texts=20, seq_len=32, seeds=(0, 1), steps_per_stage=1000, steps_per_sample=3000, batch_size=20
        ),
        FullSize(texts=6, seq_len=40, max_steps=800),
        SweepSize(texts=6, seq_len=24, lrs=(0.1, 0.5), steps_per_stage=1000, steps_per_sample=1200),
        CapacitySize(texts=8),
        DepthSize(
            depths=(1, 4), texts=5, seq_len=32, steps_per_stage=1000, steps_per_sample=3000, ft_steps=300
        ),
        # Kuratov's scoring: with the paper's, SmolLM2-135M reconstructs 1.6% (HellaSwag) and 3.1% (ARC-Easy) of
        # 16-token contexts exactly in 1,000 steps, so the converged subset the claims are about would be empty
        ChoiceSize(items=200, max_ctx_tokens=18, max_steps=400, score_from="text"),
        ChoiceSize(items=200, max_ctx_tokens=12, max_steps=400, score_from="text"),
        MMLUSize(subjects=4, per_subject=10, steps=100, full_prefix_items=2, full_prefix_steps=50),
        KnockoutSize(items=64, k=2),
        # 8: short CPU texts leave some horizons at 1-2 tokens, which would set the table's lengths for every sample
        SinkSize(min_tokens=8),
    ),
    "paper": Protocol(
        "paper",
        "the paper's sample sizes and budgets (50 PG-19 texts of 4,096 tokens, 10,000 steps per sample, 512 "
        "benchmark items of any length, 1,000 cram steps), for a GPU; the depth finetune reads fineweb-edu "
        "from the hub",
        ProgressiveSize(texts=50, seq_len=4096, seeds=(0,), batch_size=10),
        FullSize(texts=50, seq_len=512, max_steps=5000),
        SweepSize(
            texts=10, seq_len=4096, lrs=(0.01, 0.1, 0.5, 1.0), steps_per_stage=1000, steps_per_sample=10_000
        ),
        CapacitySize(texts=50),
        DepthSize(
            depths=(1, 8),
            texts=50,
            seq_len=4096,
            steps_per_stage=1000,
            steps_per_sample=10_000,
            ft_steps=5000,
            ft_batch_size=256,
            ft_seq_len=1024,
            ft_trainable="all",
        ),
        ChoiceSize(items=512, max_ctx_tokens=0, max_steps=1000, batch_size=32),
        ChoiceSize(items=512, max_ctx_tokens=0, max_steps=1000, batch_size=32),
        MMLUSize(
            subjects=0, per_subject=0, steps=1000, full_prefix_items=0, full_prefix_steps=1000, items=512
        ),
        KnockoutSize(items=512, k=2),
        data="pg19_1k",
    ),
}


def get_protocol(protocol: str | Protocol) -> Protocol:
    """A protocol by name (smoke, cpu, paper), or the one given."""
    if isinstance(protocol, Protocol):
        return protocol
    check(protocol in PROTOCOLS, f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[protocol]


def describe(p: Protocol) -> list[str]:
    """One line per experiment: the sample sizes and budgets the ledger states."""
    g, b, d, c, dp = p.progressive, p.brittleness, p.diversity, p.capacity, p.depth
    hs, arc, mm, ko = p.hellaswag, p.arc_easy, p.mmlu, p.knockout

    def ctx(s: ChoiceSize) -> str:
        length = "any length" if s.max_ctx_tokens == 0 else f"contexts ≤ {s.max_ctx_tokens} tokens"
        return f"{length}, {SCORING[s.score_from]}"

    mmlu_items = (
        f"the first {mm.items} test rows"
        if mm.items
        else f"{mm.subjects} subjects (shortest 5-shot prompts) × {mm.per_subject} items"
    )
    return [
        f"progressive: {g.texts} {p.data} texts × {len(g.seeds)} seed(s) {list(g.seeds)}, {g.seq_len} tokens, "
        f"paper recipe, {g.steps_per_stage} steps/stage, {g.steps_per_sample} steps/sample, batch {g.batch_size}",
        f"brittleness: full cramming of {b.texts} texts × {b.seq_len} tokens, brittleness recipe (lr 0.01, "
        f"U[0,1), stop at TF ≥ 0.99), {b.max_steps} steps",
        f"diversity: {d.texts} texts × {d.seq_len} tokens at lr {', '.join(f'{x:g}' for x in d.lrs)}, "
        f"{d.steps_per_stage} steps/stage, {d.steps_per_sample} steps/sample, same seed",
        f"capacity: {c.texts} {c.source} texts beside the progressive step's PG-19 texts (its first seed)",
        f"depth: first {dp.depths[0]} vs first {dp.depths[1]} blocks, finetuned ({dp.ft_trainable}) {dp.ft_steps} "
        f"steps × {dp.ft_batch_size} × {dp.ft_seq_len} tokens, then {dp.texts} texts × {dp.seq_len} tokens, "
        f"{dp.steps_per_stage}/{dp.steps_per_sample} steps",
        f"hellaswag: {hs.items} items, {ctx(hs)}, downstream recipe, {hs.max_steps} cram steps",
        f"arc_easy: {arc.items} items, {ctx(arc)}, downstream recipe, {arc.max_steps} cram steps",
        f"mmlu: {mmlu_items}, {mm.steps} cram steps; full_prefix on "
        f"{'every item' if mm.full_prefix_items == 0 else f'{mm.full_prefix_items} item(s) per subject'}, "
        f"{mm.full_prefix_steps} steps",
        f"knockout: the first {ko.items} crammed HellaSwag contexts (exact or not, as the paper's C.6), forward / "
        f"reverse {ko.k} layers, text and reference masks",
        f"sinks: the progressive step's final embeddings, on the prefix each reconstructs, samples reconstructing "
        f"≥ {p.sinks.min_tokens} tokens, lengths 1 .. the shortest of them",
    ]
