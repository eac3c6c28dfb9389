"""Which ledger steps each worker runs when the ledger is launched as several processes (``--workers``).

The unit of work is a group of steps: a step and every selected step it needs (or that needs it) stay together in
one process, because a step reads the others' run directories as soon as it starts. Groups are independent, so
they are dealt out longest first to the least loaded worker (by the plan's token-steps), the same deal on every
rank without any communication. Within a worker the steps run in the ledger's order (:func:`steps_of`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .context import ModelInfo, Step
from .protocols import Protocol


def step_groups(steps: Sequence[Step]) -> list[list[Step]]:
    """Connected groups of ``steps`` under ``needs`` (within the selection), each in the ledger's order."""
    names = [s.name for s in steps]
    parent = {n: n for n in names}

    def root(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for s in steps:
        for need in s.needs:
            if need in parent:
                parent[root(s.name)] = root(need)
    groups: dict[str, list[Step]] = {}
    for s in steps:
        groups.setdefault(root(s.name), []).append(s)
    return list(groups.values())


@dataclass(frozen=True)
class Assignment:
    """The steps of one model that one worker runs."""

    model: str
    steps: tuple[Step, ...]
    token_steps: float


def assign_steps(
    models: Sequence[tuple[str, ModelInfo]], steps: Sequence[Step], protocol: Protocol, world: int
) -> list[list[Assignment]]:
    """Per worker (index = rank), the (model, step group) pieces it runs: longest processing time first."""
    pieces = [
        (order, Assignment(name, tuple(group), sum(s.work(protocol, info).token_steps for s in group)))
        for order, (name, info) in enumerate(models)
        for group in step_groups(steps)
    ]
    position = {s.name: i for i, s in enumerate(steps)}
    # longest first; ties broken by model and step order, so every rank computes the same deal
    pieces.sort(key=lambda p: (-p[1].token_steps, p[0], position[p[1].steps[0].name]))
    loads = [0.0] * world
    out: list[list[Assignment]] = [[] for _ in range(world)]
    for _, piece in pieces:
        w = min(range(world), key=lambda r: (loads[r], r))
        loads[w] += piece.token_steps
        out[w].append(piece)
    return out


def steps_of(assigned: Sequence[Assignment], model: str, order: Sequence[Step]) -> list[Step]:
    """The steps of ``model`` in one worker's assignment, in the order of ``order`` (the ledger's: needs first)."""
    mine = {s.name for a in assigned if a.model == model for s in a.steps}
    return [s for s in order if s.name in mine]
