#!/usr/bin/env python
"""Markdown table of a (possibly unfinished) progressive run directory: horizon so far, steps, information gain.

python benchmarks/summarise_run.py runs/prog6
"""

from __future__ import annotations

import sys

from cramlens.rows import group_rows, summarise_sample
from cramlens.runs import read_config, read_rows


def main(path: str) -> None:
    cfg = read_config(path)
    rows = read_rows(path)
    print(
        f"run `{path}`: {cfg['settings']['model']}, lr {cfg['settings']['recipe']['lr']}, "
        f"warmup {cfg['settings']['recipe']['warmup']}, {cfg['settings']['recipe']['steps_per_stage']} steps/stage\n"
    )
    print(
        "| sample | text | horizon (tokens) | status | steps to horizon | steps spent | IG at horizon (bits) | H_LM (bits) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    hs = []
    for sid, traj in group_rows(rows).items():
        s, _ = summarise_sample(traj, cfg["settings"]["kind"])
        hs.append(s.horizon)
        last = traj[-1]
        status = (
            "final" if last.get("final") else f"still growing (stage {last['stage_seq_len'] + 1} unfinished)"
        )
        if last.get("final") and not last["converged"]:
            status = f"stage {last['stage_seq_len']} failed"
        print(
            f"| {sid} | {s.text_id} | {s.horizon} | {status} | {s.steps} | {s.steps_spent} | "
            f"{s.information_gain_bits:.1f} | {s.h_lm_bits:.1f} |"
        )
    print(f"\nmean horizon {sum(hs) / len(hs):.1f} tokens over {len(hs)} samples")


if __name__ == "__main__":
    main(sys.argv[1])
