"""Scale-out: two CPU ranks under torchrun produce the same merged table as one process."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import cramlens as cl
from cramlens.distributed import SHARDS, shard_bounds, workers_for
from cramlens.errors import CramlensError

ROOT = Path(__file__).resolve().parents[1]
ARGS = [
    "--model",
    "tiny-llama",
    "--data",
    "builtin",
    "--samples",
    "6",
    "--seq-len",
    "4",
    "--recipe",
    "fast",
    "--steps-per-stage",
    "60",
    "--max-steps",
    "240",
    "--no-progress",
    "--threads",
    "1",
    "--seed",
    "3",
]


def test_shards_are_contiguous_and_cover_everything():
    for n in range(0, 13):
        for world in (1, 2, 3, 5):
            parts = [shard_bounds(n, r, world) for r in range(world)]
            covered = [i for a, b in parts for i in range(a, b)]
            assert covered == list(range(n))


def test_workers_auto_is_one_per_core_on_a_cpu_one_on_a_gpu_and_resume_keeps_the_started_count(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr("cramlens.distributed.cpu_cores", lambda: 4)
    fresh = tmp_path / "fresh"
    assert workers_for("auto", False, fresh, 10, resume=False) == 4
    assert workers_for("auto", False, fresh, 3, resume=False) == 3  # never more workers than samples
    assert workers_for("auto", True, fresh, 10, resume=False) == 1
    assert workers_for("2", False, fresh, 10, resume=False) == 2
    single = tmp_path / "single"
    single.mkdir()
    (single / "config.json").write_text("{}")
    assert workers_for("auto", False, single, 10, resume=True) == 1  # a one-process run continues as one
    with pytest.raises(CramlensError, match="--workers 1"):
        workers_for("2", False, single, 10, resume=True)
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    (sharded / SHARDS).write_text(json.dumps({"world": 2}))
    assert workers_for("auto", False, sharded, 10, resume=True) == 2
    with pytest.raises(CramlensError, match="--workers 2"):
        workers_for("3", False, sharded, 10, resume=True)
    with pytest.raises(CramlensError, match="auto or a number"):
        workers_for("two", False, fresh, 10, resume=False)
    # a new launch into a run that is there: refused before any worker starts
    for started in (single, sharded):
        with pytest.raises(CramlensError, match="already holds a run; pass --resume"):
            workers_for("auto", False, started, 10, resume=False)
        assert workers_for("2", False, started, 10, resume=False, overwrite=True) == 2
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert workers_for("auto", False, fresh, 10, resume=False) == 1  # inside a worker: never launch again


def _run(cmd: list[str], tmp: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]


@pytest.mark.slow
def test_torchrun_two_ranks_equal_single_process(tmp_path):
    single, multi = tmp_path / "single", tmp_path / "multi"
    _run([sys.executable, "scripts/progressive.py", *ARGS, "--workers", "1", "--out", str(single)], tmp_path)
    assert not (single / SHARDS).exists() and not list(single.glob("rank-*"))
    # --workers 2 relaunches the script under torchrun (the default on a 2-core CPU is --workers auto = 2)
    _run([sys.executable, "scripts/progressive.py", *ARGS, "--workers", "2", "--out", str(multi)], tmp_path)
    assert (multi / "rank-0" / "DONE").exists() and (multi / "rank-1" / "DONE").exists()
    assert json.loads((multi / SHARDS).read_text()) == {"world": 2}
    a, b = cl.load_run(single), cl.load_run(multi)
    assert [s.sample_id for s in b] == list(range(6))
    assert a.horizons() == b.horizons()
    key = lambda r: (r["sample_id"], r["stage_index"])  # noqa: E731
    ra, rb = sorted(a.rows, key=key), sorted(b.rows, key=key)
    assert [(r["sample_id"], r["stage_seq_len"], r["steps_taken"], r["text_id"]) for r in ra] == [
        (r["sample_id"], r["stage_seq_len"], r["steps_taken"], r["text_id"]) for r in rb
    ]
    for x, y in zip(ra, rb, strict=True):
        assert torch.equal(x["embedding"], y["embedding"])
    merged = json.loads((multi / "samples.json").read_text())
    assert [m["horizon"] for m in merged] == a.horizons()
    assert (multi / "table" / "dataset_info.json").exists()

    # rank 1 "died" (its directory is gone): relaunching with --resume redoes only its samples
    before = (multi / "rank-0" / "rows.jsonl").read_text()
    import shutil

    shutil.rmtree(multi / "rank-1")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    _run([*torchrun, "scripts/progressive.py", *ARGS, "--out", str(multi), "--resume"], tmp_path)
    assert (multi / "rank-0" / "rows.jsonl").read_text() == before
    assert cl.load_run(multi).horizons() == a.horizons()


def test_overwrite_with_workers_clears_the_old_run_before_the_launch(tmp_path, monkeypatch):
    from cramlens.cli import became_workers

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    old = tmp_path / "run"
    (old / "rank-0").mkdir(parents=True)
    (old / SHARDS).write_text(json.dumps({"world": 2}))
    (old / "rank-0" / "rows.jsonl").write_text('{"sample_id": 0}\n')
    seen = []
    monkeypatch.setattr(
        "cramlens.distributed.run_as_workers", lambda script, argv, n: seen.append((n, old.exists())) or 0
    )
    a = argparse.Namespace(workers="2", device="cpu", out=str(old), resume=False, overwrite=True)
    assert became_workers(a, "scripts/progressive.py", [], 10)
    assert seen == [(2, False)]  # the workers started on an empty --out, not beside the old ranks' rows
    a = argparse.Namespace(workers="2", device="cpu", out=str(old), resume=False, overwrite=False)
    old.mkdir()
    (old / "config.json").write_text("{}")
    with pytest.raises(CramlensError, match="already holds a run"):
        became_workers(a, "scripts/progressive.py", [], 10)
    assert seen == [(2, False)]
