"""What a cramming run gives back: per-sample results you can generate from, score and hook with."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .hooks import HookSet, inject
from .layout import Layout


@dataclass
class CrammedSample:
    """One crammed text: its final embedding, horizon and numbers. ``.generate()``, ``.accuracy()``, ``.hooks()``."""

    sample_id: int
    text_id: str
    text: str
    sequence: list[int]  # tokens after the memory ([BOS?] + x), what lengths count
    embedding: torch.Tensor  # [m, d]: the last embedding that passed (progressive) / the final one (full)
    horizon: int  # longest prefix of `sequence` reconstructed exactly (tokens, incl. BOS when present)
    steps: int  # cumulative optimizer steps to reach it
    steps_spent: int  # all steps spent on the sample (incl. the failing stage)
    information_gain_bits: float  # at the horizon
    h_lm_bits: float  # base-model bits of the horizon prefix (t_1..)
    accuracy_final: float  # teacher-forced accuracy of the last measured stage
    greedy_exact: bool | None = None
    greedy_match: float | None = None
    first_mismatch: int | None = None
    reason: str = ""
    kind: str = "progressive"  # "full": generate()/accuracy() default to the whole text, not the horizon
    model: object | None = field(default=None, repr=False, compare=False)
    layout: Layout = field(default_factory=Layout, repr=False)
    information_gain_bits_final: float = float("nan")  # at the final (failing) stage: the paper's tables
    compressed_tokens: int = 0  # stage rows incl. the final one: the paper's unit (horizon + 1, step 1)
    seed: int | None = None  # memory-init seed (a run with --seeds holds several per text)

    @property
    def target(self) -> list[int]:
        return self.sequence[: self.horizon]

    def hooks(self) -> HookSet:
        """The injection hook set of this embedding (use with ``run_with_hooks`` / ``run_with_cache``)."""
        return inject(self.embedding.to(self._model().cfg.device)[None], self.input_mem_positions())

    def input_mem_positions(self) -> list[int]:
        p0 = len(self.layout.prefix(self._model()))
        return list(range(p0, p0 + self.layout.n_mem))

    def tokens(self, n: int | None = None) -> torch.Tensor:
        """Input ids ``[1, T]`` (placeholders at the memory) for the first ``n`` tokens of the sequence."""
        from .layout import placeholder_id

        n = self.horizon if n is None else n
        ids = (
            self.layout.prefix(self._model())
            + [placeholder_id(self._model())] * self.layout.n_mem
            + self.sequence[:n]
        )
        return torch.tensor([ids], device=self._model().cfg.device)

    def generate(self, n_tokens: int | None = None, as_text: bool = True):
        """Greedy generation from the memory alone through the KV cache (default length: the horizon; the whole text
        for full cramming). Under Kuratov's scoring the first token is given, not generated."""
        from .generation import generate, given_count

        model = self._model()
        n = self._default_length() if n_tokens is None else n_tokens
        k = min(given_count(model, self.layout), n)
        given = self.sequence[:k]
        mem = self.embedding.to(model.cfg.device)[None]
        ids = given + generate(model, mem, n - k, self.layout, given=given).ids
        return model.tokenizer.decode(ids) if as_text else ids

    def accuracy(self, n_tokens: int | None = None) -> float:
        """Teacher-forced accuracy on the first ``n_tokens`` tokens (default: the horizon; the whole text for full)."""
        from .metrics import teacher_forced_accuracy

        model = self._model()
        n = max(1, self._default_length() if n_tokens is None else n_tokens)
        mem = self.embedding.to(model.cfg.device)[None]
        return float(teacher_forced_accuracy(model, mem, [self.sequence], self.layout, [n])[0])

    def _default_length(self) -> int:
        return len(self.sequence) if self.kind == "full" else self.horizon

    def _model(self):
        if self.model is None:
            raise RuntimeError("this sample has no model attached; use run.attach(model)")
        return self.model

    def __repr__(self) -> str:
        ig = f"{self.information_gain_bits:.1f}" if math.isfinite(self.information_gain_bits) else "nan"
        greedy = (
            "" if self.greedy_exact is None else f", greedy {'exact' if self.greedy_exact else 'MISMATCH'}"
        )
        preview = self.text[:40].replace("\n", " ")
        return (
            f"CrammedSample(#{self.sample_id} {self.text_id!r}: horizon {self.horizon}/{len(self.sequence)} tokens, "
            f"{self.steps} steps, IG {ig} bits{greedy}, text {preview!r}…)"
        )


@dataclass
class CramRun:
    """All samples of a run, the raw rows (one per stage for progressive), settings and where they are saved."""

    kind: str  # "progressive" | "full"
    samples: list[CrammedSample]
    rows: list[dict]
    config: dict
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> CrammedSample:
        return self.samples[i]

    def __iter__(self):
        return iter(self.samples)

    def attach(self, model) -> CramRun:
        for s in self.samples:
            s.model = model
        return self

    def horizons(self) -> list[int]:
        return [s.horizon for s in self.samples]

    def summaries(self) -> list:
        """Per-sample :class:`~cramlens.rows.SampleSummary` of the rows (the one summarising function)."""
        from .rows import summarise_rows

        return summarise_rows(self.rows, self.kind)

    @property
    def spec(self):
        """The :class:`~cramlens.spec.CramSpec` of the run (from its ``config.json`` settings)."""
        from .spec import CramSpec

        return CramSpec.from_dict(self.config.get("settings", {}))

    def embeddings(self) -> torch.Tensor:
        return torch.stack([s.embedding for s in self.samples])

    def trajectory(self, sample_id: int) -> list[dict]:
        """The stage rows of one sample, in order."""
        return sorted((r for r in self.rows if r["sample_id"] == sample_id), key=lambda r: r["stage_index"])

    def summary(self) -> dict:
        hs = [s.horizon for s in self.samples]
        from .stats import hierarchical_mean_ci, mean_ci

        texts = {s.text_id for s in self.samples}
        repeated = len(texts) < len(self.samples)

        def mean(attr: str):
            """Student-t over samples; with several seeds per text, the mean over texts of per-text means with a
            two-stage (texts, then seeds) bootstrap interval, n = texts."""
            if not repeated:
                return mean_ci([getattr(s, attr) for s in self.samples])
            by: dict[str, list[float]] = {}
            for s in self.samples:
                by.setdefault(s.text_id, []).append(getattr(s, attr))
            return hierarchical_mean_ci(by)

        return {
            "samples": len(hs),
            "texts": len(texts),
            # means with n and a 95% interval, in our unit and the paper's (cramlens.stats.MeanCI)
            "horizon": mean("horizon"),
            "compressed_tokens": mean("compressed_tokens"),
            "ig_bits": mean("information_gain_bits"),
            "ig_final_bits": mean("information_gain_bits_final"),
            "steps": mean("steps"),
            "horizon_min": min(hs, default=0),
            "horizon_max": max(hs, default=0),
            "greedy_exact_rate": _mean([s.greedy_exact for s in self.samples if s.greedy_exact is not None]),
        }

    def __repr__(self) -> str:
        s = self.summary()
        where = f" at {self.path}" if self.path else ""
        return (
            f"CramRun({self.kind}, {s['samples']} samples, horizon mean {s['horizon'].mean:.1f} "
            f"[{s['horizon_min']}..{s['horizon_max']}], IG mean {s['ig_bits'].mean:.1f} bits, "
            f"{s['steps'].mean:.0f} steps/sample{where})"
        )

    def _repr_pretty_(self, p, cycle: bool) -> None:
        """IPython: the one-line summary, then one line per sample (the first ``_SHOWN``)."""
        if cycle:
            p.text("CramRun(...)")
            return
        p.text(repr(self))
        for s in self.samples[:_SHOWN]:
            p.break_()
            p.text("  " + _sample_line(s))
        if len(self.samples) > _SHOWN:
            p.break_()
            p.text(f"  … {len(self.samples) - _SHOWN} more (run.samples)")

    def _repr_html_(self) -> str:
        """Jupyter: the summary and a table of the samples."""
        from html import escape

        head = "".join(f"<th>{c}</th>" for c in ("#", "text", "horizon", "of", "steps", "IG bits", "greedy"))
        body = "".join(
            f"<tr><td>{s.sample_id}</td><td>{escape(s.text_id)}</td><td>{s.horizon}</td><td>{len(s.sequence)}</td>"
            f"<td>{s.steps}</td><td>{_bits(s.information_gain_bits)}</td><td>{_greedy(s) or '–'}</td></tr>"
            for s in self.samples[:_SHOWN]
        )
        more = f"<p>… {len(self.samples) - _SHOWN} more</p>" if len(self.samples) > _SHOWN else ""
        return f"<p><code>{escape(repr(self))}</code></p><table><tr>{head}</tr>{body}</table>{more}"


_SHOWN = 12


def _bits(x: float) -> str:
    return f"{x:.1f}" if math.isfinite(x) else "nan"


def _greedy(s: CrammedSample) -> str:
    return "" if s.greedy_exact is None else ("greedy exact" if s.greedy_exact else "greedy MISMATCH")


def _sample_line(s: CrammedSample) -> str:
    greedy = _greedy(s)
    preview = s.text[:32].replace("\n", " ")
    return (
        f"#{s.sample_id} {s.text_id}: horizon {s.horizon}/{len(s.sequence)}, {s.steps} steps, "
        f"IG {_bits(s.information_gain_bits)} bits{', ' + greedy if greedy else ''}, {preview!r}…"
    )


def _mean(xs: Sequence) -> float | None:
    xs = [float(x) for x in xs]
    return sum(xs) / len(xs) if xs else None
