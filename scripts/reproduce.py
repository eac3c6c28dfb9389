#!/usr/bin/env python
"""Reproduce the papers' claims on a model: run every experiment (resumably) and write a claims ledger.

    python scripts/reproduce.py --model smollm2-135m --protocol cpu --out runs/ledger
    python scripts/reproduce.py --model smollm2-135m --model gemma-3-270m --protocol cpu --out runs/ledger
    python scripts/reproduce.py --model smollm2-135m --protocol cpu --out runs/ledger --only progressive trajectory
    python scripts/reproduce.py --model smollm2-135m --protocol cpu --out runs/ledger --plan-only
    python scripts/reproduce.py --model smollm2-135m --protocol cpu --out results/ledger --readme README.md

Protocols: smoke (minutes; checks the machinery), cpu (about six core-hours per model on 2 cores), paper (the
paper's sample sizes, for a GPU). The plan (each step's expected time from a measured step cost) is printed first.
Killed at any point and rerun with the same command, it continues: finished steps are skipped, the unfinished one
resumes from its run directories. Writes <out>/ledger.md, ledger.json, findings.md and ledger.html (+ .png with a
browser); --readme rewrites that README's findings block from findings.md.

On a CPU it runs as one single-thread worker per core by default (--workers auto, torchrun): independent groups of
steps are dealt out to the workers; --workers 1 keeps one process (then --threads applies).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cramlens import cli  # noqa: E402


def parse(argv=None) -> argparse.Namespace:
    from analyses.ledger.protocols import PROTOCOLS
    from analyses.ledger.steps import BY_NAME

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, conflict_handler="resolve"
    )
    cli.add_model_args(p)
    p.add_argument(
        "--model",
        action="append",
        default=None,
        help="model to run (repeat for the size/width comparison; default smollm2-135m)",
    )
    p.add_argument("--protocol", default="cpu", choices=list(PROTOCOLS), help="sample sizes and budgets")
    p.add_argument("--out", default="runs/ledger", help="output directory (resumable)")
    p.add_argument(
        "--only", nargs="+", default=None, choices=list(BY_NAME), help="these steps (+ what they need)"
    )
    p.add_argument(
        "--plan-only", action="store_true", help="print the plan and the ledger so far; run nothing"
    )
    p.add_argument("--no-progress", action="store_true", help="no live tables (logs only)")
    p.add_argument(
        "--readme",
        default=None,
        help="a README whose ledger findings block is rewritten from the new findings.md (e.g. README.md)",
    )
    cli.add_workers_arg(p)
    a = p.parse_args(argv)
    a.model = a.model or ["smollm2-135m"]
    a.resume = True  # a ledger directory always continues; steps do not depend on the worker count
    return a


def independent_pieces(a: argparse.Namespace) -> int:
    """How many independent pieces of work there are (never more workers than that)."""
    from analyses.ledger.steps import select
    from analyses.ledger.workers import step_groups

    return 1 if a.plan_only else len(a.model) * len(step_groups(select(a.only)))


def main(argv=None) -> None:
    a = parse(argv)
    if cli.became_workers(a, __file__, argv, independent_pieces(a)):
        return
    console = cli.console()
    from analyses.ledger import reproduce

    ledger = reproduce(
        a.model,
        a.protocol,
        a.out,
        only=a.only,
        load=lambda name: cli.load_model_from_args(a, name),
        console=console,
        plan_only=a.plan_only,
        live=not a.no_progress,
    )
    if ledger is None:
        return  # a worker other than rank 0: its steps are done, rank 0 writes the ledger
    for name in ledger.rows:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(ledger.counts(name).items()))
        console.print(f"{name}: {counts}")
    console.print(f"ledger: {a.out}/ledger.md, ledger.json, findings.md, ledger.html")
    if a.readme:
        from analyses.ledger.readme import update_readme

        console.print(f"rewrote the findings block of {update_readme(a.readme, Path(a.out) / 'findings.md')}")


if __name__ == "__main__":
    cli.run_main(main)
