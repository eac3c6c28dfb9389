#!/usr/bin/env python
"""Downstream evaluation with crammed context embeddings: HellaSwag, ARC-Easy (likelihood) and 5-shot MMLU (generative).

    python scripts/downstream.py --task hellaswag --limit 64          # the CPU protocol (contexts <= 16 tokens)
    python scripts/downstream.py --task arc_easy --limit 64
    python scripts/downstream.py --task mmlu --mode all               # 2 short subjects x 10 items, 100 steps
    python scripts/downstream.py --task hellaswag --paper             # paper scale: 512 items, 1000 steps, any length

Results are written incrementally under ``--out/<task>/`` (crams as cramlens run directories, scored items in
``results.jsonl``); rerunning the same command continues where it stopped. HellaSwag / ARC cramming runs in
parallel under ``torchrun --nproc-per-node N scripts/downstream.py ...`` (each rank crams a shard of the context
lengths; rank 0 scores and prints).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table

from analyses.plots.io import save_figure
from cramlens import cli

PAPER_SMOLLM2_17B = {  # REFERENCE D.6 / D.7 (SmolLM2-1.7B, 512 items)
    "hellaswag": {"base": 53.56, "prog": "37.01 / 95.51", "full": "38.71 / 96.88"},
    "arc_easy": {"base": 67.26, "prog": "56.00 / 97.66", "full": "53.29 / 97.85"},
    "mmlu": {
        "baseline": "50.98",
        "few_shot": "45.91 (100)",
        "full_prefix": "0.00 (0.00)",
        "random": "46.66 (100)",
    },
}
DEFAULT_SUBJECTS = ("world_religions", "management")  # the two shortest 5-shot prompts (~230 tokens)


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_model_args(p)
    g = p.add_argument_group("task")
    g.add_argument("--task", default="hellaswag", choices=["hellaswag", "arc_easy", "mmlu"])
    g.add_argument(
        "--mode", default="all", help="mmlu: baseline, few_shot, full_prefix, random or all (comma list)"
    )
    g.add_argument("--data", default=None, help="local jsonl (default: ../shared/data copy) or 'hub'")
    g.add_argument("--limit", type=int, default=64, help="items (hellaswag/arc: selected contexts to cram)")
    g.add_argument(
        "--max-ctx-tokens", type=int, default=16, help="selection rule: contexts of at most N tokens (0: any)"
    )
    g.add_argument(
        "--joiner", default=" ", help="text between context and choice (reference compressed text: '')"
    )
    g = p.add_argument_group("cramming")
    g.add_argument("--max-steps", type=int, default=None, help="budget per context (downstream recipe: 1000)")
    g.add_argument("--batch-size", type=int, default=16, help="contexts crammed together")
    g.add_argument(
        "--score-from",
        default="memory",
        choices=["text", "memory"],
        help="memory (default, the paper's): the memory is trained to predict the first context token too; "
        "text: it is not (Kuratov's scoring, the earlier CPU protocol)",
    )
    g.add_argument("--subjects", nargs="+", default=list(DEFAULT_SUBJECTS), help="mmlu subjects")
    g.add_argument("--per-subject", type=int, default=10, help="mmlu test items per subject")
    g.add_argument("--mmlu-steps", type=int, default=100, help="mmlu cram budget per embedding")
    g.add_argument(
        "--full-prefix-steps",
        type=int,
        default=50,
        help="full_prefix cram budget per item (warm-started from the subject's few-shot embedding)",
    )
    g.add_argument(
        "--full-prefix-items",
        type=int,
        default=1,
        help="full_prefix mode: first N items per subject (one cram each; 0: all --per-subject)",
    )
    g.add_argument(
        "--paper",
        action="store_true",
        help="paper scale: 512 items, 1000 steps, any context length, memory predicts the first token",
    )
    g = p.add_argument_group("output")
    g.add_argument("--out", default="runs/downstream", help="run directory root (one subdirectory per task)")
    g.add_argument("--figures", default="figures/downstream", help="where the figure goes ('' to skip)")
    cli.add_results_arg(g)
    a = p.parse_args(argv)
    if a.paper:
        a.limit, a.max_ctx_tokens, a.max_steps, a.score_from, a.mmlu_steps = 512, 0, 1000, "memory", 1000
        a.full_prefix_items, a.full_prefix_steps = 0, 1000
    return a


def choice_task(model, a, console) -> dict | None:
    """Cram the selected contexts (this rank's shard under torchrun) and, on rank 0, score every item."""
    import cramlens as cl
    from analyses.downstream import cram_contexts, evaluate_choices, token_counter
    from analyses.tasks import load_items, select_by_length
    from cramlens.distributed import rank_and_world

    items = load_items(a.task, a.data)
    limit = a.max_ctx_tokens if a.max_ctx_tokens > 0 else 10**9
    items = select_by_length(items, token_counter(model), limit, a.limit)
    console.log(f"{a.task}: {len(items)} items with contexts of at most {limit} tokens (file order)")
    out = Path(a.out) / a.task
    rank, world = rank_and_world()
    crams = cram_contexts(
        model,
        items,
        out / "crams",
        batch_size=a.batch_size,
        max_steps=a.max_steps,
        layout=cl.Layout(score_from=a.score_from),
        log=console.log,
        shard=(rank, world),
    )
    if rank != 0:
        return None
    summary = evaluate_choices(model, items, crams, out, joiner=a.joiner, log=console.log)
    console.print(choice_table(a.task, summary))
    return summary


def conv_line(s: dict) -> str:
    """Conv% with its Wilson interval, and how many unconverged contexts missed only their first scored token."""
    line = f"Conv {s['conv_pct']:.1f}%"
    if "conv_pct_lo" in s:
        line += f" [{s['conv_pct_lo']:.1f}, {s['conv_pct_hi']:.1f}]"
    unconverged = round(s["n_items"] * (1 - s["conv_pct"] / 100.0))
    if s.get("missed_only_first") is not None and unconverged:
        line += (
            f" ({s['missed_only_first']} of the {unconverged} unconverged missed only the first scored token)"
        )
    return line


def choice_table(task: str, s: dict) -> Table:
    from analyses.scoring import ACC_INTERVAL, acc_cell, flips_cell

    paper = PAPER_SMOLLM2_17B[task]
    t = Table(
        title=f"{task}: likelihood scoring, {s['n_items']} items, {conv_line(s)}; accuracies (%) with "
        f"their {ACC_INTERVAL} interval and n",
        title_justify="left",
    )
    for c in (
        "variant",
        "Base acc (all)",
        "Base tok-norm (all)",
        "Base acc (conv.)",
        "Cram acc (conv.)",
        "Cram acc (all)",
        "Random mem (conv.)",
    ):
        t.add_column(c, justify="right" if c != "variant" else "left")
    for v in s["cram"]:
        b = s["base"].get(v)
        t.add_row(
            v,
            acc_cell(b),
            "–" if not b else f"{b['acc_tok']:.1f}",
            acc_cell(s["base_converged"].get(v)),
            acc_cell(s["cram_converged"][v]),
            acc_cell(s["cram"][v]),
            acc_cell(s.get("random_converged", {}).get(v)),
        )
    t.caption = (
        f"paper SmolLM2-1.7B (512 items): Base {paper['base']}, Full Acc/Conv {paper['full']}; chance 25%\n"
        "Random mem: each crammed vector replaced by a random direction of the same norm (the content control)\n"
        "Base tok-norm: the paper's token-weighted accuracy (a weighted proportion: no interval)"
    )
    for key, subset in (("paired_converged", "converged"), ("paired_all", "all items")):
        for pair, f in s.get(key, {}).items():
            ref = pair.split("_vs_")[0]
            flips = "; ".join(f"{v} {flips_cell(d)}" for v, d in f.items())
            t.caption += f"\ncram vs {ref}, {subset}, items turned right/wrong (exact McNemar): {flips}"
    return t


def mmlu_task(model, a, console) -> dict:
    import cramlens as cl
    from analyses import mmlu
    from analyses.downstream import write_summary
    from analyses.tasks import few_shot_pool, load_items
    from cramlens.distributed import rank_and_world

    if rank_and_world()[1] > 1:
        raise cl.CramlensError("--task mmlu runs in one process; launch it without torchrun")

    modes = list(mmlu.ModesPlan.modes) if a.mode == "all" else a.mode.split(",")  # all: cheap modes first
    bad = set(modes) - set(mmlu.MODES)
    if bad:
        raise cl.CramlensError(
            f"unknown mmlu mode(s) {sorted(bad)}; choose from {', '.join(mmlu.MODES)} or all"
        )
    pool = few_shot_pool(None if a.data is None else a.data.replace("test", "dev"))
    if a.paper:  # the reference: the first 512 test rows of the source, every subject's own 5 dev shots
        items = load_items("mmlu", a.data, limit=a.limit)
        a.subjects = sorted({it.subject for it in items})
    else:
        items = []
        for subj in a.subjects:
            if subj not in pool:
                raise cl.CramlensError(f"unknown MMLU subject {subj!r}; e.g. {', '.join(sorted(pool)[:4])}")
            items += load_items("mmlu", a.data, limit=a.per_subject, subjects=[subj])
    out = Path(a.out) / "mmlu"
    plan = mmlu.ModesPlan(
        modes,
        a.mmlu_steps,
        a.full_prefix_steps,
        a.full_prefix_items,
        cl.Layout(score_from=a.score_from),
    )
    rows = mmlu.evaluate_modes(model, items, pool, plan, out, console.log)
    summary = {
        "n_items": len(items),
        "subjects": a.subjects,
        "steps": a.mmlu_steps,
        "modes": mmlu.summarize(rows),
    }
    write_summary(out / "summary.json", summary)
    console.print(mmlu_table(summary, a.subjects, len(items)))
    return summary


def mmlu_table(summary: dict, subjects, n_items: int) -> Table:
    from analyses.plots.tables import estimate_cell
    from analyses.scoring import ACC_INTERVAL, acc_cell, flips_cell

    t = Table(
        title=f"MMLU 5-shot generative, {n_items} items ({', '.join(subjects)}); % with their {ACC_INTERVAL} "
        "interval and n",
        title_justify="left",
    )
    for c in (
        "mode",
        "Acc",
        "Valid",
        "Acc (ref. parser)",
        "Valid (ref. parser)",
        "cram TF",
        "vs baseline: +right/-wrong, McNemar p (strict / ref.)",
        "paper 1.7B Acc (Valid)",
    ):
        t.add_column(c, justify="right" if c != "mode" else "left")
    for mode, s in summary["modes"].items():
        vs = s.get("vs_baseline", {})
        t.add_row(
            mode,
            acc_cell(s, "acc"),
            acc_cell(s, "valid"),
            acc_cell(s, "acc_ref"),
            acc_cell(s, "valid_ref"),
            estimate_cell(s, "cram_tf", "{:.3f}"),
            f"{flips_cell(vs.get('correct'))} / {flips_cell(vs.get('correct_ref'))}" if vs else "–",
            PAPER_SMOLLM2_17B["mmlu"][mode],
        )
    return t


def main(argv=None) -> None:
    a = parse(argv)
    console = cli.console()
    from analyses.plots import eval_figures as ef

    model = cli.load_model_from_args(a)
    figs = Path(a.figures) if a.figures else None
    if a.task == "mmlu":
        s = mmlu_task(model, a, console)
        if figs:
            save_figure(ef.mmlu_figure(s["modes"], a.model), figs / f"{a.model}_mmlu")
        cli.refresh_results(a, "downstream", Path(a.out) / "mmlu", log=console.print)
    elif choice_task(model, a, console) is not None:  # rank 0 (or the only process): figures
        done = {}
        for task in ("hellaswag", "arc_easy"):
            p = Path(a.out) / task / "summary.json"
            if p.exists():
                done[task] = json.loads(p.read_text())
        if figs:
            save_figure(ef.downstream_figure(done, a.model), figs / f"{a.model}_choices")
        cli.refresh_results(a, "downstream", Path(a.out) / a.task, log=console.print)


if __name__ == "__main__":
    cli.run_main(main)
