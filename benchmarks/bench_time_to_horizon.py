"""Time to horizon against the reference trainer (issue 22): the paper recipe on the same texts, run the way a user
runs it (``scripts/progressive.py`` as a subprocess), in three configurations:

- ``a``: batch 1, fp32, one process, one thread: the reference trainer's speed class (the authors' trainer is
  1.23x slower per step than this on the same machine, ``../shared/reference-bench/README.md``);
- ``b``: the fastest exact configuration: ``--workers auto`` (one single-thread process per core), half the texts
  per worker in one batch, ``--search-dtype bfloat16`` (bf16 steps, every stage passed by an fp32 judge, so the
  stored horizons are fp32-exact);
- ``c``: ``b`` in fp32, to separate the precision's share from the batching and the second core.

Per configuration: the horizons and compressed tokens, CPU seconds (all processes: ``RUSAGE_CHILDREN``) and wall
seconds per sample and per horizon token, and the speed-up over ``a`` and over the reference trainer (``a``'s time
× 1.23). Horizons differ between configurations (the optimisation is chaotic: each run is one draw), so the time
per horizon token is the fairer yardstick. The target: ``b`` at least 3x the reference per wall second on this
machine. Ratios from one run; run it on an otherwise idle machine.

    .venv/bin/python benchmarks/bench_time_to_horizon.py --skip 10 --texts 4 --seq-len 64
    .venv/bin/python benchmarks/bench_time_to_horizon.py --skip 10 --texts 4 --seq-len 32 --max-steps 3000 \
        --stage-budget 1000                       # the ledger's cpu budgets: under an hour of both cores
    .venv/bin/python benchmarks/bench_time_to_horizon.py --model tiny-llama --data builtin --texts 2 --seq-len 6 \\
        --max-steps 60 --stage-budget 20          # the plumbing in seconds
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REFERENCE_PER_STEP = 1.23  # reference trainer's CPU s per step / cramlens batch 1's (shared/reference-bench)
TARGET = 3.0  # b must be this many times faster than the reference trainer


def configs(n_texts: int) -> dict[str, list[str]]:
    """The flags of each configuration (added to the common ``scripts/progressive.py`` command)."""
    half = str(max(1, -(-n_texts // 2)))
    return {
        "a": ["--batch-size", "1", "--workers", "1", "--threads", "1"],
        "b": ["--batch-size", half, "--workers", "auto", "--search-dtype", "bfloat16"],
        "c": ["--batch-size", half, "--workers", "auto"],
    }


def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_config(name: str, flags: list[str], common: list[str], out: Path) -> dict:
    """Run one configuration to the end and read its horizons back from the run directory."""
    from cramlens import load_run

    cmd = [sys.executable, str(ROOT / "scripts" / "progressive.py"), *common, *flags, "--out", str(out)]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("OMP_NUM_THREADS", None)  # each configuration sets its own threads
    cpu0, t0 = children_cpu_s(), time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, children_cpu_s() - cpu0
    if done.returncode != 0:
        raise SystemExit(f"configuration {name} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    run = load_run(out)
    horizons = [s.horizon for s in run.samples]
    n, tokens = len(horizons), max(1, sum(horizons))
    return {
        "config": name,
        "flags": " ".join(flags),
        "horizons": horizons,
        "compressed_tokens": [s.compressed_tokens for s in run.samples],
        "steps_spent": [s.steps_spent for s in run.samples],
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "wall_s_per_sample": round(wall / n, 2),
        "cpu_s_per_sample": round(cpu / n, 2),
        "wall_s_per_horizon_token": round(wall / tokens, 3),
        "cpu_s_per_horizon_token": round(cpu / tokens, 3),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--data", default=None, help="text source (default: ../shared/data/pg19)")
    ap.add_argument("--skip", type=int, default=10, help="skip the source's first N texts (held out)")
    ap.add_argument("--texts", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--max-steps", type=int, default=None, help="steps per sample (paper: 10,000)")
    ap.add_argument("--stage-budget", type=int, default=None, help="steps per stage (paper: 1,000)")
    ap.add_argument("--configs", nargs="+", default=["a", "b", "c"], choices=["a", "b", "c"])
    ap.add_argument(
        "--runs", type=Path, default=None, help="keep the run directories here (default: temporary)"
    )
    ap.add_argument("--out", type=Path, default=None, help="also append the JSON line to this file")
    args = ap.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True, width=170)
    common = [
        "--model",
        args.model,
        "--recipe",
        "paper",
        "--samples",
        str(args.texts),
        "--skip",
        str(args.skip),
    ]
    common += ["--seq-len", str(args.seq_len), "--no-progress"]
    if args.data:
        common += ["--data", args.data]
    if args.max_steps:
        common += ["--max-steps", str(args.max_steps)]
    if args.stage_budget:
        common += ["--steps-per-stage", str(args.stage_budget)]
    flags = configs(args.texts)
    with tempfile.TemporaryDirectory() as tmp:
        where = args.runs or Path(tmp)
        rows = []
        for name in args.configs:
            console.print(f"  {name}: scripts/progressive.py {' '.join(flags[name])} …")
            rows.append(run_config(name, flags[name], common, where / f"tth_{name}"))
            console.print(f"  {name}: horizons {rows[-1]['horizons']}, {rows[-1]['wall_s']} s wall")
    by = {r["config"]: r for r in rows}
    a = by.get("a")
    for r in rows:
        for unit in (
            "wall_s_per_horizon_token",
            "cpu_s_per_horizon_token",
            "wall_s_per_sample",
            "cpu_s_per_sample",
        ):
            if a is not None and r[unit] > 0:
                r[f"speedup_vs_a_{unit}"] = round(a[unit] / r[unit], 2)
                r[f"speedup_vs_reference_{unit}"] = round(a[unit] * REFERENCE_PER_STEP / r[unit], 2)

    table = Table(
        title=f"time to horizon, paper recipe, {args.model}, {args.texts} texts x {args.seq_len} tokens"
    )
    for col in (
        "config",
        "flags",
        "horizons",
        "wall s / sample",
        "CPU s / sample",
        "wall s / horizon token",
        "CPU s / horizon token",
        "vs reference (wall / token)",
    ):
        table.add_column(col, justify="left" if col in ("config", "flags", "horizons") else "right")
    for r in rows:
        table.add_row(
            r["config"],
            r["flags"],
            str(r["horizons"]),
            f"{r['wall_s_per_sample']:.1f}",
            f"{r['cpu_s_per_sample']:.1f}",
            f"{r['wall_s_per_horizon_token']:.2f}",
            f"{r['cpu_s_per_horizon_token']:.2f}",
            f"{r.get('speedup_vs_reference_wall_s_per_horizon_token', float('nan')):.2f}x",
        )
    table.caption = (
        f"reference = a's time x {REFERENCE_PER_STEP} (its measured per-step cost); target: b >= {TARGET}x the "
        f"reference; load average {os.getloadavg()[0]:.2f} at the end; ratios from one run"
    )
    console.print(table)
    line = json.dumps({"bench": "time_to_horizon", "model": args.model, "texts": args.texts, "rows": rows})
    print(line, flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
