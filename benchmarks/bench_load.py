"""Load-time benchmark: first load (GGUF -> fp32 conversion into an empty cache) vs second load (cache).

Each load runs in a fresh subprocess with ``CRAMLENS_CACHE`` pointing at a new temporary directory,
so nothing is shared but the cache itself (the first process writes it, the second reads it).
Prints a rich table and one JSON line per model:
``{"bench":"load","model":...,"first_s":...,"second_s":...,"ratio":...}`` (times are the
``load_model`` call alone; ``*_wall_s`` add interpreter start-up and imports). Target: ratio < 1/3.

    python benchmarks/bench_load.py [--models smollm2-135m gemma-3-270m]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

MODELS = ["smollm2-135m", "gemma-3-270m"]

_CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from cramlens.models import load_model
import torch
t1 = time.perf_counter()
model = load_model(sys.argv[1], device="cpu")
t2 = time.perf_counter()
print("BENCH " + json.dumps({
    "import_s": t1 - t0,
    "load_s": t2 - t1,
    "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    "threads": torch.get_num_threads(),
    "n_params": sum(p.numel() for p in model.parameters()),
}))
"""


def _run_child(model: str, cache: str) -> dict:
    env = dict(os.environ, CRAMLENS_CACHE=cache, HF_HUB_OFFLINE="1")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # shared machine: no spinning OpenMP threads
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, model], env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"bench child for {model} failed (exit {proc.returncode})")
    result = json.loads(lines[-1].removeprefix("BENCH "))
    result["wall_s"] = wall
    return result


def bench(model: str) -> dict:
    cache = tempfile.mkdtemp(prefix="cramlens-bench-cache-")
    try:
        first = _run_child(model, cache)
        second = _run_child(model, cache)
        cache_bytes = sum(
            os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(cache) for f in files
        )
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return {
        "bench": "load",
        "model": model,
        "first_s": round(first["load_s"], 2),
        "second_s": round(second["load_s"], 2),
        "ratio": round(second["load_s"] / first["load_s"], 3),
        "first_wall_s": round(first["wall_s"], 2),
        "second_wall_s": round(second["wall_s"], 2),
        "first_peak_rss_gb": round(first["peak_rss_gb"], 2),
        "second_peak_rss_gb": round(second["peak_rss_gb"], 2),
        "cache_gb": round(cache_bytes / 2**30, 2),
        "threads": second["threads"],
        "n_params": second["n_params"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    console = Console(width=150)  # a fixed width so the table survives redirection to a file
    load1, load5, _ = os.getloadavg()
    console.print(
        f"load_model timing, {os.cpu_count()} CPUs, load average {load1:.1f} (1 min) / {load5:.1f} (5 min) at start"
    )
    rows = []
    for model in args.models:
        console.print(f"[dim]benchmarking {model} (first load converts from GGUF)...[/dim]")
        rows.append(bench(model))

    table = Table(title="cramlens load_model: first (convert + cache) vs second (from cache)")
    for col in [
        "model",
        "first s",
        "second s",
        "ratio",
        "first wall s",
        "second wall s",
        "peak RSS GB 1st/2nd",
        "cache GB",
    ]:
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        table.add_row(
            r["model"],
            f"{r['first_s']:.1f}",
            f"{r['second_s']:.2f}",
            f"{r['ratio']:.3f}" + (" ✓" if r["ratio"] < 1 / 3 else " ✗"),
            f"{r['first_wall_s']:.1f}",
            f"{r['second_wall_s']:.1f}",
            f"{r['first_peak_rss_gb']:.1f} / {r['second_peak_rss_gb']:.1f}",
            f"{r['cache_gb']:.2f}",
        )
    console.print(table)
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
