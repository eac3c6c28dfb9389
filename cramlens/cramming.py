"""Library entry points: ``progressive_cram`` (the paper's method) and ``cram`` (full cramming).

Both take a model, texts (``TextSample``s, strings or token-id lists) and a :class:`~cramlens.spec.CramSpec`
(or keyword settings that build one: ``progressive_cram(model, texts, recipe="paper", batch_size=4)``), run batches
through :class:`cramlens.engine.CramLoop` (:func:`cramlens.batches.run_loops`), write a run directory when ``out``
is given (resumable), and return a :class:`cramlens.results.CramRun` whose samples come from
:func:`cramlens.rows.samples_from_rows`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from transformer_lens import HookedTransformer

from .batches import RunOptions, run_config, run_loops
from .errors import CramlensError, check
from .hooks import EMPTY, HookSet
from .layout import Layout
from .metrics import greedy_reconstruction
from .prepare import Prepared, prepare_texts, repeat_over_seeds
from .results import CrammedSample, CramRun
from .rows import samples_from_rows
from .runs import RunDir
from .spec import CramSpec, build_spec

__all__ = ["CramSpec", "Prepared", "cram", "finalize_run", "prepare_texts", "progressive_cram", "summarise"]


def summarise(
    model: HookedTransformer,
    prepared: list[Prepared],
    rows: list[dict],
    kind: str,
    layout: Layout,
    check_greedy: bool = True,
) -> list[CrammedSample]:
    """Per-sample results of ``prepared`` from the rows; greedy-decode each horizon prefix from its embedding."""
    ids = {p.sample_id for p in prepared}
    by_id = {
        s.sample_id: s
        for s in samples_from_rows([r for r in rows if r["sample_id"] in ids], kind, layout, model)
    }
    out = []
    for p in prepared:
        check(
            p.sample_id in by_id,
            f"sample {p.text_id!r} has no rows; the run is incomplete, rerun with --resume",
        )
        s = by_id[p.sample_id]
        if check_greedy:
            n = len(p.sequence) if kind == "full" else s.horizon
            if n > 0:
                emb = s.embedding.to(model.cfg.device)[None]
                g = greedy_reconstruction(model, emb, [p.sequence[:n]], layout)[0]
                s.greedy_exact, s.greedy_match, s.first_mismatch = g.exact, g.match, g.first_mismatch
        out.append(s)
    return out


def _execute(
    kind: str, model, prepared: list[Prepared], spec: CramSpec, opts: RunOptions, check_greedy: bool
):
    config = run_config(kind, model, prepared, spec)
    rows, run = run_loops(model, prepared, spec, config, opts)
    samples = summarise(model, prepared, rows, kind, spec.layout, check_greedy)
    result = CramRun(kind, samples, rows, config, run.path if run else None)
    if run is not None:
        finalize_run(run, result)
    return result


def _run_options(overrides: dict, **given) -> tuple[RunOptions, bool]:
    """Pop the run options that travel among the keyword overrides (``check_greedy``, ``pca_basis``)."""
    check_greedy = overrides.pop("check_greedy", True)
    return RunOptions(pca_basis=overrides.pop("pca_basis", None), **given), bool(check_greedy)


def progressive_cram(
    model: HookedTransformer,
    texts: Sequence,
    spec: CramSpec | None = None,
    *,
    seq_len: int | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress=None,
    hooks: HookSet = EMPTY,
    first_id: int = 0,
    **overrides,
) -> CramRun:
    """Progressive cramming (REFERENCE A.2): grow the target one ``step`` at a time, warm-starting every stage.

    Each sample stops at the first stage it cannot pass within ``recipe.steps_per_stage`` steps (or once its
    ``steps_per_sample`` budget is spent); its horizon is the longest prefix whose stages all passed.
    ``schedule="geometric"`` doubles the length and bisects with warm restore instead.

    ``overrides``: :class:`CramSpec` fields (``recipe`` as a preset name or a :class:`Recipe`, ``layout``,
    ``batch_size``, ``min_len``, ``step``, ``schedule``, ``parametrization``, ``low_dim``, ``shared_projection``,
    ``seed``, ``seeds`` (each text once per init seed), ``init_perturbation``), :class:`Recipe` fields (``lr``,
    ``steps_per_stage``, ...), and the run options ``check_greedy``
    (greedy-decode each horizon, default True) and ``pca_basis`` (``(components, mean)`` for ``pca``).
    """
    opts, check_greedy = _run_options(
        overrides, out=out, resume=resume, overwrite=overwrite, progress=progress, hooks=hooks
    )
    sp = build_spec(spec, overrides)
    check(
        sp.layout.score_from == "memory" or sp.min_len >= 2,
        "score_from='text' scores nothing at length 1; use --min-len 2",
    )
    prepared = repeat_over_seeds(prepare_texts(model, texts, sp.layout, seq_len, first_id), sp.seeds)
    return _execute("progressive", model, prepared, sp, opts, check_greedy)


def cram(
    model: HookedTransformer,
    texts: Sequence,
    spec: CramSpec | None = None,
    *,
    seq_len: int | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress=None,
    hooks: HookSet = EMPTY,
    first_id: int = 0,
    **overrides,
) -> CramRun:
    """Full cramming: optimise each memory on its whole text until teacher-forced accuracy reaches the threshold.

    A converged sample stops changing (no weight-decay or momentum drift) while the rest of its batch goes on.
    ``overrides`` as in :func:`progressive_cram`, plus ``max_steps`` (the per-sample budget,
    ``recipe.steps_per_sample``); the stage schedule of the spec does not apply (one stage, the whole text).
    """
    opts, check_greedy = _run_options(
        overrides, out=out, resume=resume, overwrite=overwrite, progress=progress, hooks=hooks
    )
    max_steps = overrides.pop("max_steps", None)
    sp = build_spec(spec, overrides)
    rc = sp.recipe.with_(steps_per_sample=max_steps)
    rc = rc.with_(steps_per_stage=rc.steps_per_sample)
    prepared = repeat_over_seeds(prepare_texts(model, texts, sp.layout, seq_len, first_id), sp.seeds)
    lengths = [len(p.sequence) for p in prepared]
    if len(set(lengths)) != 1:
        raise CramlensError("full cramming needs texts of one length; pass --seq-len")
    sp = replace(sp, recipe=rc, min_len=lengths[0], step=1, schedule="linear")
    return _execute("full", model, prepared, sp, opts, check_greedy)


def finalize_run(run: RunDir, result: CramRun) -> None:
    """Write the datasets table, final embeddings, per-sample summary and report.md."""
    import json

    from .report import markdown_report
    from .runs import atomic_save_tensors, atomic_write_text

    run.write_table("table")
    atomic_save_tensors(
        run.path / "embeddings.safetensors",
        {f"sample_{s.sample_id}": s.embedding for s in result.samples},
        {"text_ids": json.dumps([s.text_id for s in result.samples])},
    )
    summary = [
        {k: v for k, v in vars(s).items() if k not in ("embedding", "model", "layout", "sequence")}
        for s in result.samples
    ]
    atomic_write_text(run.path / "samples.json", json.dumps(summary, indent=1, default=_clean_float))
    atomic_write_text(run.path / "report.md", markdown_report(result))


def _clean_float(x):
    return None if isinstance(x, float) and not math.isfinite(x) else str(x)
