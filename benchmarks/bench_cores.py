"""Both cores: one process with two torch threads vs two single-thread worker processes (issue 22).

On a 2-core CPU the two ways to keep both cores busy are different things: one process whose OpenMP threads split
every matmul, or two processes (what ``torchrun --nproc_per_node 2`` gives the sharded scripts) that each run one
thread on half of the samples. This times the engine's step (``bench_step.CramStep``: the memory injected at
``hook_embed``, forward, backward to the memory, ``BatchedAdamW``) on SmolLM2-135M with ``fast.optimize`` (fp32),
at per-process batch ``B`` and ``L`` targets, three ways:

- ``1x1``: one process, one thread (the scaling reference);
- ``1x2``: one process, two threads;
- ``2x1``: two processes, one thread each, started together behind a barrier and timed over the same steps.

Throughput is sample-steps per wall second over all processes. A sample costs the same whichever process holds
it, so at a total of ``N`` samples the two layouts compare as ``1x2`` at batch ``N`` vs ``2x1`` at batch ``N/2``;
the table gives both that comparison and the per-batch one. Ratios come from one run; run it on an idle machine.

    .venv/bin/python benchmarks/bench_cores.py                       # B in {1,2,4,8}, L in {32,64}
    .venv/bin/python benchmarks/bench_cores.py --batches 1 8 --lengths 64 --out benchmarks/results_cores.jsonl
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP threads sleep, not spin

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import load_hooked  # noqa: E402
from bench_step import CramStep  # noqa: E402

from cramlens import fast  # noqa: E402

TARGET_S = 6.0  # seconds of timed steps per cell: enough to average a few steps at B=8, short at B=1


def cells(batches: list[int], lengths: list[int]) -> list[tuple[int, int]]:
    return [(b, n) for n in lengths for b in batches]


def steps_for(step_s: float) -> int:
    """Timed steps for a cell whose warm-up step took ``step_s``: about TARGET_S seconds, at least 3."""
    return max(3, math.ceil(TARGET_S / max(step_s, 1e-3)))


def sequences(vocab: int, batch: int, length: int, rank: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(1000 * batch + length + 7 * rank)
    return [torch.randint(100, vocab, (length,), generator=g).tolist() for _ in range(batch)]


def barrier(where: Path, name: str, rank: int, world: int, timeout_s: float = 600.0) -> None:
    """Wait until every worker has reached ``name`` (files in a shared temp dir; the workers share no process)."""
    (where / f"{name}.{rank}").touch()
    deadline = time.time() + timeout_s
    while not all((where / f"{name}.{r}").exists() for r in range(world)):
        if time.time() > deadline:
            raise RuntimeError(f"worker barrier {name} timed out in {where}")
        time.sleep(0.01)


def time_cell(model, batch: int, length: int, rank: int, n_steps: int | None, sync=None) -> dict:
    """Two warm-up steps, then ``n_steps`` timed steps (chosen from the second warm-up step when None)."""
    step = CramStep(model, sequences(model.cfg.d_vocab, batch, length, rank), length)
    step()  # the first call of a shape allocates; it says little about the next ones
    t0 = time.perf_counter()
    step()
    warm = time.perf_counter() - t0
    n = n_steps or steps_for(warm)
    if sync is not None:
        sync()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        step()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"batch": batch, "length": length, "steps": n, "wall_s": wall, "cpu_s": cpu}


def worker(args) -> None:
    """One of the ``2x1`` processes: every cell behind a barrier, the same step counts as its sibling."""
    torch.set_num_threads(1)
    model = load_hooked()
    fast.optimize(model)
    where, rank = Path(args.worker_dir), args.rank
    plan = json.loads(args.plan)
    out = []
    for i, (b, n, steps) in enumerate(plan):
        out.append(time_cell(model, b, n, rank, steps, sync=lambda i=i: barrier(where, f"cell{i}", rank, 2)))
    (where / f"result.{rank}.json").write_text(json.dumps(out))


def two_workers(plan: list[tuple[int, int, int]]) -> list[dict]:
    """Run the ``2x1`` layout: two single-thread processes on the same cells, timed together."""
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, __file__, "--worker-dir", d, "--plan", json.dumps(plan)]
        procs = [subprocess.Popen([*cmd, "--rank", str(r)], env=env) for r in range(2)]
        for p in procs:
            if p.wait() != 0:
                raise RuntimeError(f"a 2x1 worker failed (exit {p.returncode})")
        parts = [json.loads((Path(d) / f"result.{r}.json").read_text()) for r in range(2)]
    cells_out = []
    for a, b in zip(*parts, strict=True):
        # both processes ran the same steps on equal batches; the cell lasts as long as the slower one
        wall = max(a["wall_s"], b["wall_s"])
        cells_out.append(
            {
                "layout": "2x1",
                "batch": a["batch"],
                "length": a["length"],
                "steps": a["steps"],
                "wall_s": wall,
                "cpu_s": a["cpu_s"] + b["cpu_s"],
                "sample_steps_per_s": 2 * a["batch"] * a["steps"] / wall,
            }
        )
    return cells_out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8], help="per-process batch sizes")
    ap.add_argument("--lengths", type=int, nargs="+", default=[32, 64], help="targets per sample")
    ap.add_argument("--out", type=Path, default=None, help="also append the JSON lines to this file")
    ap.add_argument("--worker-dir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--plan", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker_dir:
        return worker(args)

    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True, width=160)
    model = load_hooked()
    fast.optimize(model)
    rows, plan = [], []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for b, n in cells(args.batches, args.lengths):
            r = time_cell(model, b, n, 0, None)
            r.update(layout=f"1x{threads}", sample_steps_per_s=b * r["steps"] / r["wall_s"])
            rows.append(r)
            if threads == 1:
                plan.append((b, n, r["steps"]))
            console.print(f"  1x{threads} B={b} L={n}: {r['sample_steps_per_s']:.2f} sample-steps/s")
    del model
    rows += two_workers(plan)
    load = os.getloadavg()[0]
    rate = {(r["layout"], r["batch"], r["length"]): r["sample_steps_per_s"] for r in rows}

    table = Table(
        title="one process x two threads vs two processes x one thread: sample-steps per wall second"
    )
    for col in ("L", "B per process", "1x1", "1x2", "2x1", "2x1 / 1x2 (same B)", "2x1 / 1x2 (same total)"):
        table.add_column(col, justify="right")
    for b, n in cells(args.batches, args.lengths):
        same_total = rate.get(("1x2", 2 * b, n))
        table.add_row(
            str(n),
            str(b),
            f"{rate[('1x1', b, n)]:.2f}",
            f"{rate[('1x2', b, n)]:.2f}",
            f"{rate[('2x1', b, n)]:.2f}",
            f"{rate[('2x1', b, n)] / rate[('1x2', b, n)]:.2f}",
            "–" if same_total is None else f"{rate[('2x1', b, n)] / same_total:.2f}",
        )
    table.caption = (
        f"SmolLM2-135M, fast.optimize fp32, engine step; same total = 2x1 at B per process vs 1x2 at 2B; "
        f"load average {load:.2f} at the end"
    )
    console.print(table)
    summary = {
        "bench": "cores",
        "cells": rows,
        "load_avg": load,
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
    }
    line = json.dumps(summary)
    print(line, flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
