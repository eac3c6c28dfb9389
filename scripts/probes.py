#!/usr/bin/env python
"""Residual-stream probes at the memory position (design: ``analyses/probes.py`` docstring).

Crams ``--samples`` short texts (progressive by default: 300 steps per stage, 2000 per sample; resumable, batches of
``--batch-size``), keeps the ones reconstructed exactly, then probes the memory position layer by layer against the controls.

    python scripts/probes.py --samples 96 --seq-len 12 --out runs/probes_cram --figures figures/probes
    python scripts/probes.py --cram-only ...   # just the cramming (e.g. in the background)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from analyses.plots.io import save_figure as save  # noqa: E402
from cramlens import cli  # noqa: E402


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_model_args(p)
    cli.add_data_args(p, samples=96, seq_len=12)
    cli.add_recipe_args(p)
    p.add_argument("--out", default="runs/probes_cram", help="run directory of the cramming (resumable)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cram-only", action="store_true", help="cram (or resume) and stop")
    p.add_argument("--no-cram", action="store_true", help="probe the run in --out as it is (no cramming)")
    p.add_argument(
        "--mode",
        default="progressive",
        choices=["progressive", "full"],
        help="progressive (default; stage 1 fixes the first token, which full cramming tends to leave "
        "wrong) or full cramming",
    )
    p.add_argument(
        "--ks", type=int, nargs="+", default=[1, 2, 4, 8], help="token positions to decode (1-based)"
    )
    p.add_argument(
        "--layers",
        type=int,
        nargs="+",
        default=None,
        help="layers (0 = the injected vector, l = after block l-1); default: ~14 spread over the depth",
    )
    p.add_argument("--words", type=int, default=4, help="number of word-presence tasks (auto-chosen)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument(
        "--rows",
        default="stages",
        choices=["stages", "final"],
        help="probe every converged stage embedding (grouped by text in the CV; default) or only the "
        "final embeddings of texts reconstructed in full",
    )
    p.add_argument(
        "--shuffles", type=int, default=3, help="label permutations for the empirical chance level"
    )
    p.add_argument("--figures", default="figures/probes")
    cli.add_results_arg(p)
    return p.parse_args(argv)


def main(argv=None) -> None:
    a = parse(argv)
    console = cli.console()
    from analyses import probes as pr
    from cramlens import cram, load_run, progressive_cram
    from cramlens.layout import Layout

    rc = cli.recipe_from_args(a)
    if a.mode == "progressive":
        rc = rc.with_(steps_per_stage=a.steps_per_stage or 300, steps_per_sample=a.max_steps or 2000)
    elif a.max_steps is None:
        rc = rc.with_(steps_per_sample=600)
    model, texts = cli.load_model_and_texts(a)
    layout = Layout()
    out = Path(a.out)
    if a.no_cram:  # analyse what the run directory holds (a partial run included), no optimisation
        run = load_run(out, model)
    else:
        fn = progressive_cram if a.mode == "progressive" else cram
        run = fn(
            model,
            texts,
            recipe=rc,
            layout=layout,
            batch_size=a.batch_size,
            seed=a.seed,
            out=out,
            resume=out.exists(),
            check_greedy=False,
        )
    ok = [s for s in run.samples if s.horizon == len(s.sequence)]
    console.print(
        f"{a.mode} cramming of {len(run.samples)} texts of {a.seq_len} tokens: {len(ok)} reconstructed exactly "
        f"(mean steps {sum(s.steps for s in run.samples) / len(run.samples):.0f})"
    )
    if a.cram_only:
        return
    from cramlens.fast import restore

    restore(model)  # run_with_cache on TransformerLens's own forward
    layers, _ = pr.layer_hooks(model, a.layers)
    bos = 1 if layout.uses_bos(model) else 0
    if a.rows == "final":  # one row per text that was reconstructed in full
        items = [(s.sample_id, s.embedding, s.sequence) for s in ok]
    else:  # every converged stage: e^(L) reconstructs the prefix seq[:L]
        items = [
            (int(r["sample_id"]), r["embedding"], list(r["input_ids"][: r["stage_seq_len"]]))
            for r in run.rows
            if r.get("converged") and r["stage_seq_len"] > bos
        ]
    groups = [g for g, _, _ in items]
    if len(set(groups)) < 2 * a.folds:
        raise cli.CramlensError(f"only {len(set(groups))} texts to probe; cram more or shorter texts")
    emb = torch.stack([e for _, e, _ in items])
    seqs = [q for _, _, q in items]
    texts_x = [q[bos:] for q in seqs]
    acts = {
        "crammed": pr.memory_activations(model, emb, layout, layers),
        "random": pr.memory_activations(model, pr.random_like(emb, a.seed), layout, layers),
        "clean_first": pr.text_activations(model, seqs, "first", layers),
        "clean_last": pr.text_activations(model, seqs, "last", layers),
    }
    words = pr.choose_words(texts_x, max_words=a.words)
    tasks = pr.make_tasks(texts_x, a.ks, words)
    rows = pr.run_probes(acts, tasks, model.W_E, layers, groups, a.folds, a.shuffles, a.seed)
    names = {
        t: (t if not t.startswith("has:") else f"has {model.tokenizer.decode([int(t[4:])])!r}") for t in tasks
    }
    prev = {w: sum(w in set(t) for t in texts_x) / len(texts_x) for w in words}
    report(console, rows, names, layers)
    fig_dir = Path(a.figures)
    fig_dir.mkdir(parents=True, exist_ok=True)
    norms = {c: acts[c][:, 0].norm(dim=-1).mean().item() for c in acts}
    meta = {
        "rows_mode": a.rows,
        "n_rows": len(items),
        "n_texts": len(set(groups)),
        "n_full": len(ok),
        "n_crammed": len(run.samples),
        "seq_len": a.seq_len,
        "layers": layers,
        "names": names,
        "word_prevalence": {names[f"has:{w}"]: p for w, p in prev.items()},
        "layer0_norm": norms,
        "model": a.model,
        "data": a.data,
        "recipe": rc.to_dict(),
        "mode": a.mode,
    }
    (fig_dir / "probes.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    title = f"{a.model}: linear probes at the memory position ({len(items)} embeddings of {len(set(groups))} texts)"
    figure(rows, names, fig_dir / "probes", title)
    console.print(f"results: {fig_dir}/probes.json, figures {fig_dir}/probes.html/.png")
    cli.refresh_results(a, "probes", fig_dir, log=console.print)


def report(console: Console, rows: list[dict], names: dict, layers: list[int]) -> None:
    from analyses.plots.tables import probe_cells

    columns, cells = probe_cells(rows, names)
    t = Table(
        title="Held-out probe scores at the best layer (Lk), with n texts and a 95% interval / best shuffled-label "
        "score over layers; chance 0.5",
        title_justify="left",
    )
    for i, c in enumerate(columns):
        t.add_column(c, justify="right" if i else "left")
    for row in cells:
        t.add_row(*row)
    console.print(t)


def figure(rows: list[dict], names: dict, stem: Path, title: str) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    conds = list(dict.fromkeys(r["condition"] for r in rows))
    colors = dict(zip(conds, ["#d62728", "#7f7f7f", "#1f77b4", "#2ca02c", "#9467bd"], strict=False))
    cols = 3
    fig = make_subplots(
        rows=(len(tasks) + cols - 1) // cols, cols=cols, subplot_titles=[names[t] for t in tasks]
    )
    for i, task in enumerate(tasks):
        r, c = i // cols + 1, i % cols + 1
        for cond in conds:
            rs = [x for x in rows if x["task"] == task and x["condition"] == cond]
            fig.add_trace(
                go.Scatter(
                    x=[x["layer"] for x in rs],
                    y=[x["score"] for x in rs],
                    mode="lines",
                    name=cond,
                    line=dict(color=colors[cond]),
                    legendgroup=cond,
                    showlegend=i == 0,
                ),
                r,
                c,
            )
            fig.add_trace(
                go.Scatter(
                    x=[x["layer"] for x in rs],
                    y=[x["shuffled"] for x in rs],
                    mode="lines",
                    line=dict(color=colors[cond], dash="dot", width=1),
                    showlegend=False,
                    legendgroup=cond,
                    hoverinfo="skip",
                ),
                r,
                c,
            )
        fig.add_hline(y=0.5, line_dash="dash", line_color="black", row=r, col=c)
    fig.update_yaxes(range=[0.3, 1.02])
    fig.update_xaxes(title_text="layer")
    fig.update_layout(
        title=title + " — solid: held-out score, dotted: shuffled labels",
        height=300 * ((len(tasks) + 2) // 3),
        width=1300,
    )
    save(fig, stem)


if __name__ == "__main__":
    cli.run_main(main)
