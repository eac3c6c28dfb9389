"""Library entry points: ``progressive_cram`` (the paper's method) and ``cram`` (full cramming).

Both take a model and texts (``TextSample``s, strings or token-id lists), run batches through
:class:`cramlens.engine.CramLoop`, write a run directory when ``out`` is given (resumable), and return a
:class:`cramlens.results.CramRun`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformer_lens import HookedTransformer

from .engine import CramLoop, StageRecord, hybrid_clean_hidden
from .errors import CramlensError, check
from .hooks import EMPTY, HookSet
from .layout import Layout
from .metrics import greedy_reconstruction, surprisal_bits
from .params import make_memory, new_shared_projection
from .recipe import DEFAULT_PRESET, Recipe, get_recipe
from .results import CrammedSample, CramRun
from .runs import RunDir, environment


@dataclass(frozen=True)
class Prepared:
    """A text ready to cram: ids, the sequence after the memory, and base-model surprisal."""

    sample_id: int
    text_id: str
    text: str
    token_ids: list[int]
    sequence: list[int]
    surprisal: torch.Tensor  # [len(sequence)] bits, nan at 0


def prepare_texts(
    model: HookedTransformer, texts: Sequence, layout: Layout, seq_len: int | None = None, first_id: int = 0
) -> list[Prepared]:
    """Tokenise (if needed), cut to ``seq_len``, add the layout's BOS and compute base-model surprisal."""
    check(len(texts) > 0, "no texts to cram; pass at least one text")
    out = []
    for i, t in enumerate(texts):
        if hasattr(t, "token_ids"):
            ids, text, tid = list(t.token_ids), t.text, t.sample_id
        elif isinstance(t, str):
            check(
                model.tokenizer is not None,
                "the model has no tokenizer; pass token-id lists instead of strings",
            )
            ids, text, tid = model.tokenizer(t, add_special_tokens=False)["input_ids"], t, f"text:{i}"
        else:
            ids = [int(x) for x in t]
            text = model.tokenizer.decode(ids) if model.tokenizer is not None else ""
            tid = f"ids:{i}"
        if seq_len is not None:
            check(len(ids) >= seq_len, f"text {tid!r} has {len(ids)} tokens, fewer than --seq-len {seq_len}")
            ids = ids[:seq_len]
            if isinstance(t, str):
                text = model.tokenizer.decode(ids)
        check(len(ids) > 0, f"text {tid!r} is empty; remove it or pick another source")
        seq = layout.sequence(model, ids)
        need = len(layout.prefix(model)) + layout.n_mem + len(seq) - 1
        check(
            need <= model.cfg.n_ctx,
            f"text {tid!r}: {need} positions exceed the model context {model.cfg.n_ctx}; use a shorter --seq-len",
        )
        out.append(Prepared(first_id + i, str(tid), text, ids, seq, surprisal_bits(model, seq)))
    return out


def _config(kind: str, model, prepared, recipe, layout, extra: dict) -> dict:
    settings = {
        "kind": kind,
        "model": getattr(model.cfg, "model_name", "?"),
        "dtype": str(model.cfg.dtype),
        "recipe": recipe.to_dict(),
        "layout": {
            "n_mem": layout.n_mem,
            "bos": layout.bos,
            "score_from": layout.score_from,
            "mem_first": layout.mem_first,
        },
        "samples": [p.text_id for p in prepared],
        "seq_lens": [len(p.token_ids) for p in prepared],
        **extra,
    }
    return {"settings": settings, "environment": environment(), "created": time.strftime("%Y-%m-%d %H:%M:%S")}


def _row(rec: StageRecord, p: Prepared, kind: str, settings: dict, final: bool) -> dict:
    L = rec.stage_seq_len
    s = p.surprisal
    h_lm = float(torch.nansum(s[1:L])) if L > 1 else 0.0
    return {
        "sample_id": p.sample_id,
        "text_id": p.text_id,
        "stage_index": rec.stage_index,
        "stage_seq_len": L,
        "text": p.text,
        "input_ids": p.sequence,
        "embedding": rec.embedding,
        "coefficients": rec.coefficients,
        "final_convergence": rec.accuracy,
        "converged": rec.converged,
        "final_loss": rec.loss,
        "steps_taken": rec.steps_taken,
        "steps_spent": rec.steps_spent,
        "marginal_steps": rec.stage_steps,
        "h_lm_bits": h_lm,
        "h_comp_bits": rec.h_comp_bits,
        "information_gain_bits": h_lm - rec.h_comp_bits,
        "new_token_surprisal_bits": float(s[L - 1]) if L > 1 else float("nan"),
        "min_margin": rec.min_margin,
        "reason": rec.reason,
        "final": final,
        "num_input_tokens": len(p.token_ids),
        "num_compression_tokens": settings["layout"]["n_mem"],
        "hidden_size": int(rec.embedding.shape[-1]),
        "model_checkpoint": settings["model"],
        "dtype": settings["dtype"],
        "loss_type": "cross_entropy" if settings["recipe"]["hybrid_alpha"] == 0 else "cosine",
        "convergence_threshold": settings["recipe"]["threshold"],
        "max_optimization_steps_per_sample": settings["recipe"]["steps_per_sample"],
        "kind": kind,
    }


def _is_final(rec: StageRecord, loop: CramLoop) -> bool:
    return int(loop.state.status[rec.sample]) != 0


def run_loops(
    model: HookedTransformer,
    prepared: list[Prepared],
    recipe: Recipe,
    layout: Layout,
    kind: str,
    config: dict,
    batch_size: int = 1,
    min_len: int = 1,
    step: int = 1,
    schedule: str = "linear",
    seed: int = 0,
    parametrization: str = "direct",
    low_dim: int = 0,
    shared_projection: bool = False,
    pca_basis: tuple[torch.Tensor, torch.Tensor] | None = None,
    hooks: HookSet = EMPTY,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    checkpoint_every: int = 25,
    progress=None,
) -> tuple[list[dict], RunDir | None]:
    """Cram ``prepared`` in batches; rows (one per stage) go to ``out`` incrementally. Returns all rows."""
    check(batch_size >= 1, f"batch size {batch_size}; use at least 1")
    run = RunDir.open(out, config, resume=resume, overwrite=overwrite) if out is not None else None
    rows: list[dict] = run.rows if run is not None else []
    settings = config["settings"]
    shared = (
        new_shared_projection(model.cfg.d_model, low_dim, seed, model.cfg.device)
        if parametrization == "low_dim" and shared_projection
        else None
    )
    finished = {r["sample_id"] for r in rows if r.get("final")}
    batches = [prepared[i : i + batch_size] for i in range(0, len(prepared), batch_size)]
    for k, group in enumerate(batches):
        if all(p.sample_id in finished for p in group):
            continue
        token_embeds = None
        if recipe.init == "mean_token_embeds":
            with torch.no_grad():
                token_embeds = [
                    model.embed(torch.tensor([p.sequence], device=model.cfg.device))[0] for p in group
                ]
        memory = make_memory(
            model,
            len(group),
            layout.n_mem,
            recipe.init,
            seed,
            [p.sample_id for p in group],
            parametrization,
            low_dim,
            shared,
            pca_basis,
            token_embeds,
        )
        clean = None
        if recipe.hybrid_alpha > 0:
            n_al = max(0, min(recipe.align_layers - 1, model.cfg.n_layers))
            clean = [hybrid_clean_hidden(model, p.sequence, n_al) for p in group]
        loop = CramLoop(
            model,
            [p.sequence for p in group],
            memory,
            recipe,
            layout,
            min_len=min_len,
            step=step,
            schedule_kind=schedule,
            hooks=hooks,
            clean_hidden=clean,
        )
        if run is not None and resume:
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
        buffer: list[dict] = []

        def on_stage(rec: StageRecord, group=group, loop=loop, buffer=buffer) -> None:
            buffer.append((rec, group[rec.sample]))

        def on_iteration(lp: CramLoop, info: dict, k=k, group=group, buffer=buffer, rows=rows) -> None:
            new = [_row(rec, p, kind, settings, _is_final(rec, lp)) for rec, p in buffer]
            buffer.clear()
            if run is not None:
                run.append_rows(new)
                if new or lp.state.iteration % checkpoint_every == 0:
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


def summarise(
    model: HookedTransformer,
    prepared: list[Prepared],
    rows: list[dict],
    kind: str,
    layout: Layout,
    check_greedy: bool = True,
) -> list[CrammedSample]:
    """Per-sample results from the rows; greedy-decode each horizon prefix from its embedding."""
    out = []
    for p in prepared:
        traj = sorted((r for r in rows if r["sample_id"] == p.sample_id), key=lambda r: r["stage_index"])
        check(len(traj) > 0, f"sample {p.text_id!r} has no rows; the run is incomplete, rerun with --resume")
        passed = [r for r in traj if r["converged"]]
        last = traj[-1]
        if kind == "full":
            best = last
            horizon = (
                len(p.sequence) if last["final_convergence"] >= 1.0 else _tf_prefix(model, last, p, layout)
            )
        else:
            best = passed[-1] if passed else last
            horizon = best["stage_seq_len"] if passed else 0
        emb = best["embedding"]
        s = CrammedSample(
            sample_id=p.sample_id,
            text_id=p.text_id,
            text=p.text,
            sequence=p.sequence,
            embedding=emb,
            horizon=int(horizon),
            steps=int(best["steps_taken"]),
            steps_spent=int(last["steps_spent"]),
            information_gain_bits=float(best["information_gain_bits"]),
            h_lm_bits=float(best["h_lm_bits"]),
            accuracy_final=float(last["final_convergence"]),
            reason=last.get("reason", ""),
            kind=kind,
            model=model,
            layout=layout,
        )
        if check_greedy:
            n = len(p.sequence) if kind == "full" else s.horizon
            if n > 0:
                g = greedy_reconstruction(model, emb.to(model.cfg.device)[None], [p.sequence[:n]], layout)[0]
                s.greedy_exact, s.greedy_match, s.first_mismatch = g.exact, g.match, g.first_mismatch
        out.append(s)
    return out


def _tf_prefix(model, row, p: Prepared, layout: Layout) -> int:
    """Longest prefix whose teacher-forced predictions are all right (full cramming's horizon)."""
    from .forward import score, target_logits
    from .layout import build_batch

    batch = build_batch(model, [p.sequence], [len(p.sequence)], layout)
    with torch.no_grad():
        sc = score(target_logits(model, row["embedding"].to(model.cfg.device)[None], batch), batch)
    wrong = (~sc.correct).nonzero()
    return int(batch.t_index[wrong[0, 0]]) if len(wrong) else len(p.sequence)


def _resolve(recipe: Recipe | str | None, overrides: dict) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe.with_(**overrides)
    return get_recipe(recipe or DEFAULT_PRESET, **overrides)


def progressive_cram(
    model: HookedTransformer,
    texts: Sequence,
    *,
    seq_len: int | None = None,
    recipe: Recipe | str | None = None,
    layout: Layout | None = None,
    batch_size: int = 1,
    min_len: int = 1,
    step: int = 1,
    schedule: str = "linear",
    parametrization: str = "direct",
    low_dim: int = 0,
    shared_projection: bool = False,
    pca_basis: tuple[torch.Tensor, torch.Tensor] | None = None,
    seed: int = 0,
    hooks: HookSet = EMPTY,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress=None,
    check_greedy: bool = True,
    first_id: int = 0,
    **recipe_overrides,
) -> CramRun:
    """Progressive cramming (REFERENCE A.2): grow the target one ``step`` at a time, warm-starting every stage.

    Each sample stops at the first stage it cannot pass within ``recipe.steps_per_stage`` steps (or once its
    ``steps_per_sample`` budget is spent); its horizon is the longest prefix whose stages all passed.
    ``schedule="geometric"`` doubles the length and bisects with warm restore instead.
    """
    layout = layout or Layout()
    rc = _resolve(recipe, recipe_overrides)
    check(schedule in ("linear", "geometric"), f"schedule {schedule!r}; use linear or geometric")
    check(step >= 1 and min_len >= 1, "--step and --min-len must be >= 1")
    check(
        layout.score_from == "memory" or min_len >= 2,
        "score_from='text' scores nothing at length 1; use --min-len 2",
    )
    prepared = prepare_texts(model, texts, layout, seq_len, first_id)
    extra = {
        "batch_size": batch_size,
        "min_len": min_len,
        "step": step,
        "schedule": schedule,
        "parametrization": parametrization,
        "low_dim": low_dim,
        "shared_projection": shared_projection,
        "seed": seed,
    }
    config = _config("progressive", model, prepared, rc, layout, extra)
    rows, run = run_loops(
        model, prepared, rc, layout, "progressive", config, batch_size, min_len, step, schedule, seed,
        parametrization, low_dim, shared_projection, pca_basis, hooks, out, resume, overwrite, progress=progress,
    )  # fmt: skip
    samples = summarise(model, prepared, rows, "progressive", layout, check_greedy)
    result = CramRun("progressive", samples, rows, config, run.path if run else None)
    if run is not None:
        finalize_run(run, result)
    return result


def cram(
    model: HookedTransformer,
    texts: Sequence,
    *,
    seq_len: int | None = None,
    recipe: Recipe | str | None = None,
    layout: Layout | None = None,
    batch_size: int = 1,
    max_steps: int | None = None,
    parametrization: str = "direct",
    low_dim: int = 0,
    shared_projection: bool = False,
    pca_basis: tuple[torch.Tensor, torch.Tensor] | None = None,
    seed: int = 0,
    hooks: HookSet = EMPTY,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress=None,
    check_greedy: bool = True,
    first_id: int = 0,
    **recipe_overrides,
) -> CramRun:
    """Full cramming: optimise each memory on its whole text until teacher-forced accuracy reaches the threshold.

    A converged sample stops changing (no weight-decay or momentum drift) while the rest of its batch goes on.
    """
    layout = layout or Layout()
    rc = _resolve(recipe, recipe_overrides)
    if max_steps is not None:
        rc = rc.with_(steps_per_sample=max_steps)
    rc = rc.with_(steps_per_stage=rc.steps_per_sample)
    prepared = prepare_texts(model, texts, layout, seq_len, first_id)
    lengths = [len(p.sequence) for p in prepared]
    extra = {
        "batch_size": batch_size,
        "parametrization": parametrization,
        "low_dim": low_dim,
        "shared_projection": shared_projection,
        "seed": seed,
    }
    config = _config("full", model, prepared, rc, layout, extra)
    if len(set(lengths)) != 1:
        raise CramlensError("full cramming needs texts of one length; pass --seq-len")
    rows, run = run_loops(
        model, prepared, rc, layout, "full", config, batch_size, lengths[0], 1, "linear", seed,
        parametrization, low_dim, shared_projection, pca_basis, hooks, out, resume, overwrite, progress=progress,
    )  # fmt: skip
    samples = summarise(model, prepared, rows, "full", layout, check_greedy)
    result = CramRun("full", samples, rows, config, run.path if run else None)
    if run is not None:
        finalize_run(run, result)
    return result


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
