"""Capacity in tokens and bits (analyses.capacity): Kuratov's formula, H_LM / IG against hand sums, the sources."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from analyses.capacity import (
    KURATOV,
    SampleCapacity,
    capacity_utilisation,
    load_source,
    sample_capacity,
    source_label,
    stability,
    summarise,
    theoretical_capacity_tokens,
)
from cramlens import Layout, progressive_cram, surprisal_bits
from cramlens.errors import CramlensError

LN2 = math.log(2)


def test_theoretical_capacity_known_dims():
    assert round(theoretical_capacity_tokens(4096, 128256)) == 3862  # Llama-3.1-8B, Kuratov's table
    for _, (d, v, *_rest) in KURATOV.items():  # every published row (theor. cap. column)
        assert round(theoretical_capacity_tokens(d, v)) == KURATOV[_][4]
    assert theoretical_capacity_tokens(576, 49152) == pytest.approx(16 * 576 / math.log2(49152))
    with pytest.raises(CramlensError):
        theoretical_capacity_tokens(0, 100)


def test_utilisation():
    assert capacity_utilisation(16 * 576, 576) == 1.0
    assert capacity_utilisation(921.6, 576) == pytest.approx(0.1)


def test_source_labels():
    assert source_label("/x/shared/data/pg19") == "pg19"
    assert source_label("/x/pg19_style_gutenberg_excerpts_100.jsonl") == "pg19"
    assert source_label("builtin") == "builtin" and source_label("random-words") == "random-words"
    assert source_label("/data/my_books.jsonl") == "my_books"


def _hand_bits(model, seq: list[int], memory: torch.Tensor, L: int) -> tuple[float, float]:
    """H_LM and H_comp of seq[:L] (t_1..t_{L-1}) with plain forwards: no cramlens code involved."""
    ids = torch.tensor([seq[:L]])
    lp = F.log_softmax(model(ids)[0], dim=-1)
    h_lm = -sum(float(lp[i - 1, seq[i]]) for i in range(1, L)) / LN2

    def put(x, hook):
        x = x.clone()
        x[:, 0] = memory
        return x

    inp = torch.tensor([[0] + seq[: L - 1]])  # [mem][t_0 .. t_{L-2}]: position i predicts t_i
    lpc = F.log_softmax(model.run_with_hooks(inp, fwd_hooks=[("hook_embed", put)])[0], dim=-1)
    h_comp = -sum(float(lpc[i, seq[i]]) for i in range(1, L)) / LN2
    return h_lm, h_comp


@pytest.mark.parametrize("name", ["tiny_gpt2", "tiny_llama"])
def test_h_lm_and_information_gain_equal_hand_sums(name, request):
    model = request.getfixturevalue(name)
    texts = [[1000 + 7 * i + j for j in range(5)] for i in range(2)]
    run = progressive_cram(
        model,
        texts,
        recipe="fast",
        steps_per_stage=80,
        steps_per_sample=240,
        batch_size=2,
        check_greedy=False,
    )
    caps = sample_capacity(run, model.cfg.d_model, "synthetic")
    checked = 0
    for s, c in zip(run.samples, caps, strict=True):
        seq = s.sequence  # [BOS] + x for tiny-gpt2
        for row in run.trajectory(s.sample_id):
            if not row["converged"] or row["stage_seq_len"] < 2:
                continue
            h_lm, h_comp = _hand_bits(model, seq, row["embedding"][0], row["stage_seq_len"])
            assert row["h_lm_bits"] == pytest.approx(h_lm, rel=1e-4, abs=1e-4)
            assert row["h_comp_bits"] == pytest.approx(h_comp, rel=1e-3, abs=1e-3)
            assert row["information_gain_bits"] == pytest.approx(h_lm - h_comp, rel=1e-3, abs=1e-3)
            checked += 1
        # the sample's numbers are its horizon stage's
        if s.horizon >= 2:
            h_lm, h_comp = _hand_bits(model, seq, s.embedding[0], s.horizon)
            assert c.h_lm_bits == pytest.approx(h_lm, rel=1e-4, abs=1e-4)
            assert c.information_gain_bits == pytest.approx(h_lm - h_comp, rel=1e-3, abs=1e-3)
            assert c.bits_per_token == pytest.approx(h_lm / (s.horizon - 1), rel=1e-4)
        # surprisal_bits is the per-token H_LM: its sum over the horizon prefix is the sample's H_LM
        assert float(torch.nansum(surprisal_bits(model, seq)[1 : max(1, s.horizon)])) == pytest.approx(
            c.h_lm_bits, rel=1e-4, abs=1e-4
        )
        assert c.compression_ratio == s.horizon and c.horizon == s.horizon
        assert c.utilisation == pytest.approx(c.information_gain_bits / (16 * model.cfg.d_model))
    assert checked >= 1, "no converged stage of length >= 2: the hand-sum check did not run"


def test_budget_bound_horizon_is_a_lower_bound(tiny_llama):
    texts = [[1000 + 7 * i + j for j in range(6)] for i in range(2)]
    # the sample budget runs out long before any stage budget: every horizon is only a lower bound
    run = progressive_cram(
        tiny_llama,
        texts,
        recipe="fast",
        steps_per_stage=500,
        steps_per_sample=2,
        batch_size=2,
        check_greedy=False,
    )
    caps = sample_capacity(run, tiny_llama.cfg.d_model)
    assert all(c.horizon < c.seq_len and c.budget_bound and c.capped for c in caps)
    assert summarise(caps)[0]["capped"] == 2
    # one step per stage, a large sample budget: the stage budget ends each sample, a real horizon
    run = progressive_cram(
        tiny_llama,
        texts,
        recipe="fast",
        steps_per_stage=1,
        steps_per_sample=1000,
        batch_size=2,
        check_greedy=False,
    )
    caps = sample_capacity(run, tiny_llama.cfg.d_model)
    assert any(c.horizon < c.seq_len for c in caps), (
        "every text hit the cap: the stage-budget case did not run"
    )
    assert all(not c.budget_bound for c in caps)
    assert summarise(caps)[0]["capped"] == sum(c.horizon >= c.seq_len for c in caps)


def test_summarise_and_stability():
    def row(src, h, ig):
        return SampleCapacity(src, "full", "t", h, 48, ig * 2, ig, ig, h, ig / 9216, 1.0, 10)

    rows = [row("a", 10, 100.0), row("a", 20, 110.0), row("b", 40, 105.0), row("b", 60, 95.0)]
    summ = {d["source"]: d for d in summarise(rows)}
    assert summ["a"]["horizon_mean"] == 15 and summ["a"]["horizon_std"] == pytest.approx(math.sqrt(50))
    assert summ["b"]["information_gain_bits_mean"] == 100.0 and summ["a"]["n"] == 2
    st = stability(list(summ.values()))
    assert st["horizon"]["max_over_min"] == pytest.approx(50 / 15)
    assert st["ig_more_stable"] is True


def test_report_verdict_needs_two_sources_and_names_lower_bounds():
    from analyses.plots.capacity_report import capacity_markdown

    def row(src, h, ig, seq_len=48):
        return SampleCapacity(src, "full", "t", h, seq_len, ig * 2, ig, ig, h, ig / 9216, 1.0, 10)

    one = summarise([row("a", 10, 100.0), row("a", 20, 110.0)])
    assert "One source only" in capacity_markdown(one, stability(one), "m", 576, 49152)
    two = summarise([row("a", 10, 100.0), row("a", 48, 110.0), row("b", 40, 105.0), row("b", 30, 95.0)])
    md = capacity_markdown(two, stability(two), "m", 576, 49152)
    assert "information gain is more stable" in md and "1 of 4 horizons are lower bounds" in md


def test_generated_source_is_greedy(tiny_llama):
    ids = load_source(tiny_llama, "generated", 2, 8, prompts_from="builtin")
    assert len(ids) == 2 and all(len(x) == 8 for x in ids)
    with torch.no_grad():
        logits = tiny_llama(torch.tensor([ids[0]]))[0]
    # every token after the 4-token prompt is the argmax
    assert logits[3:-1].argmax(-1).tolist() == ids[0][4:]


def test_capacity_script_smoke(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import capacity as script

    args = [
        "--model",
        "tiny-gpt2",
        "--sources",
        "builtin=2",
        "random-words",
        "--samples",
        "1",
        "--seq-len",
        "4",
        "--steps-per-stage",
        "5",
        "--max-steps",
        "10",
        "--out",
        str(tmp_path),
        "--figures",
        "",
    ]
    script.main(args)
    md = (tmp_path / "tiny-gpt2" / "capacity_report.md").read_text()
    assert "random-words" in md and "Kuratov" in md and "3862" in md
    script.main(args + ["--table-only"])
    # a source run on its own later (e.g. in a parallel process) joins the table instead of replacing it
    script.main(
        [
            "--model",
            "tiny-gpt2",
            "--sources",
            "generated",
            "--samples",
            "1",
            "--seq-len",
            "6",
            "--steps-per-stage",
            "5",
            "--max-steps",
            "10",
            "--out",
            str(tmp_path),
            "--figures",
            "",
        ]
    )
    md = (tmp_path / "tiny-gpt2" / "capacity_report.md").read_text()
    assert all(f"| {src} |" in md for src in ("builtin", "random-words", "generated")), md


@pytest.mark.integration
def test_random_words_are_more_surprising_than_natural_text(smollm2, shared_data):
    from cramlens import load_texts

    def per_token(source):
        texts = load_texts(source, smollm2.tokenizer, 4, 32)
        bits = torch.cat([surprisal_bits(smollm2, list(t.token_ids))[1:] for t in texts])
        return float(bits.mean())

    natural = per_token(str(shared_data / "pg19"))
    docs = per_token("builtin")
    rnd = per_token("random-words")
    assert rnd > natural + 3 and rnd > docs + 3, (rnd, natural, docs)


def test_layout_default_is_memory_first():
    # the hand sums above assume the reference layout [mem][BOS?][x]
    assert Layout().mem_first and Layout().score_from == "memory"


def test_depth_figure_marks_lower_bounds_and_unfinetuned_models():
    from analyses.plots.capacity_report import depth_figure

    def res(model, variant, n, horizons, capped, ft):
        return {
            "model": model,
            "variant": variant,
            "n": n,
            "base_layers": 30 if model == "a" else 18,
            "finetuned": ft,
            "horizons": horizons,
            "capped": capped,
            "horizon_mean": sum(horizons) / len(horizons),
        }

    results = [
        res("a", "full", None, [20, 30], 2, False),
        res("a", "first1", 1, [4, 6], 0, True),
        res("b", "first2", 2, [8, 12, 10], 1, False),
    ]
    fig, data = depth_figure(results)
    ours = fig.data[0]
    assert list(ours.x) == ["first1", "first2", "full"]
    assert list(ours.y) == ["a (30L)", "b (18L, no ft)"]
    assert [list(r) for r in ours.text] == [["5.0", "–", "≥25"], ["–", "10<br>1/3 lb", "–"]]
    assert data["ours"]["horizon_mean"] == [[5.0, None, 25.0], [None, 10.0, None]]
    assert list(fig.data[1].z[0]) == [50, 241, 404, 455, 335]  # the paper's SmolLM2-1.7B row
