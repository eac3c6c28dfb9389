"""Terminal and markdown reports: a live per-sample view while cramming, final tables after."""

from __future__ import annotations

import math
import time

from rich.console import Console
from rich.live import Live
from rich.table import Table

from .results import CramRun


def _f(x, fmt="{:.1f}") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return fmt.format(x)


class LiveProgress:
    """Rich live table: per sample its stage length, accuracy, loss, steps and horizon so far."""

    def __init__(self, console: Console | None = None, refresh_s: float = 0.5, title: str = "cramming"):
        self.console = console or Console()
        self.refresh_s = refresh_s
        self.title = title
        self.state: dict[int, dict] = {}
        self.live: Live | None = None
        self.t0 = time.time()
        self._last = 0.0
        self.iterations = 0

    def __enter__(self):
        self.live = Live(self._table(), console=self.console, refresh_per_second=4, transient=False)
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.update(self._table())
            self.live.__exit__(*exc)

    def start_batch(self, k, group, loop) -> None:
        for p in group:
            self.state.setdefault(
                p.sample_id, {"id": p.text_id, "n": len(p.sequence), "horizon": 0, "done": False}
            )

    def update(self, loop, info, group, new_rows) -> None:
        self.iterations += 1
        for r in new_rows:
            s = self.state[r["sample_id"]]
            if r["converged"]:
                s["horizon"] = r["stage_seq_len"]
                s["ig"] = r["information_gain_bits"]
            s["done"] = s["done"] or r["final"]
        for j, p in enumerate(group):
            s = self.state[p.sample_id]
            s["L"] = int(loop.state.length[j])
            s["steps"] = int(loop.state.spent[j])
            if j in info["accuracy"]:
                s["acc"], s["loss"] = info["accuracy"][j], info["loss"][j]
        now = time.time()
        if self.live is not None and now - self._last > self.refresh_s:
            self._last = now
            self.live.update(self._table())

    def _table(self) -> Table:
        el = time.time() - self.t0
        t = Table(title=f"{self.title} — {el:.0f}s, {self.iterations} iterations", title_justify="left")
        for col in ("sample", "stage L", "TF acc", "loss", "steps", "horizon", "IG bits", ""):
            t.add_column(col, justify="right" if col not in ("sample", "") else "left")
        for sid, s in sorted(self.state.items()):
            t.add_row(
                f"{sid} {s['id'][:28]}",
                f"{s.get('L', '–')}/{s['n']}",
                _f(s.get("acc"), "{:.3f}"),
                _f(s.get("loss"), "{:.3f}"),
                str(s.get("steps", 0)),
                str(s["horizon"]),
                _f(s.get("ig")),
                "done" if s["done"] else "…",
            )
        return t


def samples_table(run: CramRun, title: str | None = None) -> Table:
    t = Table(title=title or f"{run.kind} cramming: per sample", title_justify="left")
    cols = [
        "#",
        "text",
        "horizon",
        "compressed",
        "of",
        "steps",
        "IG bits",
        "IG final",
        "H_LM bits",
        "ratio",
        "greedy",
        "stopped",
    ]
    for c in cols:
        t.add_column(c, justify="left" if c in ("text", "stopped") else "right")
    for s in run.samples:
        greedy = "–" if s.greedy_exact is None else ("exact" if s.greedy_exact else f"{s.greedy_match:.2f}")
        t.add_row(
            str(s.sample_id),
            s.text_id[-30:],
            str(s.horizon),
            str(s.compressed_tokens),
            str(len(s.sequence)),
            str(s.steps),
            _f(s.information_gain_bits),
            _f(s.information_gain_bits_final),
            _f(s.h_lm_bits),
            f"x{s.horizon / max(1, run.config['settings']['layout']['n_mem']):.0f}",
            greedy,
            s.reason or ("reached full length" if s.horizon == len(s.sequence) else ""),
        )
    sm = run.summary()
    t.caption = (
        f"means, 95% t-intervals: horizon {sm['horizon']}; compressed tokens (the paper's unit: stage rows, "
        f"failing stage included) {sm['compressed_tokens']}; IG at the horizon {sm['ig_bits']} bits, at the final "
        f"stage (the paper's tables) {sm['ig_final_bits']} bits; steps {sm['steps'].format('{:.0f}')}"
    )
    return t


def markdown_report(run: CramRun) -> str:
    st = run.config["settings"]
    rc = st["recipe"]
    lines = [
        f"# cramlens {run.kind} cramming report",
        "",
        f"- model: `{st['model']}` ({st['dtype']}), samples: {len(run.samples)}, created {run.config['created']}",
        f"- recipe: lr {rc['lr']}, warmup {rc['warmup']}, betas {tuple(rc['betas'])}, wd {rc['weight_decay']}, "
        f"init {rc['init']}, {rc['steps_per_stage']} steps/stage, {rc['steps_per_sample']} steps/sample, "
        f"threshold {rc['threshold']}",
        f"- layout: {st['layout']}",
        "",
        "| # | text | horizon | compressed tokens | of | steps | IG bits | IG bits, final stage | H_LM bits | greedy "
        "| stopped |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in run.samples:
        greedy = "–" if s.greedy_exact is None else ("exact" if s.greedy_exact else f"{s.greedy_match:.2f}")
        lines.append(
            f"| {s.sample_id} | {s.text_id} | {s.horizon} | {s.compressed_tokens} | {len(s.sequence)} | {s.steps} | "
            f"{_f(s.information_gain_bits)} | {_f(s.information_gain_bits_final)} | {_f(s.h_lm_bits)} | {greedy} "
            f"| {s.reason} |"
        )
    sm = run.summary()
    lines += [
        "",
        f"Means with 95% Student-t intervals: horizon {sm['horizon']} tokens (min {sm['horizon_min']}, max "
        f"{sm['horizon_max']}); compressed tokens, the paper's unit, {sm['compressed_tokens']}; information gain "
        f"at the horizon {sm['ig_bits']} bits, at the final stage {sm['ig_final_bits']} bits; steps "
        f"{sm['steps'].format('{:.0f}')}; greedy exact rate {_f(sm['greedy_exact_rate'], '{:.2f}')}.",
        "",
    ]
    return "\n".join(lines)
