#!/usr/bin/env python
"""Causal attention knockout over crammed HellaSwag contexts, and the attention-sink table (REFERENCE C.6, C.7).

    python scripts/knockout.py --direction reverse              # sweep k = 0..L, last k layers masked
    python scripts/knockout.py --direction all --items 48       # forward, reverse, per-layer (+ controls)
    python scripts/knockout.py --sink --no-sweep --model gemma-3-270m    # the sink table for one model
    python scripts/knockout.py --paper                          # paper scale: 512 items, any context length
    python scripts/knockout.py --mask both                      # our text mask and the research code's mask
    torchrun --nproc-per-node 2 scripts/knockout.py ...         # item chunks sharded over ranks, then once plainly

The crams come from (and are shared with) scripts/downstream.py: ``--crams`` (default runs/downstream/hellaswag)
is read when it holds them and filled otherwise (HellaSwag items in file order whose context has at most
``--max-ctx-tokens`` tokens, full cramming with the ``downstream`` recipe; only exactly reconstructed items are
swept). Results are appended to ``--out/sweep.jsonl`` (a shard's to ``sweep.w<rank>.jsonl``) as they are measured;
rerunning continues. ``--out/config.json`` holds the swept conditions as data (memory + ``Knockout``) and the other
settings. The sweep's library is ``analyses.knockout``; ``--sink`` calls ``analyses.sinks.run_sink``, which writes
``--out/sink_<model>.json`` and ``--figures/<model>_sink.md``.

The summary (``--out/summary.json``) gives per condition the accuracy with its 95% Wilson interval over the items,
the mean TF with its t interval, and the exact McNemar test against the cram on the same items (``vs_cram``); the
figures and tables draw every mask the summary holds (the reference mask dashed beside the text mask).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from analyses.plots.io import save_figure
from cramlens import CramlensError, cli


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_model_args(p)
    g = p.add_argument_group("sweep")
    g.add_argument("--direction", default="all", choices=["forward", "reverse", "per-layer", "all"])
    g.add_argument(
        "--mask",
        default="text",
        choices=["text", "reference", "both"],
        help="text: the text queries lose the memory key at the masked layers (ours); reference: the research "
        "code's 4-D mask, which also makes the memory's own query row uniform over all keys, future ones included "
        "(equal to text when no unmasked layer follows a masked one: reverse:k, forward:L); both: sweep each "
        "(reference rows are named '...@reference'; figures and tables then show both masks)",
    )
    g.add_argument("--no-control", action="store_true", help="skip the ordinary-token control curves")
    g.add_argument(
        "--control-token", default=" the", help="text of the ordinary token put in the memory's place"
    )
    g.add_argument(
        "--control-ks",
        default="auto",
        help="comma list of k / layers for the control curves ('auto': 0-4, 6, 8, 12, 16, 20, 24, L-1, L; 'all')",
    )
    g.add_argument(
        "--ks",
        default="all",
        help="k (layers knocked out) / layers swept per direction: 'all' (the paper), 'auto' (the --control-ks "
        "grid; a CPU-sized curve) or a comma list",
    )
    g.add_argument("--items", type=int, default=64, help="crammed items to sweep (first in selection order)")
    g.add_argument("--batch-items", type=int, default=8, help="items per forward (x4 endings)")
    g.add_argument("--no-sweep", action="store_true", help="only the sink table")
    g.add_argument(
        "--worker",
        default=None,
        help="i/n: sweep only shard i of n of the item chunks (as rank i of a torchrun launch of n would; "
        "under torchrun the shard comes from the launcher); then run once without it for the summary",
    )
    g.add_argument(
        "--exact-only",
        action="store_true",
        help="sweep only exactly reconstructed contexts (default: every crammed item, as the paper's C.6 does; "
        "the exact subset is summarised separately)",
    )
    g = p.add_argument_group("crams (shared with scripts/downstream.py)")
    g.add_argument(
        "--data", default=None, help="HellaSwag jsonl (default ../shared/data copy; 'hub' = Rowan/hellaswag)"
    )
    g.add_argument(
        "--crams", default="runs/downstream/hellaswag", help="downstream run directory holding the crams"
    )
    g.add_argument(
        "--max-ctx-tokens", type=int, default=16, help="selection rule: contexts of at most N tokens (0: any)"
    )
    g.add_argument("--candidates", type=int, default=64, help="how many selected items to cram")
    g.add_argument(
        "--max-steps", type=int, default=None, help="cram budget per context (downstream recipe: 1000)"
    )
    g.add_argument("--batch-size", type=int, default=16, help="contexts crammed together")
    g.add_argument(
        "--score-from",
        default="memory",
        choices=["text", "memory"],
        help="as in scripts/downstream.py (memory, default: the paper's layout; text: Kuratov's scoring)",
    )
    g.add_argument(
        "--paper", action="store_true", help="paper scale: 512 items, no length rule, 512 candidates"
    )
    g = p.add_argument_group("attention-sink table")
    g.add_argument("--sink", action="store_true", help="compute the C.7 table for --model")
    g.add_argument(
        "--sink-data", default=str(cli.SHARED_DATA / "pg19"), help="texts to cram for the sink table"
    )
    g.add_argument("--sink-texts", type=int, default=4, help="number of texts")
    g.add_argument("--sink-len", type=int, default=16, help="tokens per text")
    g.add_argument(
        "--sink-from",
        default="progressive",
        choices=["progressive", "full"],
        help="progressive (default, the paper's): each text's final progressive-stage embedding, measured on the "
        "prefix it reconstructs; full: a full cram of the whole text (the earlier CPU protocol)",
    )
    g.add_argument(
        "--sink-run",
        default=None,
        help="read the progressive embeddings from this finished run directory (e.g. runs/prog6) instead of cramming",
    )
    g.add_argument(
        "--sink-steps",
        type=int,
        default=None,
        help="cram budget per text (default: the paper recipe's 10,000 per sample for progressive, 300 for full)",
    )
    g.add_argument(
        "--sink-hellaswag", type=int, default=0, help="also use this many HellaSwag crams (same model)"
    )
    g.add_argument(
        "--sink-converged-only",
        action="store_true",
        help="use only exactly reconstructed texts (default: every crammed text; the table reports how many are exact)",
    )
    g = p.add_argument_group("output")
    g.add_argument("--out", default="runs/knockout", help="run directory")
    g.add_argument("--figures", default="figures/knockout", help="where figures and the markdown summary go")
    cli.add_results_arg(g)
    a = p.parse_args(argv)
    if a.paper:
        a.items, a.candidates, a.max_ctx_tokens, a.max_steps, a.score_from = 512, 512, 0, 1000, "memory"
    return a


def get_crams(model, a, console):
    """Selected HellaSwag items and their crams (read back when finished, crammed otherwise)."""
    import cramlens as cl
    from analyses.downstream import cram_contexts, token_counter
    from analyses.tasks import load_items, select_by_length

    items = load_items("hellaswag", a.data)
    limit = a.max_ctx_tokens if a.max_ctx_tokens > 0 else 10**9
    items = select_by_length(items, token_counter(model), limit, a.candidates)
    crams = cram_contexts(
        model,
        items,
        Path(a.crams) / "crams",
        batch_size=a.batch_size,
        max_steps=a.max_steps,
        layout=cl.Layout(score_from=a.score_from),
        log=console.log,
    )
    return items, crams


def run_sweep(model, a, console) -> dict:
    import cramlens as cl
    from analyses import knockout as ko
    from analyses.downstream import append_results, converged, write_summary
    from analyses.plots import eval_figures as ef

    items, crams = get_crams(model, a, console)
    keep = [it for it in items if not a.exact_only or converged(crams[it.id])][: a.items]
    exact = {it.id for it in keep if converged(crams[it.id])}
    console.log(f"{len(exact)} of {len(keep)} swept contexts reconstruct exactly ({len(items)} crammed)")
    if not keep:
        raise cl.CramlensError(
            "no crammed context reconstructs exactly; raise --max-steps or drop --exact-only"
        )
    L = model.cfg.n_layers
    dirs = list(ko.DIRECTIONS) if a.direction == "all" else [a.direction.replace("-", "_")]
    masks = ["text", "reference"] if a.mask == "both" else [a.mask]
    conds = ko.conditions(
        L,
        dirs,
        control=not a.no_control,
        control_ks=_k_grid(a.control_ks, L),
        ks=_k_grid(a.ks, L),
        masks=masks,
    )
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_config(out / "config.json", a, conds)
    starts = list(range(0, len(keep), a.batch_items))
    with _shard(a.worker, out, len(starts)) as shard:
        path = out / ("sweep.jsonl" if shard.world == 1 else f"sweep.w{shard.rank}.jsonl")
        have = {(r["cond"], r["id"]) for r in _all_rows(out)}
        tok = model.to_tokens(a.control_token, prepend_bos=False)[0, 0].item()
        for s in shard.select(starts):
            group = keep[s : s + a.batch_items]
            ids = [it.id for it in group]
            if all((c.name, i) in have for c in conds for i in ids):
                continue
            chunk = ko.make_chunk(model, group, crams)

            def emit(cond, rows, span=f"{s}-{s + len(group) - 1}"):
                append_results(path, [{"cond": cond.name, **r} for r in rows])
                console.log(f"items {span} {cond.name}: acc {sum(r['correct'] for r in rows)}/{len(rows)}")

            def done(cond, ids=ids):
                return all((cond.name, i) in have for i in ids)

            ko.sweep_chunk(model, chunk, conds, tok, done=done, emit=emit)
    if shard.world > 1:
        console.log(
            f"shard {shard.rank}/{shard.world} done; run once without --worker/torchrun for the summary"
        )
        return {}
    names = {c.name for c in conds}
    rows = [r for r in _all_rows(out) if r["id"] in {it.id for it in keep} and r["cond"] in names]
    summary = ko.summarize_sweep(rows)
    summary_exact = ko.summarize_sweep([r for r in rows if r["id"] in exact])
    mem, seqs = _stack(keep, crams), [crams[it.id].sequence for it in keep]
    mass_all, mass_text = ko.attention_mass(model, mem, seqs), ko.attention_mass(model, mem, seqs, False)
    result = {
        "summary": summary,
        "summary_exact": summary_exact,
        "n_items": len(keep),
        "n_exact": len(exact),
        "n_layers": L,
        "model": a.model,
        "attention_mass_pct": (100 * mass_all.mean(1)).tolist(),
        "attention_mass_text_queries_pct": (100 * mass_text.mean(1)).tolist(),
    }
    write_summary(out / "summary.json", result)
    figs = Path(a.figures)
    ks = sorted({0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, L - 1, L} & set(range(L + 1)))
    md = []
    for tag, summ, n in (("all", summary, len(keep)), ("exact", summary_exact, len(exact))):
        if not summ:
            continue
        name = f"{a.model}_{tag}"
        title = f"{a.model}, {n} {'crammed items' if tag == 'all' else 'exactly reconstructed items'}"
        console.print(ef.sweep_table(summ, L, f"{title}: knockout sweep"))
        save_figure(ef.knockout_figure(summ, L, title, "acc"), figs / f"{name}_knockout_accuracy")
        save_figure(ef.knockout_figure(summ, L, title, "tf"), figs / f"{name}_knockout_reconstruction")
        mass = result["attention_mass_pct"]
        save_figure(ef.per_layer_figure(summ, mass, L, title), figs / f"{name}_knockout_per_layer")
        md += [f"### {title}", "", ef.sweep_markdown(summ, L, ks), ""]
    (figs / f"{a.model}_knockout.md").write_text("\n".join(md))
    return result


SETTINGS_SKIPPED = ("direction", "mask", "no_control", "control_ks", "ks")  # folded into the conditions


def write_config(path: Path, a: argparse.Namespace, conds) -> None:
    """``config.json``: the sweep's conditions (memory + ``Knockout`` as data) and the other settings."""
    from cramlens.runs import atomic_write_text

    settings = {k: v for k, v in vars(a).items() if k not in (*SETTINGS_SKIPPED, "worker", "results")}
    cfg = {
        "kind": "knockout",
        "model": a.model,
        "conditions": [c.to_dict() for c in conds],
        "settings": settings,
    }
    atomic_write_text(path, json.dumps(cfg, indent=1, default=str))


def read_conditions(path: Path) -> list:
    """The conditions of a run directory's ``config.json`` (the old raw-namespace config gives an empty list)."""
    from analyses.knockout import Condition

    cfg = json.loads(Path(path).read_text())
    return [Condition.from_dict(d) for d in cfg.get("conditions", [])]


def _shard(worker: str | None, out: Path, n_chunks: int):
    """The shard of item chunks of this process: ``--worker i/n``, else the torchrun launch (else everything)."""
    from contextlib import nullcontext

    from cramlens.distributed import Shard, shard_bounds, shard_context

    if worker is None:
        return shard_context(out, n_chunks)
    try:
        i, n = (int(x) for x in worker.split("/"))
    except ValueError:
        raise CramlensError(f"--worker {worker!r}: use i/n, e.g. 0/2") from None
    if not 0 <= i < n:
        raise CramlensError(f"--worker {worker!r}: i must be in 0..n-1")
    return nullcontext(Shard(i, n, out, *shard_bounds(n_chunks, i, n)))


def _k_grid(spec: str, n_layers: int) -> list[int] | None:
    """``'all'`` → None (every k), ``'auto'`` → a CPU-sized grid dense at the early layers, else a comma list."""
    if spec == "all":
        return None
    if spec == "auto":
        return [0, 1, 2, 3, 4, 6, 8, 12, 16, 20, 24, n_layers - 1, n_layers]
    try:
        return [int(x) for x in spec.split(",")]
    except ValueError:
        raise CramlensError(
            f"--ks/--control-ks {spec!r}: use 'all', 'auto' or a comma list of integers"
        ) from None


def _all_rows(out: Path) -> list[dict]:
    """Sweep rows of the run directory: ``sweep.jsonl`` and the files of parallel workers (``sweep.w*.jsonl``)."""
    from analyses.downstream import read_results

    return [r for p in sorted(out.glob("sweep*.jsonl")) for r in read_results(p)]


def _stack(items, crams):
    import torch

    return torch.stack([crams[it.id].embedding for it in items])


def run_sink(model, a, console) -> dict:
    """The C.7 sink table of ``--model`` (:func:`analyses.sinks.run_sink` with the ``--sink-*`` settings)."""
    from analyses.downstream import converged
    from analyses.sinks import run_sink as sink_run

    def hellaswag():
        _, crams = get_crams(model, a, console)
        return [s for s in crams.values() if converged(s)][: a.sink_hellaswag]

    return sink_run(
        model,
        a.model,
        a.out,
        a.figures,
        control_token=a.control_token,
        converged_only=a.sink_converged_only,
        extra_samples=hellaswag if a.sink_hellaswag else None,
        log=console.log,
        show=console.print,
        run_dir=a.sink_run,
        data=a.sink_data,
        n_texts=a.sink_texts,
        seq_len=a.sink_len,
        source=a.sink_from,
        steps=a.sink_steps,
        score_from=a.score_from,
    )


def main(argv=None) -> None:
    a = parse(argv)
    console = cli.console()
    model = cli.load_model_from_args(a)
    swept = run_sweep(model, a, console) if not a.no_sweep else None
    if a.sink:
        run_sink(model, a, console)
    if swept or a.sink:  # a shard of a split sweep ({}) leaves the summary, and results/, to the final run
        cli.refresh_results(a, "knockout", a.out, log=console.print)


if __name__ == "__main__":
    cli.run_main(main)
