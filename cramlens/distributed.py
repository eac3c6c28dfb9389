"""Sample-parallel scale-out under ``torchrun`` / ``accelerate launch``.

Cramming is independent per sample, so each rank takes a contiguous shard of the samples (global sample ids are
kept), writes its own run directory ``<out>/rank-<r>/`` (resumable on its own), marks it done, and rank 0 merges
every rank's rows into ``<out>/`` once all are done. A rank that dies loses only its unfinished samples: rerun
the same launch with ``--resume``. The launchers' environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``)
is all that is read; there is no home-made process pool.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import CramlensError, check
from .runs import atomic_write_text, existing_run

#: ``--workers auto``: one single-thread worker process per CPU core. Measured on SmolLM2-135M, 2 cores
#: (benchmarks/bench_cores.py, docs/notebook.md): two 1-thread workers did 1.19-1.34x the sample-steps per second
#: of one 2-thread process at the same total batch, because small matmuls split across threads poorly.
AUTO = "auto"
SHARDS = "shards.json"  # written by rank 0 of a sharded run: how many workers it was started with


def cpu_cores() -> int:
    """Cores this process may run on (its affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def launched_as_worker() -> bool:
    """True inside a torchrun / accelerate worker (the launcher sets ``WORLD_SIZE``)."""
    return "WORLD_SIZE" in os.environ


def workers_for(
    requested: str | int,
    on_gpu: bool,
    out: str | os.PathLike,
    n_samples: int,
    resume: bool,
    overwrite: bool = False,
) -> int:
    """How many worker processes a script runs as: ``requested`` (a number, or ``auto``: one per CPU core on a
    CPU, one on a GPU), never more than the samples, and on ``resume`` as many as the run in ``out`` was
    started with (its ``rank-*`` directories; one for a run written by a single process)."""
    if launched_as_worker():
        return 1  # already one of the workers: the launcher decided
    root = Path(out)
    ranks = json.loads((root / SHARDS).read_text())["world"] if (root / SHARDS).exists() else 0
    started = ranks or (1 if (root / "config.json").exists() else 0)
    # Checked here, before any launch: workers write rank-<r>/ directories, so their own check on <out> would
    # not see a run that is already there and would start a second one beside it.
    if started and not resume and not overwrite:
        raise existing_run(root)
    if str(requested) == AUTO:
        n = started if resume and started else (1 if on_gpu else cpu_cores())
    else:
        check(
            str(requested).isdigit() and int(requested) >= 1,
            f"--workers {requested}: use auto or a number >= 1",
        )
        n = int(requested)
        if resume and started and min(n, n_samples) != started:
            how = "one process" if ranks == 0 else f"{started} workers"
            raise CramlensError(
                f"{out} was started as {how}; resume it with --workers {started if ranks else 1} (or --workers auto)"
            )
    return max(1, min(n, n_samples))


def run_as_workers(script: str | os.PathLike, argv: list[str], workers: int) -> int:
    """Run ``script argv`` as ``workers`` torchrun processes on this machine (each takes a shard of the samples,
    :func:`shard_context`); returns their exit code."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={workers}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cpu_cores() // workers))}
    return subprocess.call([*cmd, str(script), *argv], env=env)


def rank_and_world() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def use_worker_threads(world: int) -> None:
    """Give this worker its share of the cores: the cores divided by the workers on this machine."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))


def wait_for_files(paths: list[Path], timeout_s: float, poll_s: float = 0.5) -> None:
    """Block until every file in ``paths`` exists: how a rank waits for the others (torchrun stops every rank when
    one fails, so this only times out when a rank hangs)."""
    deadline = time.time() + timeout_s
    missing = [p for p in paths if not p.exists()]
    while missing:
        check(time.time() < deadline, f"the other ranks did not finish in time: {[str(p) for p in missing]}")
        time.sleep(poll_s)
        missing = [p for p in missing if not p.exists()]


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """Contiguous, deterministic shard ``[start, end)`` of ``n`` samples for ``rank`` of ``world``."""
    per = -(-n // world)
    return min(n, rank * per), min(n, (rank + 1) * per)


@dataclass
class Shard:
    rank: int
    world: int
    root: Path
    start: int
    end: int
    wait_timeout_s: float = 7 * 24 * 3600.0

    @property
    def out(self) -> Path:
        return self.root if self.world == 1 else self.root / f"rank-{self.rank}"

    @property
    def first_id(self) -> int:
        return self.start

    @property
    def is_main_display(self) -> bool:
        return self.rank == 0

    def select(self, items: list) -> list:
        return items[self.start : self.end]

    def finish(self, run, model=None):
        """Mark this rank done; on rank 0 wait for all ranks and return the merged run (others return None)."""
        if self.world == 1:
            return run
        (self.out / "DONE").write_text(json.dumps({"rank": self.rank, "samples": self.end - self.start}))
        if self.rank != 0:
            return None
        dirs = [self.root / f"rank-{r}" for r in range(self.world)]
        wait_for_files([d / "DONE" for d in dirs], self.wait_timeout_s)
        return merge_runs(dirs, self.root, model)


@contextmanager
def shard_context(out: str | os.PathLike, n_samples: int):
    """The shard of this process (the whole run when not launched by torchrun/accelerate)."""
    rank, world = rank_and_world()
    if world > 1:
        use_worker_threads(world)
    start, end = shard_bounds(n_samples, rank, world)
    if world > 1 and rank == 0:
        Path(out).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(out) / SHARDS, json.dumps({"world": world}))
    yield Shard(rank, world, Path(out), start, end)


def merge_runs(dirs: list[Path], out: Path, model=None):
    """Concatenate the rows of per-rank run directories into one run directory ``out``."""
    from .cramming import finalize_run
    from .loading_runs import load_run
    from .results import CramRun
    from .runs import CONFIG, RunDir, read_config

    rows, samples = [], []
    for d in dirs:
        if not (d / "rows.jsonl").exists():
            continue  # a rank with no samples
        part = load_run(d, model)  # per-sample numbers from the one summary; greedy fields from samples.json
        rows += part.rows
        samples += part.samples
    config = read_config(dirs[0])
    config["settings"]["samples"] = [s.text_id for s in samples]
    config["settings"]["world_size"] = len(dirs)
    atomic_write_text(out / CONFIG, json.dumps(config, indent=2, default=str))
    run = RunDir(out)
    run.replace_rows(rows)
    result = CramRun(config["settings"]["kind"], samples, run.rows, config, out)
    finalize_run(run, result)
    return result
