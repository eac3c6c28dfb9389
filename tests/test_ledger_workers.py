"""The ledger as several worker processes: how step groups are dealt out, and two ranks of the smoke protocol that
together write the same ledger as one process (in-process ranks; the torchrun launch is the slow test)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from analyses.ledger.context import RESULT, ModelInfo, Step, Work
from analyses.ledger.protocols import PROTOCOLS
from analyses.ledger.steps import STEPS
from analyses.ledger.workers import assign_steps, step_groups, steps_of
from cramlens.models import load_model

ROOT = Path(__file__).resolve().parents[1]
INFO = ModelInfo("m", 4, 64, 100, 10_000, True)


def fake(name: str, work: float, needs: tuple[str, ...] = ()) -> Step:
    return Step(name, name, run=lambda ctx: {}, work=lambda p, i, w=work: Work(1, w), needs=needs)


def test_a_step_stays_with_what_it_needs_and_with_what_needs_it():
    steps = [fake("a", 1), fake("b", 1, ("a",)), fake("c", 1), fake("d", 1, ("b",)), fake("e", 1, ("c",))]
    assert [[s.name for s in g] for g in step_groups(steps)] == [["a", "b", "d"], ["c", "e"]]
    # a need outside the selection does not tie anything
    assert [[s.name for s in g] for g in step_groups([fake("b", 1, ("a",)), fake("c", 1)])] == [["b"], ["c"]]


def test_groups_are_dealt_longest_first_to_the_least_loaded_worker():
    steps = [fake("p", 10), fake("t", 1, ("p",)), fake("x", 6), fake("y", 5), fake("z", 4)]
    ranks = assign_steps([("m", INFO)], steps, PROTOCOLS["smoke"], 2)
    assert [[s.name for s in steps_of(r, "m", steps)] for r in ranks] == [["p", "t", "z"], ["x", "y"]]
    assert [sum(a.token_steps for a in r) for r in ranks] == [
        15,
        11,
    ]  # z went to the first of two equal loads
    three = assign_steps([("m", INFO)], steps, PROTOCOLS["smoke"], 3)
    assert [[s.name for s in steps_of(r, "m", steps)] for r in three] == [["p", "t"], ["x"], ["y", "z"]]


def test_every_step_of_every_model_runs_exactly_once_and_in_the_ledger_order():
    models = [("m1", INFO), ("m2", dataclasses.replace(INFO, name="m2", n_layers=8))]
    for world in (1, 2, 3, 5):
        ranks = assign_steps(models, list(STEPS), PROTOCOLS["cpu"], world)
        assert ranks == assign_steps(
            models, list(STEPS), PROTOCOLS["cpu"], world
        )  # the same deal on every rank
        for m, _ in models:
            ran = [s.name for r in ranks for s in steps_of(r, m, STEPS)]
            assert sorted(ran) == sorted(s.name for s in STEPS)
            order = {s.name: i for i, s in enumerate(STEPS)}
            for r in ranks:  # a worker runs its steps in the ledger's order
                mine = [order[s.name] for s in steps_of(r, m, STEPS)]
                assert mine == sorted(mine)


def test_the_cpu_protocol_splits_into_two_comparable_halves():
    """The progressive group (the largest) against everything else: neither worker holds over 60% of the work."""
    ranks = assign_steps([("smollm2-135m", INFO)], list(STEPS), PROTOCOLS["cpu"], 2)
    loads = [sum(a.token_steps for a in r) for r in ranks]
    assert max(loads) / sum(loads) < 0.6
    assert "progressive" in [s.name for s in steps_of(ranks[0], "smollm2-135m", STEPS)]


def tiny_loader(name: str):
    return load_model(name, device="cpu")


@pytest.mark.timeout(600)
def test_two_ranks_write_the_ledger_of_one_process(tmp_path):
    from analyses.ledger import reproduce

    only = ["progressive", "trajectory", "brittleness"]
    out = tmp_path / "two"
    # rank 1 first: it runs its share, writes no ledger and returns None; rank 0 then runs the rest and writes it
    assert (
        reproduce(["tiny-llama"], "smoke", out, only=only, load=tiny_loader, live=False, rank=1, world=2)
        is None
    )
    ran_by_1 = {p.parent.name for p in (out / "tiny-llama").glob(f"*/{RESULT}")}
    assert ran_by_1 == {"brittleness"} and not (out / "ledger.md").exists()
    two = reproduce(["tiny-llama"], "smoke", out, only=only, load=tiny_loader, live=False, rank=0, world=2)
    assert {p.parent.name for p in (out / "tiny-llama").glob(f"*/{RESULT}")} == set(only)
    one = reproduce(["tiny-llama"], "smoke", tmp_path / "one", only=only, load=tiny_loader, live=False)
    a, b = (
        json.loads((tmp_path / "one" / "ledger.json").read_text()),
        json.loads((out / "ledger.json").read_text()),
    )
    assert [r["ours"] for r in a["rows"]["tiny-llama"]] == [r["ours"] for r in b["rows"]["tiny-llama"]]
    assert [r.verdict for r in one.rows["tiny-llama"]] == [r.verdict for r in two.rows["tiny-llama"]]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_reproduce_script_runs_as_two_torchrun_workers(tmp_path):
    out = tmp_path / "ledger"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "scripts/reproduce.py", "--model", "tiny-llama", "--protocol", "smoke"]
    cmd += ["--only", "progressive", "brittleness", "--no-progress", "--workers", "2", "--out", str(out)]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    logs = res.stdout + res.stderr
    assert (
        "worker 0: runs tiny-llama: progressive" in logs and "worker 1: runs tiny-llama: brittleness" in logs
    )
    assert (out / "ledger.md").exists() and {p.parent.name for p in out.glob(f"*/*/{RESULT}")} == {
        "progressive",
        "brittleness",
    }
