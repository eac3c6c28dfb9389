"""Where a figure's inputs are (:class:`Sources`), what a builder returns (:class:`Built`) or raises (:class:`Missing`),
and the commands that make each input (:data:`COMMANDS`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from cramlens import CramRun, load_run
from cramlens.errors import CramlensError

from .tokens import Decode, default_decode

#: The commands that make the inputs ({runs}: where they run); ``analyses.results_export.refresh`` (or
#: ``make_figures.py --refresh-from .``) then copies their summaries into {results}.
PROG6 = (
    "python scripts/progressive.py --recipe paper --samples 6 --seq-len 64 --batch-size 6 --out {runs}/prog6"
)
COMMANDS = {
    "progressive": PROG6,
    "brittleness": PROG6 + " --resume --compare-full",
    "trajectory": "python scripts/trajectory.py --run {runs}/prog6 --figures {runs}/trajectory",
    "diversity": "python scripts/diversity.py run --lrs 0.01 0.1 0.5 --samples 3 --seq-len 32 --root {runs}",
    "probes": "python scripts/probes.py --samples 96 --seq-len 12 --out {runs}/probes_cram --figures {runs}/probes",
    "depth": (
        "python scripts/depth.py --grid smollm2-135m=1,2,4,8,full --samples 5 --seq-len 48 --steps-per-stage 1000 "
        "--max-steps 3000 --out {runs}/capacity; python scripts/depth.py --grid smollm2-135m=4 --scheme first_last "
        "--samples 5 --seq-len 48 --steps-per-stage 1000 --max-steps 3000 --out {runs}/capacity; python "
        "scripts/depth.py --grid gemma-3-270m=1,2,4,full --samples 3 --seq-len 32 --no-finetune --steps-per-stage 500 "
        "--max-steps 1500 --out {runs}/capacity"
    ),
    "capacity": "python scripts/capacity.py --model smollm2-135m --out {runs}/capacity",
    "knockout": "python scripts/knockout.py --direction all --out {runs}/knockout",
    "sink": "python scripts/knockout.py --sink --no-sweep --out {runs}/knockout (per --model)",
    "downstream": "python scripts/downstream.py --task hellaswag --limit 64 --out {runs}/downstream_paper (and "
    "--task arc_easy): the paper's scoring, results/downstream_paper; with --score-from text --out "
    "{runs}/downstream: Kuratov's, results/downstream",
    "mmlu": "python scripts/downstream.py --task mmlu --mode all --out {runs}/downstream",
    "divergence": "python scripts/divergence.py --model smollm2-135m --recipe paper --samples 3 --seq-len 64 "
    "--warm-run results/prog6 --out {runs}/divergence",
    "horizon_spread": "python scripts/progressive.py --recipe paper --samples 6 --seq-len 48 --seeds 0,1,2 "
    "--batch-size 18 --out {runs}/seeds6x3_48; python scripts/horizon_spread.py --run {runs}/seeds6x3_48 "
    "--out {runs}/horizon_spread",
}


class Missing(Exception):
    """An input of a figure is absent; the message says which and how to make it."""


@dataclass
class Built:
    name: str  # file stem
    fig: go.Figure
    data: Any  # what the figure plots
    inputs: list[str] = field(default_factory=list)  # paths it was made from
    note: str = ""


@dataclass
class Sources:
    """Where the inputs are: ``results`` (the committed per-experiment summaries, see
    :mod:`analyses.results_export`), optionally ``runs`` (run directories, looked in first), the progressive run to
    draw (default ``prog6``, else ``demo``, under ``runs`` then ``results``)."""

    runs: Path | None = None
    results: Path = Path("results")
    progressive: Path | None = None
    _runs: dict = field(default_factory=dict, repr=False)
    _tok: dict = field(default_factory=dict, repr=False)

    def fmt(self, command: str) -> str:
        return command.format(runs=self.runs or "runs", results=self.results)

    @property
    def roots(self) -> list[Path]:
        return [Path(self.runs), Path(self.results)] if self.runs is not None else [Path(self.results)]

    def where(self, pattern: str) -> Path:
        """The first root (``runs``, then ``results``) holding a match of ``pattern``; else ``results``."""
        return next((r for r in self.roots if any(r.glob(pattern))), Path(self.results))

    def run(self, path: str | Path, command: str = "") -> CramRun:
        p = Path(path)
        if p not in self._runs:
            if not (p / "config.json").exists() or not (p / "rows.jsonl").exists():
                raise Missing(
                    f"run directory {p} is absent"
                    + (f"; make it with: {self.fmt(command)}" if command else "")
                )
            try:
                self._runs[p] = load_run(p)
            except CramlensError as e:
                raise Missing(f"{p}: {e}") from e
        return self._runs[p]

    def loaded_runs(self) -> dict[Path, CramRun]:
        """The run directories read so far (what the figures were drawn from)."""
        return dict(self._runs)

    def progressive_path(self) -> Path:
        if self.progressive is not None:
            return Path(self.progressive)
        for name in ("prog6", "demo"):
            for root in self.roots:
                if (root / name / "rows.jsonl").exists():
                    return root / name
        return self.roots[0] / "prog6"

    def progressive_run(self) -> tuple[CramRun, Path]:
        p = self.progressive_path()
        run = self.run(p, COMMANDS["progressive"])
        if run.kind != "progressive":
            raise Missing(f"{p} is a {run.kind} run; pass a progressive run directory with --progressive")
        return run, p

    def json(self, rel: str, command: str) -> tuple[dict, Path]:
        return self.json_at(self.where(rel) / rel, command)

    def json_at(self, p: Path, command: str) -> tuple[dict, Path]:
        if not p.exists():
            raise Missing(f"{p} is absent; make it with: {self.fmt(command)}")
        return json.loads(p.read_text()), p

    def decode(self, run: CramRun) -> Decode:
        """Token id → text with the run's model's tokenizer (from the cramlens model cache; ids when unavailable)."""
        name = str(run.config.get("settings", {}).get("model", ""))
        if name not in self._tok:
            self._tok[name] = tokenizer_for(name)
        return default_decode(self._tok[name])


def tokenizer_for(model_name: str):
    """The HF tokenizer of a registry model from the cramlens cache, or of a local model directory; else None."""
    try:
        from transformers import AutoTokenizer

        from cramlens.model_cache import FORMAT_VERSION, cache_dir

        name = (
            "tokenizers/smollm2" if model_name in ("tiny-llama", "tiny-gpt2") else f"{model_name}/tokenizer"
        )
        for d in (cache_dir() / f"v{FORMAT_VERSION}" / name, Path(model_name)):
            if d.is_dir() and ((d / "tokenizer_config.json").exists() or (d / "tokenizer.json").exists()):
                return AutoTokenizer.from_pretrained(str(d))
    except Exception:  # no cache, no transformers tokenizer: the figures show token ids
        return None
    return None
