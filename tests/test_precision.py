"""The GPU path's dtype handling, exercised on the CPU: a bf16 model crams and greedy-decodes its horizon exactly."""

from __future__ import annotations

import torch

import cramlens as cl
from cramlens.recipe import Recipe


def test_bf16_model_keeps_greedy_exactness_at_the_horizon():
    model = cl.load_model("tiny-llama", device="cpu", dtype="bfloat16")
    assert model.cfg.dtype == torch.bfloat16 and next(model.parameters()).dtype == torch.bfloat16
    texts = cl.load_texts("builtin", model.tokenizer, n_samples=3, seq_len=8, seed=1)
    run = cl.progressive_cram(
        model, texts, recipe=Recipe(warmup=0, steps_per_stage=150, steps_per_sample=1500), batch_size=3
    )
    assert all(s.embedding.dtype == torch.float32 for s in run)  # the trainable stays fp32
    assert all(s.horizon >= 2 for s in run), repr(run)
    assert all(s.greedy_exact for s in run), [repr(s) for s in run]


def test_device_and_dtype_flags_reach_the_model():
    from cramlens import cli

    a = cli.argparse.Namespace(
        model="tiny-gpt2",
        device="cpu",
        dtype="bfloat16",
        no_fast=True,
        threads=None,
        data="builtin",
        samples=1,
        seq_len=4,
        seed=0,
        offset="start",
        skip=0,
    )
    model, texts = cli.load_model_and_texts(a)
    assert str(model.cfg.device) == "cpu" and model.cfg.dtype == torch.bfloat16
    assert len(texts) == 1 and len(texts[0].token_ids) == 4
