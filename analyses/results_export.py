"""The committed ``results/`` folder: per-experiment summaries the figures and README are drawn from.

``runs/`` holds what the user runs and is never committed. Each experiment script refreshes its summary here with
one call, ``refresh(<experiment>, <its output directory>)``; ``scripts/make_figures.py`` then draws every figure
from ``results/`` (a fresh clone needs no run). What is kept: a run's ``config.json`` and its rows once
(``rows.jsonl``, embeddings inline where a figure needs them), and the small JSON result files of the analyses;
never ``table/`` (a second store of the rows), ``embeddings.safetensors`` (a third), optimizer state, weights or
sweep logs.

The layout under ``results/`` mirrors the run directories the figure registry reads::

    results/prog6/{config.json,rows.jsonl}              progressive     (scripts/progressive.py)
    results/<name>/brittleness.json                     brittleness     (scripts/progressive.py --compare-full)
    results/trajectory/trajectory.json                  trajectory      (scripts/trajectory.py)
    results/lrsweep_<lr>/{config.json,rows.jsonl}       diversity       (scripts/diversity.py)
    results/probes/probes.json                          probes          (scripts/probes.py)
    results/capacity/<model>/<variant>/result.json      depth           (scripts/depth.py)
    results/capacity/<model>/capacity_samples.json      capacity        (scripts/capacity.py)
    results/knockout/{summary.json,sink_*.json}         knockout        (scripts/knockout.py)
    results/downstream/<task>/{summary.json,config.json} downstream     (scripts/downstream.py --score-from text)
    results/downstream_paper/<task>/...                 downstream      (scripts/downstream.py: the paper's scoring)
    results/divergence/divergence.json                  divergence      (scripts/divergence.py)
    results/horizon_spread/spread.json                  horizon_spread  (scripts/horizon_spread.py)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cramlens.errors import CramlensError
from cramlens.runs import atomic_write_bytes

RESULTS = Path("results")


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dst, src.read_bytes())
    return dst


def _need(paths: list[Path], what: str, run_dir: Path) -> list[Path]:
    if not paths:
        raise CramlensError(f"{run_dir} holds no {what}; nothing to refresh")
    return paths


def _run(run_dir: Path, dst: Path) -> list[Path]:
    """A cram run directory as its config and its rows (nothing else)."""
    _need([p for p in (run_dir / "rows.jsonl",) if p.exists()], "rows.jsonl", run_dir)
    return [_copy(run_dir / f, dst / f) for f in ("config.json", "rows.jsonl")]


def progressive(run_dir: Path, results: Path, name: str | None = None) -> list[Path]:
    return _run(run_dir, results / (name or run_dir.name))


def brittleness(run_dir: Path, results: Path, name: str | None = None) -> list[Path]:
    name = name or run_dir.name
    if name == "demo":  # the demo makes a new run directory each time: a committed input needs a lasting name
        raise CramlensError("name the brittleness result (refresh(..., name=...)): 'demo' is not kept")
    (f,) = _need([p for p in (run_dir / "brittleness.json",) if p.exists()], "brittleness.json", run_dir)
    return [_copy(f, results / name / "brittleness.json")]


def _result_file(filename: str, sub: str) -> Callable[[Path, Path, str | None], list[Path]]:
    def refresh_one(run_dir: Path, results: Path, name: str | None = None) -> list[Path]:
        (f,) = _need([p for p in (run_dir / filename,) if p.exists()], filename, run_dir)
        return [_copy(f, results / (name or sub) / filename)]

    return refresh_one


def diversity(run_dir: Path, results: Path, name: str | None = None) -> list[Path]:
    """``run_dir``: the sweep root holding ``lrsweep_*/`` (or one ``lrsweep_<lr>`` run)."""
    runs = [run_dir] if run_dir.name.startswith("lrsweep_") else sorted(run_dir.glob("lrsweep_*"))
    runs = _need([r for r in runs if (r / "rows.jsonl").exists()], "lrsweep_*/rows.jsonl", run_dir)
    return [p for r in runs for p in _run(r, results / r.name)]


def _capacity_files(run_dir: Path, results: Path, pattern: str, depth: int) -> list[Path]:
    """``run_dir``: the capacity root (``<root>/<model>/...``) or one model's directory under it."""
    files = sorted(run_dir.glob(pattern))
    root = run_dir
    if not files:  # a model directory: one level less
        files, root = sorted(run_dir.glob(pattern.split("/", 1)[1])), run_dir.parent
    _need(files, pattern, run_dir)
    return [
        _copy(f, results / "capacity" / f.relative_to(root))
        for f in files
        if len(f.relative_to(root).parts) == depth
    ]


def depth(run_dir: Path, results: Path, name: str | None = None) -> list[Path]:
    return _capacity_files(run_dir, results, "*/*/result.json", 3)


def capacity(run_dir: Path, results: Path, name: str | None = None) -> list[Path]:
    return _capacity_files(run_dir, results, "*/capacity_samples.json", 2)


def knockout(run_dir: Path, results: Path, name: str | None = None) -> list[Path]:
    files = [run_dir / "summary.json", *sorted(run_dir.glob("sink_*.json"))]
    files = _need([f for f in files if f.exists()], "summary.json or sink_*.json", run_dir)
    return [_copy(f, results / (name or run_dir.name) / f.name) for f in files]


def downstream(run_dir: Path, results: Path, name: str | None = None) -> list[Path]:
    """``run_dir``: the downstream root (``<root>/<task>/summary.json``) or one task's directory; the task's
    summary and the config of one of its crams (the model it was crammed with) are kept, not the crams, under
    ``results/<name>/<task>/`` (default ``downstream``)."""
    tasks = (
        [run_dir]
        if (run_dir / "summary.json").exists()
        else sorted(p.parent for p in run_dir.glob("*/summary.json"))
    )
    out = []
    for t in _need(tasks, "summary.json", run_dir):
        dst = results / (name or "downstream") / t.name
        out.append(_copy(t / "summary.json", dst / "summary.json"))
        cfg = next(iter(sorted(t.glob("crams/**/config.json"))), t / "config.json")
        if cfg.exists():
            out.append(_copy(cfg, dst / "config.json"))
    return out


EXPERIMENTS: dict[str, Callable[[Path, Path, str | None], list[Path]]] = {
    "progressive": progressive,
    "brittleness": brittleness,
    "trajectory": _result_file("trajectory.json", "trajectory"),
    "diversity": diversity,
    "probes": _result_file("probes.json", "probes"),
    "depth": depth,
    "capacity": capacity,
    "knockout": knockout,
    "downstream": downstream,
    "divergence": _result_file("divergence.json", "divergence"),
    "horizon_spread": _result_file("spread.json", "horizon_spread"),
}


def refresh(
    experiment: str, run_dir: str | Path, results_dir: str | Path = RESULTS, name: str | None = None
) -> list[Path]:
    """Copy what the figures need from ``run_dir`` (an experiment script's output) into ``results_dir``; returns
    the files written. ``name`` overrides the directory name under ``results_dir`` where one is used."""
    if experiment not in EXPERIMENTS:
        raise CramlensError(f"unknown experiment {experiment!r}; known: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[experiment](Path(run_dir), Path(results_dir), name)


#: Where the runs of the published figures were (``runs/`` + the analyses' ``figures/<analysis>/`` result files).
PUBLISHED = [
    ("progressive", "runs/prog6", None),
    ("brittleness", "runs/demo", "prog3_len24"),
    ("trajectory", "figures/trajectory", None),
    ("diversity", "runs", None),
    ("probes", "figures/probes", None),
    ("depth", "runs/capacity", None),
    ("capacity", "runs/capacity", None),
    ("knockout", "runs/knockout", None),
    ("downstream", "runs/downstream", None),
    ("downstream", "runs/downstream_paper", "downstream_paper"),
    ("divergence", "runs/divergence", None),
    ("horizon_spread", "runs/horizon_spread", None),
]


def refresh_all(root: str | Path = ".", results_dir: str | Path = RESULTS, plan=PUBLISHED) -> list[Path]:
    """Every published experiment from its run directory under ``root`` (skips those absent, with a line)."""
    out = []
    for exp, rel, name in plan:
        try:
            out += refresh(exp, Path(root) / rel, results_dir, name)
        except CramlensError as e:
            print(f"skip {exp}: {e}")
    return out


def size(results_dir: str | Path = RESULTS) -> int:
    return sum(p.stat().st_size for p in Path(results_dir).rglob("*") if p.is_file())


__all__ = ["EXPERIMENTS", "refresh", "refresh_all", "size"]
