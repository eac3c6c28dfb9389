"""The paper's tables as plotly tables: ours first, the paper's rows below in grey (REFERENCE section in each title).

Each builder takes the result dicts an analysis saved and returns ``(figure, the rows it shows)``:
:func:`brittleness_table` (``brittleness.json`` of ``scripts/progressive.py --compare-full``),
:func:`diversity_table` (``analyses.diversity.summarize``), :func:`downstream_table` (``summary.json`` of
``scripts/downstream.py --task hellaswag|arc_easy``), :func:`mmlu_table` (its ``--task mmlu``), :func:`sink_table`
(``sink_<model>.json`` of ``scripts/knockout.py --sink``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

GREY = "#f0f0f0"

#: REFERENCE D.3 ("common" setup; greedy mismatch @0/@1/@2) and D.2 (progressive 100/100); 50 samples.
PAPER_BRITTLENESS = [
    ("paper: Llama-3.2-1B", "full @0.99", 50, "512", "99.04", "0.19", "–", "86/100/100"),
    ("paper: Llama-3.2-3B", "full @0.99", 50, "1024", "99.02", "0.19", "–", "100/100/98"),
    ("paper: Llama-3.1-8B", "full @0.99", 50, "1568", "99.07", "0.41", "–", "100/100/100"),
    ("paper: Llama-3.1-8B", "progressive", 50, "1438 ± 380", "100", "100", "–", "–"),
]
TABLE_COLUMNS = (
    "run",
    "method",
    "samples",
    "tokens",
    "TF %",
    "greedy %",
    "exact %",
    "greedy miss ≤0/≤1/≤2 %",
)


def brittleness_rows(sources: Mapping[str, Sequence[dict]]) -> list[dict]:
    """Summary per (source, method) of ``brittleness.json`` rows (``cramlens.brittleness.summary``)."""
    from cramlens.brittleness import ReconstructionRow, summary

    out = []
    for label, rows in sources.items():
        for method, s in summary([ReconstructionRow(**r) for r in rows]).items():
            out.append({"run": label, "method": method, **s})
    return out


def brittleness_table(
    sources: Mapping[str, Sequence[dict]], paper: bool = True
) -> tuple[go.Figure, list[dict]]:
    """Plotly table: ours (one block per run directory) then the paper's rows (grey)."""
    rows = brittleness_rows(sources)
    cells = [
        [
            r["run"],
            r["method"],
            str(r["samples"]),
            f"{r['tokens']:.1f}",
            f"{r['tf_pct']:.2f}",
            f"{r['greedy_pct']:.2f}",
            f"{r['exact_pct']:.0f}",
            f"{r['mismatch_by_0']:.0f}/{r['mismatch_by_1']:.0f}/{r['mismatch_by_2']:.0f}",
        ]
        for r in rows
    ]
    fill = ["white"] * len(cells)
    if paper:
        cells += [[str(c) for c in p] for p in PAPER_BRITTLENESS]
        fill += ["#f0f0f0"] * len(PAPER_BRITTLENESS)
    fig = _table(cells, TABLE_COLUMNS, fill, [1.6, 1.0, 0.6, 0.8, 0.6, 0.7, 0.6, 1.3])
    fig.update_layout(
        title="Teacher forcing hides greedy failure: full cramming stopped at 99% TF vs progressive "
        "(scored on its horizon); grey: the paper (REFERENCE D.2, D.3)"
    )
    return fig, rows


#: REFERENCE D.5 (the paper gives no intervals: "–" in our interval column).
PAPER_DIVERSITY = [
    ("paper: Llama-3.1-8B", "224", "0.9%", "1.49 [1.43, 1.53]", "–", "+0.18", "15x"),
    ("paper: Pythia-1.4B", "238", "1.8%", "1.58 [1.55, 1.62]", "–", "+0.24", "43x"),
    ("paper: SmolLM2-1.7B", "239", "1.6%", "1.61 [1.58, 1.64]", "–", "+0.10", "27x"),
    ("paper: Gemma-3-4B", "198", "1.8%", "1.63 [1.61, 1.64]", "–", "+0.04", "19x"),
]
DIVERSITY_COLUMNS = (
    "model (learning rates)",
    "N groups",
    "IG CV % [95% t]",
    "Sol. dist. median [IQR]",
    "Sol. dist. median [95% bootstrap]",
    "Dir. cos. [95% t]",
    "Disp. ratio x [95% bootstrap]",
)


def estimate_cell(summary: Mapping, key: str, fmt: str = "{:.2f}") -> str:
    """``summary[key]`` with its interval ``summary[key + "_ci"]`` (a ``MeanCI`` dict): ``0.41 [0.35, 0.47] (n=12)``;
    ``(no interval)`` when the summary predates the intervals."""
    from cramlens.stats import MeanCI

    value = summary.get(key)
    if value is None or value != value:
        return "–"
    d = summary.get(f"{key}_ci")
    if not d:
        return f"{fmt.format(value)} (no interval)"
    nums = {k: float("nan") if d.get(k) is None else d[k] for k in ("mean", "lo", "hi", "sd")}
    return MeanCI(**nums, n=int(d.get("n", 0)), level=d.get("level", 0.95)).format(fmt)


def diversity_cells(summary: Mapping, label: str) -> list[str]:
    """One row of the solution-diversity table (``DIVERSITY_COLUMNS``) from ``analyses.diversity.summarize``."""
    return [
        label,
        str(summary["N"]),
        estimate_cell(summary, "ig_cv", "{:.1f}"),
        f"{summary['sol_dist_median']:.2f} [{summary['sol_dist_q1']:.2f}, {summary['sol_dist_q3']:.2f}]",
        estimate_cell(summary, "sol_dist_median"),
        f"{estimate_cell(summary, 'dir_cos', '{:+.2f}')} (1/√d = {summary['random_cos']:.3f})",
        estimate_cell(summary, "disp_ratio", "{:.1f}"),
    ]


def diversity_table(summary: Mapping, label: str) -> tuple[go.Figure, dict]:
    """The solution-diversity row (``analyses.diversity.summarize``, with n and 95% intervals) above the paper's."""
    cells = [diversity_cells(summary, label)] if summary.get("N") else []
    fill = ["white"] * len(cells) + ["#f0f0f0"] * len(PAPER_DIVERSITY)
    cells += [list(p) for p in PAPER_DIVERSITY]
    fig = _table(cells, DIVERSITY_COLUMNS, fill, [1.8, 0.6, 1.0, 1.1, 1.2, 1.6, 1.0])
    fig.update_layout(
        title="Equally good solutions are far apart: same init, different learning rates "
        "(grey: the paper, REFERENCE D.5)"
    )
    return fig, dict(summary)


def probe_cells(rows: Sequence[dict], names: Mapping[str, str]) -> tuple[list[str], list[list[str]]]:
    """``(columns, cells)`` of the probe summary (``analyses.probes.run_probes`` rows): per task and condition, the
    score at the best layer with its interval, ``/`` the best shuffled-label score over layers, and the layer."""
    from ..probes import SCORE_INTERVAL, best_by

    best = best_by(rows)
    conds = list(dict.fromkeys(r["condition"] for r in rows))
    cells = [
        [names.get(task, task)]
        + [
            f"{estimate_cell(best[(c, task)], 'score')} / {best[(c, task)]['shuffled_max']:.2f} "
            f"(L{best[(c, task)]['layer']})"
            for c in conds
        ]
        for task in dict.fromkeys(r["task"] for r in rows)
    ]
    return [f"task: score [{SCORE_INTERVAL}] / best shuffled (layer)", *conds], cells


def _table(
    cells: list[list[str]], columns: Sequence[str], fill: list[str], widths: Sequence[float]
) -> go.Figure:
    cols = [list(c) for c in zip(*cells, strict=True)] if cells else [[] for _ in columns]
    fig = go.Figure(
        go.Table(
            columnwidth=list(widths),
            header={
                "values": [f"<b>{c}</b>" for c in columns],
                "fill_color": "#4c78a8",
                "font": {"color": "white", "size": 13},
                "align": "left",
                "height": 30,
            },
            cells={
                "values": cols,
                "fill_color": [fill] * len(columns),
                "align": "left",
                "font": {"size": 12},
                "height": 26,
                "line_color": "#d0d0d0",
            },
        )
    )
    fig.update_layout(  # 150: room for headers that wrap to three lines; 64 a row: cells wrap to three
        width=1250, height=150 + 64 * max(1, len(cells)), margin={"l": 20, "r": 20, "t": 60, "b": 10}
    )
    return fig


#: REFERENCE D.6 (SmolLM2-1.7B, 512 items): Base, Full Acc / Conv%, Prog Acc / Conv%.
PAPER_DOWNSTREAM = {
    "hellaswag": ("53.56", "38.71 / 96.88", "37.01 / 95.51"),
    "arc_easy": ("67.26", "53.29 / 97.85", "56.00 / 97.66"),
}
VARIANT = "context_ending"  # the paper's default scoring (PPL over context + ending)


def _conv_cell(r: dict) -> str:
    """Conv% with its Wilson interval and the unconverged contexts that missed only their first token, when known."""
    lo, hi = r["conv_pct_ci"]
    cell = _f(r["conv_pct"]) if lo is None else f"{r['conv_pct']:.1f}% [{lo:.1f}, {hi:.1f}]"
    if r["missed_only_first"] is not None:
        cell += f"<br>{r['missed_only_first']} unconverged missed only t0"
    return cell


def downstream_table(summaries: Mapping[str, dict], model: str) -> tuple[go.Figure, list[dict]]:
    """Per task (``summary.json`` of ``scripts/downstream.py``): Conv%, Base and Cram accuracy with n and 95% Wilson
    intervals, the paired tests of the converged subset, paper's row below."""
    from ..scoring import ACC_INTERVAL, acc_cell, flips_cell

    rows, cells = [], []
    for task, s in summaries.items():
        b, bc = s["base"].get(VARIANT, {}), s["base_converged"].get(VARIANT, {})
        c, cc = s["cram"].get(VARIANT, {}), s["cram_converged"].get(VARIANT, {})
        rc = s.get("random_converged", {}).get(VARIANT, {})
        paired = s.get("paired_converged", {})
        vs_base = paired.get("base_vs_cram", {}).get(VARIANT)
        vs_random = paired.get("random_vs_cram", {}).get(VARIANT)
        r = {
            "task": task,
            "n": s["n_items"],
            "conv_pct": s["conv_pct"],
            "conv_pct_ci": (s.get("conv_pct_lo"), s.get("conv_pct_hi")),  # Wilson, in newer summaries
            "missed_only_first": s.get("missed_only_first"),
            "base_acc": b.get("acc"),
            "base_acc_tok": b.get("acc_tok"),
            "base_conv_acc": bc.get("acc"),
            "cram_conv_acc": cc.get("acc"),
            "cram_acc": c.get("acc"),
            "random_conv_acc": rc.get("acc"),
            "n_conv": cc.get("n"),
            "cram_vs_base_conv": vs_base,
            "cram_vs_random_conv": vs_random,
        }
        rows.append(r)
        cells.append(
            [
                f"{model}: {task}" if model else task,
                str(r["n"]),
                _conv_cell(r),
                acc_cell(b),
                _f(r["base_acc_tok"]),
                acc_cell(bc),
                acc_cell(cc),
                acc_cell(c),
                acc_cell(rc),
                flips_cell(vs_base),
                flips_cell(vs_random),
            ]
        )
    fill = ["white"] * len(cells)
    for task in summaries:
        if task in PAPER_DOWNSTREAM:
            base, full, prog = PAPER_DOWNSTREAM[task]
            cells.append(
                [
                    f"paper SmolLM2-1.7B: {task}",
                    "512",
                    f"full {full.split(' / ')[1]}",
                    "–",
                    base,
                    "–",
                    f"full {full.split(' / ')[0]}, prog {prog.split(' / ')[0]}",
                    "–",
                    "–",
                    "–",
                    "–",
                ]
            )
            fill.append(GREY)
    cols = (
        "task",
        "items",
        "Conv %",
        f"Base acc (all) [{ACC_INTERVAL}]",
        "Base tok-norm (all)",
        "Base acc (conv.)",
        "Cram acc (conv.)",
        "Cram acc (all)",
        "Random vector, same norm (conv.)",
        "Cram vs Base (conv.): +right/-wrong, McNemar p",
        "Cram vs Random (conv.): +right/-wrong, McNemar p",
    )
    fig = _table(cells, cols, fill, [1.4, 0.4, 1.7, 1.2, 0.65, 1.05, 1.05, 1.05, 1.05, 1.0, 1.0])
    fig.update_layout(
        title="Reconstruction is not understanding: likelihood multiple choice with and without the "
        "crammed context (context+ending PPL; chance 25%; grey: paper D.6)"
    )
    return fig, rows


#: REFERENCE D.7 (SmolLM2-1.7B, 512 items): Acc (Valid).
PAPER_MMLU = {
    "baseline": "50.98",
    "few_shot": "45.91 (100)",
    "full_prefix": "0.00 (0.00)",
    "random": "46.66 (100)",
}


def mmlu_table(summary: Mapping, model: str) -> tuple[go.Figure, list[dict]]:
    """Per mode (``summary.json`` of ``scripts/downstream.py --task mmlu``): Acc, Valid (n, 95% Wilson), both
    parsers, cram TF, the paired test against the baseline."""
    from ..scoring import ACC_INTERVAL, acc_cell, flips_cell

    modes = summary["modes"]
    rows = [{"mode": m, **v} for m, v in modes.items()]
    cells = [
        [
            m,
            str(v["n"]),
            acc_cell(v, "acc"),
            acc_cell(v, "valid"),
            acc_cell(v, "acc_ref"),
            acc_cell(v, "valid_ref"),
            estimate_cell(v, "cram_tf", "{:.3f}"),
            flips_cell(v.get("vs_baseline", {}).get("correct")) if m != "baseline" else "–",
            PAPER_MMLU.get(m, "–"),
        ]
        for m, v in modes.items()
    ]
    cols = (
        "mode",
        "items",
        f"Acc % [{ACC_INTERVAL}]",
        "Valid %",
        "Acc % (ref. parser)",
        "Valid % (ref. parser)",
        "cram TF",
        "vs baseline: +right/-wrong, McNemar p",
        "paper SmolLM2-1.7B Acc (Valid)",
    )
    fig = _table(cells, cols, ["white"] * len(cells), [0.9, 0.5, 1.1, 1.1, 1.1, 1.1, 0.6, 1.1, 1.2])
    subj = ", ".join(summary.get("subjects", []))
    who = f"{model}: " if model else ""
    steps = summary.get("steps", "?")
    fig.update_layout(title=f"{who}generative 5-shot MMLU by mode ({subj}; {steps} cram steps; chance 25%)")
    return fig, rows


#: REFERENCE D.9 (mean over layers, %): compression emb., BOS original, diff, corr.
PAPER_SINK = {
    "smollm2-135m": ("SmolLM2-135M", "60.79 ± 17.6", "74.04 ± 11.45", "−13.25", "0.8475"),
    "gemma-3-270m": ("gemma-3-270m", "12.94 ± 3.04", "60.87 ± 1.43", "−47.93", "0.3448"),
}


def sink_table(results: Sequence[dict]) -> tuple[go.Figure, list[dict]]:
    """Attention mass on position 0 (``sink_<model>.json`` of ``scripts/knockout.py --sink``), paper's row below."""
    cells, fill, rows = [], [], []
    for r in results:
        t = r["table"]
        c, o, k = t["compression"], t["orig"], t.get("control")
        rows.append(
            {
                "model": r["model"],
                "n": r["n"],
                **{f"{name}_{key}": v for name, d in t.items() for key, v in d.items()},
            }
        )
        # which embeddings were measured: final progressive-stage ones (the paper's protocol) or full crams
        measured = r.get("embeddings")  # files without the field predate it: full crams
        kinds = ", ".join(measured or ["full"])
        rows[-1]["embeddings"] = kinds
        cells.append(
            [
                f"{r['model']}<br>{kinds} embeddings{' (older file)' if measured is None else ''}",
                str(r["n"]),
                f"{c['mean']:.2f} ± {c['std']:.2f}",
                f"{o['mean']:.2f} ± {o['std']:.2f}",
                f"{c['diff']:+.2f}",
                f"{c['corr']:.4f}",
                f"{k['mean']:.2f} ± {k['std']:.2f} (corr {k['corr']:.2f})" if k else "–",
            ]
        )
        fill.append("white")
        if r["model"] in PAPER_SINK:
            name, pc, po, pd, pr = PAPER_SINK[r["model"]]
            cells.append([f"paper: {name}", "–", pc, po, pd, pr, "–"])
            fill.append(GREY)
    cols = (
        "model",
        "texts",
        "memory at position 0",
        "position 0 of the plain text",
        "diff",
        "corr (layer profiles)",
        "ordinary token at the memory slot",
    )
    fig = _table(cells, cols, fill, [1.3, 0.5, 1.2, 1.3, 0.6, 0.9, 1.6])
    fig.update_layout(
        title="Attention sink: head-averaged attention mass on position 0, mean over layers (%); "
        "grey: paper D.9"
    )
    return fig, rows


def _f(x, spec: str = "{:.1f}") -> str:
    return "–" if x is None or x != x else spec.format(x)
