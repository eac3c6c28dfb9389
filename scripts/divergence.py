#!/usr/bin/env python
"""How fast do tiny differences grow? Twin cramming runs from e0 and e0 + delta (issue 23).

    python scripts/divergence.py --model smollm2-135m --recipe paper --samples 3 --seq-len 64 \
        --warm-run results/prog6 --out runs/divergence

For each text: one batch of the engine at stage 1 from e0 and from e0 + delta * rms(e0) * u (delta 0, 1e-8 ...
1e-3; the delta = 0 row checks that rows of one batch do not perturb each other), the same at a later stage
warm-started from ``--warm-run``'s embedding half way to that text's horizon (a progressive run of the same texts
in the same order), and plain TransformerLens vs the fast path from one shared e0. Prints the finite-time Lyapunov
exponents (mean with a t interval over texts and deltas) and writes ``divergence.json`` and a figure.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cramlens import cli


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_model_args(p)
    cli.add_data_args(p, samples=3, seq_len=64)
    cli.add_recipe_args(p)
    g = p.add_argument_group("divergence")
    g.add_argument("--deltas", default="0,1e-8,1e-7,1e-6,1e-5,1e-4,1e-3", help="relative perturbation sizes")
    g.add_argument("--max-steps-div", type=int, default=400, help="steps per measured stage")
    g.add_argument("--warm-run", default=None, help="progressive run of the same texts (later-stage start)")
    g.add_argument("--seed", type=int, default=0, help="seed of e0 and of the perturbation direction")
    g.add_argument("--out", default="runs/divergence", help="where divergence.json and the figure go")
    return p.parse_args(argv)


def main(argv=None) -> None:
    a = parse(argv)
    console = cli.console()
    from analyses.divergence import DivergenceSpec, measure
    from analyses.plots.io import save_figure
    from analyses.plots.spread_figures import divergence_figure
    from cramlens import load_run
    from cramlens.layout import Layout
    from cramlens.prepare import prepare_texts
    from cramlens.runs import atomic_write_text

    model, texts = cli.load_model_and_texts(a)
    spec = DivergenceSpec(
        deltas=tuple(float(x) for x in a.deltas.split(",")), max_steps=a.max_steps_div, seed=a.seed
    )
    layout = Layout()
    warm = load_run(a.warm_run) if a.warm_run else None
    result = measure(model, prepare_texts(model, texts, layout), cli.recipe_from_args(a), spec, warm, layout)
    for stage, s in result["summary"].items():
        console.print(
            f"{stage}: Lyapunov exponent {s['lyapunov']['mean']:.4f} [{s['lyapunov']['lo']:.4f}, "
            f"{s['lyapunov']['hi']:.4f}] per step (n={s['n_traces']} traces), doubling every "
            f"{s['doubling_steps']:.1f} steps; delta = 0 row: max distance {s['zero_delta_max_distance']:.2e}"
        )
    for pc in result["paths"]:
        d = pc["distance"]
        console.print(
            f"{pc['text_id']}: plain vs fast from one e0 at stage 1: distance {d[0]:.1e} after 1 step, "
            f"{max(d):.1e} at most; stage passes at step {pc['passed_plain']} (plain) vs {pc['passed_fast']} (fast)"
        )
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "divergence.json", json.dumps(result, default=float))
    save_figure(divergence_figure(result), out / "divergence")
    console.print(f"results: {out}/divergence.json, {out}/divergence.html")


if __name__ == "__main__":
    cli.run_main(main)
