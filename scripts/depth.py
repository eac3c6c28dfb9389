#!/usr/bin/env python
"""Capacity vs retained depth (issue 9): truncate, finetune briefly, progressive-cram the same texts, tabulate.

    python scripts/depth.py --grid smollm2-135m=1,2,4,8,full --samples 5 --seq-len 48 --out runs/capacity
    python scripts/depth.py --grid gemma-3-270m=1,2,4 --samples 3 --no-finetune --out runs/capacity
    python scripts/depth.py --table-only --out runs/capacity        # the table and heatmap of what is done

Every variant lives in ``<out>/<model>/<variant>/`` (finetune checkpoint, cramming run directory, result.json);
rerunning the same command resumes. The finetune defaults are a short CPU recipe
(analyses.recovery_finetune.CPU_FINETUNE); the paper's full recipe is analyses.recovery_finetune.PAPER_FINETUNE
(5,000 steps x 256 x 1024 tokens on fineweb-edu).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cramlens import cli  # noqa: E402


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("variants")
    g.add_argument(
        "--grid",
        nargs="+",
        default=["smollm2-135m=1,2,4,8,full"],
        help="MODEL=N1,N2,...[,full] entries (registry names or HF directories)",
    )
    g.add_argument(
        "--scheme",
        default="first",
        choices=["first", "last", "first_last"],
        help="which blocks N keeps: first N (paper's main table), last N, first N + last N",
    )
    g.add_argument("--no-finetune", action="store_true", help="cram the truncated models as they are")
    f = p.add_argument_group(
        "recovery finetune (short CPU defaults; paper: analyses.recovery_finetune.PAPER_FINETUNE)"
    )
    f.add_argument("--ft-steps", type=int, default=200)
    f.add_argument("--ft-seq-len", type=int, default=64)
    f.add_argument("--ft-batch-size", type=int, default=4)
    f.add_argument("--ft-lr", type=float, default=1e-3)
    f.add_argument("--ft-warmup", type=int, default=20)
    f.add_argument(
        "--ft-trainable",
        default="blocks",
        choices=["all", "blocks"],
        help="all parameters (paper) or the blocks only (embedding/unembedding frozen; cheaper)",
    )
    f.add_argument("--ft-val-windows", type=int, default=64, help="held-out windows for the validation loss")
    f.add_argument("--ft-data", default=None, help="finetune corpus (default: --data)")
    f.add_argument(
        "--ft-skip-docs",
        type=int,
        default=20,
        help="skip the first documents of the corpus (the crammed texts come from there)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--dtype", default="float32", help="float32 (default), bfloat16 or float16")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    cli.add_data_args(p, samples=5, seq_len=48)
    cli.add_recipe_args(p)
    p.add_argument("--batch-size", type=int, default=None, help="samples crammed together (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out", default="runs/capacity", help="root of the sweep (shared with scripts/capacity.py)"
    )
    p.add_argument(
        "--no-fast", action="store_true", help="keep TransformerLens's own forwards (no cramlens.fast)"
    )
    p.add_argument(
        "--table-only", action="store_true", help="only print the table / figures of finished variants"
    )
    p.add_argument("--figures", default="figures/depth", help="where the heatmap goes ('' to skip)")
    cli.add_results_arg(p)
    return p.parse_args(argv)


def parse_grid(entries: list[str], scheme: str, finetune: bool):
    from analyses.depth_sweep import Variant
    from cramlens.errors import check

    out = []
    for e in entries:
        check("=" in e, f"--grid entry {e!r}: use MODEL=N1,N2,... (e.g. smollm2-135m=1,2,4,full)")
        model, ns = e.split("=", 1)
        for tok in ns.split(","):
            tok = tok.strip().lower()
            check(tok == "full" or tok.isdigit(), f"--grid entry {e!r}: depths are integers or 'full'")
            out.append(Variant(model, None if tok == "full" else int(tok), scheme, finetune))
    return out


def main(argv=None) -> None:
    a = parse(argv)
    console = cli.console()
    from analyses import depth_sweep as ds
    from analyses.plots.capacity_report import depth_markdown, depth_table
    from analyses.recovery_finetune import CPU_FINETUNE
    from cramlens.spec import CramSpec

    if not a.table_only:
        import time

        def load(name):
            return cli.load_model_from_args(a, name)

        ft = CPU_FINETUNE.with_(
            steps=a.ft_steps,
            seq_len=a.ft_seq_len,
            batch_size=a.ft_batch_size,
            lr=a.ft_lr,
            warmup=a.ft_warmup,
            trainable=a.ft_trainable,
            source=a.ft_data or a.data,
            skip_docs=a.ft_skip_docs,
            seed=a.seed,
            max_val_windows=a.ft_val_windows,
        )
        variants = parse_grid(a.grid, a.scheme, not a.no_finetune)

        def log(msg):
            console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {msg}")

        spec = CramSpec(recipe=cli.recipe_from_args(a), batch_size=a.batch_size or a.samples, seed=a.seed)
        ds.depth_sweep(variants, a.data, a.samples, a.seq_len, spec, ft, a.out, load=load, log=log)
    results = ds.collect_results(a.out)
    console.print(depth_table(results))
    md = depth_markdown(results)
    from cramlens.runs import atomic_write_text

    Path(a.out).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(a.out) / "depth_report.md", md)  # two sweeps into one root may finish together
    if a.figures and results:
        from analyses.plots.capacity_report import depth_heatmap

        paths = depth_heatmap(results, a.figures)
        console.print(f"figures: {', '.join(map(str, paths))}")
    cli.refresh_results(a, "depth", a.out, log=console.print)


if __name__ == "__main__":
    cli.run_main(main)
