"""bf16 search with an fp32 judge vs fp32 cramming (issue 22): CPU seconds per sample and horizons, side by side.

SmolLM2-135M (fp32 weights, ``fast.optimize``), the ``fast`` recipe with capped budgets (``--stage-budget``,
``--budget``; the cosine schedule spans the capped budget), the first ``--texts`` PG-19 texts of ``--seq-len``
tokens, one batch, seed 0, one thread. Two runs on the same texts, memory inits and model:

- ``fp32``: ``search_dtype="model"`` (the fp32 loop as it was);
- ``bf16``: ``search_dtype="bfloat16"`` (bf16 optimisation forward/backward, fp32 judge at every stage end).

Both check greedy generation of every horizon in fp32 afterwards. Reported: CPU seconds (process time, so other
jobs on the machine count little) per sample and per sample-step, horizons per text, the per-text difference
bf16 - fp32 with a paired 95% t interval (``cramlens.stats.mean_ci``), and the judge's work (rows judged, rows
rejected after bf16 said pass, rows regenerated, its CPU seconds).

``--continuation K`` also measures what a rejected row should do next: for the first K judge rejections of the bf16
run, the rejected row alone is continued from the loop state right after the rejection (a) in bf16, judged at every
bf16 pass, and (b) in fp32, until fp32 passes the stage (at most ``--cont-cap`` iterations): steps and CPU seconds
of each. The engine does (b) since this measurement (``cramlens.judge.search_forward``); (a) is emulated by clearing
the row's judge count before every iteration, which keeps it in the bf16 group.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_precision.py --continuation 4
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cramlens.engine as engine  # noqa: E402
from cramlens import fast  # noqa: E402
from cramlens.cramming import progressive_cram  # noqa: E402
from cramlens.engine import CramLoop  # noqa: E402
from cramlens.models import load_model  # noqa: E402
from cramlens.params import Memory  # noqa: E402
from cramlens.recipe import get_recipe  # noqa: E402
from cramlens.stats import mean_ci  # noqa: E402
from cramlens.texts import load_texts  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pg19"
MODES = {"fp32": "model", "bf16": "bfloat16"}


class JudgeLog:
    """A progress object for ``progressive_cram``: sums the engine's per-iteration judge info and keeps the loop
    state right after each judge rejection (for ``--continuation``)."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.judged = self.rejected = self.generated = self.rejected_by_generation = 0
        self.rejections: list[tuple[dict[str, torch.Tensor], int, list[int]]] = []

    def start_batch(self, *args) -> None:
        pass

    def update(self, loop: CramLoop, info: dict, group, new) -> None:
        j = info.get("judge")
        if not j:
            return
        self.judged += len(j["judged"])
        self.rejected += len(j["rejected"])
        self.generated += j["generated"]
        self.rejected_by_generation += j["rejected_by_generation"]
        for s in j["rejected"]:
            if len(self.rejections) < self.keep and int(loop.state.status[s]) == 0:
                # cloned: state_tensors() of a CPU loop are the live tensors, which keep changing
                state = {k: v.clone() for k, v in loop.state_tensors().items()}
                self.rejections.append((state, s, list(loop.sequences[s])))


class JudgeTimer:
    """Process time spent inside the engine's judge calls."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.real = engine.judge

    def __call__(self, loop, samples):
        c0 = time.process_time()
        try:
            return self.real(loop, samples)
        finally:
            self.cpu += time.process_time() - c0


def run_mode(model, texts, args, mode: str, keep: int) -> tuple[dict, JudgeLog]:
    log, timer = JudgeLog(keep), JudgeTimer()
    engine.judge = timer
    try:
        c0, t0 = time.process_time(), time.perf_counter()
        run = progressive_cram(
            model,
            texts,
            recipe="fast",
            search_dtype=MODES[mode],
            steps_per_stage=args.stage_budget,
            steps_per_sample=args.budget,
            batch_size=len(texts),
            seed=0,
            progress=log,
        )
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    finally:
        engine.judge = timer.real
    spent = [s.steps_spent for s in run]
    row = {
        "mode": mode,
        "horizons": run.horizons(),
        "steps_to_horizon": [s.steps for s in run],
        "steps_spent": spent,
        "reasons": [s.reason for s in run],
        "greedy_exact": [s.greedy_exact for s in run],
        "cpu_s": round(cpu, 1),
        "wall_s": round(wall, 1),
        "cpu_s_per_sample": round(cpu / len(texts), 1),
        "cpu_ms_per_sample_step": round(1000 * cpu / max(1, sum(spent)), 1),
        "judge": {
            "judged": log.judged,
            "rejected": log.rejected,
            "generated": log.generated,
            "rejected_by_generation": log.rejected_by_generation,
            "cpu_s": round(timer.cpu, 1),
        },
    }
    return row, log


def continue_alone(model, rejection: tuple, recipe, cap: int) -> dict:
    """Continue the rejected row of a saved batch state alone, under ``recipe``, until its stage ends (or ``cap``
    iterations); with a bf16 recipe the row stays in bf16 (its judge count cleared before every iteration)."""
    state, sample, sequence = rejection
    B = int(state["loop.length"].shape[0])
    mine = {k: (v[sample : sample + 1] if v.dim() >= 1 and v.shape[0] == B else v) for k, v in state.items()}
    memory = Memory("direct", {"embedding": torch.zeros(1, 1, model.cfg.d_model, requires_grad=True)})
    loop = CramLoop(model, [sequence], memory, recipe)
    loop.load_state_tensors(mine)
    records: list = []
    c0, steps0 = time.process_time(), int(loop.opt.steps[0])
    for _ in range(cap):
        if recipe.search_dtype == "bfloat16":
            loop.state.judged.zero_()
        loop.iterate(records.append)
        if records:
            break
    return {
        "passed": bool(records and records[0].converged),
        "steps": int(loop.opt.steps[0]) - steps0,
        "cpu_s": round(time.process_time() - c0, 2),
    }


def continuation(model, log: JudgeLog, args) -> list[dict]:
    """Each kept rejection continued in bf16 with the judge and in fp32, from the same state, with the run's recipe."""
    out = []
    for rejection in log.rejections:
        state, sample, _ = rejection
        res = {"sample": sample, "stage_seq_len": int(state["loop.length"][sample])}
        for name, dtype in (("bf16", "bfloat16"), ("fp32", "model")):
            recipe = get_recipe(
                "fast", search_dtype=dtype, steps_per_stage=args.stage_budget, steps_per_sample=args.budget
            )
            res[name] = continue_alone(model, rejection, recipe, args.cont_cap)
        out.append(res)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--texts", type=int, default=6)
    ap.add_argument("--seq-len", type=int, default=32)
    ap.add_argument("--stage-budget", type=int, default=300, help="steps_per_stage (fast recipe: 1000)")
    ap.add_argument("--budget", type=int, default=900, help="steps_per_sample (fast recipe: 10,000)")
    ap.add_argument("--continuation", type=int, default=0, help="rejections to continue both ways")
    ap.add_argument("--cont-cap", type=int, default=60, help="iterations per continuation")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True, width=200)
    model = fast.optimize(load_model("smollm2-135m"))
    texts = load_texts(DATA, model.tokenizer, args.texts, args.seq_len)
    rows, logs = {}, {}
    for mode in args.modes:
        rows[mode], logs[mode] = run_mode(
            model, texts, args, mode, args.continuation if mode == "bf16" else 0
        )
        console.print(f"  {mode}: horizons {rows[mode]['horizons']}, {rows[mode]['cpu_s']} CPU s")
    if len(rows) < 2:
        print(json.dumps({"bench": "precision", "modes": rows}), flush=True)
        return
    a, b = rows["fp32"], rows["bf16"]
    diff = mean_ci([y - x for x, y in zip(a["horizons"], b["horizons"], strict=True)])
    result = {
        "bench": "precision",
        "model": "smollm2-135m",
        "recipe": "fast",
        "steps_per_stage": args.stage_budget,
        "steps_per_sample": args.budget,
        "texts": args.texts,
        "seq_len": args.seq_len,
        "threads": args.threads,
        "modes": rows,
        "horizon_diff_bf16_minus_fp32": diff.to_dict(),
        "horizon_mean": {m: mean_ci(r["horizons"]).to_dict() for m, r in rows.items()},
        "cpu_per_sample_ratio_fp32_over_bf16": round(a["cpu_s"] / b["cpu_s"], 3),
        "cpu_per_step_ratio_fp32_over_bf16": round(
            a["cpu_ms_per_sample_step"] / b["cpu_ms_per_sample_step"], 3
        ),
        "load_avg": os.getloadavg()[0],
    }
    if args.continuation:
        result["continuation"] = continuation(model, logs["bf16"], args)

    table = Table(
        title=f"SmolLM2-135M, fast recipe, {args.stage_budget}/stage, {args.budget}/sample, "
        f"{args.texts} PG-19 texts x {args.seq_len} tokens, batch {args.texts}, {args.threads} thread"
    )
    for col in [
        "text",
        "fp32 horizon",
        "bf16 horizon",
        "bf16 - fp32",
        "fp32 steps",
        "bf16 steps",
        "greedy fp32/bf16",
    ]:
        table.add_column(col, justify="right")
    for i in range(args.texts):
        table.add_row(
            str(i),
            str(a["horizons"][i]),
            str(b["horizons"][i]),
            str(b["horizons"][i] - a["horizons"][i]),
            f"{a['steps_to_horizon'][i]}/{a['steps_spent'][i]}",
            f"{b['steps_to_horizon'][i]}/{b['steps_spent'][i]}",
            f"{a['greedy_exact'][i]}/{b['greedy_exact'][i]}",
        )
    console.print(table)
    summary = Table(title="cost and horizons (means with 95% t intervals)")
    for col in [
        "mode",
        "horizon",
        "CPU s / sample",
        "CPU ms / sample-step",
        "judge rows",
        "rejected",
        "regenerated",
        "judge CPU s",
    ]:
        summary.add_column(col, justify="right")
    for m, r in rows.items():
        j = r["judge"]
        summary.add_row(
            m,
            mean_ci(r["horizons"]).format(),
            str(r["cpu_s_per_sample"]),
            str(r["cpu_ms_per_sample_step"]),
            *(str(j[k]) for k in ("judged", "rejected", "generated", "cpu_s")),
        )
    console.print(summary)
    console.print(
        f"horizon bf16 - fp32: {diff.format('{:+.2f}')}; CPU per sample fp32/bf16 "
        f"{result['cpu_per_sample_ratio_fp32_over_bf16']}x, per sample-step "
        f"{result['cpu_per_step_ratio_fp32_over_bf16']}x"
    )
    for c in result.get("continuation", []):
        console.print(
            f"continuation sample {c['sample']} L={c['stage_seq_len']}: bf16+judge {c['bf16']} | fp32 {c['fp32']}"
        )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
