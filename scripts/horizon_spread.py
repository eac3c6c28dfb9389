#!/usr/bin/env python
"""How much of a horizon's spread is the text's? Variance components over texts x seeds (issue 23).

    python scripts/progressive.py --recipe paper --samples 6 --seq-len 32 --seeds 0,1,2 --out runs/seeds6x3
    python scripts/horizon_spread.py --run runs/seeds6x3 --out runs/seeds6x3/spread
    python scripts/horizon_spread.py --run fast=runs/seeds6x3 --run plain=runs/seeds6x3_plain   # numeric variants

Each ``--run`` is a progressive run directory (optionally ``label=DIR``: the label names its numeric variant);
every sample is one draw of its text. Prints the per-metric table (mean of text means with a two-stage bootstrap
interval, between- and within-text variance, ICC with its F interval, within-text CV) and whether IG is steadier
across seeds than the horizon; writes ``spread.json`` and a figure.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cramlens import cli


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--run", action="append", required=True, help="[label=]run directory (repeat for variants)"
    )
    p.add_argument(
        "--out", default=None, help="where spread.json and the figure go (default: <first run>/spread)"
    )
    p.add_argument(
        "--model", default=None, help="the paper's number to compare with (default: the run's model)"
    )
    return p.parse_args(argv)


def main(argv=None) -> None:
    a = parse(argv)
    console = cli.console()
    from analyses.horizon_spread import analyse, draws_from_runs, spread_table
    from analyses.plots.io import save_figure
    from analyses.plots.spread_figures import horizon_spread_figure
    from cramlens import load_run
    from cramlens.runs import atomic_write_text

    runs = {}
    for item in a.run:
        label, _, path = item.rpartition("=")
        runs[label or Path(path).name] = load_run(path)
    report = analyse(draws_from_runs(runs))
    model = a.model or next(iter(runs.values())).config["settings"].get("model", "?")
    for line in spread_table(report, model):
        console.print(line)
    out = Path(a.out or Path(a.run[0].rpartition("=")[2]) / "spread")
    out.mkdir(parents=True, exist_ok=True)
    d = report.to_dict()
    atomic_write_text(out / "spread.json", json.dumps(d, indent=1, default=float))
    save_figure(horizon_spread_figure(d), out / "horizon_spread")
    console.print(f"results: {out}/spread.json, {out}/horizon_spread.html")


if __name__ == "__main__":
    cli.run_main(main)
