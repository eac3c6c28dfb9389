"""Run the ledger: plan every model's steps, run the unfinished ones resumably, build and write the ledger.

Output directory::

    out/
      ledger.md  ledger.json  ledger.html (+ .png with a browser)
      <model>/
        protocol.json  model.json       the protocol of the latest run, the model
        <step>/step.json                a finished step's result and the sizes it was run with (written
                                        atomically; present = skipped on rerun, refused if the sizes changed)
        <step>/...                      the run directories of the library calls behind it (they resume)

A kill at any moment loses at most the work since the last checkpoint of the cramming call in progress; rerunning
the same command skips finished steps and resumes the unfinished one through its run directories.

Launched as several worker processes (``scripts/reproduce.py --workers``, torchrun), each rank runs its share of
the step groups (:mod:`analyses.ledger.workers`); rank 0 prints the plan, waits for the other ranks' results and
writes the ledger. Steps are self-contained, so a run may be resumed with another number of workers.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from transformer_lens import HookedTransformer

from cramlens.distributed import rank_and_world, use_worker_threads, wait_for_files
from cramlens.errors import check
from cramlens.runs import atomic_write_text

from .context import RESULT, ModelInfo, Step, StepContext
from .ledger import Ledger, build_ledger
from .plan import hours, measure_step_cost, plan, plan_table
from .protocols import Protocol, get_protocol
from .steps import BY_NAME, select, sizes_of
from .workers import assign_steps, steps_of

Loader = Callable[[str], HookedTransformer]


def default_loader(name: str) -> HookedTransformer:
    """The registry model on the fast path (what the scripts load)."""
    import cramlens

    return cramlens.optimize(cramlens.load_model(name))


def model_dir(out: Path, name: str) -> Path:
    return out / Path(name).name  # a local model directory contributes its last component


def _json_default(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def _as_json(protocol: Protocol) -> dict:
    return json.loads(json.dumps(protocol.to_dict()))


def claim_directory(root: Path, protocol: Protocol, info: ModelInfo) -> None:
    """Mark ``root`` as this protocol's run of this model. Each finished step must have been run with the sizes
    this protocol gives it (:func:`~analyses.ledger.steps.sizes_of`), so a protocol can change the sizes of
    steps that have not run without invalidating those that have."""
    path = root / "protocol.json"
    before = json.loads(path.read_text()) if path.exists() else None
    want = _as_json(protocol)
    for result_path in sorted(root.glob(f"*/{RESULT}")):
        name = result_path.parent.name
        if name not in BY_NAME:
            continue
        result = json.loads(result_path.read_text())
        if "sizes" not in result and before is not None:  # written before steps recorded their sizes
            result["sizes"] = sizes_of(name, before)
            atomic_write_text(result_path, json.dumps(result))
        have, need = result.get("sizes", {}), sizes_of(name, want)
        differ = [k for k in need if have.get(k) != need[k]]
        check(
            not differ,
            f"{result_path.parent} was run with other {', '.join(differ)} sizes than protocol "
            f"{protocol.name!r} gives it; delete that directory to rerun the step with these, or use another --out",
        )
    atomic_write_text(path, json.dumps(want, indent=1))
    atomic_write_text(root / "model.json", json.dumps(info.__dict__, indent=1))


def models_in(out: Path, protocol: Protocol, models: Sequence[str]) -> dict[str, tuple[ModelInfo, dict]]:
    """The models of this run and those run earlier into ``out`` with the same protocol, smallest first, so a
    ledger built one model at a time (over days) keeps every model's rows and their comparison."""
    roots = {model_dir(out, name) for name in models}  # claim_directory has written their protocol and model
    roots |= {
        p.parent
        for p in out.glob("*/protocol.json")
        if (p.parent / "model.json").exists() and json.loads(p.read_text()).get("name") == protocol.name
    }
    found = [
        (ModelInfo(**json.loads((root / "model.json").read_text())), load_results(root)) for root in roots
    ]
    return {info.name: (info, res) for info, res in sorted(found, key=lambda x: (x[0].n_params, x[0].name))}


def run_steps(ctx: StepContext, steps: Sequence[Step], expected: dict[str, float] | None = None) -> None:
    """Run each unfinished step and write its result atomically; finished ones are skipped."""
    for i, step in enumerate(steps, 1):
        path = ctx.step_dir(step.name) / RESULT
        head = f"[{i}/{len(steps)}] {ctx.model_name} {step.name}"
        if path.exists():
            ctx.log(f"{head}: finished earlier, skipped")
            continue
        exp = f" (expected {hours(expected[step.name])} CPU)" if expected and step.name in expected else ""
        ctx.log(f"{head}: {step.what}{exp}")
        wall, cpu = time.perf_counter(), time.process_time()
        result = step.run(ctx)
        result["sizes"] = sizes_of(step.name, _as_json(ctx.protocol))
        result["elapsed"] = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
        atomic_write_text(path, json.dumps(result, default=_json_default))
        ctx.log(f"{head}: done in {hours(result['elapsed']['wall_s'])}")


def load_results(root: Path) -> dict[str, dict]:
    """Every finished step's result under a model's directory."""
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(root.glob(f"*/{RESULT}"))}


def reproduce(
    models: Sequence[str],
    protocol: str | Protocol,
    out: str | Path,
    only: Sequence[str] | None = None,
    load: Loader = default_loader,
    console: Console | None = None,
    plan_only: bool = False,
    live: bool = True,
    rank: int | None = None,
    world: int | None = None,
) -> Ledger | None:
    """Run every experiment behind the two papers' claims on each model (resumably) and write the ledger.

    ``only``: these steps (and what they need); ``plan_only``: print the plan and write the ledger of what is
    already finished, run nothing; ``live``: live per-sample tables while cramming. ``rank`` / ``world``: this
    worker's share when launched as several processes (default: torchrun's environment; one process otherwise).
    The ledger also keeps the models run earlier into ``out`` with this protocol (:func:`models_in`).
    Returns the ledger (``None`` on ranks other than 0, which only run their steps).
    """
    proto = get_protocol(protocol)
    out = Path(out)
    check(not out.is_file(), f"--out {out} is a file; pass a directory")
    check(len(models) > 0, "give at least one --model")
    console = console or Console()
    steps = select(list(only) if only else None)
    env_rank, env_world = rank_and_world()
    rank, world = (env_rank if rank is None else rank), (env_world if world is None else world)
    if world > 1:
        use_worker_threads(world)
    log = console.log if world == 1 else (lambda msg: console.log(f"worker {rank}: {msg}"))
    expected: dict[str, dict[str, float]] = {}
    infos = []
    for name in models:  # plan every model before running any
        model = load(name)
        info = ModelInfo.of(model, name)
        infos.append((name, info))
        root = model_dir(out, name)
        claim_directory(root, proto, info)
        if rank == 0:  # one plan, printed once; the other workers start right away
            cost = measure_step_cost(model)
            planned = plan(steps, proto, info, cost, root)
            expected[name] = {p.name: p.expected_s for p in planned}
            console.print(plan_table(planned, info, proto, cost))
        del model
    mine = assign_steps(infos, steps, proto, world)[rank]
    if world > 1:
        log("runs " + "; ".join(f"{a.model}: {', '.join(s.name for s in a.steps)}" for a in mine))
    if not plan_only:
        for name in models:
            todo = steps_of(mine, name, steps)
            if not todo:
                continue
            show = console if live and rank == 0 else None
            ctx = StepContext(load(name), name, proto, model_dir(out, name), log, show)
            run_steps(ctx, todo, expected.get(name))
        if rank != 0:
            return None
        results = [model_dir(out, m) / s.name / RESULT for m in models for s in steps]
        if not all(p.exists() for p in results):
            log("waiting for the other workers' steps")
            wait_for_files(results, timeout_s=7 * 24 * 3600.0, poll_s=2.0)
    elif rank != 0:
        return None
    ledger = build_ledger(models_in(out, proto, models), proto, out)
    from .render import write_ledger

    for path in write_ledger(ledger, out):
        console.log(f"wrote {path}")
    return ledger
