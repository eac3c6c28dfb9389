"""Time-to-horizon: progressive cramming (paper recipe) of the first 4 PG-19 texts on SmolLM2-135M.

Modes, all on the same ``fast.optimize``-d model and the same texts (first 64 tokens, HF tokenizer,
``add_special_tokens=False``), seed 0:

- ``a``: batch 1, one sample at a time (``batch_size=1``, linear schedule, the paper's protocol);
- ``b``: all 4 samples in one batch (``batch_size=4``, linear) — per-sample stages, so results must match (a);
- ``c``: the geometric + bisect schedule (``schedule="geometric"``, ``batch_size=4``).

The paper recipe (lr 0.1, betas (0.9, 0.9), wd 0.01, cosine_with_min_lr, warmup 100, 1000 steps per stage) with
``steps_per_sample`` capped at ``--budget`` (default 400; the cosine schedule then spans the capped budget): a, b and c
together took ~10 CPU-minutes at 1 thread, well under 20 minutes on an unloaded machine. ``--precision bf16`` repeats a mode with bf16 matmuls (fp32 memory and
Adam state) for the horizon-identity check that decides whether bf16 may be the default.

    .venv/bin/python benchmarks/bench_horizon.py                    # a, b, c at fp32
    .venv/bin/python benchmarks/bench_horizon.py --modes b --precision bf16
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import first_texts_ids, load_hooked  # noqa: E402

from cramlens import fast  # noqa: E402
from cramlens.cramming import progressive_cram  # noqa: E402

MODES = {
    "a": {"batch_size": 1, "schedule": "linear"},
    "b": {"batch_size": 4, "schedule": "linear"},
    "c": {"batch_size": 4, "schedule": "geometric"},
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modes", nargs="+", default=["a", "b", "c"], choices=list(MODES))
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    ap.add_argument("--budget", type=int, default=400, help="steps_per_sample cap (paper: 10,000)")
    ap.add_argument("--stage-budget", type=int, default=1000, help="steps_per_stage (paper: 1000)")
    ap.add_argument("--texts", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="also append the JSON lines to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True, width=200)
    model = load_hooked()
    tok = model.tokenizer
    texts = first_texts_ids(tok, args.texts, args.seq_len)
    results = []
    out = open(args.out, "a") if args.out else None
    for prec in args.precision:
        fast.optimize(model, precision=prec)
        for mode in args.modes:
            kw = MODES[mode]
            t0, c0 = time.perf_counter(), time.process_time()
            run = progressive_cram(
                model,
                texts,
                seq_len=args.seq_len,
                recipe="paper",
                steps_per_sample=args.budget,
                steps_per_stage=args.stage_budget,
                check_greedy=False,
                seed=0,
                **kw,
            )
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            horizons = [s.horizon for s in run.samples]
            spent = [s.steps_spent for s in run.samples]
            row = {
                "bench": "horizon",
                "mode": mode,
                "precision": prec,
                **kw,
                "budget": args.budget,
                "horizons": horizons,
                "mean_horizon": sum(horizons) / len(horizons),
                "steps_to_horizon": [s.steps for s in run.samples],
                "steps_spent": spent,
                "total_steps": sum(spent),
                "wall_s": round(wall, 1),
                "cpu_s": round(cpu, 1),
                "load_avg": os.getloadavg()[0],
                "sample_steps_per_s": round(sum(spent) / wall, 2),
                "s_per_horizon_token": round(wall / max(1, sum(horizons)), 2),
                "reasons": [s.reason for s in run.samples],
            }
            results.append(row)
            line = json.dumps(row)
            print(line, flush=True)
            if out:
                out.write(line + "\n")
                out.flush()
            console.print(f"  {prec} mode {mode}: horizons {horizons}, {sum(spent)} steps, {wall:.0f} s")
    table = Table(
        title=f"progressive cramming, paper recipe, steps_per_sample={args.budget}, {args.texts} texts"
    )
    for col in [
        "precision",
        "mode",
        "batch",
        "schedule",
        "horizons",
        "total steps",
        "wall s",
        "cpu s",
        "steps/s",
        "vs (a) wall",
        "vs (a) cpu",
    ]:
        table.add_column(col, justify="right")
    base = {r["precision"]: r for r in results if r["mode"] == "a"}
    for r in results:
        ref = base.get(r["precision"])
        table.add_row(
            r["precision"],
            r["mode"],
            str(r["batch_size"]),
            r["schedule"],
            str(r["horizons"]),
            str(r["total_steps"]),
            f"{r['wall_s']:.0f}",
            f"{r['cpu_s']:.0f}",
            f"{r['sample_steps_per_s']:.2f}",
            f"{ref['wall_s'] / r['wall_s']:.2f}x" if ref else "-",
            f"{ref['cpu_s'] / r['cpu_s']:.2f}x" if ref else "-",
        )
    console.print(table)
    if out:
        out.close()


if __name__ == "__main__":
    main()
