#!/usr/bin/env python
"""Markdown table of a (possibly unfinished) progressive run directory: horizon so far, steps, information gain.

python benchmarks/summarise_run.py runs/prog6
"""

from __future__ import annotations

import sys

from cramlens.runs import read_config, read_rows


def main(path: str) -> None:
    cfg = read_config(path)
    rows = read_rows(path)
    by: dict[int, list[dict]] = {}
    for r in rows:
        by.setdefault(r["sample_id"], []).append(r)
    print(
        f"run `{path}`: {cfg['settings']['model']}, lr {cfg['settings']['recipe']['lr']}, "
        f"warmup {cfg['settings']['recipe']['warmup']}, {cfg['settings']['recipe']['steps_per_stage']} steps/stage\n"
    )
    print(
        "| sample | text | horizon (tokens) | status | steps to horizon | steps spent | IG at horizon (bits) | H_LM (bits) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    hs = []
    for sid, traj in sorted(by.items()):
        traj.sort(key=lambda r: r["stage_index"])
        passed = [r for r in traj if r["converged"]]
        best = passed[-1] if passed else traj[-1]
        h = best["stage_seq_len"] if passed else 0
        hs.append(h)
        last = traj[-1]
        status = (
            "final" if last.get("final") else f"still growing (stage {last['stage_seq_len'] + 1} unfinished)"
        )
        if last.get("final") and not last["converged"]:
            status = f"stage {last['stage_seq_len']} failed"
        print(
            f"| {sid} | {best['text_id']} | {h} | {status} | {best['steps_taken']} | {last['steps_spent']} | "
            f"{best['information_gain_bits']:.1f} | {best['h_lm_bits']:.1f} |"
        )
    print(f"\nmean horizon {sum(hs) / len(hs):.1f} tokens over {len(hs)} samples")


if __name__ == "__main__":
    main(sys.argv[1])
