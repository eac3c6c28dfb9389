#!/usr/bin/env python
"""Which recipe makes full cramming of short texts exact fastest? Steps to teacher-forced accuracy 1.0.

Full cramming of the first ``--samples`` PG-19 texts at ``--seq-len`` tokens, one batch, per recipe variant:
steps each sample needed to reach accuracy 1.0 (``–`` if it did not within ``--max-steps``), which target index
was still wrong at the end, and wall time. Prints a table and one JSON line per variant.

    python benchmarks/sweep_full.py --samples 4 --seq-len 8 --max-steps 400
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
    "fast (lr .1, warmup 0, U[0,.02))": dict(recipe="fast"),
    "init N(0,0.125²)": dict(recipe="fast", init="normal0.125"),
    "init mean token embedding": dict(recipe="fast", init="mean_token_embeds"),
    "betas (.9,.999)": dict(recipe="fast", betas=(0.9, 0.999)),
    "lr 0.01, init U[0,1) (brittleness)": dict(recipe="fast", lr=0.01, min_lr=0.0001, init="random1"),
    "lr 0.3": dict(recipe="fast", lr=0.3),
    "[BOS][mem][x]": dict(recipe="fast", layout="bos_first"),
    "constant lr 0.1": dict(recipe="fast", schedule="constant"),
    "CE weight 8 on the first target": dict(recipe="fast", leading_count=1, leading_weight=8.0),
    "CE weight 4 on the first two targets": dict(recipe="fast", leading_count=2, leading_weight=4.0),
    "[mem][BOS][x] (memory predicts BOS)": dict(recipe="fast", layout="mem_bos"),
    "Kuratov scoring (first token input only)": dict(recipe="fast", layout="kuratov"),
}


def main() -> None:
    p = sweep_parser(__doc__, samples=4, seq_len=8)
    p.add_argument("--max-steps", type=int, default=400)
    a = p.parse_args()
    model, texts = model_and_texts(a)
    table = Table(
        title=f"full-cramming sweep: {a.model}, {a.samples} texts × {a.seq_len} tokens, ≤{a.max_steps} steps",
        title_justify="left",
    )
    for c in ("variant", "steps to TF 1.0 per sample", "exact", "first wrong index", "s"):
        table.add_column(c, justify="left" if c == "variant" else "right")
    for name, v, layout in chosen(VARIANTS, a.only):
        rc = get_recipe(v.pop("recipe"), **v)
        t0 = time.time()
        run = cl.cram(model, texts, recipe=rc, layout=layout, batch_size=len(texts), max_steps=a.max_steps)
        el = time.time() - t0
        steps = [s.steps if s.accuracy_final >= 1.0 else None for s in run]
        wrong = [s.horizon if s.accuracy_final < 1.0 else None for s in run]
        table.add_row(
            escape(name),
            " ".join("–" if x is None else str(x) for x in steps),
            f"{sum(x is not None for x in steps)}/{len(run)}",
            " ".join("–" if x is None else str(x) for x in wrong),
            f"{el:.0f}",
        )
        print(
            json.dumps(
                {
                    "bench": "full_sweep",
                    "variant": name,
                    "steps_to_exact": steps,
                    "first_wrong": wrong,
                    "accuracy": [s.accuracy_final for s in run],
                    "greedy_exact": [s.greedy_exact for s in run],
                    "seconds": el,
                }
            ),
            flush=True,
        )
    Console().print(table)


if __name__ == "__main__":
    run_main(main)
