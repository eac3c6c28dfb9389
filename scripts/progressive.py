#!/usr/bin/env python
"""Progressive cramming: grow the target one token at a time and report each sample's compression horizon.

python scripts/progressive.py --model smollm2-135m --samples 4 --seq-len 48 --out runs/prog
"""

from __future__ import annotations

import argparse
import json
import time

from cramlens import cli


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_model_args(p)
    cli.add_data_args(p, samples=4, seq_len=64)
    cli.add_recipe_args(p)
    cli.add_layout_args(p)
    cli.add_run_args(p, out="runs/progressive")
    cli.add_workers_arg(p)
    cli.add_results_arg(p)
    g = cli.add_stage_args(p)
    g.add_argument(
        "--compare-full",
        action="store_true",
        help="also full-cram the same texts at threshold 0.99 and print the brittleness table",
    )
    g.add_argument(
        "--full-seq-len", type=int, default=None, help="text length for --compare-full (default --seq-len)"
    )
    g.add_argument(
        "--full-max-steps", type=int, default=None, help="budget of --compare-full (default: recipe's)"
    )
    g.add_argument(
        "--greedy-dtype",
        default="model",
        choices=["model", "float32", "bfloat16", "both"],
        help="dtype of the greedy generation in the brittleness table: the model's (default), one of them, or "
        "both (fp32 and bf16 rows for the same embeddings)",
    )
    return p.parse_args(argv)


def main(argv=None) -> None:
    a = parse(argv)
    if cli.became_workers(a, __file__, argv, a.samples):
        return
    t0 = time.time()
    console = cli.console()
    from cramlens import brittleness, cram, progressive_cram
    from cramlens.distributed import shard_context
    from cramlens.report import LiveProgress, samples_table

    model, texts = cli.load_model_and_texts(a)
    with shard_context(a.out, len(texts)) as shard:
        progress = (
            None
            if a.no_progress or not shard.is_main_display
            else LiveProgress(console, title="progressive cramming")
        )
        spec = cli.spec_from_args(a)
        where = dict(out=shard.out, first_id=shard.first_id, resume=a.resume, overwrite=a.overwrite)
        mine = shard.select(texts)
        if progress is not None:
            with progress:
                run = progressive_cram(model, mine, spec, progress=progress, **where)
        else:
            run = progressive_cram(model, mine, spec, **where)
        run = shard.finish(run, model)
    if run is None:
        return
    console.print(samples_table(run, "progressive cramming: compression horizons"))
    from cramlens.paper import horizon_line

    console.print(horizon_line(run.horizons(), a.model))
    if a.compare_full:
        from cramlens.recipe import get_recipe
        from cramlens.spec import CramSpec

        full_rc = get_recipe("brittleness").with_(steps_per_sample=a.full_max_steps)
        full_texts = texts
        if a.full_seq_len and a.full_seq_len != a.seq_len:
            from cramlens.texts import load_texts

            full_texts = load_texts(
                a.data, model.tokenizer, a.samples, a.full_seq_len, seed=a.seed, offset=a.offset, skip=a.skip
            )
        with LiveProgress(console, title="full cramming @0.99") as fp:
            full_spec = CramSpec(recipe=full_rc, layout=spec.layout, batch_size=len(full_texts), seed=a.seed)
            full = cram(
                model,
                full_texts,
                full_spec,
                out=f"{a.out}/full",
                resume=a.resume,
                overwrite=a.overwrite,
                progress=fp,
            )
        rows = brittleness.rows_by_dtype(model, {"full @0.99": full, "progressive": run}, a.greedy_dtype)
        console.print(brittleness.table(rows))
        from pathlib import Path

        from cramlens.runs import atomic_write_text

        atomic_write_text(Path(a.out) / "brittleness.json", json.dumps([r.to_dict() for r in rows], indent=1))
        with open(Path(a.out) / "report.md", "a") as f:
            f.write("\n## Brittleness: full cramming @0.99 vs progressive\n\n" + brittleness.markdown(rows))
    console.print(f"results: {run.path}/ (report.md, table/, rows.jsonl, embeddings.safetensors)")
    cli.refresh_results(a, "progressive", a.out, log=console.print)
    if a.compare_full:
        cli.refresh_results(a, "brittleness", a.out, log=console.print)
    console.print(f"elapsed: {cli.elapsed(time.time() - t0)} (model loading included)")


if __name__ == "__main__":
    cli.run_main(main)
