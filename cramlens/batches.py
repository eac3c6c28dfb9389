"""Running prepared texts through :class:`cramlens.engine.CramLoop` batch by batch, one :class:`StageRow` per stage.

:func:`run_loops` takes the whole :class:`CramSpec` and the run's own options (:class:`RunOptions`: where rows go,
resume/overwrite, progress display, extra hooks); rows are written to the run directory incrementally and a
checkpoint of the batch in progress makes the run resumable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformer_lens import HookedTransformer

from .engine import CramLoop, StageRecord, hybrid_clean_hidden
from .hooks import EMPTY, HookSet
from .params import make_memory, new_shared_projection
from .prepare import Prepared
from .rows import StageRow
from .runs import RunDir, environment
from .spec import STAGE_KEYS, CramSpec


@dataclass
class RunOptions:
    """What a run does with its results, apart from the spec: output directory, resume, display, hooks."""

    out: str | Path | None = None
    resume: bool = False
    overwrite: bool = False
    progress: object | None = None
    hooks: HookSet = EMPTY
    pca_basis: tuple[torch.Tensor, torch.Tensor] | None = None  # with parametrization="pca"
    checkpoint_every: int = 25


def run_config(kind: str, model: HookedTransformer, prepared: list[Prepared], spec: CramSpec) -> dict:
    """``config.json`` of a run: the spec's ``to_dict`` plus the model, kind and samples (full cramming has no
    stage schedule, so its settings leave those keys out, as older runs did)."""
    sp = spec.to_dict()
    if kind == "full":
        sp = {k: v for k, v in sp.items() if k not in STAGE_KEYS}
    settings = {
        "kind": kind,
        "model": getattr(model.cfg, "model_name", "?"),
        "dtype": str(model.cfg.dtype),
        **sp,
        "samples": [p.text_id for p in prepared],
        "seq_lens": [len(p.token_ids) for p in prepared],
    }
    return {"settings": settings, "environment": environment(), "created": time.strftime("%Y-%m-%d %H:%M:%S")}


def stage_row(rec: StageRecord, p: Prepared, settings: dict, final: bool) -> StageRow:
    """The row of one finished stage (``settings``: the run's ``config.json`` settings)."""
    L = rec.stage_seq_len
    s = p.surprisal
    h_lm = float(torch.nansum(s[1:L])) if L > 1 else 0.0
    recipe = settings["recipe"]
    return StageRow(
        sample_id=p.sample_id,
        text_id=p.text_id,
        stage_index=rec.stage_index,
        stage_seq_len=L,
        text=p.text,
        input_ids=p.sequence,
        embedding=rec.embedding,
        coefficients=rec.coefficients,
        final_convergence=rec.accuracy,
        converged=rec.converged,
        final_loss=rec.loss,
        steps_taken=rec.steps_taken,
        steps_spent=rec.steps_spent,
        marginal_steps=rec.stage_steps,
        h_lm_bits=h_lm,
        h_comp_bits=rec.h_comp_bits,
        information_gain_bits=h_lm - rec.h_comp_bits,
        new_token_surprisal_bits=float(s[L - 1]) if L > 1 else float("nan"),
        min_margin=rec.min_margin,
        reason=rec.reason,
        final=final,
        num_input_tokens=len(p.token_ids),
        num_compression_tokens=settings["layout"]["n_mem"],
        hidden_size=int(rec.embedding.shape[-1]),
        model_checkpoint=settings["model"],
        dtype=settings["dtype"],
        loss_type="cross_entropy" if recipe["hybrid_alpha"] == 0 else "cosine",
        convergence_threshold=recipe["threshold"],
        max_optimization_steps_per_sample=recipe["steps_per_sample"],
        kind=settings["kind"],
        tf_exact_prefix=rec.tf_exact_prefix,
        seed=int(settings.get("seed", 0)) if p.seed is None else p.seed,
        judge_calls=rec.judge_calls if recipe.get("search_dtype", "model") != "model" else None,
    )


def _is_final(rec: StageRecord, loop: CramLoop) -> bool:
    return int(loop.state.status[rec.sample]) != 0


def _new_loop(model, group: list[Prepared], spec: CramSpec, opts: RunOptions, shared) -> CramLoop:
    """The engine loop of one batch: memory initialised per sample, hybrid-loss targets when needed."""
    recipe, layout = spec.recipe, spec.layout
    token_embeds = None
    if recipe.init == "mean_token_embeds":
        with torch.no_grad():
            token_embeds = [
                model.embed(torch.tensor([p.sequence], device=model.cfg.device))[0] for p in group
            ]
    memory = make_memory(
        model,
        len(group),
        spec,
        [p.draw for p in group],
        shared,
        opts.pca_basis,
        token_embeds,
        [spec.seed if p.seed is None else p.seed for p in group],
    )
    clean = None
    if recipe.hybrid_alpha > 0:
        n_al = max(0, min(recipe.align_layers - 1, model.cfg.n_layers))
        clean = [hybrid_clean_hidden(model, p.sequence, n_al) for p in group]
    return CramLoop(
        model,
        [p.sequence for p in group],
        memory,
        recipe,
        layout,
        min_len=spec.min_len,
        step=spec.step,
        schedule_kind=spec.schedule,
        hooks=opts.hooks,
        clean_hidden=clean,
    )


def run_loops(
    model: HookedTransformer, prepared: list[Prepared], spec: CramSpec, config: dict, opts: RunOptions
) -> tuple[list[dict], RunDir | None]:
    """Cram ``prepared`` in batches of ``spec.batch_size``; rows (one per stage) go to ``opts.out``
    incrementally. Returns all rows (as on disk: dicts) and the run directory."""
    run = RunDir.open(opts.out, config, opts.resume, opts.overwrite) if opts.out is not None else None
    rows: list[dict] = run.rows if run is not None else []
    settings = config["settings"]
    progress = opts.progress
    shared = (
        new_shared_projection(model.cfg.d_model, spec.low_dim, spec.seed, model.cfg.device)
        if spec.parametrization == "low_dim" and spec.shared_projection
        else None
    )
    finished = {r["sample_id"] for r in rows if r.get("final")}
    bs = spec.batch_size
    batches = [prepared[i : i + bs] for i in range(0, len(prepared), bs)]
    for k, group in enumerate(batches):
        if all(p.sample_id in finished for p in group):
            continue
        loop = _new_loop(model, group, spec, opts, shared)
        if run is not None and opts.resume:
            ck = run.load_checkpoint(k)
            if ck is not None:
                loop.load_state_tensors(ck[0])
                run.truncate_rows(ck[1])
                rows = run.rows
            else:  # batch never checkpointed: drop any partial rows it left
                keep = [r for r in rows if r["sample_id"] not in {p.sample_id for p in group}]
                if len(keep) != len(rows):
                    run.truncate_rows(len(keep))
                    rows = run.rows
        buffer: list[tuple[StageRecord, Prepared]] = []

        def on_stage(rec: StageRecord, group=group, buffer=buffer) -> None:
            buffer.append((rec, group[rec.sample]))

        def on_iteration(lp: CramLoop, info: dict, k=k, group=group, buffer=buffer, rows=rows) -> None:
            new = [stage_row(rec, p, settings, _is_final(rec, lp)).to_dict() for rec, p in buffer]
            buffer.clear()
            if run is not None:
                run.append_rows(new)
                if new or lp.state.iteration % opts.checkpoint_every == 0:
                    run.save_checkpoint(k, lp.state_tensors())
            else:
                rows.extend(new)
            if progress is not None:
                progress.update(lp, info, group, new)

        if progress is not None:
            progress.start_batch(k, group, loop)
        loop.run(on_stage=on_stage, on_iteration=on_iteration)
        if run is not None:
            run.clear_checkpoint(k)
    return (run.rows if run is not None else rows), run
