#!/usr/bin/env python
"""Regenerate every figure from the committed summaries in ``results/``: HTML + PNG per figure and a README.

    python scripts/make_figures.py --out figures                 # what `make figures` runs (a fresh clone works)
    python scripts/make_figures.py --list                        # the registry: figure, inputs, command
    python scripts/make_figures.py --out /tmp/f --only token_explorer horizon_ig --progressive runs/demo
    python scripts/make_figures.py --refresh-from . --out figures # refresh results/ from runs/ first
    python scripts/make_figures.py --runs runs --out /tmp/f       # draw from run directories where present

Each figure is one interactive HTML file (plotly.js is written once as ``<out>/plotly.min.js`` and referenced
relatively, so the files work offline) and one PNG (kaleido + a Chrome-family browser; without one, or when it fails, PNGs are skipped with one
warning line and the HTML is still written). A figure whose inputs are absent is skipped with one line naming the missing run or result and
the command that makes it; ``<out>/README.md`` indexes what was made and lists what is waiting.
No model is loaded: figures that need forwards are drawn from the result files of their analysis scripts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyses.plots.io import PngExport, write_html  # noqa: E402
from analyses.plots.registry import COMMANDS, REGISTRY, Built, FigureSpec, Missing, Sources  # noqa: E402
from cramlens import cli  # noqa: E402


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="figures", help="where the HTML, PNG and README.md go")
    p.add_argument(
        "--results",
        default="results",
        help="the committed per-experiment summaries every figure is drawn from (analyses/results_export.py)",
    )
    p.add_argument(
        "--runs",
        default=None,
        help="also draw from run directories under this root, looked in before --results (default: none)",
    )
    p.add_argument(
        "--refresh-from",
        default=None,
        metavar="ROOT",
        help="first refresh --results from the published runs under ROOT (runs/, figures/<analysis>/)",
    )
    p.add_argument(
        "--progressive",
        default=None,
        help="progressive run directory to draw (default: prog6, else demo, under --runs then --results)",
    )
    p.add_argument(
        "--only",
        nargs="+",
        default=None,
        metavar="NAME",
        help="only these figures (see --list); README.md is then left as it is",
    )
    p.add_argument("--no-png", action="store_true", help="HTML only (no browser needed)")
    p.add_argument("--png-scale", type=float, default=1.5, help="PNG pixel scale")
    p.add_argument("--list", action="store_true", help="print the registry and exit")
    return p.parse_args(argv)


def make(specs: list[FigureSpec], src: Sources, out: Path, png: PngExport, log=print) -> tuple[list, list]:
    """Build and write every spec; returns ``(made, skipped)``: ``(spec, Built, files)`` and ``(spec, reason)``."""
    out.mkdir(parents=True, exist_ok=True)
    made, skipped = [], []
    for spec in specs:
        t0 = time.time()
        try:
            built: list[Built] = spec.build(src)
        except Missing as e:
            skipped.append((spec, str(e)))
            log(f"skip {spec.name}: {e}")
            continue
        except Exception as e:  # a broken input must not stop the other figures
            skipped.append((spec, f"failed: {type(e).__name__}: {e}"))
            log(f"FAIL {spec.name}: {type(e).__name__}: {e}")
            continue
        for b in built:
            files = [out / f"{b.name}.html"]
            write_html(b.fig, files[0])
            if png.write(b.fig, out / f"{b.name}.png"):
                files.append(out / f"{b.name}.png")
            made.append((spec, b, files))
            log(f"made {b.name}: {', '.join(f.name for f in files)} ({time.time() - t0:.1f}s)")
    return made, skipped


def run_status(path: Path, run) -> str:
    """One line on a run directory used as input: model, kind, samples, rows, how many samples finished."""
    st = run.config.get("settings", {})
    done = sum(
        1
        for smp in run.samples
        if smp.horizon >= len(smp.sequence) or any(r.get("final") for r in run.trajectory(smp.sample_id))
    )
    state = (
        "complete" if done == len(run.samples) else f"in progress: {done}/{len(run.samples)} samples finished"
    )
    return (
        f"`{path}`: {st.get('model', '?')} {run.kind}, {len(run.samples)} samples, {len(run.rows)} rows, "
        f"mean horizon {run.summary()['horizon'].mean:.1f} ({state}; config.json created {run.config.get('created', '?')})"
    )


def readme(made: list, skipped: list, src: Sources, argv: list[str]) -> str:
    cmd = "python scripts/make_figures.py " + " ".join(argv) if argv else "python scripts/make_figures.py"
    lines = [
        "# Figures",
        "",
        f"Written by `{cmd}`" + (" (`make figures`)." if argv == ["--out", "figures"] else "."),
        "Every figure is an interactive HTML file (open it in a browser; `plotly.min.js` beside it, no network",
        "needed) and a static PNG. Each row names the inputs it was drawn from and the command that made them;",
        "paper references are to `shared/REFERENCE.md`. `python scripts/make_figures.py --list` prints the registry.",
        "",
        "| figure | what it shows | paper | drawn from | inputs made by |",
        "|---|---|---|---|---|",
    ]
    for spec, b, files in made:
        links = " · ".join(f"[{f.suffix[1:]}]({f.name})" for f in files)
        inputs = ", ".join(f"`{i}`" for i in b.inputs if i)
        lines.append(
            f"| **{b.name}** {links} | {spec.shows} | {spec.paper} | {inputs} | "
            f"`{src.fmt(COMMANDS[spec.command])}` |"
        )
    runs = src.loaded_runs()
    if runs:
        lines += ["", "## Run directories drawn from", ""] + [
            f"- {run_status(p, r)}" for p, r in runs.items()
        ]
    if skipped:
        lines += ["", "## Waiting for inputs", "", "| figure | what it shows | missing |", "|---|---|---|"]
        for spec, why in skipped:
            lines.append(f"| {spec.name} | {spec.shows} | {why} |")
    return "\n".join(lines) + "\n"


def list_registry(src: Sources) -> None:
    for s in REGISTRY:
        print(
            f"{s.name:22s} {s.shows}\n{'':22s} inputs: {src.fmt(s.inputs)}\n{'':22s} made by: "
            f"{src.fmt(COMMANDS[s.command])}"
        )


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = parse(argv)
    if a.refresh_from:
        from analyses.results_export import refresh_all

        files = refresh_all(a.refresh_from, a.results)
        print(f"refreshed {len(files)} files in {a.results}/ from {a.refresh_from}")
    src = Sources(
        Path(a.runs) if a.runs else None, Path(a.results), Path(a.progressive) if a.progressive else None
    )
    if a.list:
        list_registry(src)
        return
    specs = REGISTRY
    if a.only:
        names = {s.name for s in REGISTRY}
        unknown = sorted(set(a.only) - names)
        if unknown:
            raise cli.CramlensError(f"unknown figure(s) {', '.join(unknown)}; see --list")
        specs = [s for s in REGISTRY if s.name in a.only]
    out = Path(a.out)
    with PngExport(not a.no_png, a.png_scale) as png:
        made, skipped = make(specs, src, out, png)
    from cramlens.runs import atomic_write_text

    n_png = sum(len(f) - 1 for _, _, f in made)
    if a.only:  # a partial run must not replace the index of the full set
        print(
            f"{len(made)} figures in {out}/ ({n_png} PNG), {len(skipped)} skipped; {out}/README.md left as it was "
            "(--only)"
        )
        return
    atomic_write_text(out / "README.md", readme(made, skipped, src, argv))
    print(f"{len(made)} figures in {out}/ ({n_png} PNG), {len(skipped)} skipped; index: {out}/README.md")


if __name__ == "__main__":
    cli.run_main(main)
