#!/usr/bin/env python
"""Full cramming: optimise one memory per text on the whole text until teacher-forced accuracy reaches the threshold.

python scripts/cram.py --model smollm2-135m --samples 4 --seq-len 8 --out runs/cram
python scripts/cram.py --recipe brittleness --seq-len 96 --threshold 0.99   # the 99% protocol
"""

from __future__ import annotations

import argparse

from cramlens import cli


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_model_args(p)
    cli.add_data_args(p, samples=4, seq_len=32)
    cli.add_recipe_args(p)
    cli.add_layout_args(p)
    cli.add_run_args(p, out="runs/cram")
    cli.add_workers_arg(p)
    return p.parse_args(argv)


def main(argv=None) -> None:
    a = parse(argv)
    if cli.became_workers(a, __file__, argv, a.samples):
        return
    console = cli.console()
    from cramlens import brittleness, cram
    from cramlens.distributed import shard_context
    from cramlens.report import LiveProgress, samples_table

    model, texts = cli.load_model_and_texts(a)
    with shard_context(a.out, len(texts)) as shard:
        spec = cli.spec_from_args(a)
        where = dict(out=shard.out, first_id=shard.first_id, resume=a.resume, overwrite=a.overwrite)
        mine = shard.select(texts)
        if a.no_progress or not shard.is_main_display:
            run = cram(model, mine, spec, **where)
        else:
            with LiveProgress(console, title="full cramming") as progress:
                run = cram(model, mine, spec, progress=progress, **where)
        run = shard.finish(run, model)
    if run is None:
        return
    console.print(samples_table(run, "full cramming"))
    console.print(brittleness.table(brittleness.reconstruction_rows(model, run, "full")))
    console.print(f"results: {run.path}/")


if __name__ == "__main__":
    cli.run_main(main)
