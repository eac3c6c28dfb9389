"""Reports put the paper's units beside ours, with n and an interval."""

from __future__ import annotations

import cramlens as cl
from cramlens.report import markdown_report, samples_table


def test_reports_show_compressed_tokens_ig_final_and_intervals(tiny_llama):
    texts = cl.load_texts("builtin", tiny_llama.tokenizer, n_samples=3, seq_len=8)
    run = cl.progressive_cram(
        tiny_llama, texts, recipe="fast", batch_size=3, steps_per_stage=40, steps_per_sample=200
    )
    for s in run.samples:  # the paper counts stage rows: the failing stage too
        assert s.compressed_tokens == s.horizon + (1 if s.reason == "stage_failed" else 0)
    sm = run.summary()
    assert sm["compressed_tokens"].n == 3 and sm["horizon"].n == 3
    assert abs(sm["compressed_tokens"].mean - sum(s.compressed_tokens for s in run.samples) / 3) < 1e-9
    md = markdown_report(run)
    assert "| compressed tokens |" in md and "IG bits, final stage" in md
    assert f"compressed tokens, the paper's unit, {sm['compressed_tokens']}" in md and "(n=3)" in md
    t = samples_table(run)
    assert "compressed" in [c.header for c in t.columns] and "t-intervals" in t.caption
