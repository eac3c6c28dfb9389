#!/usr/bin/env python
"""Capacity in bits (issue 12): is a memory vector's limit set by the text's cross-entropy, not its length?

Progressive-cram texts from several sources on one model and report, per sample and per source: horizon (tokens),
H_LM of the horizon prefix (bits the base model needs), information gain (bits the embedding supplies),
compression ratio and IG / (16 d_model), beside Kuratov et al.'s published rows and the theoretical capacity
16 d / log2 |V|.

    python scripts/capacity.py --model smollm2-135m --sources ../shared/data/pg19=5 builtin random-words \\
        --samples 4 --seq-len 48 --steps-per-stage 250 --max-steps 750
    python scripts/capacity.py --model smollm2-135m --table-only

Sources: builtin, random-words, generated (the model's own greedy continuation of 4-token prompts taken from the
first other source, else the built-in text), a .txt/.jsonl file or folder; ``SOURCE=N`` sets that source's sample
count. Runs live in ``<out>/<model>/full/<source>/`` (resumable; shared with scripts/depth.py's full-model cell);
sources run in separate (e.g. parallel) invocations join one table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cramlens import cli  # noqa: E402


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_model_args(p)
    p.add_argument(
        "--sources",
        nargs="+",
        default=[cli.default_data(), "builtin", "random-words"],
        help="text sources, each optionally SOURCE=N (default: PG-19-style, builtin, random-words)",
    )
    p.add_argument("--samples", type=int, default=4, help="texts per source (unless SOURCE=N)")
    p.add_argument("--seq-len", type=int, default=48, help="tokens per text: the cap on the horizon")
    cli.add_recipe_args(p)
    p.add_argument(
        "--batch-size", type=int, default=None, help="samples crammed together (default: a whole source)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/capacity", help="root of the runs (shared with scripts/depth.py)")
    p.add_argument("--table-only", action="store_true", help="only tabulate a finished run")
    p.add_argument("--figures", default="figures/capacity", help="where the figure goes ('' to skip)")
    cli.add_results_arg(p)
    return p.parse_args(argv)


def parse_sources(entries: list[str]) -> list[tuple[str, int] | str]:
    from cramlens.errors import check

    out: list[tuple[str, int] | str] = []
    for e in entries:
        if "=" in e:
            src, n = e.rsplit("=", 1)
            check(n.isdigit() and int(n) >= 1, f"--sources entry {e!r}: use SOURCE=N with N >= 1")
            out.append((src, int(n)))
        else:
            out.append(e)
    return out


def main(argv=None) -> None:
    a = parse(argv)
    console = cli.console()
    from analyses import capacity as cap
    from analyses.plots.capacity_report import capacity_markdown, capacity_table, horizon_vs_ig_figure

    model = cli.load_model_from_args(a)
    name = Path(a.model).name if Path(a.model).exists() else a.model
    if a.table_only:
        samples = cap.load_capacity_samples(a.out, name)
    else:
        samples = cap.capacity_run(
            model,
            name,
            parse_sources(a.sources),
            a.samples,
            a.seq_len,
            cli.recipe_from_args(a),
            a.out,
            a.batch_size,
            a.seed,
            log=console.print,
        )
    summary = cap.summarise(samples)
    stab = cap.stability(summary)
    d, v = model.cfg.d_model, model.cfg.d_vocab
    console.print(capacity_table(summary, name, d, v))
    md = capacity_markdown(summary, stab, name, d, v)
    console.print(md.split("\n\nKuratov")[0].splitlines()[-1])
    out = Path(a.out) / name
    (out / "capacity_report.md").write_text(md)
    (out / "capacity_summary.json").write_text(json.dumps({"summary": summary, "stability": stab}, indent=1))
    if a.figures:
        paths = horizon_vs_ig_figure(
            samples,
            a.figures,
            f"{name}: horizon vs information gain per source",
            name=f"horizon_vs_ig_{name}",
        )
        console.print(f"figures: {', '.join(map(str, paths))}")
    cli.refresh_results(a, "capacity", out, log=console.print)


if __name__ == "__main__":
    cli.run_main(main)
