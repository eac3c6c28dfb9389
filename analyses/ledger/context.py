"""What an experiment step of the ledger gets and declares: :class:`StepContext` (model, protocol, its directory,
the other steps' results) and :class:`Step` (its name, what it runs, how much work that is, what it needs first)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from transformer_lens import HookedTransformer

from cramlens.errors import check

from .protocols import Protocol

RESULT = "step.json"  # a step's result; its presence means the step is finished


@dataclass(frozen=True)
class Work:
    """Optimisation work of a step, for the plan: ``iterations`` (batched steps) and ``token_steps`` (samples ×
    tokens × steps; a forward-only evaluation counts a third of a step)."""

    iterations: float
    token_steps: float

    def __add__(self, other: Work) -> Work:
        return Work(self.iterations + other.iterations, self.token_steps + other.token_steps)


@dataclass(frozen=True)
class ModelInfo:
    """What the plan and the cross-model comparison need to know about a model."""

    name: str
    n_layers: int
    d_model: int
    d_vocab: int
    n_params: int
    adds_bos: bool
    description: str = ""

    @classmethod
    def of(cls, model: HookedTransformer, name: str) -> ModelInfo:
        from cramlens.models import available_models

        cfg = model.cfg
        return cls(
            name,
            cfg.n_layers,
            cfg.d_model,
            cfg.d_vocab,
            int(sum(p.numel() for p in model.parameters())),
            bool(cfg.default_prepend_bos),
            available_models().get(name, ""),
        )


@dataclass
class StepContext:
    """One model's run of the ledger: the model, the protocol, ``root`` = ``<out>/<model>``, logging and live tables."""

    model: HookedTransformer
    model_name: str
    protocol: Protocol
    root: Path
    log: Callable[[str], None] = print
    console: Console | None = None  # a live table while cramming when given

    def step_dir(self, step: str) -> Path:
        return self.root / step

    def result(self, step: str) -> dict:
        """The finished result of another step (a step's ``needs`` run first)."""
        path = self.step_dir(step) / RESULT
        check(
            path.exists(),
            f"step {step!r} has not finished for {self.model_name}; run it first (--only {step})",
        )
        return json.loads(path.read_text())

    def data_source(self) -> str:
        """The protocol's text source: ``pg19`` is ../shared/data/pg19 when present, else the built-in texts."""
        from cramlens.cli import default_data

        return default_data() if self.protocol.data == "pg19" else self.protocol.data

    def texts(self, n: int, seq_len: int, source: str | None = None, seed: int = 0) -> list:
        from cramlens.texts import load_texts

        return load_texts(source or self.data_source(), self.model.tokenizer, n, seq_len, seed=seed)

    @contextlib.contextmanager
    def progress(self, title: str) -> Iterator[object | None]:
        """A live per-sample table (``cramlens.report.LiveProgress``) while a cramming call runs, or ``None``."""
        if self.console is None:
            yield None
            return
        from cramlens.report import LiveProgress

        with LiveProgress(self.console, title=f"{self.model_name}: {title}") as live:
            yield live


@dataclass(frozen=True)
class Step:
    """One experiment of the ledger. ``run`` returns its JSON-ready result (written to ``<step>/step.json``);
    ``reads`` names the protocol fields it uses itself (its ``needs`` add theirs), so a finished step is checked
    against the sizes it was run with, not against the whole protocol."""

    name: str
    what: str
    run: Callable[[StepContext], dict]
    work: Callable[[Protocol, ModelInfo], Work]
    needs: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
