"""Downstream evaluation: loaders, the likelihood scorer, the MMLU prompt / parser / decoder (tiny models, seconds)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

import cramlens as cl
from analyses import mmlu, tasks
from analyses.downstream import cram_contexts, load_crams, missed_only_first, summarize_rows
from analyses.scoring import (
    accuracy,
    choice_sequences,
    predict,
    score_items,
    token_normalized_accuracy,
)

ITEM = tasks.Item("x", "The cat sat on the", ("mat.", "moon and sang.", "dog"), 0, "hellaswag")


# ----------------------------------------------------------------------------- MMLU prompt and parser
def test_mmlu_prompt_matches_the_reference_format_exactly():
    shots = [
        tasks.Item("d0", "What is 1+1?", ("1", "2", "3", "4"), 1, "mmlu", "high_school_us_history"),
        tasks.Item("d1", "Pick C.", ("a", "b", "c", "d"), 2, "mmlu", "high_school_us_history"),
    ]
    q = tasks.Item("t0", "Which?", ("w", "x", "y", "z"), 3, "mmlu", "high_school_us_history")
    golden = (
        "The following are multiple choice questions about High School Us History.\n\n"
        "Question: What is 1+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: B\n\n"
        "Question: Pick C.\nA. a\nB. b\nC. c\nD. d\nAnswer: C\n"
        "Question: Which?\nA. w\nB. x\nC. y\nD. z\nAnswer:"
    )
    assert mmlu.full_prompt("high_school_us_history", q, shots) == golden


@pytest.mark.parametrize(
    "text, strict, reference",
    [
        ("A", "A", "A"),
        (" b)", "B", "B"),
        ("Answer: C", "C", "A"),  # the reference's first-letter rule reads the "A" of "Answer"
        (" The answer is (d).", "D", "A"),
        ("garbage", None, "A"),  # ... and most English words as some letter
        ("\n\n123", None, None),
        ("", None, None),
        (" Because", None, "B"),
    ],
)
def test_answer_parser(text, strict, reference):
    assert mmlu.parse_answer(text) == strict
    assert mmlu.parse_answer(text, "reference") == reference


def test_greedy_generate_with_cache_matches_full_forward_decoding(tiny_llama):
    ids = tiny_llama.to_tokens("Question: what is it?\nAnswer:")[0].tolist()
    mem = torch.randn(1, tiny_llama.cfg.d_model, generator=torch.Generator().manual_seed(0))
    got = mmlu.greedy_generate(tiny_llama, ids, mem, n_new=4)
    toks = [0] + ids
    want = []
    for _ in range(4):
        logits = tiny_llama.run_with_hooks(torch.tensor([toks]), fwd_hooks=list(cl.inject(mem[None])))
        want.append(int(logits[0, -1].argmax()))
        toks.append(want[-1])
    assert got == want
    plain = mmlu.greedy_generate(tiny_llama, ids, None, 1)
    assert plain == [int(tiny_llama(torch.tensor([ids]))[0, -1].argmax())]


def test_random_memory_is_the_papers_std_scaled_normal_or_norm_matched(tiny_llama):
    v = mmlu.random_memory(tiny_llama, n_mem=64, seed=3)  # the paper's: N(0, 1) * std(W_E)
    assert v.shape == (64, tiny_llama.cfg.d_model)
    assert (
        abs(v.std().item() / tiny_llama.W_E.std().item() - 1) < 0.05 and abs(v.mean().item()) < 0.05 * v.std()
    )
    torch.testing.assert_close(v, mmlu.random_memory(tiny_llama, n_mem=64, seed=3))
    w = mmlu.random_memory(tiny_llama, seed=3, scale="mean_norm")
    torch.testing.assert_close(w.norm(), tiny_llama.W_E.norm(dim=-1).mean(), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- loaders
def test_arc_mixed_labels():
    assert tasks.arc_answer_index(["A", "B", "C"], "C") == 2
    assert tasks.arc_answer_index(["1", "2", "3", "4"], "3") == 2
    assert tasks.arc_answer_index(["A", "B", "C", "D", "E"], "E") == 4
    assert tasks.arc_answer_index(["1", "2", "3", "4"], "B") == 1  # mixed key style
    with pytest.raises(cl.CramlensError):
        tasks.arc_answer_index(["A", "B"], "D")


def test_local_jsonl_layouts(tmp_path):
    p = tmp_path / "arc.jsonl"
    rows = [
        {
            "id": "q1",
            "question": "Q?",
            "choices": [
                {"label": "1", "text": "x"},
                {"label": "2", "text": "y"},
                {"label": "3", "text": "z"},
            ],
            "answerKey": "2",
        },
        {
            "id": "q2",
            "question": {"stem": "S?", "choices": [{"label": "A", "text": "u"}, {"label": "B", "text": "v"}]},
            "answerKey": "B",
        },
        {
            "id": "q3",
            "question": "H?",
            "choices": {"label": ["A", "B"], "text": ["m", "n"]},
            "answerKey": "A",
        },
    ]
    p.write_text("\n".join(json.dumps(r) for r in rows))
    items = tasks.load_items("arc_easy", p)
    assert [(it.context, it.choices, it.label) for it in items] == [
        ("Q?", ("x", "y", "z"), 1),
        ("S?", ("u", "v"), 1),
        ("H?", ("m", "n"), 0),
    ]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"ctx": "a"}\n')
    with pytest.raises(cl.CramlensError, match="unexpected layout"):
        tasks.load_items("hellaswag", bad)


def test_hub_names_fail_offline_with_one_line(monkeypatch):
    import datasets

    def offline(*a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(cl.CramlensError, match="needs network"):
        tasks.load_items("hellaswag", "hub")


def test_shared_benchmark_files(shared_data):
    if not (shared_data / "hellaswag").exists():
        pytest.skip("../shared/data is absent")
    hs = tasks.load_items("hellaswag")
    arc = tasks.load_items("arc_easy")
    mm = tasks.load_items("mmlu")
    pool = tasks.few_shot_pool()
    assert len(hs) == 1000 and all(len(it.choices) == 4 and 0 <= it.label < 4 for it in hs)
    assert len(arc) == 1000 and {len(it.choices) for it in arc} >= {3, 4, 5}
    assert all(0 <= it.label < len(it.choices) for it in arc)
    assert len(mm) == 1140 and len(pool) == 57 and all(len(v) == 5 for v in pool.values())
    assert pool["abstract_algebra"][0].label == 1  # "B" in the original (SOURCES.md spot check)


# ----------------------------------------------------------------------------- scoring
def _hand_logprobs(model, seq, memory=None):
    """log p(seq[t] | mem?, seq[:t]) by a plain full forward, no cramlens helpers."""
    if memory is None:
        logits = model(torch.tensor([seq]))[0]
        lp = F.log_softmax(logits.float(), -1)
        return [float("nan")] + [float(lp[t - 1, seq[t]]) for t in range(1, len(seq))]
    logits = model.run_with_hooks(torch.tensor([[0] + seq]), fwd_hooks=list(cl.inject(memory[None])))[0]
    lp = F.log_softmax(logits.float(), -1)
    return [float(lp[t, seq[t]]) for t in range(len(seq))]


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_gpt2"])
def test_scoring_equals_hand_computed_log_likelihood(name, request):
    model = request.getfixturevalue(name)
    mem = torch.randn(1, 1, model.cfg.d_model, generator=torch.Generator().manual_seed(1))
    seqs, ctx_len = choice_sequences(model, ITEM)
    assert seqs[0][:ctx_len] == model.to_tokens(ITEM.context)[0].tolist()
    variants = ("context_ending", "ending_only", "edge", "compression_only")
    base = score_items(model, [ITEM], None, variants, batch_size=2)
    comp = score_items(model, [ITEM], mem, variants, batch_size=2)
    bos = 1 if model.cfg.default_prepend_bos else 0
    for j, seq in enumerate(seqs):
        lp0, lp1 = _hand_logprobs(model, seq), _hand_logprobs(model, seq, mem[0])
        n = len(seq)
        assert base.nll["context_ending"][0][j] == pytest.approx(-sum(lp0[1:]) / (n - 1), abs=1e-4)
        assert base.nll["ending_only"][0][j] == pytest.approx(-sum(lp0[ctx_len:]) / (n - ctx_len), abs=1e-4)
        assert comp.nll["context_ending"][0][j] == pytest.approx(-sum(lp1[1:]) / (n - 1), abs=1e-4)
        assert comp.nll["edge"][0][j] == pytest.approx(-sum(lp1) / n, abs=1e-4)
        assert comp.nll["ending_only"][0][j] == pytest.approx(-sum(lp1[ctx_len:]) / (n - ctx_len), abs=1e-4)
        end = model.to_tokens(ITEM.choices[j])[0].tolist()
        lpe = _hand_logprobs(model, end, mem[0])
        assert comp.nll["compression_only"][0][j] == pytest.approx(
            -sum(lpe[bos:]) / (len(end) - bos), abs=1e-4
        )
    assert base.n_tokens == [len(seqs[0])]


def test_batched_scoring_matches_one_at_a_time(tiny_llama):
    items = [
        ITEM,
        tasks.Item("y", "A dog ran", ("home.", "to the park quickly", "away", "up"), 2, "hellaswag"),
    ]
    mem = torch.randn(2, 1, tiny_llama.cfg.d_model)
    both = score_items(tiny_llama, items, mem, ("context_ending", "edge"), batch_size=3)
    for i, it in enumerate(items):
        one = score_items(tiny_llama, [it], mem[i : i + 1], ("context_ending", "edge"), batch_size=1)
        for v in one.nll:
            assert one.nll[v][0] == pytest.approx(both.nll[v][i], abs=1e-5)


def test_accuracy_metrics_on_synthetic_numbers():
    nll = [[1.0, 0.5, 2.0], [0.1, 0.1, 3.0], [5.0, 4.0, 3.0]]
    assert predict(nll) == [1, 0, 2]
    labels, ntok = [1, 1, 0], [10, 20, 30]
    assert accuracy(predict(nll), labels) == pytest.approx(100 / 3)
    assert token_normalized_accuracy(predict(nll), labels, ntok) == pytest.approx(100 * 10 / 60)
    assert accuracy(predict(nll), labels, [True, False, False]) == 100.0
    rows = [
        {
            "id": str(i),
            "label": labels[i],
            "n_tokens": ntok[i],
            "converged": i < 2,
            "base": {"context_ending": nll[i]},
            "cram": {"context_ending": nll[2 - i]},
        }
        for i in range(3)
    ]
    s = summarize_rows(rows)
    assert s["conv_pct"] == pytest.approx(200 / 3)
    assert s["conv_pct_lo"] < 200 / 3 < s["conv_pct_hi"]  # Wilson, 2 of 3
    assert s["missed_only_first"] is None  # rows written before the field: unknown, not 0
    for i, r in enumerate(rows):
        r["missed_only_first"] = i == 2
    assert summarize_rows(rows)["missed_only_first"] == 1
    assert s["base"]["context_ending"]["acc"] == pytest.approx(100 / 3)
    assert s["cram_converged"]["context_ending"]["n"] == 2


@pytest.mark.parametrize(
    "score_from, horizon, acc, expected",
    [
        ("memory", 0, 3 / 4, True),  # t0 (the memory's own prediction) is the one miss
        ("memory", 2, 3 / 4, False),  # one miss, but not the first token
        ("memory", 0, 2 / 4, False),  # t0 and another token missed
        ("memory", 4, 1.0, False),  # converged
        ("text", 1, 2 / 3, True),  # Kuratov scoring: t0 is given, t1 is the first scored token
        ("text", 0, 2 / 3, False),
    ],
)
def test_missed_only_first_scored_token(score_from, horizon, acc, expected):
    s = cl.CrammedSample(
        0,
        "t",
        "t",
        [5, 6, 7, 8],
        torch.zeros(1, 4),
        horizon,
        0,
        0,
        0.0,
        0.0,
        acc,
        kind="full",
        layout=cl.Layout(score_from=score_from),
    )
    assert missed_only_first(s) is expected


def test_cram_contexts_groups_by_length_and_reads_back(tiny_llama, tmp_path):
    items = [
        tasks.Item("a", "one two", ("x",), 0, "hellaswag"),
        tasks.Item("b", "three four five", ("x",), 0, "hellaswag"),
        tasks.Item("c", "six seven", ("x",), 0, "hellaswag"),
    ]
    crams = cram_contexts(tiny_llama, items, tmp_path, max_steps=3, batch_size=4, log=None)
    assert set(crams) == {"a", "b", "c"}
    assert len(list(tmp_path.glob("len*"))) == 2
    again = cram_contexts(tiny_llama, items, tmp_path, max_steps=3, batch_size=4, log=None)
    back = load_crams(tmp_path, tiny_llama)
    for k in crams:
        assert torch.equal(crams[k].embedding, again[k].embedding)
        assert torch.equal(crams[k].embedding, back[k].embedding)
        assert crams[k].sequence == back[k].sequence
    with pytest.raises(cl.CramlensError, match="another layout"):  # finished crams of the paper's scoring
        cram_contexts(tiny_llama, items, tmp_path, max_steps=3, layout=cl.Layout(score_from="text"), log=None)


@pytest.mark.integration
def test_smollm2_hellaswag_contexts_are_token_prefixes(smollm2, shared_data):
    if not (shared_data / "hellaswag").exists():
        pytest.skip("../shared/data is absent")
    items = tasks.load_items("hellaswag", limit=30)
    for it in items:
        seqs, ctx_len = choice_sequences(smollm2, it)
        assert ctx_len == len(smollm2.to_tokens(it.context)[0])
    s = score_items(smollm2, items[:1], None, ("context_ending", "ending_only"))
    assert all(0 < x < 20 for row in s.nll["context_ending"] for x in row)


def test_random_memory_control_is_norm_matched_deterministic_and_backfilled(tiny_llama, tmp_path):
    from analyses.downstream import evaluate_choices, norm_matched_random, read_results

    items = [ITEM, tasks.Item("y", "A dog ran", ("home.", "to the park", "away"), 2, "hellaswag")]
    mem = torch.randn(2, 1, tiny_llama.cfg.d_model) * torch.tensor([3.0, 0.5])[:, None, None]
    ctrl = norm_matched_random(mem, items)
    torch.testing.assert_close(ctrl.norm(dim=-1), mem.norm(dim=-1))
    assert torch.equal(ctrl, norm_matched_random(mem, items))  # seeded by the item id
    assert abs(F.cosine_similarity(ctrl[0, 0], mem[0, 0], dim=0)) < 0.5
    crams = cram_contexts(tiny_llama, items, tmp_path / "crams", max_steps=2, batch_size=2, log=None)
    s = evaluate_choices(tiny_llama, items, crams, tmp_path, log=None)
    rows = read_results(tmp_path / "results.jsonl")
    want = score_items(
        tiny_llama,
        items,
        norm_matched_random(torch.stack([crams[i.id].embedding for i in items]), items),
        ("context_ending", "ending_only"),
    )
    for i, r in enumerate(rows):
        assert r["random"]["ending_only"] == pytest.approx(want.nll["ending_only"][i], abs=1e-5)
    assert s["random_converged"]["context_ending"]["n"] == s["cram_converged"]["context_ending"]["n"]
    # rows written before the control existed get it on the next call, the rest of the row untouched
    old = [{k: v for k, v in r.items() if k != "random"} for r in rows]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    assert "random" not in summarize_rows(old)
    s2 = evaluate_choices(tiny_llama, items, crams, tmp_path, log=None)
    again = read_results(tmp_path / "results.jsonl")
    for a, b in zip(again, rows, strict=True):
        for v in b["random"]:
            assert a["random"][v] == pytest.approx(b["random"][v], abs=1e-5)
    assert [r["cram"] for r in again] == [r["cram"] for r in rows]
    assert s2["random"] == s["random"]


def test_paired_flips_counts_and_exact_mcnemar():
    from analyses.scoring import paired_flips

    assert paired_flips([0, 1, 2, 0], [0, 0, 2, 1], [0, 1, 1, 1]) == {"a_only": 1, "b_only": 1, "p": 1.0}
    five = paired_flips([1] * 6, [0] * 6, [0] * 6, [True] * 5 + [False])
    assert (five["a_only"], five["b_only"]) == (0, 5) and five["p"] == pytest.approx(2 / 32)
    rows = [
        {
            "id": str(i),
            "label": 0,
            "n_tokens": 3,
            "converged": True,
            "base": {"ending_only": [1.0, 0.0]},
            "cram": {"ending_only": [0.0, 1.0]},
        }
        for i in range(4)
    ]
    flips = summarize_rows(rows)["paired_converged"]["base_vs_cram"]["ending_only"]
    assert flips == {"a_only": 0, "b_only": 4, "p": pytest.approx(2 / 16)}


def test_mcnemar_exact_p_on_a_flip_table():
    from analyses.scoring import mcnemar

    a = [True] * 1 + [False] * 8 + [True] * 5 + [False] * 3  # 1 right under a only, 8 under b only
    b = [False] * 1 + [True] * 8 + [True] * 5 + [False] * 3
    f = mcnemar(a, b)
    assert (f["a_only"], f["b_only"]) == (1, 8) and f["p"] == pytest.approx(0.0390625)  # 2 * (1 + 9) / 2**9
    assert mcnemar([True, False], [True, False])["p"] == 1.0  # no discordant item
    with pytest.raises(ValueError, match="pair up"):
        mcnemar([True], [True, False])


def test_wilson_interval_matches_its_formula():
    from analyses.scoring import accuracy_ci, wilson_ci

    z, n, k = 1.959963984540054, 64, 31
    q = k / n
    mid = (q + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(q * (1 - q) / n + z * z / (4 * n * n))
    ci = wilson_ci(k, n)
    assert (ci.mean, ci.n) == (pytest.approx(100 * q), 64)
    assert (ci.lo, ci.hi) == pytest.approx((100 * (mid - half), 100 * (mid + half)))
    assert accuracy_ci(100 * q, n) == ci and accuracy_ci(None, 4) is None and wilson_ci(0, 0).n == 0


def test_choice_summary_accuracies_have_intervals_and_paired_tests_on_all_items():
    rows = [
        {
            "id": str(i),
            "label": 0,
            "n_tokens": 3,
            "converged": i < 6,
            "base": {"context_ending": [1.0, 0.0]},  # base always wrong
            "cram": {"context_ending": [0.0, 1.0] if i < 9 else [1.0, 0.0]},  # cram right on 9 of 10
        }
        for i in range(10)
    ]
    s = summarize_rows(rows)
    c = s["cram"]["context_ending"]
    assert c["acc"] == 90.0 and c["n"] == 10 and c["acc_lo"] < 90.0 < c["acc_hi"] <= 100.0
    assert s["paired_all"]["base_vs_cram"]["context_ending"] == {
        "a_only": 0,
        "b_only": 9,
        "p": pytest.approx(2 / 512),
    }
    assert s["paired_converged"]["base_vs_cram"]["context_ending"]["b_only"] == 6


def test_mmlu_summary_pairs_every_mode_with_the_baseline():
    from analyses.mmlu import summarize

    def row(mode, i, right):
        return {
            "id": str(i),
            "mode": mode,
            "answer": "A",
            "pred": "A" if right else "B",
            "valid": True,
            "correct": right,
            "valid_ref": True,
            "correct_ref": right,
            "cram_accuracy": 1.0 if mode != "baseline" else float("nan"),
        }

    rows = [row("baseline", i, i < 2) for i in range(10)] + [row("few_shot", i, i < 10) for i in range(10)]
    rows[10]["correct"] = rows[10]["correct_ref"] = False  # few_shot item 0: right under the baseline only
    s = summarize(rows)
    fs = s["few_shot"]
    assert fs["vs_baseline"]["correct"] == {"a_only": 1, "b_only": 8, "p": pytest.approx(0.0390625), "n": 10}
    assert "vs_baseline" not in s["baseline"] and fs["acc"] == 90.0 and fs["acc_lo"] < 90 < fs["acc_hi"]
    assert fs["cram_tf_ci"]["n"] == 10 and s["baseline"]["cram_tf_ci"]["n"] == 0
