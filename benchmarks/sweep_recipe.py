#!/usr/bin/env python
"""Why is the start of progressive cramming so costly? A small recipe sweep on the first stages.

For each recipe variant, progressive cramming of the first ``--samples`` PG-19 texts capped at ``--seq-len``
tokens: steps needed to pass stage 1, 2, 4, 8 and the cap, and tokens gained per 100 steps. Prints a table and one
JSON line per variant.

    python benchmarks/sweep_recipe.py --samples 3 --seq-len 12
"""

from __future__ import annotations

import json
import time

from _sweep import chosen, model_and_texts, sweep_parser
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import cramlens as cl
from cramlens.cli import run_main
from cramlens.recipe import get_recipe

VARIANTS = {
    "paper (lr .1, warmup 100)": dict(recipe="paper"),
    "warmup 0": dict(recipe="paper", warmup=0),
    "warmup 0, lr 0.3": dict(recipe="paper", warmup=0, lr=0.3),
    "warmup 0, lr 0.03": dict(recipe="paper", warmup=0, lr=0.03),
    "warmup 0, init N(0,0.125²) (token-embedding scale)": dict(recipe="paper", warmup=0, init="normal0.125"),
    "warmup 0, betas (.9,.999)": dict(recipe="paper", warmup=0, betas=(0.9, 0.999)),
    "warmup 0, [BOS][mem][x] (memory off position 0)": dict(recipe="paper", warmup=0, layout="bos_first"),
}


def steps_to(rows: list[dict], length: int) -> int | None:
    hit = [r["steps_taken"] for r in rows if r["converged"] and r["stage_seq_len"] >= length]
    return min(hit) if hit else None


def main() -> None:
    p = sweep_parser(__doc__, samples=3, seq_len=12)
    p.add_argument("--steps-per-stage", type=int, default=1000)
    a = p.parse_args()
    model, texts = model_and_texts(a)
    table = Table(
        title=f"start-up sweep: {a.model}, {a.samples} texts, cap {a.seq_len} tokens", title_justify="left"
    )
    for c in (
        "variant",
        "steps→L1",
        "→L2",
        "→L4",
        "→L8",
        f"→L{a.seq_len}",
        "mean horizon",
        "tokens/100 steps",
        "s",
    ):
        table.add_column(c, justify="left" if c == "variant" else "right")
    for name, v, layout in chosen(VARIANTS, a.only):
        rc = get_recipe(v.pop("recipe"), steps_per_stage=a.steps_per_stage, **v)
        t0 = time.time()
        run = cl.progressive_cram(
            model, texts, recipe=rc, layout=layout, batch_size=len(texts), check_greedy=False
        )
        el = time.time() - t0
        per = []
        for s in run:
            traj = run.trajectory(s.sample_id)
            per.append({L: steps_to(traj, L) for L in (1, 2, 4, 8, a.seq_len)})

        def mean(L, per=per):
            xs = [d[L] for d in per if d[L] is not None]
            return f"{sum(xs) / len(xs):.0f} ({len(xs)}/{len(per)})" if xs else "–"

        spent = sum(s.steps_spent for s in run)
        hz = sum(s.horizon for s in run) / len(run)
        rate = 100 * sum(s.horizon for s in run) / max(1, spent)
        table.add_row(
            escape(name), *(mean(L) for L in (1, 2, 4, 8, a.seq_len)), f"{hz:.1f}", f"{rate:.2f}", f"{el:.0f}"
        )
        print(
            json.dumps(
                {
                    "bench": "recipe_sweep",
                    "variant": name,
                    "steps_to": per,
                    "horizons": run.horizons(),
                    "steps_spent": spent,
                    "tokens_per_100_steps": rate,
                    "seconds": el,
                }
            ),
            flush=True,
        )
    Console().print(table)


if __name__ == "__main__":
    run_main(main)
