"""The ledger's cramming experiments: progressive runs and what is measured on them (trajectory, surprisal, sinks),
full cramming (brittleness), the learning-rate sweep (diversity), a second text source (Kuratov's law) and
truncated depth. Each step calls the library functions of the matching script and returns the per-sample numbers
the claims need (small, JSON-ready); the cramming itself resumes from its run directories."""

from __future__ import annotations

import math

import numpy as np

from cramlens.recipe import get_recipe
from cramlens.spec import CramSpec

from .context import StepContext


def progressive_spec(ctx: StepContext, seed: int | None = None) -> CramSpec:
    """The paper's recipe with the protocol's budgets; ``seed`` (default: the first of the protocol's seeds)."""
    g = ctx.protocol.progressive
    recipe = get_recipe("paper", steps_per_stage=g.steps_per_stage, steps_per_sample=g.steps_per_sample)
    return CramSpec(recipe=recipe, batch_size=g.batch_size, seed=g.seeds[0] if seed is None else seed)


def seed_of(run, sample) -> int:
    """The memory-init seed of a sample (the run's seed when the sample does not say)."""
    seed = getattr(sample, "seed", None)
    return int(run.config.get("settings", {}).get("seed", 0) if seed is None else seed)


def sample_rows(run, d_model: int) -> list[dict]:
    """Per sample of a progressive run: its text, seed, horizon (and the paper's unit), bits, greedy check, and
    whether the horizon is a lower bound (hit the length cap or the sample budget)."""
    from analyses.capacity import sample_capacity

    caps = sample_capacity(run, d_model)
    return [
        {
            "sample_id": s.sample_id,
            "text_id": s.text_id,
            "seed": seed_of(run, s),
            "horizon": s.horizon,
            "compressed_tokens": s.compressed_tokens,
            "ig_bits": s.information_gain_bits,
            "ig_final_bits": s.information_gain_bits_final,
            "h_lm_bits": c.h_lm_bits,
            "greedy_exact": s.greedy_exact,
            "steps": s.steps,
            "lower_bound": c.capped,
        }
        for s, c in zip(run.samples, caps, strict=True)
    ]


def progressive(ctx: StepContext) -> dict:
    from cramlens import progressive_cram

    g = ctx.protocol.progressive
    spec = progressive_spec(ctx)
    if len(g.seeds) > 1:  # every text under every seed in one run (CramSpec.seeds)
        spec = spec.with_(seeds=tuple(g.seeds))
    texts = ctx.texts(g.texts, g.seq_len)
    with ctx.progress("progressive cramming") as live:
        run = progressive_cram(
            ctx.model, texts, spec, out=ctx.step_dir("progressive") / "run", resume=True, progress=live
        )
    return {"samples": sample_rows(run, ctx.model.cfg.d_model), "seq_len": g.seq_len}


def _progressive_run(ctx: StepContext, with_model: bool = False):
    from cramlens import load_run

    return load_run(ctx.step_dir("progressive") / "run", ctx.model if with_model else None)


def _who(run) -> dict[int, tuple[str, int]]:
    return {s.sample_id: (s.text_id, seed_of(run, s)) for s in run.samples}


def growth_per_doubling(points: list[dict]) -> float:
    """Least-squares slope of PCA99 on log2(prefix length): components added per doubling (nan: < 3 lengths)."""
    if len({p["length"] for p in points}) < 3:
        return float("nan")
    x = np.log2([p["length"] for p in points])
    y = np.array([p["pca99"] for p in points], dtype=float)
    return float(np.polyfit(x, y, 1)[0])


def trajectory(ctx: StepContext) -> dict:
    from analyses import trajectory as tj

    run = _progressive_run(ctx)
    who = _who(run)
    out = []
    for geo in tj.geometry_table(run):
        sid = geo["sample_id"]
        rows = run.trajectory(sid)
        recon = float("nan")
        if any(r.get("converged") for r in rows) and isinstance(geo["pca99"], int):
            recon = tj.pca_reconstruction(ctx.model, run, sid, ks=[geo["pca99"]])[0]["accuracy"]
        out.append(
            {
                "sample_id": sid,
                "text_id": who[sid][0],
                "seed": who[sid][1],
                "stages": geo["stages"],
                "pc12": geo["pc12"],
                "pca99": geo["pca99"],
                "growth": growth_per_doubling(tj.pca99_vs_length(run, sid)),
                "recon_accuracy": recon,
            }
        )
    return {"samples": out}


def surprisal(ctx: StepContext) -> dict:
    from analyses import surprisal as su

    run = _progressive_run(ctx)
    pairs = su.step_pairs(run, ctx.model)
    corr = su.correlation(pairs) if len(pairs) >= 3 else None
    if corr is not None:
        corr["per_sample"] = {str(k): v for k, v in corr["per_sample"].items()}
    return {"pairs": len(pairs), "correlation": corr}


def sinks(ctx: StepContext) -> dict:
    from analyses.sinks import measure_sinks, sink_tokens

    run = _progressive_run(ctx, with_model=True)
    least = max(2, ctx.protocol.sinks.min_tokens)
    samples = [s for s in run.samples if len(sink_tokens(s)) >= least]
    if not samples:
        return {"samples": [], "profiles": {}, "min_tokens": least}
    s_max, profiles = measure_sinks(ctx.model, samples, " the")
    return {
        "samples": [s.text_id for s in samples],
        "s_max": s_max,
        "min_tokens": least,
        "profiles": {k: v.tolist() for k, v in profiles.items()},  # [samples][layers], %
    }


def brittleness(ctx: StepContext) -> dict:
    from cramlens import brittleness as br
    from cramlens import cram

    b = ctx.protocol.brittleness
    texts = ctx.texts(b.texts, b.seq_len)
    with ctx.progress("full cramming @0.99") as live:
        run = cram(
            ctx.model,
            texts,
            recipe="brittleness",
            max_steps=b.max_steps,
            batch_size=len(texts),
            out=ctx.step_dir("brittleness") / "run",
            resume=True,
            progress=live,
        )
    rows = br.reconstruction_rows(ctx.model, run, "full @0.99")
    ids = {s.sample_id: s.text_id for s in run.samples}
    return {"samples": [{"text_id": ids[r.sample_id], **r.to_dict()} for r in rows]}


def diversity(ctx: StepContext) -> dict:
    from analyses.diversity import run_lr_sweep, solution_groups

    d = ctx.protocol.diversity
    texts = ctx.texts(d.texts, d.seq_len)
    runs = run_lr_sweep(
        ctx.model,
        texts,
        d.lrs,
        ctx.step_dir("diversity"),
        d.seq_len,
        "paper",
        len(texts),
        seed=0,
        steps_per_stage=d.steps_per_stage,
        steps_per_sample=d.steps_per_sample,
    )
    groups = solution_groups(runs, grid_top="shared") if len(runs) >= 2 else []
    return {
        "groups": [
            {"sample_id": g.sample_id, "length": g.length, "sol_dist": g.sol_dist, "dir_cos": g.dir_cos}
            for g in groups
        ],
        "horizons": {f"{lr:g}": r.horizons() for lr, r in runs.items()},
        "random_cos": 1 / math.sqrt(ctx.model.cfg.d_model),
    }


def capacity(ctx: StepContext) -> dict:
    """A second source crammed with the progressive step's spec (its first seed), for Kuratov's law."""
    from analyses.capacity import load_source, sample_capacity
    from cramlens import progressive_cram

    c, g = ctx.protocol.capacity, ctx.protocol.progressive
    texts = load_source(ctx.model, c.source, c.texts, g.seq_len, seed=g.seeds[0])
    with ctx.progress(f"progressive cramming, {c.source}") as live:
        run = progressive_cram(
            ctx.model,
            texts,
            progressive_spec(ctx),
            out=ctx.step_dir("capacity") / "run",
            resume=True,
            progress=live,
            check_greedy=False,
        )
    caps = sample_capacity(run, ctx.model.cfg.d_model, c.source)
    return {
        "source": c.source,
        "samples": [
            {
                "text_id": x.text_id,
                "horizon": x.horizon,
                "ig_bits": x.information_gain_bits,
                "lower_bound": x.capped,
            }
            for x in caps
        ],
    }


def depth(ctx: StepContext) -> dict:
    from analyses.depth_sweep import Variant, run_variant
    from analyses.recovery_finetune import CPU_FINETUNE, PAPER_FINETUNE

    dp = ctx.protocol.depth
    base_ft = PAPER_FINETUNE if ctx.protocol.name == "paper" else CPU_FINETUNE
    ft = base_ft.with_(
        steps=dp.ft_steps, batch_size=dp.ft_batch_size, seq_len=dp.ft_seq_len, trainable=dp.ft_trainable
    )
    recipe = get_recipe("paper", steps_per_stage=dp.steps_per_stage, steps_per_sample=dp.steps_per_sample)
    spec = CramSpec(recipe=recipe, batch_size=dp.texts, seed=0)
    source = ctx.data_source()
    texts = ctx.texts(dp.texts, dp.seq_len, source)
    out = {}
    for n in dp.depths:
        r = run_variant(
            ctx.model, Variant(ctx.model_name, n), texts, source, ctx.step_dir("depth"), spec, ft, ctx.log
        )
        out[str(n)] = {
            "samples": [
                {
                    "text_id": s["text_id"],
                    "horizon": s["horizon"],
                    "lower_bound": s["horizon"] >= s["seq_len"] or bool(s.get("budget_bound")),
                }
                for s in r["samples"]
            ],
            "val_loss_after": r["val_loss_after"],
        }
    return {"depths": list(dp.depths), "variants": out, "n_layers": ctx.model.cfg.n_layers}
