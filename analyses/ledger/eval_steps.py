"""The ledger's evaluation experiments: HellaSwag and ARC-Easy with crammed contexts (and a random vector of the
same norm), generative 5-shot MMLU in its four modes, and attention knockout on the crammed HellaSwag contexts.
They call the library functions of ``scripts/downstream.py`` and ``scripts/knockout.py``; crams and scored items
resume from their run directories and ``results.jsonl`` files."""

from __future__ import annotations

from cramlens.layout import Layout

from .context import StepContext

VARIANTS = ("context_ending", "ending_only")  # the paper's score, and the like-for-like one


def choice_items(ctx: StepContext, task: str) -> list:
    """The protocol's items of a likelihood task: file order, contexts of at most ``max_ctx_tokens`` tokens."""
    from analyses.downstream import token_counter
    from analyses.tasks import load_items, select_by_length

    size = getattr(ctx.protocol, task)
    limit = size.max_ctx_tokens if size.max_ctx_tokens > 0 else 10**9
    return select_by_length(load_items(task), token_counter(ctx.model), limit, size.items)


def _correct(nll_by_variant: dict, label: int) -> dict[str, bool]:
    from analyses.scoring import predict

    return {v: predict([nll_by_variant[v]])[0] == label for v in VARIANTS if v in nll_by_variant}


def choice_task(ctx: StepContext, task: str) -> dict:
    """Cram every context (the paper's layout, downstream recipe), score with, without and with a random vector."""
    from analyses.downstream import cram_contexts, evaluate_choices, read_results

    size = getattr(ctx.protocol, task)
    items = choice_items(ctx, task)
    out = ctx.step_dir(task)
    crams = cram_contexts(
        ctx.model,
        items,
        out / "crams",
        batch_size=size.batch_size,
        max_steps=size.max_steps,
        layout=Layout(score_from=size.score_from),
        log=ctx.log,
    )
    evaluate_choices(ctx.model, items, crams, out, log=ctx.log)
    wanted = {it.id for it in items}
    rows = [r for r in read_results(out / "results.jsonl") if r["id"] in wanted]
    return {
        "score_from": size.score_from,
        "items": [
            {
                "id": r["id"],
                "converged": bool(r["converged"]),
                "base": _correct(r["base"], r["label"]),
                "cram": _correct(r["cram"], r["label"]),
                "random": _correct(r.get("random", {}), r["label"]),
            }
            for r in rows
        ],
    }


def hellaswag(ctx: StepContext) -> dict:
    return choice_task(ctx, "hellaswag")


def arc_easy(ctx: StepContext) -> dict:
    return choice_task(ctx, "arc_easy")


def mmlu_items(ctx: StepContext) -> tuple[list, dict]:
    """``(items, few-shot pool)``: the paper's first N test rows, or the subjects with the shortest 5-shot prompts."""
    from analyses import mmlu
    from analyses.tasks import few_shot_pool, load_items

    m = ctx.protocol.mmlu
    pool = few_shot_pool()
    if m.items:
        return load_items("mmlu", limit=m.items), pool

    def prompt_tokens(subject: str) -> int:
        return len(mmlu.tokens(ctx.model, mmlu.few_shot_prefix(subject, pool[subject][:5])))

    subjects = sorted(pool, key=lambda s: (prompt_tokens(s), s))[: m.subjects]
    items = [it for s in subjects for it in load_items("mmlu", limit=m.per_subject, subjects=[s])]
    return items, pool


def mmlu(ctx: StepContext) -> dict:
    from analyses import mmlu as mm

    m = ctx.protocol.mmlu
    items, pool = mmlu_items(ctx)
    plan = mm.ModesPlan(
        steps=m.steps, full_steps=m.full_prefix_steps, full_prefix_items=m.full_prefix_items, layout=Layout()
    )
    rows = mm.evaluate_modes(ctx.model, items, pool, plan, ctx.step_dir("mmlu"), ctx.log)
    return {
        "rows": [
            {"id": r["id"], "mode": r["mode"], "correct": bool(r["correct"]), "valid": bool(r["valid"])}
            for r in rows
        ],
        "subjects": sorted({it.subject for it in items}),
    }


def knockout_conditions(k: int) -> list:
    """Base, cram, and forward / reverse knockout of ``k`` layers under both masks."""
    from analyses.knockout import Condition
    from cramlens.interventions import Knockout

    masked = [
        Condition("cram", Knockout(d, k, m)) for m in ("text", "reference") for d in ("forward", "reverse")
    ]
    return [Condition("none"), Condition("cram"), *masked]


def knockout(ctx: StepContext) -> dict:
    """Teacher-forced reconstruction and HellaSwag choice of the first crammed contexts under each knockout (every
    crammed item, exact or not, as the paper's C.6 sweeps; each item records whether it reconstructs exactly)."""
    from analyses import knockout as ko
    from analyses.downstream import converged, load_crams

    size = ctx.protocol.knockout
    crams = load_crams(ctx.step_dir("hellaswag"), ctx.model)
    keep = [it for it in choice_items(ctx, "hellaswag") if it.id in crams][: size.items]
    k = min(size.k, ctx.model.cfg.n_layers)
    conds = knockout_conditions(k)
    token = int(ctx.model.to_tokens(" the", prepend_bos=False)[0, 0])
    by_item: dict[str, dict] = {it.id: {"exact": converged(crams[it.id])} for it in keep}
    for start in range(0, len(keep), size.batch_items):
        chunk = ko.make_chunk(ctx.model, keep[start : start + size.batch_items], crams)
        for name, rows in ko.sweep_chunk(ctx.model, chunk, conds, token).items():
            for r in rows:
                by_item[r["id"]][name] = {"tf": r["tf"], "correct": bool(r["correct"])}
        ctx.log(f"knockout: {min(start + size.batch_items, len(keep))}/{len(keep)} items")
    return {
        "k": k,
        "n_layers": ctx.model.cfg.n_layers,
        "conditions": [c.name for c in conds],
        "items": by_item,
    }
