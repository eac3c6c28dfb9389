"""Typed result rows and the one function that summarises them per sample.

A :class:`StageRow` is one finished stage of one sample (full cramming: the one stage at the whole length). On
disk (``rows.jsonl``, the ``datasets`` table) it is a dict with the reference-compatible field names
(``final_convergence``, ``steps_taken``, ``num_compression_tokens``, ...); :meth:`StageRow.to_dict` /
:meth:`StageRow.from_dict` convert.

:func:`summarise_rows` is where every per-sample number comes from: the live run, :func:`cramlens.load_run`, the
torchrun merge and the analyses call it, so a horizon or an information gain is computed in one place.

- **Horizon** (progressive): the length of the last stage that passed (0 when none did); with the linear
  schedule the stages before it all passed too. **Horizon** (full cramming): the teacher-forced exact prefix of
  the final stage (``tf_exact_prefix``: targets before the first wrong argmax; the whole text when all are right).
- **Compressed tokens** (the paper's unit): the number of stage rows, the final (failing) stage included: horizon
  + 1 for a linear, step-1 run from ``min_len`` 1 that stopped at a failing stage.
- **Information gain** at the horizon stage (``information_gain_bits``) and at the final stage
  (``information_gain_bits_final``, the paper's table value), both in bits.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch


@dataclass
class StageRow:
    """One stage of one sample, with the field names of the reference's trajectory rows."""

    sample_id: int
    text_id: str
    stage_index: int
    stage_seq_len: int
    text: str
    input_ids: list[int]
    embedding: torch.Tensor
    coefficients: torch.Tensor | None
    final_convergence: float  # teacher-forced accuracy of the stage
    converged: bool
    final_loss: float
    steps_taken: int  # cumulative optimizer steps (LR position)
    steps_spent: int  # all steps spent on the sample so far
    marginal_steps: int  # steps of this stage
    h_lm_bits: float
    h_comp_bits: float
    information_gain_bits: float
    new_token_surprisal_bits: float
    min_margin: float
    reason: str
    final: bool  # the sample's last row
    num_input_tokens: int
    num_compression_tokens: int
    hidden_size: int
    model_checkpoint: str
    dtype: str
    loss_type: str
    convergence_threshold: float
    max_optimization_steps_per_sample: int
    kind: str
    tf_exact_prefix: int | None = None  # targets right before the first wrong argmax (None: older rows)
    seed: int | None = None  # memory-init seed of the sample (None: older rows, the run's ``seed``)
    judge_calls: int | None = None  # fp32 judge forwards of the stage (bf16 search; None: no judge)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> StageRow:
        """A row of ``rows.jsonl`` (extra keys ignored; ``tf_exact_prefix`` may be missing in older runs)."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


@dataclass(frozen=True)
class SampleSummary:
    """Per-sample numbers of a run, from its stage rows alone (no model)."""

    sample_id: int
    text_id: str
    kind: str  # progressive | full
    horizon: int  # tokens (BOS included when the tokenizer adds it)
    compressed_tokens: int  # stage rows, the final (failing) stage included: the paper's unit
    steps: int  # cumulative steps at the horizon stage
    steps_spent: int  # all steps spent on the sample
    information_gain_bits: float  # at the horizon stage (last passing; full: the final stage)
    information_gain_bits_final: float  # at the final stage (the paper's tables)
    h_lm_bits: float  # base-model bits of the horizon stage's prefix
    accuracy_final: float  # teacher-forced accuracy of the final stage
    reason: str  # why the sample stopped ('' when its final stage passed)
    best_stage_index: int  # stage_index of the row whose embedding is the sample's result
    finished: bool  # the final row is marked final (False: an interrupted run)
    seed: int | None = None  # memory-init seed (None: rows written before seeds were recorded)

    def to_dict(self) -> dict:
        return asdict(self)


def full_horizon(row: dict) -> int | None:
    """Full cramming's horizon from its final row: the teacher-forced exact prefix (None when unknown)."""
    if row.get("tf_exact_prefix") is not None:
        return int(row["tf_exact_prefix"])
    if float(row.get("final_convergence", 0.0)) >= 1.0:  # every target right: the whole text
        return int(row["stage_seq_len"])
    return None


def group_rows(rows: list[dict]) -> dict[int, list[dict]]:
    """Rows by ``sample_id`` (sorted), each sample's rows in stage order."""
    by: dict[int, list[dict]] = {}
    for r in rows:
        by.setdefault(int(r["sample_id"]), []).append(r)
    return {sid: sorted(traj, key=lambda r: int(r["stage_index"])) for sid, traj in sorted(by.items())}


def _passed(r: dict) -> bool:
    if "converged" in r:
        return bool(r["converged"])
    return float(r.get("final_convergence", 0.0)) >= float(r.get("convergence_threshold", 1.0))


def summarise_sample(traj: list[dict], kind: str) -> tuple[SampleSummary, dict]:
    """The summary of one sample's stage rows (in stage order) and the row that holds its embedding."""
    passed = [r for r in traj if _passed(r)]
    last = traj[-1]
    if kind == "full":
        best = last
        h = full_horizon(last)
        horizon = 0 if h is None else h  # rows written before tf_exact_prefix: see loading_runs.load_run
    else:
        best = passed[-1] if passed else last
        horizon = int(best["stage_seq_len"]) if passed else 0
    summary = SampleSummary(
        sample_id=int(last["sample_id"]),
        text_id=str(best.get("text_id", last["sample_id"])),
        kind=kind,
        horizon=int(horizon),
        compressed_tokens=len(traj),
        steps=int(best.get("steps_taken", 0) or 0),
        steps_spent=int(last.get("steps_spent", last.get("steps_taken", 0)) or 0),
        information_gain_bits=_num(best.get("information_gain_bits")),
        information_gain_bits_final=_num(last.get("information_gain_bits")),
        h_lm_bits=_num(best.get("h_lm_bits")),
        accuracy_final=_num(last.get("final_convergence")),
        reason=str(last.get("reason", "") or ""),
        best_stage_index=int(best["stage_index"]),
        finished=bool(last.get("final", True)),
        seed=None if last.get("seed") is None else int(last["seed"]),
    )
    return summary, best


def summarise_rows(rows: list[dict], kind: str) -> list[SampleSummary]:
    """Per-sample summaries of a run's stage rows, by ``sample_id``."""
    return [summarise_sample(traj, kind)[0] for traj in group_rows(rows).values()]


def same_summaries(a: list[SampleSummary], b: list[SampleSummary]) -> bool:
    """Equal summaries, NaN equal to NaN (an information gain is NaN when nothing was scored)."""

    def key(s: SampleSummary) -> tuple:
        return tuple("nan" if isinstance(v, float) and math.isnan(v) else v for v in asdict(s).values())

    return [key(s) for s in a] == [key(s) for s in b]


def _num(x) -> float:
    return float("nan") if x is None else float(x)


def samples_from_rows(rows: list[dict], kind: str, layout, model=None) -> list:
    """Per-sample :class:`~cramlens.results.CrammedSample` s of a run's rows (via :func:`summarise_sample`); the
    embedding is the horizon stage's (full cramming: the final one). Greedy fields are left empty."""
    from .results import CrammedSample

    out = []
    for traj in group_rows(rows).values():
        s, best = summarise_sample(traj, kind)
        emb = best["embedding"]
        if not isinstance(emb, torch.Tensor):
            emb = torch.tensor(emb, dtype=torch.float32).reshape(-1, int(best.get("hidden_size") or len(emb)))
        out.append(
            CrammedSample(
                sample_id=s.sample_id,
                text_id=s.text_id,
                text=best.get("text", ""),
                sequence=list(best.get("input_ids") or []),
                embedding=emb,
                horizon=s.horizon,
                steps=s.steps,
                steps_spent=s.steps_spent,
                information_gain_bits=s.information_gain_bits,
                h_lm_bits=s.h_lm_bits,
                accuracy_final=s.accuracy_final,
                reason=s.reason,
                kind=kind,
                model=model,
                layout=layout,
                information_gain_bits_final=s.information_gain_bits_final,
                compressed_tokens=s.compressed_tokens,
                seed=s.seed,
            )
        )
    return out
