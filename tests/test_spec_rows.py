"""One spec in, typed rows out, one summary: the live run, ``load_run`` and a 2-shard merge agree per sample."""

from __future__ import annotations

import json
import math

import pytest
import torch

import cramlens as cl
from cramlens.distributed import merge_runs
from cramlens.recipe import Recipe, get_recipe
from cramlens.rows import SampleSummary, StageRow, same_summaries, summarise_rows
from cramlens.runs import read_config, read_rows
from cramlens.spec import CramSpec

FAST = Recipe(warmup=0, steps_per_stage=150, steps_per_sample=1500)


def seqs(n: int, length: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, 97, (length,), generator=g).tolist() for _ in range(n)]


def test_spec_round_trips_through_its_dict():
    spec = CramSpec(
        recipe=get_recipe("paper").with_(lr=0.05, betas=(0.9, 0.99)),
        layout=cl.Layout(n_mem=2, bos=False, score_from="text", mem_first=False),
        parametrization="low_dim",
        low_dim=8,
        shared_projection=True,
        min_len=2,
        step=3,
        schedule="geometric",
        batch_size=4,
        seed=7,
    )
    d = json.loads(json.dumps(spec.to_dict()))  # what config.json holds
    assert CramSpec.from_dict(d) == spec
    assert CramSpec.from_dict(CramSpec().to_dict()) == CramSpec()
    # keyword overrides: spec fields, recipe fields, recipe by name
    o = CramSpec().with_(recipe="paper", batch_size=3, lr=0.2)
    assert o.batch_size == 3 and o.recipe == get_recipe("paper", lr=0.2)
    with pytest.raises(cl.CramlensError, match="unknown recipe setting.*max_stepz"):
        CramSpec().with_(max_stepz=3)
    with pytest.raises(cl.CramlensError, match="schedule"):
        CramSpec(schedule="cubic")


def test_old_run_config_reads_as_a_spec():
    """An existing run directory (results/prog6, written before CramSpec) loads and gives its spec back."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "results" / "prog6"
    settings = read_config(path)["settings"]
    spec = CramSpec.from_dict(settings)
    assert {k: settings[k] for k in spec.to_dict()} == spec.to_dict()  # same keys, same values: resumable
    run = cl.load_run(path)
    assert run.spec == spec
    assert same_summaries(run.summaries(), summarise_rows(read_rows(path), "progressive"))
    assert [s.compressed_tokens for s in run] == [len(run.trajectory(s.sample_id)) for s in run]


def test_keyword_overrides_build_the_spec(tiny_llama):
    run = cl.progressive_cram(
        tiny_llama, seqs(2, 4, seed=5), recipe="paper", batch_size=2, steps_per_stage=40, steps_per_sample=120
    )
    spec = run.spec
    assert spec.batch_size == 2
    assert spec.recipe == get_recipe("paper", steps_per_stage=40, steps_per_sample=120)
    assert run.config["settings"]["batch_size"] == 2
    same = cl.progressive_cram(tiny_llama, seqs(2, 4, seed=5), spec)
    assert same.horizons() == run.horizons()


def _samples(run: cl.CramRun) -> list[tuple]:
    def f(x):
        return "nan" if isinstance(x, float) and math.isnan(x) else x

    return [
        tuple(
            f(getattr(s, k))
            for k in (
                "sample_id",
                "text_id",
                "horizon",
                "steps",
                "steps_spent",
                "information_gain_bits",
                "information_gain_bits_final",
                "h_lm_bits",
                "accuracy_final",
                "reason",
                "compressed_tokens",
                "greedy_exact",
                "greedy_match",
                "first_mismatch",
            )
        )
        + (s.sequence, s.embedding.tolist())
        for s in run
    ]


@pytest.mark.parametrize("kind", ["progressive", "full"])
def test_live_load_and_merge_give_one_summary(tiny_llama, tmp_path, kind):
    model = tiny_llama
    texts = seqs(3, 6, seed=2)
    if kind == "full":  # a small budget leaves some samples short of the whole text
        fn, spec = cl.cram, CramSpec(recipe=FAST.with_(steps_per_sample=25), batch_size=1, seed=1)
    else:
        fn, spec = cl.progressive_cram, CramSpec(recipe=FAST, batch_size=1, seed=1)
    live = fn(model, texts, spec, out=tmp_path / "single")
    loaded = cl.load_run(tmp_path / "single", model)
    fn(model, texts[:2], spec, out=tmp_path / "m" / "rank-0", first_id=0)
    fn(model, texts[2:], spec, out=tmp_path / "m" / "rank-1", first_id=2)
    merged = merge_runs([tmp_path / "m" / "rank-0", tmp_path / "m" / "rank-1"], tmp_path / "m", model)
    reloaded = cl.load_run(tmp_path / "m")

    want = live.summaries()
    assert len(want) == 3 and all(isinstance(s, SampleSummary) for s in want)
    for other in (loaded, merged, reloaded):
        assert same_summaries(other.summaries(), want)
        assert _samples(other) == _samples(live)
    assert json.loads((tmp_path / "m" / "samples.json").read_text()) == json.loads(
        (tmp_path / "single" / "samples.json").read_text()
    )

    for s, summ in zip(live, want, strict=True):
        assert s.horizon == summ.horizon and s.compressed_tokens == summ.compressed_tokens
        traj = live.trajectory(s.sample_id)
        assert summ.information_gain_bits_final == traj[-1]["information_gain_bits"]
        if kind == "progressive":
            passed = [r for r in traj if r["converged"]]
            assert s.horizon == (passed[-1]["stage_seq_len"] if passed else 0)
            assert summ.compressed_tokens == len(traj)
        else:  # the teacher-forced exact prefix of the final embedding
            assert len(traj) == 1 and summ.compressed_tokens == 1
            n = len(s.sequence)
            if s.horizon > 0:
                assert s.accuracy(s.horizon) == 1.0
            if s.horizon < n:
                assert s.accuracy(s.horizon + 1) < 1.0
    if kind == "full":
        assert any(s.horizon < len(s.sequence) for s in live), (
            "every sample converged: the prefix case did not run"
        )
        # rows written before tf_exact_prefix existed: load_run recomputes it from the embedding (given a model)
        lines = (tmp_path / "single" / "rows.jsonl").read_text().splitlines()
        old = [{k: v for k, v in json.loads(x).items() if k != "tf_exact_prefix"} for x in lines]
        (tmp_path / "single" / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
        assert cl.load_run(tmp_path / "single", model).horizons() == live.horizons()


def test_rows_are_stage_rows_on_disk(tiny_llama, tmp_path):
    run = cl.progressive_cram(tiny_llama, seqs(1, 4, seed=3), recipe=FAST, out=tmp_path / "r")
    for r in read_rows(tmp_path / "r"):
        row = StageRow.from_dict(r)
        assert row.to_dict().keys() == r.keys()
        assert {"final_convergence", "steps_taken", "num_compression_tokens", "stage_seq_len"} <= r.keys()
    assert len(run.rows) == len(read_rows(tmp_path / "r"))
